"""The JSON contract: every command's envelope and `data` key paths, pinned.

Each command runs through the CLI with --json against real local servers (aiosmtpd, Dovecot,
mailctl's own sink). The key paths of its `data` (nested, recursively; `[]` for list items,
`.*` for maps whose keys are data) must equal the set written here, so renaming, adding or
dropping a key is a visible decision: change the set, the README's "JSON output" tables and,
for a rename, `mailctl_result_version`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosmtplib
from servers.smtp_server import SmtpTestServer
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.models import Protocol, Security

MESSAGE = b"Subject: contract\r\n\r\nx\r\n"
ENVELOPE = {"mailctl_result_version", "command", "status", "exit_code", "data", "errors"}
ERROR_ENTRY = {"code", "message", "hint", "details"}
runner = CliRunner()


def key_paths(value: Any, path: str = "", maps: Iterable[str] = ()) -> set[str]:
    """Every key path in `value`: `a.b`, `list[].key`; a map listed in `maps` is `map.*`."""
    maps = frozenset(maps)
    out: set[str] = set()
    if isinstance(value, dict):
        if path in maps:
            out.add(f"{path}.*")
            for item in value.values():
                out |= key_paths(item, f"{path}.*", maps)
            return out
        for key, item in value.items():
            sub = f"{path}.{key}" if path else key
            out.add(sub)
            out |= key_paths(item, sub, maps)
    elif isinstance(value, list):
        for item in value:
            out |= key_paths(item, f"{path}[]", maps)
    return out


def envelope(text: str, exit_code: int, command: list[str]) -> dict[str, Any]:
    """The envelope's own contract, checked for every command; returns it."""
    parsed: dict[str, Any] = json.loads(text)
    assert set(parsed) == ENVELOPE
    assert parsed["mailctl_result_version"] == "2"
    assert parsed["command"] == command
    assert parsed["exit_code"] == exit_code
    assert parsed["status"] in ("ok", "partial", "error")
    assert (parsed["status"] == "ok") == (exit_code == 0), parsed
    for error in parsed["errors"]:
        assert set(error) >= ERROR_ENTRY, error
        assert isinstance(error["code"], str) and isinstance(error["message"], str)
    return parsed


