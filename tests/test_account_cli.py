"""`mailctl account ...` end to end through the Typer app: real files, an in-memory keyring."""

from __future__ import annotations

import json
import socket
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from keyring.backends import fail
from keyring_backend import InMemoryKeyring, use_keyring
from typer.testing import CliRunner, Result

from mailctl.cli.app import app
from mailctl.credentials import SERVICE
from mailctl.models import Protocol, Security

SECRET = "Tr0ub4dor&3-not-shown"
runner = CliRunner()


@pytest.fixture(autouse=True)
def memory_keyring() -> Iterator[InMemoryKeyring]:
    backend = InMemoryKeyring()
    with use_keyring(backend):
        yield backend


@pytest.fixture(autouse=True)
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cfg" / "mailctl" / "config.toml"
    monkeypatch.setenv("MAILCTL_CONFIG", str(path))
    monkeypatch.delenv("MAILCTL_PASSWORD", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    return path


def mailctl(*args: str, input: str | None = None) -> Result:
    """Run the CLI; no command may ever print the secret, whatever it does."""
    result = runner.invoke(app, list(args), input=input)
    assert SECRET not in result.stdout and SECRET not in result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def envelope(result: Result) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["mailctl_result_version"] == "2"
    assert data["exit_code"] == result.exit_code
    return data


def add_work(*extra: str, input: str | None = None) -> Result:
    return mailctl(
        "account",
        "add",
        "work",
        "--from",
        "Me <me@example.com>",
        "--smtp-host",
        "smtp.example.com",
        "--smtp-user",
        "me@example.com",
        "--imap-host",
        "imap.example.com",
        "--imap-user",
        "me",
        *extra,
        input=input,
    )


def read(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


# --- add / list / show / remove ---------------------------------------------------------------


def test_round_trip(config_file: Path) -> None:
    added = add_work("--json")
    assert added.exit_code == 0, added.stderr
    data = envelope(added)
    assert data["command"] == ["account", "add"] and data["status"] == "ok"
    assert data["data"]["default"] is True and data["data"]["config"] == str(config_file)
    assert read(config_file) == {
        "default_account": "work",
        "accounts": {
            "work": {
                "from": "Me <me@example.com>",
                "smtp": {
                    "host": "smtp.example.com",
                    "port": 587,
                    "security": "starttls",
                    "username": "me@example.com",
                },
                "imap": {
                    "host": "imap.example.com",
                    "port": 993,
                    "security": "tls",
                    "username": "me",
                },
            }
        },
    }

    listed = mailctl("account", "list")
    assert listed.exit_code == 0
    assert "work" in listed.stdout and "Me <me@example.com>" in listed.stdout
    assert "smtp, imap" in listed.stdout and "*" in listed.stdout
    listed_json = envelope(mailctl("account", "list", "--json"))["data"]
    assert listed_json["accounts"] == [
        {"name": "work", "default": True, "from": "Me <me@example.com>", "blocks": ["smtp", "imap"]}
    ]

    shown = mailctl("account", "show", "work")
    assert shown.exit_code == 0
    assert "smtp.example.com" in shown.stdout and "none found" in shown.stdout
    shown_json = envelope(mailctl("account", "show", "--json"))["data"]  # the default account
    assert shown_json["name"] == "work" and shown_json["default"] is True
    assert shown_json["smtp"]["port"] == 587 and shown_json["smtp"]["verify"] is True
    assert shown_json["imap"]["secret_source"] == "none found"
    assert shown_json["pop3"] is None  # JSON v2: every key present, null when not configured

    removed = mailctl("account", "remove", "work", "--yes", "--json")
    assert removed.exit_code == 0
    assert envelope(removed)["data"]["default_account"] is None
    assert read(config_file) == {}
    assert "No accounts" in mailctl("account", "list").stdout


def test_file_and_directory_are_private(config_file: Path) -> None:
    assert add_work().exit_code == 0
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_file.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(config_file.parent.parent.stat().st_mode) == 0o700


def test_first_account_is_default_unless_another_asks(config_file: Path) -> None:
    assert add_work().exit_code == 0
    home = ("account", "add", "home", "--pop3-host", "pop.example.com")
    assert mailctl(*home).exit_code == 0
    assert read(config_file)["default_account"] == "work"
    assert read(config_file)["accounts"]["home"]["pop3"]["port"] == 995
    assert mailctl(*home, "--force", "--default").exit_code == 0
    assert read(config_file)["default_account"] == "home"


def test_existing_account_needs_force(config_file: Path) -> None:
    assert add_work().exit_code == 0
    before = config_file.read_bytes()
    again = mailctl("account", "add", "work", "--smtp-host", "other.example.com")
    assert again.exit_code == 64
    assert "already exists" in again.stderr and "--force" in again.stderr
    assert config_file.read_bytes() == before
    forced = mailctl("account", "add", "work", "--smtp-host", "other.example.com", "--force")
    assert forced.exit_code == 0
    assert read(config_file)["accounts"]["work"] == {
        "smtp": {"host": "other.example.com", "port": 587, "security": "starttls"}
    }


def test_global_config_option_wins(tmp_path: Path, config_file: Path) -> None:
    other = tmp_path / "elsewhere.toml"
    result = mailctl("--config", str(other), "account", "add", "x", "--smtp-host", "h.example")
    assert result.exit_code == 0
    assert "x" in read(other)["accounts"]
    assert not config_file.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--smtp-host", "h", "--smtp-port", "abc"], "--smtp-port: must be an integer"),
        (["--smtp-host", "h", "--smtp-port", "70000"], "got 70000"),
        (["--imap-host", "h", "--imap-security", "ssl"], "--imap-security: must be one of"),
        (["--pop3-host", "h", "--pop3-auth", "oauth"], "--pop3-auth: must be one of"),
        (["--smtp-host", "a b"], "--smtp-host: is not a valid host name"),
        (["--smtp-port", "25"], "--smtp-host is required"),
        (["--smtp-host", "h", "--from", "not an address"], "--from: must be exactly one address"),
        ([], "needs at least one server"),
    ],
)
def test_bad_flags_are_usage_errors(config_file: Path, args: list[str], message: str) -> None:
    result = mailctl("account", "add", "bad", *args)
    assert result.exit_code == 64
    assert message in result.stderr
    assert not config_file.exists()


