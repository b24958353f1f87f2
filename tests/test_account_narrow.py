"""`mailctl account list/show/test` at 80 columns: no line wider than the terminal, and no
name, address, value or capability cut by an ellipsis or split mid-word."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from keyring_backend import InMemoryKeyring, use_keyring
from terminal import run_on_terminal
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.credentials import SERVICE
from mailctl.models import Protocol, Security

runner = CliRunner()
NAME = "engineering-notifications-west"
ADDRESS = "engineering-notifications-department@subsidiary-of-example.com"
FROM = f"Engineering Notifications Department <{ADDRESS}>"
COMMAND = "pass show mail/engineering-notifications-department/subsidiary-of-example.com/smtp"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    monkeypatch.setenv("MAILCTL_CONFIG", str(path))
    monkeypatch.setenv("NO_COLOR", "1")
    for name, extra in ((NAME, []), ("w", ["--imap-host", "imap.example.com"])):
        added = runner.invoke(
            app,
            ["account", "add", name, "--from", FROM, "--smtp-host", "smtp.example.com",
             "--smtp-user", ADDRESS, "--smtp-password-command", COMMAND, *extra],
        )  # fmt: skip
        assert added.exit_code == 0, added.output
    return path


def run(args: list[str], config: Path, columns: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LINES",)}
    env.update(
        COLUMNS=str(columns),
        MAILCTL_CONFIG=str(config),
        NO_COLOR="1",
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
    )
    return subprocess.run(
        [sys.executable, "-m", "mailctl", *args],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


def assert_readable(text: str, width: int, *whole: str) -> None:
    for line in text.splitlines():
        assert len(line) <= width, f"{len(line)} > {width}: {line!r}\n{text}"
    assert "…" not in text, text
    for item in whole:
        assert any(item in line for line in text.splitlines()), f"{item!r} not whole:\n{text}"


@pytest.mark.parametrize("columns", [80, 70])
def test_list_fits(config: Path, columns: int) -> None:
    listed = run(["account", "list"], config, columns)
    assert listed.returncode == 0, listed.stderr
    assert_readable(listed.stdout, columns, NAME, ADDRESS, "smtp, imap")


def test_list_on_an_80_column_terminal(config: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(MAILCTL_CONFIG=str(config), NO_COLOR="1")
    shown = run_on_terminal(["account", "list"], columns=80, env=env)
    assert shown.code == 0, shown.screen
    assert_readable(shown.screen.replace("\r\n", "\n"), 80, NAME, ADDRESS)


def test_list_keeps_one_line_per_account_when_wide(config: Path) -> None:
    listed = run(["account", "list"], config, 200)
    rows = [line for line in listed.stdout.splitlines() if NAME in line]
    assert len(rows) == 1 and ADDRESS in rows[0] and "smtp" in rows[0], listed.stdout


def test_show_fits(config: Path) -> None:
    shown = run(["account", "show", NAME], config, 80)
    assert shown.returncode == 0, shown.stderr
    assert_readable(shown.stdout, 80, ADDRESS, NAME)
    # A long value wraps at spaces, its words whole.
    for word in COMMAND.split():
        assert any(word in line for line in shown.stdout.splitlines()), word


@pytest.fixture
def memory_keyring() -> Iterator[InMemoryKeyring]:
    backend = InMemoryKeyring()
    with use_keyring(backend):
        yield backend


def test_test_fits_with_imap_capabilities(
    dovecot: Any, memory_keyring: InMemoryKeyring, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dovecot's CAPABILITY line is longer than 80 columns: wrapped, each one whole."""
    monkeypatch.setenv("MAILCTL_CONFIG", str(tmp_path / "c.toml"))
    monkeypatch.setenv("NO_COLOR", "1")
    imaps = dovecot.settings(Protocol.IMAP, Security.TLS)
    added = runner.invoke(
        app,
        ["account", "add", "d", "--ca-file", str(dovecot.ca_pem), "--imap-host", imaps.host,
         "--imap-port", str(imaps.port), "--imap-security", "tls", "--imap-user", dovecot.user],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    memory_keyring.set_password(SERVICE, "d:imap", dovecot.password)
    tested = runner.invoke(app, ["account", "test", "d", "--json"])
    capabilities = json.loads(tested.stdout)["data"]["checks"][0]["capabilities"]
    assert len("      capabilities: " + " ".join(capabilities)) > 80  # the case under test
    human = runner.invoke(app, ["account", "test", "d"], env={"COLUMNS": "80"})
    assert human.exit_code == 0, human.output
    assert_readable(human.stdout, 80, *capabilities)
