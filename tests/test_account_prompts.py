"""Interactive `account add` / `set-password`: question order, explained retries, defaults,
"-" for no login, and the keyring checked before any password is asked (CliRunner and a pty).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
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

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cret-not-shown"


@pytest.fixture(autouse=True)
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cfg" / "config.toml"
    monkeypatch.setenv("MAILCTL_CONFIG", str(path))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("MAILCTL_PASSWORD", raising=False)
    return path


@pytest.fixture
def on_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailctl.cli.output import Output

    monkeypatch.setattr(Output, "interactive", property(lambda self: not self.json_mode))


@pytest.fixture
def no_keyring() -> Iterator[None]:
    with use_keyring(fail.Keyring()):
        yield


def mailctl(*args: str, answers: list[str]) -> Result:
    result = CliRunner().invoke(app, list(args), input="\n".join(answers) + "\n")
    assert SECRET not in result.stdout + result.stderr
    return result


def accounts(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    return document["accounts"]


def test_bad_answers_are_explained_and_defaults_carry_over(
    on_terminal: None, config_file: Path, memory_keyring: InMemoryKeyring
) -> None:
    answers = [
        "not an address",  # From: refused, explained
        "Me <me@example.com>",  # From
        "bad host name",  # SMTP host: refused, explained
        "smtp.example.com",
        "ssl",  # SMTP security: refused, explained
        "tls",
        "99999",  # SMTP port: refused, explained
        "seven",  # again refused
        "",  # [465]
        "smtpuser",  # SMTP user (not the address)
        "",  # SMTP password command: none, the keyring
        "y",  # add IMAP?
        "",  # IMAP host [imap.example.com]
        "",  # IMAP security [tls]
        "",  # IMAP port [993]
        "",  # IMAP user [smtpuser]: the SMTP user just typed
        "",  # IMAP password command
        "y",  # add POP3?
        "",  # POP3 host [pop.example.com]
        "",  # POP3 security [tls]
        "",  # POP3 port [995]
        "-",  # POP3 user: no login
        "n",  # store a password in the keyring now? no
    ]
    result = mailctl("account", "add", "home", answers=answers)
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert "From address: must be exactly one address" in err
    assert "SMTP server host: is not a valid host name" in err and "answer again" in err
    assert "SMTP security: must be one of tls, starttls, none, got 'ssl'" in err
    assert "SMTP port:" in err and "'99999'" in err and "'seven'" in err
    # One block at a time: every SMTP question before the IMAP one.
    assert err.index("SMTP password command") < err.index("Add an IMAP server?")
    assert err.index("IMAP password command") < err.index("Add a POP3 server?")
    assert "[imap.example.com]" in err and "[pop.example.com]" in err
    assert "IMAP user ('-' for no login) [smtpuser]" in err
    home = accounts(config_file)["home"]
    assert home["smtp"] == {
        "host": "smtp.example.com",
        "port": 465,
        "security": "tls",
        "username": "smtpuser",
    }
    assert home["imap"]["username"] == "smtpuser" and home["imap"]["host"] == "imap.example.com"
    assert "username" not in home["pop3"] and home["pop3"]["host"] == "pop.example.com"
    assert memory_keyring.entries == {}


def test_without_a_keyring_a_password_command_is_offered_and_no_password_asked(
    on_terminal: None, no_keyring: None, config_file: Path
) -> None:
    answers = [
        "",  # From
        "127.0.0.1",  # SMTP host
        "",  # security [starttls]
        "2525",  # port
        "mailctl",  # user
        "echo mailctl",  # password command
        "n",  # IMAP?
        "n",  # POP3?
        SECRET,  # must never be read as a password
    ]
    result = mailctl("account", "add", "local", answers=answers)
    assert result.exit_code == 0, result.output
    assert "no system keyring" in result.stderr and "Password:" not in result.stderr
    assert accounts(config_file)["local"]["smtp"]["password_command"] == "echo mailctl"


def test_set_password_without_a_keyring_asks_nothing(
    on_terminal: None, no_keyring: None, config_file: Path
) -> None:
    added = mailctl("account", "add", "w", "--smtp-host", "h.example", "--smtp-user", "u",
                    answers=["", "", "", "-"])  # fmt: skip
    assert added.exit_code == 0, added.output
    result = mailctl("account", "set-password", "w", answers=[SECRET, SECRET])
    assert result.exit_code == 78, result.output
    assert "Password" not in result.stderr and "no system keyring" in result.stderr
    assert "--smtp-password-command" in result.stderr
    piped = mailctl("account", "set-password", "w", "--stdin", answers=[SECRET])
    assert piped.exit_code == 78 and "no system keyring" in piped.stderr


def test_dash_at_the_user_question_means_no_login(
    on_terminal: None, config_file: Path, memory_keyring: InMemoryKeyring
) -> None:
    result = mailctl("account", "add", "x", "--smtp-host", "h.example", answers=["", "", "", "-"])
    assert result.exit_code == 0, result.output
    assert accounts(config_file)["x"]["smtp"] == {
        "host": "h.example",
        "port": 587,
        "security": "starttls",
    }
    assert (SERVICE, "x:smtp") not in memory_keyring.entries


# --- a real terminal ---------------------------------------------------------------------------


def _on_pty(
    args: list[str], answers: str, env: dict[str, str], timeout: float = 20.0
) -> tuple[int, str]:
    """Run `python -m mailctl ARGS` with a pty as stdin/stdout/stderr; answers typed ahead."""
    master, slave = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "mailctl", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    os.close(slave)
    os.write(master, answers.encode())  # canonical mode queues the lines for each prompt
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif process.poll() is not None:
                break
        code = process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return code, b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")


def _pty_env(config_file: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCTL_")}
    env.update(
        MAILCTL_CONFIG=str(config_file),
        PYTHONPATH=str(ROOT),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        NO_COLOR="1",
        TERM="dumb",
    )
    return env


def test_on_a_terminal_without_keyring_add_offers_a_command_and_set_password_asks_nothing(
    config_file: Path,
) -> None:
    env = _pty_env(config_file)
    answers = "Me <me@example.org>\n127.0.0.1\n\n2525\nmailctl\necho mailctl\nn\nn\n"
    code, screen = _on_pty(["account", "add", "local"], answers, env)
    assert code == 0, screen
    assert screen.index("SMTP user") < screen.index("SMTP password command")
    assert screen.index("SMTP password command") < screen.index("Add an IMAP server?")
    assert "no system keyring" in screen and "Password:" not in screen
    assert accounts(config_file)["local"]["smtp"]["password_command"] == "echo mailctl"

    code, screen = _on_pty(["account", "set-password", "local"], f"{SECRET}\n{SECRET}\n", env)
    assert code == 78, screen
    assert "Password" not in screen and "no system keyring" in screen