def test_bad_account_name(config_file: Path) -> None:
    result = mailctl("account", "add", "a:b", "--smtp-host", "h", "--json")
    assert result.exit_code == 64
    assert envelope(result)["errors"][0]["code"] == "usage"
    assert not config_file.exists()


# --- secrets ----------------------------------------------------------------------------------


def test_password_stdin_goes_to_the_keyring_only(
    config_file: Path, memory_keyring: InMemoryKeyring
) -> None:
    added = add_work(
        "--imap-password-command", "pass show mail", "--password-stdin", input=f"{SECRET}\n"
    )
    assert added.exit_code == 0, added.stderr
    # IMAP has a password_command, so only SMTP needs the stored password.
    assert memory_keyring.entries == {(SERVICE, "work:smtp"): SECRET}
    assert SECRET not in config_file.read_text(encoding="utf-8")
    shown = envelope(mailctl("account", "show", "work", "--json"))["data"]
    assert shown["smtp"]["secret_source"] == "keyring"
    assert shown["imap"]["secret_source"] == "password_command"
    assert "keyring" in mailctl("account", "show", "work").stdout


def test_set_password_and_where_secrets_come_from(
    memory_keyring: InMemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert add_work().exit_code == 0
    stored = mailctl(
        "account", "set-password", "work", "--protocol", "imap", "--stdin", "--json", input=SECRET
    )
    assert stored.exit_code == 0, stored.stderr
    assert envelope(stored)["data"]["stored_in_keyring"] == ["imap"]
    assert memory_keyring.entries == {(SERVICE, "work:imap"): SECRET}
    stored = mailctl("account", "set-password", "work", "--stdin", input=f"{SECRET}\r\n")
    assert stored.exit_code == 0
    assert memory_keyring.entries == {
        (SERVICE, "work:imap"): SECRET,
        (SERVICE, "work:smtp"): SECRET,
    }
    for args in (("show", "work"), ("show", "work", "--json"), ("list",), ("list", "--json")):
        mailctl("account", *args)  # mailctl() asserts the secret is never printed
    monkeypatch.setenv("MAILCTL_PASSWORD", "from-env")
    shown = envelope(mailctl("account", "show", "work", "--json"))["data"]
    assert shown["smtp"]["secret_source"] == "env" and shown["imap"]["secret_source"] == "env"


def test_set_password_errors() -> None:
    assert add_work().exit_code == 0
    no_terminal = mailctl("account", "set-password", "work")
    assert no_terminal.exit_code == 64 and "--stdin" in no_terminal.stderr
    missing_block = mailctl(
        "account", "set-password", "work", "-p", "pop3", "--stdin", input=SECRET
    )
    assert missing_block.exit_code == 64 and "no pop3 server" in missing_block.stderr
    bad_protocol = mailctl("account", "set-password", "work", "-p", "ftp", "--stdin", input=SECRET)
    assert bad_protocol.exit_code == 64 and "--protocol" in bad_protocol.stderr
    empty = mailctl("account", "set-password", "work", "--stdin", input="\n")
    assert empty.exit_code == 64
    nobody = mailctl("account", "set-password", "nobody", "--stdin", input=SECRET)
    assert nobody.exit_code == 78 and "no account named 'nobody'" in nobody.stderr


def test_show_does_not_run_the_password_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    command = f"touch {marker}"
    assert add_work("--smtp-password-command", command).exit_code == 0
    shown = mailctl("account", "show", "work")
    assert shown.exit_code == 0 and "password_command" in shown.stdout
    assert not marker.exists()


def test_fail_backend_is_a_clear_config_error(config_file: Path) -> None:
    with use_keyring(fail.Keyring()):
        added = add_work("--password-stdin", input=SECRET)
        assert added.exit_code == 78
        assert "no system keyring" in added.stderr
        assert "password_command" in added.stderr and "MAILCTL_PASSWORD" in added.stderr
        assert "Traceback" not in added.stderr
        assert not config_file.exists()  # nothing half done
        assert add_work().exit_code == 0  # without a password to store, the keyring is not needed
        stored = mailctl("account", "set-password", "work", "--stdin", "--json", input=SECRET)
        assert stored.exit_code == 78
        error = envelope(stored)["errors"][0]
        assert error["code"] == "keyring_unavailable"
        assert "no system keyring" in error["message"]
        shown = envelope(mailctl("account", "show", "work", "--json"))["data"]
        assert shown["smtp"]["secret_source"] == "none found"
        removed = mailctl("account", "remove", "work", "--yes")
        assert removed.exit_code == 0  # the keyring cannot hold anything of ours: not an error


def test_remove_needs_confirmation_and_deletes_keyring_entries(
    config_file: Path, memory_keyring: InMemoryKeyring
) -> None:
    assert add_work("--password-stdin", input=SECRET).exit_code == 0
    assert mailctl("account", "add", "home", "--smtp-host", "h.example").exit_code == 0
    memory_keyring.set_password(SERVICE, "home:smtp", "other")
    refused = mailctl("account", "remove", "work")
    assert refused.exit_code == 64 and "--yes" in refused.stderr
    refused_json = mailctl("account", "remove", "work", "--json")
    assert refused_json.exit_code == 64 and envelope(refused_json)["status"] == "error"
    assert "work" in read(config_file)["accounts"]
    removed = mailctl("account", "remove", "work", "-y", "--json")
    assert removed.exit_code == 0
    data = envelope(removed)["data"]
    assert data["deleted_from_keyring"] == ["smtp", "imap"]
    assert data["default_account"] == "home"
    assert memory_keyring.entries == {(SERVICE, "home:smtp"): "other"}
    assert read(config_file)["default_account"] == "home"
    gone = mailctl("account", "remove", "work", "--yes")
    assert gone.exit_code == 78 and "no account named 'work'" in gone.stderr


# --- files written by hand --------------------------------------------------------------------


def test_unknown_key_exits_78_naming_file_and_key(config_file: Path) -> None:
    config_file.parent.mkdir(parents=True)
    config_file.write_text("[accounts.w.smtp]\nhost = 'h'\nprot = 25\n", encoding="utf-8")
    for command in (("list",), ("show", "w"), ("add", "x", "--smtp-host", "h")):
        result = mailctl("account", *command)
        assert result.exit_code == 78
        assert str(config_file) in result.stderr and "accounts.w.smtp.prot" in result.stderr
        assert "did you mean 'port'" in result.stderr
    data = envelope(mailctl("account", "list", "--json"))
    assert data["status"] == "error" and data["exit_code"] == 78
    assert data["errors"][0]["code"] == "config_error"
    assert "accounts.w.smtp.prot" in data["errors"][0]["message"]


def test_bad_value_in_file(config_file: Path) -> None:
    config_file.parent.mkdir(parents=True)
    config_file.write_text("[accounts.w.smtp]\nhost = 'h'\nsecurity = 'ssl'\n", encoding="utf-8")
    result = mailctl("account", "list")
    assert result.exit_code == 78
    assert "accounts.w.smtp.security: must be one of 'tls', 'starttls', 'none', got 'ssl'" in (
        " ".join(result.stderr.split())
    )


def test_password_in_file_warns_and_is_not_used(config_file: Path) -> None:
    config_file.parent.mkdir(parents=True)
    config_file.write_text(
        f"[accounts.w.smtp]\nhost = 'h'\nusername = 'me'\npassword = '{SECRET}'\n", encoding="utf-8"
    )
    shown = mailctl("account", "show", "w", "--json")
    assert shown.exit_code == 0
    assert "accounts.w.smtp.password is ignored" in " ".join(shown.stderr.split())
    data = envelope(shown)["data"]
    assert data["smtp"]["secret_source"] == "none found"
    assert data["warnings"] and "set-password w" in data["warnings"][0]
    # Rewriting the file (any add/remove) drops the stored password for good.
    assert mailctl("account", "add", "x", "--smtp-host", "h2").exit_code == 0
    assert SECRET not in config_file.read_text(encoding="utf-8")


# --- interactive add --------------------------------------------------------------------------


def test_interactive_add_asks_for_what_is_missing(
    config_file: Path, memory_keyring: InMemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailctl.cli.output import Output

    monkeypatch.setattr(Output, "interactive", property(lambda self: not self.json_mode))
    # One block at a time (issue 8): SMTP's questions, then IMAP's, then POP3's.
    answers = [
        "Me <me@example.com>",  # From
        "smtp.example.com",  # SMTP host
        "",  # SMTP security [starttls]
        "",  # SMTP port [587]
        "",  # SMTP user [me@example.com]
        "",  # SMTP password command (empty: the keyring)
        "y",  # add IMAP?
        "",  # IMAP host [imap.example.com], suggested from the SMTP host
        "",  # IMAP security [tls]
        "",  # IMAP port [993]
        "imapuser",  # IMAP user [me@example.com]
        "",  # IMAP password command
        "n",  # add POP3?
        "",  # store the password? [Y/n]
        SECRET,
        SECRET,  # confirmation
    ]
    result = mailctl("account", "add", "home", input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.stderr
    account = read(config_file)["accounts"]["home"]
    assert account["smtp"] == {
        "host": "smtp.example.com",
        "port": 587,
        "security": "starttls",
        "username": "me@example.com",
    }
    assert account["imap"]["username"] == "imapuser" and account["imap"]["port"] == 993
    assert memory_keyring.entries == {
        (SERVICE, "home:smtp"): SECRET,
        (SERVICE, "home:imap"): SECRET,
    }


# --- account test -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[tuple[int, Path, list[tuple[str, str]]]]:
    """aiosmtpd with STARTTLS (a trustme CA) and AUTH; yields (port, CA file, logins seen)."""
    import ssl

    import trustme
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    logins: list[tuple[str, str]] = []

    def authenticator(
        server: object, session: object, envelope: object, mechanism: str, data: object
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        user, password = data.login.decode(), data.password.decode()
        logins.append((user, password))
        return AuthResult(success=password == SECRET, handled=False)  # False: answer 535

    class Sink:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 OK"

    port = free_port()
    controller = Controller(
        Sink(),
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield port, ca_file, logins
    finally:
        controller.stop()


def add_tested(port: int, ca_file: Path, *extra: str, input: str | None = None) -> None:
    result = mailctl(
        "account",
        "add",
        "t",
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        str(port),
        "--smtp-security",
        "starttls",
        "--smtp-user",
        "alice",
        "--ca-file",
        str(ca_file),
        *extra,
        input=input,
    )
    assert result.exit_code == 0, result.stderr


def test_account_test_logs_in_with_the_stored_secret(
    smtp_server: tuple[int, Path, list[tuple[str, str]]],
) -> None:
    port, ca_file, logins = smtp_server
    add_tested(port, ca_file, "--password-stdin", input=SECRET)
    tested = mailctl("account", "test", "t", "--json")
    assert tested.exit_code == 0, tested.stdout + tested.stderr
    data = envelope(tested)
    assert data["status"] == "ok" and data["errors"] == []
    [check] = data["data"]["checks"]
    assert check["protocol"] == "smtp" and check["ok"] and check["connected"]
    assert check["authenticated"] is True and check["tls"]["version"].startswith("TLSv1.")
    assert any(cap.startswith("AUTH") for cap in check["capabilities"])
    assert logins == [("alice", SECRET)]  # what the server received
    human = mailctl("account", "test", "t")
    assert human.exit_code == 0 and "OK" in human.stdout and "TLSv1" in human.stdout


def test_account_test_reports_each_block(
    smtp_server: tuple[int, Path, list[tuple[str, str]]], memory_keyring: InMemoryKeyring
) -> None:
    port, ca_file, _logins = smtp_server
    add_tested(port, ca_file, "--imap-host", "127.0.0.1", "--imap-port", str(free_port()))
    memory_keyring.set_password(SERVICE, "t:smtp", SECRET)
    tested = mailctl("account", "test", "t", "--json")
    data = envelope(tested)
    assert data["status"] == "partial"
    assert tested.exit_code == 74  # the IMAP port is closed: cannot connect
    smtp, imap = data["data"]["checks"]
    assert smtp["ok"] and smtp["authenticated"] is True
    assert not imap["ok"] and imap["error"]["code"] == "connect_failed"
    assert [e["protocol"] for e in data["errors"]] == ["imap"]
    only_smtp = mailctl("account", "test", "t", "--protocol", "smtp")
    assert only_smtp.exit_code == 0 and "imap" not in only_smtp.stdout
    human = mailctl("account", "test", "t")
    assert (
        human.exit_code == 74 and "FAILED" in human.stdout and "Some servers failed" in human.stdout
    )


def test_account_test_wrong_or_missing_password(
    smtp_server: tuple[int, Path, list[tuple[str, str]]], memory_keyring: InMemoryKeyring
) -> None:
    port, ca_file, logins = smtp_server
    add_tested(port, ca_file)
    missing = mailctl("account", "test", "t", "--json")
    assert missing.exit_code == 78 and envelope(missing)["status"] == "error"
    assert envelope(missing)["errors"][0]["code"] == "credentials_unavailable"
    assert logins == []  # no AUTH without a password
    memory_keyring.set_password(SERVICE, "t:smtp", "wrong")
    wrong = mailctl("account", "test", "t")
    assert wrong.exit_code == 77 and "FAILED" in wrong.stdout
    assert logins == [("alice", "wrong")]
    with use_keyring(fail.Keyring()):
        headless = mailctl("account", "test", "t")
    assert headless.exit_code == 78 and "no system keyring" in headless.stdout


def test_account_test_refuses_plaintext_auth(config_file: Path) -> None:
    result = mailctl(
        "account", "add", "p", "--smtp-host", "127.0.0.1", "--smtp-port", str(free_port()),
        "--smtp-security", "none", "--smtp-user", "bob",
    )  # fmt: skip
    assert result.exit_code == 0
    tested = mailctl("account", "test", "p", "--json")
    assert tested.exit_code == 77
    assert envelope(tested)["errors"][0]["code"] == "plaintext_auth_refused"


def test_account_test_imap_and_pop3(dovecot: Any, memory_keyring: InMemoryKeyring) -> None:
    """IMAP over implicit TLS and POP3 over STLS against Dovecot, password from the keyring."""
    imaps = dovecot.settings(Protocol.IMAP, Security.TLS)
    pop3 = dovecot.settings(Protocol.POP3, Security.STARTTLS)
    result = mailctl(
        "account", "add", "d", "--ca-file", str(dovecot.ca_pem),
        "--imap-host", imaps.host, "--imap-port", str(imaps.port), "--imap-security", "tls",
        "--imap-user", dovecot.user,
        "--pop3-host", pop3.host, "--pop3-port", str(pop3.port), "--pop3-security", "starttls",
        "--pop3-user", dovecot.user,
        "--password-stdin", input=dovecot.password,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert set(memory_keyring.entries) == {(SERVICE, "d:imap"), (SERVICE, "d:pop3")}
    tested = mailctl("account", "test", "d", "--json")
    assert dovecot.password not in tested.stdout + tested.stderr
    assert tested.exit_code == 0, tested.stdout
    imap, pop = envelope(tested)["data"]["checks"]
    assert (imap["protocol"], pop["protocol"]) == ("imap", "pop3")
    for check in (imap, pop):
        assert check["ok"] and check["authenticated"] is True and check["tls"] is not None
    assert "IMAP4REV1" in {c.upper() for c in imap["capabilities"]}
    memory_keyring.set_password(SERVICE, "d:pop3", "wrong")
    partial = mailctl("account", "test", "d", "--json")
    assert partial.exit_code == 77 and envelope(partial)["status"] == "partial"
    assert envelope(partial)["errors"][0]["protocol"] == "pop3"


def test_interactive_remove_and_set_password(
    config_file: Path, memory_keyring: InMemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailctl.cli.output import Output

    monkeypatch.setattr(Output, "interactive", property(lambda self: not self.json_mode))
    # Prompts: SMTP security and port, IMAP security and port (defaults), IMAP password
    # command (SMTP's is offered: '-' declines it), no keyring now.
    added = add_work("--smtp-password-command", "pass show x", input="\n\n\n\n-\nn\n")
    assert added.exit_code == 0, added.stderr
    assert "No password stored for imap" in added.stdout
    interrupted = mailctl("account", "add", "other", input="")  # Ctrl-D at the first prompt
    assert interrupted.exit_code == 130 and "interrupted" in interrupted.stderr
    stored = mailctl("account", "set-password", "work", "-p", "imap", input=f"{SECRET}\n{SECRET}\n")
    assert stored.exit_code == 0, stored.stderr
    assert memory_keyring.entries == {(SERVICE, "work:imap"): SECRET}
    declined = mailctl("account", "remove", "work", input="n\n")
    assert declined.exit_code == 0 and "Nothing removed" in declined.stdout
    assert "work" in read(config_file)["accounts"]
    missing = mailctl("account", "remove", "nope")
    assert missing.exit_code == 78  # refused before asking anything
    confirmed = mailctl("account", "remove", "work", input="y\n")
    assert confirmed.exit_code == 0 and "Removed account work" in confirmed.stdout
    assert memory_keyring.entries == {}
