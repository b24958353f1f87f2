"""A config file named with --config (or sendmail's -C) must exist; only the default may not."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailctl.cli.app import app

runner = CliRunner()

# Every command that reads the config file, run against a --config that does not exist.
READERS = [
    ["account", "list"],
    ["account", "show", "work"],
    ["account", "test", "work"],
    ["account", "remove", "work", "--yes"],
    ["account", "set-password", "work", "--stdin"],
    ["account", "set", "work", "--smtp-port", "2526"],
    ["send", "--dry-run", "--from", "a@example.org", "--to", "b@example.org", "--body", "x"],
    ["send", "--to", "b@example.org", "--body", "x"],
    ["bench", "--account", "work", "--messages", "1"],
]


@pytest.fixture(autouse=True)
def _default_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCTL_CONFIG", str(tmp_path / "default" / "config.toml"))
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.mark.parametrize("args", READERS, ids=lambda args: " ".join(args[:2]))
def test_a_named_config_that_does_not_exist_is_refused(args: list[str], tmp_path: Path) -> None:
    missing = tmp_path / "typo.toml"
    result = runner.invoke(app, ["--config", str(missing), *args, "--json"], input="pw\n")
    assert result.exit_code == 66, result.output
    error = json.loads(result.stdout)["errors"][0]
    assert error["code"] == "no_input" and str(missing) in error["message"]
    assert "--config" in error["message"] and "account add" in error["hint"]
    assert not missing.exists()


def test_sendmail_dash_c_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "typo.toml"
    result = runner.invoke(
        app, ["sendmail", "-C", str(missing), "-t"], input="To: b@example.org\n\nhi\n"
    )
    assert result.exit_code == 66, result.output
    assert str(missing) in result.stderr and "does not exist" in result.stderr


def test_the_default_config_may_be_missing(tmp_path: Path) -> None:
    result = runner.invoke(app, ["account", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["accounts"] == []


def test_account_add_creates_a_named_config(tmp_path: Path) -> None:
    named = tmp_path / "new" / "mail.toml"
    result = runner.invoke(
        app, ["--config", str(named), "account", "add", "work", "--smtp-host", "smtp.example.com"]
    )
    assert result.exit_code == 0, result.output
    assert "work" in tomllib.loads(named.read_text())["accounts"]
    listed = runner.invoke(app, ["--config", str(named), "account", "list", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)["data"]["accounts"]
