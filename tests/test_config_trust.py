"""A config file that others can change is refused before anything in it is used.

The config names the commands that produce passwords (password_command), the servers those
passwords go to and the CA that vouches for them, so a file or folder that someone else can
write is as good as a file they wrote. Every case goes through the CLI with an account whose
password_command touches a marker file: the marker proves whether the command ran.

The tests run as root here, so "someone else" is uid 65534 (nobody), set with os.chown.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from servers.smtp_server import TEST_PASSWORD, TEST_USER, SmtpTestServer
from typer.testing import CliRunner, Result

from mailctl.cli.app import app
from mailctl.config.store import load_config
from mailctl.errors import ConfigError

runner = CliRunner()
OTHER_UID = 65534  # nobody


def write_config(folder: Path, server: SmtpTestServer, marker: Path) -> Path:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(
        'default_account = "work"\n[accounts.work]\nfrom = "w@example.org"\n'
        f'[accounts.work.smtp]\nhost = "127.0.0.1"\nport = {server.port}\n'
        f'security = "starttls"\nusername = "{TEST_USER}"\nca_file = "{server.ca_file}"\n'
        f"password_command = \"touch '{marker}'; echo '{TEST_PASSWORD}'\"\n"
    )
    path.chmod(0o600)
    return path


def send(config: Path, *extra: str) -> Result:
    return runner.invoke(
        app,
        ["--config", str(config), "send", "--to", "b@example.org", "--body", "x", *extra],
        env={"MAILCTL_PASSWORD": "", "NO_COLOR": "1"},
    )


def one_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "command-ran"


@pytest.fixture
def safe(tmp_path: Path, smtp_server: SmtpTestServer, marker: Path) -> Path:
    return write_config(tmp_path / "home" / "conf", smtp_server, marker)


def test_a_private_config_runs_its_command(
    safe: Path, marker: Path, smtp_server: SmtpTestServer
) -> None:
    result = send(safe)
    assert result.exit_code == 0, result.stderr
    assert marker.exists() and len(smtp_server.messages) == 1


@pytest.mark.parametrize("mode", [0o666, 0o606, 0o664, 0o660, 0o602, 0o620], ids=oct)
def test_file_writable_by_others_is_refused(
    mode: int, safe: Path, marker: Path, smtp_server: SmtpTestServer
) -> None:
    safe.chmod(mode)
    result = send(safe)
    assert result.exit_code == 78, result.stderr
    line = one_line(result)
    assert str(safe) in line and f"{mode:04o}" in line and f"chmod 600 {safe}" in line
    assert not marker.exists(), "the password_command of an untrusted config ran"
    assert smtp_server.messages == [] and smtp_server.connections == 0


def test_file_owned_by_someone_else_is_refused(
    safe: Path, marker: Path, smtp_server: SmtpTestServer
) -> None:
    os.chown(safe, OTHER_UID, OTHER_UID)
    result = send(safe)
    assert result.exit_code == 78, result.stderr
    line = one_line(result)
    assert str(safe) in line and str(OTHER_UID) in line and "chown" in line
    assert not marker.exists() and smtp_server.connections == 0


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o757], ids=oct)
def test_folder_writable_by_others_is_refused(
    mode: int, safe: Path, marker: Path, smtp_server: SmtpTestServer
) -> None:
    safe.parent.chmod(mode)
    result = send(safe)
    assert result.exit_code == 78, result.stderr
    line = one_line(result)
    assert str(safe) in line and str(safe.parent) in line and f"{mode:04o}" in line
    assert f"chmod go-w {safe.parent}" in line
    assert not marker.exists() and smtp_server.connections == 0


def test_folder_owned_by_someone_else_is_refused(
    safe: Path, marker: Path, smtp_server: SmtpTestServer
) -> None:
    safe.parent.chmod(0o755)
    os.chown(safe.parent, OTHER_UID, OTHER_UID)
    result = send(safe)
    assert result.exit_code == 78, result.stderr
    line = one_line(result)
    assert str(safe.parent) in line and str(OTHER_UID) in line
    assert not marker.exists() and smtp_server.connections == 0


def test_a_writable_folder_higher_up_is_refused(
    safe: Path, marker: Path, smtp_server: SmtpTestServer
) -> None:
    """Whoever can rename entries in any ancestor can swap the whole subtree."""
    grandparent = safe.parent.parent
    grandparent.chmod(0o777)
    result = send(safe)
    assert result.exit_code == 78, result.stderr
    assert str(grandparent) in one_line(result)
    assert not marker.exists()


def test_a_sticky_shared_folder_is_fine(
    safe: Path, marker: Path, smtp_server: SmtpTestServer
) -> None:
    """/tmp-style folders (1777): others cannot rename or replace what they do not own."""
    safe.parent.chmod(0o1777)
    result = send(safe)
    assert result.exit_code == 0, result.stderr
    assert marker.exists()


def test_a_symlink_in_a_writable_folder_is_refused(
    safe: Path, marker: Path, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    link = shared / "config.toml"
    link.symlink_to(safe)
    result = send(link)
    assert result.exit_code == 78, result.stderr
    assert str(shared) in one_line(result)
    assert not marker.exists()


def test_a_symlink_to_a_private_file_is_fine(
    safe: Path, marker: Path, tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    """Dotfile managers link ~/.config/mailctl/config.toml into a private repository."""
    home = tmp_path / "linkhome"
    home.mkdir(mode=0o700)
    link = home / "config.toml"
    link.symlink_to(safe)
    result = send(link)
    assert result.exit_code == 0, result.stderr
    assert marker.exists()


def test_read_only_commands_refuse_too(safe: Path) -> None:
    """Any command: the file names the servers keyring passwords go to, not only commands."""
    safe.chmod(0o666)
    result = runner.invoke(
        app, ["--config", str(safe), "account", "list", "--json"], env={"NO_COLOR": "1"}
    )
    assert result.exit_code == 78
    envelope = json.loads(result.stdout)
    assert envelope["errors"][0]["code"] == "config_insecure"
    assert str(safe) in envelope["errors"][0]["message"]


def test_sendmail_config_option_is_checked(safe: Path, marker: Path) -> None:
    safe.chmod(0o646)
    result = runner.invoke(
        app,
        ["sendmail", "-C", str(safe), "-i", "b@example.org"],
        input="Subject: s\n\nbody\n",
        env={"MAILCTL_PASSWORD": "", "NO_COLOR": "1"},
    )
    assert result.exit_code == 78, result.stderr
    assert "0646" in result.stderr and not marker.exists()


def test_missing_file_needs_no_check(tmp_path: Path) -> None:
    shared = tmp_path / "open"
    shared.mkdir()
    shared.chmod(0o777)
    assert load_config(shared / "config.toml").accounts == {}


def test_mailctl_writes_keep_passing_its_own_check(tmp_path: Path) -> None:
    """`account add` creates 0600 in 0700 folders, which the next command then trusts."""
    config = tmp_path / "fresh" / "sub" / "config.toml"
    added = runner.invoke(
        app,
        [
            "--config",
            str(config),
            "account",
            "add",
            "work",
            "--from",
            "w@example.org",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-user",
            "w",
            "--smtp-password-command",
            "echo pw",
        ],
        env={"NO_COLOR": "1"},
    )
    assert added.exit_code == 0, added.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    listed = runner.invoke(app, ["--config", str(config), "account", "list"])
    assert listed.exit_code == 0, listed.stderr


# --- the ownership rule for a user who is not root ----------------------------------------------


@pytest.fixture
def plain_file(tmp_path: Path) -> Path:
    folder = tmp_path / "f"
    folder.mkdir(mode=0o755)
    path = folder / "config.toml"
    path.write_text("")
    path.chmod(0o644)
    return path


def test_root_owned_files_are_trusted_by_everyone(plain_file: Path) -> None:
    """As ssh and msmtp do: root could change anything anyway (/etc configs)."""
    from mailctl.config.trust import check_trusted

    check_trusted(plain_file, os.stat(plain_file), uid=1000)


def test_own_files_are_trusted(plain_file: Path) -> None:
    from mailctl.config.trust import check_trusted

    os.chown(plain_file, 1000, 1000)
    check_trusted(plain_file, os.stat(plain_file), uid=1000)


def test_a_third_users_file_is_not_trusted(plain_file: Path) -> None:
    from mailctl.config.trust import check_trusted

    os.chown(plain_file, OTHER_UID, OTHER_UID)
    with pytest.raises(ConfigError) as caught:
        check_trusted(plain_file, os.stat(plain_file), uid=1000)
    assert caught.value.code == "config_insecure" and caught.value.exit_code == 78
