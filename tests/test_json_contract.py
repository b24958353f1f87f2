"""The JSON contract: every command's envelope and `data` key paths, pinned.

Each command runs through the CLI with --json against real local servers (aiosmtpd, Dovecot,
mailctl's own sink). The key paths of its `data` (nested, recursively; `[]` for list items,
`.*` for maps whose keys are data) must equal the set written here, so renaming, adding or
dropping a key is a visible decision: change the set, the README's "JSON output" tables and,
for a rename, `mailctl_result_version`.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from servers.smtp_server import TEST_PASSWORD, TEST_USER, SmtpTestServer
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
    "timeouts.data_ms", "secret_source", "tls_name",
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
# Issue 11 added the verdict, the unknowns (group, OCSP staple) and the chain (one typed
# protocols.handshake.HandshakeFacts for send, account test and probe): keys added, none renamed.
TLS = {
    "version", "cipher", "bits", "peer_subject", "peer_issuer", "not_after", "verified",
    "verify_code", "verify_message", "group", "ocsp_stapled", "chain",
}  # fmt: skip
CERTIFICATE = {
    "subject", "sans", "issuer", "not_before", "not_after", "days_left", "key_type", "key_bits",
    "signature_algorithm", "sha256", "self_signed",
}  # fmt: skip
ACCOUNT_TEST = {
    "account", "warnings", "checks",
    *(f"checks[].{key}" for key in (
        "protocol", "host", "port", "security", "username", "connected", "tls",
        "authenticated", "auth_mechanism", "capabilities", "timings_ms", "error", "ok",
    )),
    *(f"checks[].tls.{key}" for key in TLS),
    *(f"checks[].tls.chain[].{key}" for key in CERTIFICATE),
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
    "error_replies.*", "elapsed_ms", "qps", "busy_ms", "busy_qps", "listen", "security", "loop",
    "stopped_by",
}  # fmt: skip


def start_sink(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """`mailctl sink --json` on a free loopback port (bounded by --duration); its ready info."""
    ready = tmp_path / f"ready-{time.monotonic_ns()}.json"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "mailctl", "sink", "--listen", "127.0.0.1:0", "--ready-file",
            str(ready), "--duration", "60", "--json", *args,
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"sink did not start: {process.communicate()[1].decode()}")
        time.sleep(0.02)
    return process, json.loads(ready.read_text())


def stop(process: subprocess.Popen[bytes], *, stopping: bool = False) -> tuple[bytes, bytes]:
    """SIGTERM the sink unless it is `stopping` by itself (--max-messages reached): then give
    it time to print its report, since a signal that lands after its handlers are gone (on
    a loaded machine, between the loop closing and the JSON) ends it with no output."""
    if stopping:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_sink(tmp_path: Path) -> None:
    process, info = start_sink(
        tmp_path, "--max-messages", "2", "--reject-rate", "0.5", "--reject-on", "rcpt",
        "--seed", "1",
    )  # fmt: skip
    stopping = False
    try:
        stopping = _send_until_stopped(info["port"], tries=20)
    finally:
        out, _err = stop(process, stopping=stopping)
    parsed = envelope(out.decode(), process.returncode, ["sink"])
    assert parsed["data"]["error_replies"], "the run should have refused some RCPTs"
    assert key_paths(parsed["data"], maps=["error_replies"]) == SINK


def _send_until_stopped(port: int, *, tries: int) -> bool:
    """Send until the sink stops (True) or `tries` run out (False)."""
    import asyncio

    async def go() -> bool:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=5)
        await smtp.connect()
        try:
            for _ in range(tries):
                try:
                    await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
                except aiosmtplib.SMTPRecipientsRefused:
                    continue
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPServerDisconnected):
            return True  # --max-messages reached: the sink says 421 and stops
        return False

    return asyncio.run(go())


# -- send ----------------------------------------------------------------------------------

REPLY = {"code", "message", "enhanced"}
# The phases of one send, named as bench names them (STARTTLS and AUTH here).
PHASES = ("connect", "banner", "ehlo", "starttls", "auth", "mail_rcpt", "data", "end_of_data")
SEND = {
    "dry_run", "envelope", "envelope.from", "envelope.to", "size", "message_id", "smtputf8",
    "message", "server", "security", "banner", *(f"banner.{key}" for key in REPLY), "tls",
    *(f"tls.{key}" for key in TLS), "auth_mechanism", "recipients", "recipients[].address",
    "recipients[].accepted", "recipients[].reply",
    *(f"recipients[].reply.{key}" for key in REPLY), "final_reply",
    *(f"final_reply.{key}" for key in REPLY), "queue_id", "timings_ms",
    *(f"timings_ms.{phase}" for phase in PHASES), "saved_to",
}  # fmt: skip


def test_send(tmp_path: Path, smtp_server: SmtpTestServer) -> None:
    env = {"MAILCTL_CONFIG": str(tmp_path / "none.toml"), "MAILCTL_PASSWORD": TEST_PASSWORD}
    base = [
        "send", "--from", "a@example.org", "--to", "b@example.org", "--subject", "contract",
        "--body", "x", "--json",
    ]  # fmt: skip
    server = [
        f"--server=127.0.0.1:{smtp_server.port}", "--starttls", "--ca-file",
        str(smtp_server.ca_file), "--user", TEST_USER,
    ]  # fmt: skip
    sent = run([*base, *server], env, ["send"])
    assert sent["status"] == "ok"
    assert key_paths(sent["data"]) == SEND

    smtp_server.reject("gone@example.org", code=550)
    gone = ["--to", "gone@example.org"]
    partial = run([*base, *gone, *server, "--allow-partial"], env, ["send"])
    assert (partial["status"], partial["exit_code"]) == ("partial", 69)
    assert key_paths(partial["data"]) == SEND

    refused = run([*base, *gone, *server], env, ["send"])
    assert (refused["status"], refused["exit_code"], refused["data"]) == ("error", 69, {})
    assert {key for key in key_paths(refused["errors"][0]) if "." not in key} == ERROR_ENTRY

    dry = run([*base, "--dry-run"], env, ["send"])
    assert dry["status"] == "ok" and "\r\nFrom: a@example.org\r\n" in dry["data"]["message"]
    top = {key for key in SEND if "." not in key and "[]" not in key}
    assert set(dry["data"]) == top


# -- bench ---------------------------------------------------------------------------------

SUMMARY = ("count", "min_ms", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms")
RUN = {
    "mode", "loop", "target_qps", "concurrency", "message_size", "warmup", "sent", "failed",
    "permanent", "transient", "unknown", "not_tried", "elapsed_ms", "qps", "latency",
    *(f"latency.{key}" for key in SUMMARY), "phases", "phases.*",
    *(f"phases.*.{key}" for key in SUMMARY), "failures_by_reason", "failures_by_reason.*",
    "failure_groups", *(f"failure_groups[].{key}" for key in ("reason", "text", "class", "count")),
    "connections_attempted", "connections_opened", "connections_failed", "stopped_by",
    "histogram", "histogram.edges_ms", "histogram.counts", "interrupted", "samples_dropped",
    "speedup_vs_new",
}  # fmt: skip
BENCH = {
    "target", *(f"target.{key}" for key in ("embedded_sink", "host", "port", "security", "auth")),
    "workload", *(f"workload.{key}" for key in (
        "messages", "duration_ms", "concurrency", "warmup", "target_qps", "message_size", "loop",
    )),
    "runs", *(f"runs[].{key}" for key in RUN), "interrupted", "regression",
}  # fmt: skip
REGRESSION = {
    "regression.max_regression_pct", "regression.regressed", "regression.checks",
    *(f"regression.checks[].{key}" for key in (
        "mode", "metric", "baseline", "current", "change_pct", "regressed",
    )),
}  # fmt: skip
MAPS = ("runs[].phases", "runs[].failures_by_reason")


def test_bench(tmp_path: Path) -> None:
    from mailctl.core.bench import PHASES as BENCH_PHASES

    process, info = start_sink(
        tmp_path, "--reject-rate", "0.2", "--reject-code", "550", "--reject-on", "rcpt",
        "--seed", "5",
    )  # fmt: skip
    try:
        args = ["bench", "--server", f"127.0.0.1:{info['port']}", "--no-tls", "-n", "30"]
        compared = run([*args, "-c", "2", "--compare", "--json"], {}, ["bench"])
        baseline = tmp_path / "baseline.json"
        baseline.write_text(json.dumps(compared))
        checked = run(
            [*args, "--mode", "pipeline", "--json", "--baseline", str(baseline),
             "--max-regression", "1000%"],
            {}, ["bench"],
        )  # fmt: skip
    finally:
        stop(process)
    assert compared["status"] == "partial" and compared["exit_code"] == 69
    assert [r["mode"] for r in compared["data"]["runs"]] == ["new", "reuse", "pipeline"]
    assert compared["data"]["runs"][1]["speedup_vs_new"] is not None
    assert compared["data"]["regression"] is None
    assert key_paths(compared["data"], maps=MAPS) == BENCH
    assert key_paths(checked["data"], maps=MAPS) == BENCH | REGRESSION
    for report in (compared, checked):
        for each in report["data"]["runs"]:
            assert set(each["phases"]) <= set(BENCH_PHASES)  # send's names, plus quit


# -- bulk-send -----------------------------------------------------------------------------

BULK_SEND = {
    "csv", "journal", "dry_run", "rows", "valid", "invalid", "invalid_rows",
    "invalid_rows[].line", "invalid_rows[].row", "invalid_rows[].code", "invalid_rows[].message",
    "duplicates", "new_rows", "vanished_rows", "csv_changed", "sent", "failed", "deferred",
    "unknown", "not_tried", "skipped_done", "to_send", "recovered_unknown", "journal_counts",
    "journal_counts.*", "elapsed_ms", "qps", "connections_opened", "connections_attempted",
    "interrupted", "stopped_by", "quota", "resume_command", "previews", "previews[].line",
    "previews[].sender", "previews[].recipients", "previews[].message", "skip_invalid",
}  # fmt: skip


def test_bulk_send(tmp_path: Path) -> None:
    csv = tmp_path / "contacts.csv"
    csv.write_text("name,email\nAnn,ann@example.org\nBad,not an address\nBob,bob@example.org\n")
    template = tmp_path / "letter.txt"
    template.write_text("From: me@example.org\nTo: {{ name }} <{{ email }}>\nSubject: Hi\n\nHi\n")
    dry = run(["bulk-send", str(csv), str(template), "--json"], {}, ["bulk-send"])
    assert (dry["status"], dry["exit_code"]) == ("error", 65)
    assert [e["code"] for e in dry["errors"]] == ["invalid_input"]
    assert key_paths(dry["data"], maps=["journal_counts"]) == BULK_SEND
    process, info = start_sink(tmp_path)
    try:
        sent = run(
            ["bulk-send", str(csv), str(template), "--json", "--send", "--skip-invalid",
             "--server", f"127.0.0.1:{info['port']}", "--no-tls"],
            {}, ["bulk-send"],
        )  # fmt: skip
    finally:
        stop(process)
    assert (sent["status"], sent["exit_code"], sent["data"]["sent"]) == ("partial", 65, 2)
    assert key_paths(sent["data"], maps=["journal_counts"]) <= BULK_SEND
    assert sent["data"]["journal_counts"] == {"sent": 2, "failed": 1}


# -- parse ---------------------------------------------------------------------------------

PARSED = {
    "size", "subject", "from", "to", "cc", "reply_to", "date", "date_iso", "message_id",
    "in_reply_to", "references", "text", "html", "attachments", "received", "authentication",
    "list_unsubscribe", "list_unsubscribe_one_click", "dsn", "headers", "problems",
    *(f"{key}[].{sub}" for key in ("from", "to", "cc", "reply_to") for sub in ("name", "address")),
    *(f"attachments[].{key}" for key in (
        "name", "content_type", "size", "sha256", "content_id", "inline",
    )),
    *(f"received[].{key}" for key in ("from", "by", "with", "timestamp", "delay_ms")),
    *(f"authentication[].{key}" for key in ("authserv_id", "method", "result", "properties")),
    "authentication[].properties.*",
    "dsn.reporting_mta", "dsn.recipients",
    *(f"dsn.recipients[].{key}" for key in (
        "original_recipient", "final_recipient", "action", "status", "diagnostic_code",
        "remote_mta",
    )),
    "headers[].name", "headers[].value",
}  # fmt: skip
PARSED_MAPS = ["authentication[].properties"]  # fetch --full's `parsed` is the same object
PARSE = {
    "source", "message", "saved", "saved[].name", "saved[].path", "saved[].size", "saved[].sha256",
    *(f"message.{key}" for key in PARSED),
}  # fmt: skip
BOUNCE = (
    b"Received: from mx.example.net by mail.example.org with ESMTPS id 1;"
    b" Tue, 1 Oct 2024 10:00:05 +0000\r\n"
    b"Received: from a by mx.example.net with ESMTP id 2; Tue, 1 Oct 2024 10:00:00 +0000\r\n"
    b"Authentication-Results: mail.example.org; spf=pass smtp.mailfrom=example.net\r\n"
    b"From: Mail Delivery System <MAILER-DAEMON@example.net>\r\n"
    b"To: a@example.org\r\nCc: c@example.org\r\nReply-To: r@example.org\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\n"
    b"Date: Tue, 1 Oct 2024 10:00:00 +0000\r\nMessage-ID: <b@example.net>\r\n"
    b"In-Reply-To: <x@example.org>\r\nReferences: <x@example.org>\r\n"
    b"List-Unsubscribe: <mailto:u@example.net>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n"
    b"--r\r\nContent-Type: text/plain\r\n\r\nIt bounced.\r\n"
    b"--r\r\nContent-Type: text/html\r\n\r\n<p>It bounced.</p>\r\n"
    b"--r\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.example.net\r\n\r\n"
    b"Original-Recipient: rfc822; x@example.org\r\nFinal-Recipient: rfc822; x@example.org\r\n"
    b"Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx.example.org\r\n"
    b"Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n"
    b"--r\r\nContent-Type: message/rfc822\r\n\r\nSubject: original\r\n\r\nhi\r\n--r--\r\n"
)


def test_parse(tmp_path: Path) -> None:
    message = tmp_path / "bounce.eml"
    message.write_bytes(BOUNCE)
    parsed = run(
        ["parse", str(message), "--attachments", str(tmp_path / "files"), "--json"],
        {},
        ["parse"],
    )
    assert key_paths(parsed["data"], maps=["message.authentication[].properties"]) == PARSE
    data = parsed["data"]["message"]
    assert data["dsn"]["recipients"][0]["status"] == "5.1.1"
    assert [hop["delay_ms"] for hop in data["received"]] == [None, 5000.0]
    # An error before any result: the envelope with empty data.
    failed = run(["parse", str(tmp_path / "missing.eml"), "--json"], {}, ["parse"])
    assert failed["data"] == {} and failed["errors"][0]["code"] == "no_input"


# -- fetch and folders -----------------------------------------------------------------------

FOLDERS = {
    "server", "folders", *(f"folders[].{key}" for key in (
        "name", "delimiter", "flags", "messages", "unseen", "size",
    )),
}  # fmt: skip
FETCHED_MESSAGE = (
    "uid",
    "uidvalidity",
    "number",
    "uidl",
    "message_id",
    "date_iso",
    "from",
    "to",
    "subject",
    "size",
    "flags",
    "attachment_count",
    "attachments",
    "path",
    "problem",
    "parsed",
)
FETCH = {
    "protocol", "server", "folder", "uidvalidity", "selected", "fetched", "already_fetched",
    "rekeyed", "deleted", "moved", "watched_ms", "state_file", "messages", "interrupted",
    *(f"messages[].{key}" for key in FETCHED_MESSAGE),
    *(f"messages[].attachments[].{key}" for key in ("name", "path", "size", "sha256")),
}  # fmt: skip


def test_fetch_and_folders(tmp_path: Path, dovecot: Any) -> None:
    """Through an account (its imap and pop3 blocks), as a user would run them."""
    env = {"MAILCTL_CONFIG": str(tmp_path / "mailctl" / "config.toml")}
    user = dovecot.add_user()
    attached = (
        b"From: a@example.org\r\nSubject: c\r\nMessage-ID: <c@x>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\ntext\r\n--b\r\n'
        b'Content-Disposition: attachment; filename="f.txt"\r\n\r\nfile\r\n--b--\r\n'
    )
    dovecot.seed(attached, user=user.name)
    imaps = dovecot.settings(Protocol.IMAP, Security.TLS)
    pop3s = dovecot.settings(Protocol.POP3, Security.TLS)
    run(
        [
            "account", "add", "d", "--from", "me@example.org", "--ca-file", str(dovecot.ca_pem),
            "--imap-host", imaps.host, "--imap-port", str(imaps.port), "--imap-security", "tls",
            "--imap-user", user.name, "--pop3-host", pop3s.host, "--pop3-port", str(pop3s.port),
            "--pop3-security", "tls", "--pop3-user", user.name, "--password-stdin", "--json",
        ],
        env, ["account", "add"], stdin=user.password,
    )  # fmt: skip
    env["MAILCTL_PASSWORD"] = user.password
    listed = run(["folders", "-A", "d", "--json"], env, ["folders"])
    assert key_paths(listed["data"]) == FOLDERS
    fetched = run(
        ["fetch", "-A", "d", "--maildir", str(tmp_path / "M"), "--attachments",
         str(tmp_path / "a"), "--json"],
        env, ["fetch"],
    )  # fmt: skip
    assert fetched["data"]["fetched"] == 1
    assert key_paths(fetched["data"]) == FETCH
    popped = run(["fetch", "-A", "d", "--pop3", "--new", "--json"], env, ["fetch"])
    assert popped["data"]["fetched"] == 1 and popped["data"]["protocol"] == "pop3"
    assert key_paths(popped["data"]) == FETCH - {
        f"messages[].attachments[].{key}" for key in ("name", "path", "size", "sha256")
    }
    full = run(["fetch", "-A", "d", "--full", "--json"], env, ["fetch"])
    parsed_keys = key_paths(full["data"]["messages"][0]["parsed"], maps=PARSED_MAPS)
    assert parsed_keys <= PARSED and {"subject", "text", "attachments"} <= parsed_keys


FINDING = {"severity", "code", "subject", "message", "fix"}
PROBE = {
    "hosts", "findings", *(f"findings[].{key}" for key in FINDING), "fail_on", "worst",
    *(f"hosts[].{key}" for key in (
        "host", "port", "protocol", "probed", "mx_name", "address", "banner", "esmtp",
        "capabilities_before_tls", "capabilities_after_tls", "starttls_offered", "tls",
        "versions", "commands_sent", "connections", "timings_ms", "timings_ms.*", "worst",
        "findings",
    )),
    *(f"hosts[].tls.{key}" for key in TLS),
    *(f"hosts[].tls.chain[].{key}" for key in CERTIFICATE),
    *(f"hosts[].versions[].{key}" for key in (
        "version", "offered", "cipher", "reason", "elapsed_ms",
    )),
    *(f"hosts[].findings[].{key}" for key in FINDING),
}  # fmt: skip


def test_probe(probe_server: Any, probe_certs: Any) -> None:
    """A host with findings and one that could not be reached: every key appears."""
    server = probe_server(cert="expired")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = unused.getsockname()[1]
    probed = run(
        ["probe", f"127.0.0.1:{server.port}", f"127.0.0.1:{closed}", "-p", "submission",
         "--ca-file", str(probe_certs.ca_file), "--json", "--fail-on", "error"],
        {}, ["probe"],
    )  # fmt: skip
    assert (probed["status"], probed["exit_code"]) == ("partial", 1)
    assert key_paths(probed["data"], maps=["hosts[].timings_ms"]) == PROBE - {
        *(f"findings[].{key}" for key in FINDING)  # domain findings come with --mx
    }
    assert probed["data"]["fail_on"] == "error" and probed["data"]["worst"] == "error"
