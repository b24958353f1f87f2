"""`mailctl account set`: change some settings of an account; `--ca-file` checked when given."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
import trustme
from typer.testing import CliRunner, Result

from mailctl.cli.app import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cfg" / "config.toml"
    monkeypatch.setenv("MAILCTL_CONFIG", str(path))
    monkeypatch.setenv("NO_COLOR", "1")
    return path


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


def mailctl(*args: str) -> Result:
    return runner.invoke(app, list(args))


def accounts(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    return document["accounts"]


def add_local(*extra: str) -> None:
    result = mailctl(
        "account", "add", "local", "--from", "Me <me@example.org>", "--smtp-host", "127.0.0.1",
        "--smtp-port", "2525", "--smtp-security", "starttls", "--smtp-user", "mailctl",
        "--smtp-password-command", "echo mailctl", *extra,
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_set_changes_one_field_and_keeps_the_others(config_file: Path, ca_file: Path) -> None:
    add_local("--ca-file", str(ca_file))
    before = accounts(config_file)["local"]
    result = mailctl("account", "set", "local", "--smtp-port", "2526", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert data["account"] == "local" and data["changed"] == ["smtp.port"]
    after = accounts(config_file)["local"]
    assert after == {**before, "smtp": {**before["smtp"], "port": 2526}}
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert [p.name for p in config_file.parent.iterdir()] == ["config.toml"]  # no temp left


def test_security_moves_a_standard_port_and_dash_means_no_login(config_file: Path) -> None:
    assert mailctl("account", "add", "w", "--smtp-host", "smtp.example.com",
                   "--smtp-user", "alice").exit_code == 0  # fmt: skip
    assert accounts(config_file)["w"]["smtp"]["port"] == 587
    result = mailctl("account", "set", "w", "--smtp-security", "tls", "--smtp-user", "-")
    assert result.exit_code == 0, result.output
    assert "smtp.port" in result.stdout and "smtp.username" in result.stdout
    assert accounts(config_file)["w"]["smtp"] == {
        "host": "smtp.example.com",
        "port": 465,
        "security": "tls",
    }
    # A port the user chose stays when only the security changes.
    assert mailctl("account", "set", "w", "--smtp-port", "2465").exit_code == 0
    assert mailctl("account", "set", "w", "--smtp-security", "starttls").exit_code == 0
    assert accounts(config_file)["w"]["smtp"]["port"] == 2465


def test_set_adds_a_block_given_its_host(config_file: Path) -> None:
    add_local()
    missing_host = mailctl("account", "set", "local", "--imap-port", "1143")
    assert missing_host.exit_code == 64 and "--imap-host is required" in missing_host.stderr
    added = mailctl("account", "set", "local", "--imap-host", "127.0.0.1", "--imap-user", "me")
    assert added.exit_code == 0, added.output
    assert accounts(config_file)["local"]["imap"] == {
        "host": "127.0.0.1",
        "port": 993,
        "security": "tls",
        "username": "me",
    }


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["nope", "--smtp-port", "2526"], 78, "no account named 'nope'"),
        (["local", "--smtp-port", "abc"], 64, "--smtp-port: must be an integer"),
        (["local", "--smtp-security", "ssl"], 64, "--smtp-security: must be one of"),
        (["local", "--from", "not an address"], 64, "--from: must be exactly one address"),
        (["local"], 64, "nothing to change"),
        (["local", "--ca-file", "/nonexistent/ca.pem"], 66, "/nonexistent/ca.pem"),
    ],
)
def test_set_refusals_change_nothing(
    config_file: Path, args: list[str], code: int, needle: str
) -> None:
    add_local()
    before = config_file.read_bytes()
    result = mailctl("account", "set", *args)
    assert result.exit_code == code, result.output
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    assert config_file.read_bytes() == before


def test_add_dash_user_stores_no_login(config_file: Path) -> None:
    result = mailctl("account", "add", "x", "--smtp-host", "h.example", "--smtp-user", "-")
    assert result.exit_code == 0, result.output
    assert "username" not in accounts(config_file)["x"]["smtp"]


def test_add_checks_the_ca_file_now(config_file: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    result = mailctl("account", "add", "x", "--smtp-host", "h.example", "--ca-file", str(missing))
    assert result.exit_code == 66, result.output
    assert str(missing) in result.stderr and "does not exist" in result.stderr
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("hello\n")
    result = mailctl("account", "add", "x", "--smtp-host", "h.example", "--ca-file", str(not_pem))
    assert result.exit_code == 65 and "no PEM certificate" in result.stderr
    unreadable = tmp_path / "dir.pem"
    unreadable.mkdir()
    result = mailctl(
        "account", "add", "x", "--smtp-host", "h.example", "--ca-file", str(unreadable)
    )
    assert result.exit_code == 65, result.output
    assert not config_file.exists()


def test_add_and_set_share_one_declaration_per_flag() -> None:
    import typer

    group = typer.main.get_command(app)
    account = group.get_command(None, "account")  # type: ignore[attr-defined]
    params = {
        name: {
            p.name: (tuple(p.opts), p.help, p.metavar)
            for p in account.get_command(None, name).params
            if p.param_type_name == "option"
        }
        for name in ("add", "set")
    }
    shared = set(params["add"]) & set(params["set"])
    assert {
        "smtp_port",
        "imap_username",
        "pop3_password_command",
        "ca_file",
        "from_address",
    } <= shared
    assert all(params["add"][key] == params["set"][key] for key in shared)