def run(
    args: list[str], env: dict[str, str], command: list[str], *, stdin: str | None = None
) -> dict[str, Any]:
    """Run `mailctl ARGS` in-process; return its checked envelope."""
    result = runner.invoke(app, args, env={"NO_COLOR": "1", **env}, input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return envelope(result.stdout, result.exit_code, command)


# -- account -------------------------------------------------------------------------------

SETTINGS = {
    "host", "port", "security", "username", "auth", "password_command", "ca_file", "verify",
    "allow_plaintext_auth", "timeouts", "timeouts.connect_ms", "timeouts.command_ms",
    "timeouts.data_ms", "secret_source",
}  # fmt: skip

ACCOUNT_ADD = {
    "account", "config", "default", "replaced", "stored_in_keyring", "password_missing",
    "warnings",
}  # fmt: skip
ACCOUNT_LIST = {
    "config", "default_account", "warnings", "accounts", "accounts[].name",
    "accounts[].default", "accounts[].from", "accounts[].blocks",
}  # fmt: skip
ACCOUNT_SHOW = {
    "config", "default", "warnings", "name", "from", "ehlo", "smtp", "imap", "pop3",
    *(f"{block}.{key}" for block in ("smtp", "imap", "pop3") for key in SETTINGS),
}  # fmt: skip
ACCOUNT_SET_PASSWORD = {"account", "stored_in_keyring", "warnings"}
ACCOUNT_REMOVE = {
    "account", "config", "default_account", "deleted_from_keyring", "warnings", "removed",
}  # fmt: skip
TLS = {"version", "cipher", "bits", "peer_subject", "peer_issuer", "not_after"}
ACCOUNT_TEST = {
    "account", "warnings", "checks",
    *(f"checks[].{key}" for key in (
        "protocol", "host", "port", "security", "username", "connected", "tls",
        "authenticated", "auth_mechanism", "capabilities", "timings_ms", "error", "ok",
    )),
    *(f"checks[].tls.{key}" for key in TLS),
    *(f"checks[].error.{key}" for key in ERROR_ENTRY),
    # Phase names: SMTP as in send; IMAP/POP3 connect (greeting), tls, capability, login.
    *(f"checks[].timings_ms.{phase}" for phase in (
        "connect", "banner", "ehlo", "tls", "capability", "login",
    )),
}  # fmt: skip


def test_account_commands(tmp_path: Path, dovecot: Any, plain_smtp_server: SmtpTestServer) -> None:
    env = {"MAILCTL_CONFIG": str(tmp_path / "mailctl" / "config.toml")}
    imaps = dovecot.settings(Protocol.IMAP, Security.TLS)
    pop3 = dovecot.settings(Protocol.POP3, Security.STARTTLS)
    added = run(
        [
            "account", "add", "d", "--from", "Me <me@example.org>", "--ca-file",
            str(dovecot.ca_pem), "--smtp-host", "127.0.0.1", "--smtp-port",
            str(plain_smtp_server.port), "--smtp-security", "none",
            "--imap-host", imaps.host, "--imap-port", str(imaps.port), "--imap-security", "tls",
            "--imap-user", dovecot.user,
            "--pop3-host", pop3.host, "--pop3-port", str(pop3.port), "--pop3-security",
            "starttls", "--pop3-user", dovecot.user, "--password-stdin", "--json",
        ],
        env, ["account", "add"], stdin=dovecot.password,
    )  # fmt: skip
    assert key_paths(added["data"]) == ACCOUNT_ADD
    listed = run(["account", "list", "--json"], env, ["account", "list"])
    assert key_paths(listed["data"]) == ACCOUNT_LIST
    shown = run(["account", "show", "d", "--json"], env, ["account", "show"])
    assert key_paths(shown["data"]) == ACCOUNT_SHOW
    stored = run(
        ["account", "set-password", "d", "-p", "imap", "--stdin", "--json"],
        env, ["account", "set-password"], stdin=dovecot.password + "\n",
    )  # fmt: skip
    assert key_paths(stored["data"]) == ACCOUNT_SET_PASSWORD
    tested = run(["account", "test", "d", "--json"], env, ["account", "test"])
    assert tested["status"] == "ok", tested["errors"]
    # A failing block: its error object has the errors[] entry's keys.
    run(
        ["account", "set-password", "d", "-p", "pop3", "--stdin", "--json"],
        env, ["account", "set-password"], stdin="wrong\n",
    )  # fmt: skip
    partial = run(["account", "test", "d", "--json"], env, ["account", "test"])
    assert partial["status"] == "partial" and partial["exit_code"] == 77
    assert set(partial["errors"][0]) == {*ERROR_ENTRY, "protocol"}
    assert key_paths(tested["data"]) | key_paths(partial["data"]) == ACCOUNT_TEST
    removed = run(["account", "remove", "d", "--yes", "--json"], env, ["account", "remove"])
    assert key_paths(removed["data"]) == ACCOUNT_REMOVE


def test_errors_before_any_result_have_empty_data(tmp_path: Path) -> None:
    env = {"MAILCTL_CONFIG": str(tmp_path / "none.toml")}
    failed = run(["account", "show", "nobody", "--json"], env, ["account", "show"])
    assert failed["exit_code"] == 78 and failed["data"] == {}
    assert set(failed["errors"][0]) == ERROR_ENTRY


# -- sink ----------------------------------------------------------------------------------

SINK = {
    "messages", "bytes", "connections", "rejected", "disconnected", "error_replies",
    "error_replies.*", "elapsed_ms", "qps", "listen", "security", "loop", "stopped_by",
}  # fmt: skip


def test_sink(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "mailctl", "sink", "--listen", "127.0.0.1:0", "--ready-file",
            str(ready), "--max-messages", "2", "--reject-rate", "0.5", "--reject-on", "rcpt",
            "--seed", "1", "--duration", "20", "--json",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not ready.exists():
            assert process.poll() is None and time.monotonic() < deadline, "sink did not start"
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        _send_until_stopped(info["port"], tries=20)
        out, _err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    parsed = envelope(out.decode(), process.returncode, ["sink"])
    assert parsed["data"]["error_replies"], "the run should have refused some RCPTs"
    assert key_paths(parsed["data"], maps=["error_replies"]) == SINK


def _send_until_stopped(port: int, *, tries: int) -> None:
    import asyncio

    async def go() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=5)
        await smtp.connect()
        try:
            for _ in range(tries):
                try:
                    await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
                except aiosmtplib.SMTPRecipientsRefused:
                    continue
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPServerDisconnected):
            return  # --max-messages reached: the sink says 421 and stops

    asyncio.run(go())
