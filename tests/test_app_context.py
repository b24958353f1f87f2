"""One application context per run: global options before or after the command, config
warnings once, one secret lookup per server block, and no import cycle through cli/app.py."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from servers.smtp_server import TEST_PASSWORD, SmtpTestServer, write_account_config

PACKAGE = Path(__file__).resolve().parent.parent / "mailctl"


def mailctl(
    args: Sequence[str],
    *,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    full_env.pop("MAILCTL_CONFIG", None)
    full_env["XDG_CONFIG_HOME"] = "/nonexistent-mailctl-test"  # no config unless named
    proc = subprocess.run(
        [sys.executable, "-m", "mailctl", *args],
        input=stdin,
        capture_output=True,
        env=full_env,
        timeout=60,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


def two_accounts(path: Path, server: SmtpTestServer) -> Path:
    return write_account_config(
        path,
        server,
        extra_lines=("[accounts.other]", 'from = "other@example.net"'),
    )


# --------------------------------------------------------------------------- global options


@pytest.mark.parametrize("where", ["before", "between", "after"])
def test_account_list_takes_config_and_json_before_or_after(
    smtp_server: SmtpTestServer, tmp_path: Path, where: str
) -> None:
    config = two_accounts(tmp_path / "c.toml", smtp_server)
    options = ["--config", str(config), "--json"]
    args = {
        "before": [*options, "account", "list"],
        "between": ["account", *options, "list"],
        "after": ["account", "list", *options],
    }[where]
    proc = mailctl(args)
    assert proc.returncode == 0, proc.stderr
    envelope = json.loads(proc.stdout)
    assert envelope["command"] == ["account", "list"]
    assert [a["name"] for a in envelope["data"]["accounts"]] == ["main", "other"]
    assert envelope["data"]["config"] == str(config)


def test_the_option_after_the_command_wins(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    config = two_accounts(tmp_path / "c.toml", smtp_server)
    empty = tmp_path / "empty.toml"
    proc = mailctl(["--config", str(empty), "account", "list", "--config", str(config), "--json"])
    assert json.loads(proc.stdout)["data"]["config"] == str(config)


@pytest.mark.parametrize("config_where", ["before", "after"])
def test_account_before_the_command_names_the_account_to_show(
    smtp_server: SmtpTestServer, tmp_path: Path, config_where: str
) -> None:
    config = ["--config", str(two_accounts(tmp_path / "c.toml", smtp_server))]
    show = ["account", "show", "--json"]
    before = ["--account", "other", *(config if config_where == "before" else [])]
    proc = mailctl([*before, *show, *(config if config_where == "after" else [])])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["data"]["name"] == "other"


@pytest.mark.parametrize("where", ["before", "after"])
def test_send_takes_config_before_or_after(
    smtp_server: SmtpTestServer, tmp_path: Path, where: str
) -> None:
    config = two_accounts(tmp_path / "c.toml", smtp_server)
    send = ["send", "--to", "bob@example.org", "--body", "x", "--json"]
    options = ["--config", str(config)]
    args = [*options, *send] if where == "before" else [*send, *options]
    proc = mailctl(args, env={"MAILCTL_PASSWORD": TEST_PASSWORD})
    assert proc.returncode == 0, proc.stderr
    assert smtp_server.messages[0].mail_from == "main@example.org"  # the default account's


@pytest.mark.parametrize("where", ["before", "after"])
def test_bench_takes_config_and_account_before_or_after(
    smtp_server: SmtpTestServer, tmp_path: Path, where: str
) -> None:
    config = two_accounts(tmp_path / "c.toml", smtp_server)
    bench = ["bench", "-n", "2", "-c", "1", "--mode", "reuse", "--json"]
    options = ["--config", str(config), "--account", "main"]
    args = [*options, *bench] if where == "before" else [*bench, *options]
    proc = mailctl(args, env={"MAILCTL_PASSWORD": TEST_PASSWORD})
    assert proc.returncode == 0, proc.stderr
    assert len(smtp_server.messages) == 2


@pytest.mark.parametrize("how", ["dash-C", "global"])
def test_sendmail_takes_its_config_from_dash_c_or_the_global_option(
    smtp_server: SmtpTestServer, tmp_path: Path, how: str
) -> None:
    config = two_accounts(tmp_path / "c.toml", smtp_server)
    message = b"Subject: hi\n\nbody\n"
    head = ["sendmail", "-C", str(config)] if how == "dash-C" else ["--config", str(config)]
    args = [*head, "sendmail", "-i", "bob@example.org"] if how == "global" else head
    if how == "dash-C":
        args += ["-i", "bob@example.org"]
    proc = mailctl(args, stdin=message, env={"MAILCTL_PASSWORD": TEST_PASSWORD})
    assert proc.returncode == 0, proc.stderr
    assert smtp_server.messages[0].rcpt_tos == ["bob@example.org"]


def test_json_before_the_command_gives_the_envelope_of_a_usage_error() -> None:
    proc = mailctl(["--json", "send", "--bogus"])
    assert proc.returncode == 64
    envelope = json.loads(proc.stdout)
    assert envelope["command"] == ["send"] and envelope["errors"][0]["code"] == "usage"


# --------------------------------------------------------------------------- once per run


def test_config_warnings_are_printed_once(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[accounts.a]\nfrom = "a@example.org"\n[accounts.a.smtp]\nhost = "127.0.0.1"\n'
        'port = 9\npassword = "in-the-file"\nconnect_timeout = 2.0\n'
    )
    config.chmod(0o600)
    for args in (["account", "show"], ["account", "list"], ["account", "test"]):
        proc = mailctl([*args, "--config", str(config)])
        assert proc.stderr.count("is ignored") == 1, (args, proc.stderr)


def test_a_password_command_runs_once_for_every_connection_of_a_run(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    script = tmp_path / "pw.sh"
    script.write_text(f"#!/bin/sh\necho run >> {runs}\necho '{TEST_PASSWORD}'\n")
    script.chmod(0o700)
    config = write_account_config(
        tmp_path / "c.toml", smtp_server, extra_lines=(f'password_command = "{script}"',)
    )
    proc = mailctl(["bench", "--account", "main", "--config", str(config), "-n", "6", "-c", "3",
                    "--mode", "new"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(smtp_server.auth_attempts) == 6  # a new connection per message
    assert runs.read_text().count("run") == 1


# --------------------------------------------------------------------------- imports


def _imports(path: Path) -> set[str]:
    """Every mailctl module `path` imports, lazily (inside functions) or not."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("mailctl"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mailctl"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_cli_module_imports_the_app() -> None:
    """app.py registers the commands (lazily); a command importing app back was a cycle."""
    for path in sorted((PACKAGE / "cli").rglob("*.py")):
        if path.name != "app.py":
            assert "mailctl.cli.app" not in _imports(path), f"{path} imports mailctl.cli.app"


def test_send_sendmail_and_account_do_not_reach_into_protocols() -> None:
    """They hand core plain values; transcripts come back through a callback of core's."""
    for name in ("send.py", "sendmail.py", "tracing.py", "context.py", "account"):
        target = PACKAGE / "cli" / name
        for path in [target] if target.is_file() else sorted(target.rglob("*.py")):
            reached = {m for m in _imports(path) if m.startswith("mailctl.protocols")}
            assert not reached, f"{path} imports {sorted(reached)}"
