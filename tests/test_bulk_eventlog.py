"""bulk-send's `--log-file` (mailctl/core/bulk/eventlog.py): JSON lines, no body, no secret.

The no-secret test runs a real SMTP session (AUTH PLAIN with a password, a message with a
marker in its body and Subject) against a server that echoes the password back in its reply,
logs every kind of event from what the session returned, and checks the file's bytes: the
password (plain or inside the base64 AUTH string) and the message never appear.
"""

from __future__ import annotations

import base64
import json
import os
import select
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers.scripted_smtp import Reply as Script
from servers.scripted_smtp import ScriptedFactory, standard_reply

from mailctl.core.bulk.eventlog import MAX_LINE, EventKind, EventLog
from mailctl.errors import CantCreateError
from mailctl.models import Envelope, Reply, Security, ServerSettings, Timeouts
from mailctl.protocols.smtp import SessionOptions, SmtpSession

PASSWORD = "s3cret-Pa55-wOrd"
BODY_MARKER = "BODY-MARKER-7f3a91"
SUBJECT_MARKER = "SUBJECT-MARKER-c0ffee"


def lines(path: Path) -> list[dict[str, object]]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.decode("ascii").splitlines()]


async def test_no_password_and_no_body_in_the_log(
    scripted_smtp: ScriptedFactory, tmp_path: Path
) -> None:
    def respond(line: str) -> Script:
        verb = line.split(" ", 1)[0].upper()
        if verb == "EHLO":
            return b"250-scripted.test\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"
        if verb == "AUTH":
            return b"235 2.7.0 Authentication successful\r\n"
        if line == ".":  # a server that echoes the credentials (a debug build, a hostile one)
            return f"250 2.0.0 Ok: queued as Q1 (auth user=u pass={PASSWORD})\r\n".encode()
        return standard_reply(line)

    server = scripted_smtp(respond)
    fast = Timeouts(connect=5.0, command=5.0, data=5.0)
    settings = ServerSettings(
        "127.0.0.1",
        server.port,
        Security.NONE,
        timeouts=fast,
        username="u",
        allow_plaintext_auth=True,
    )
    message = (
        f"From: a@example.org\r\nTo: b@example.org\r\nSubject: {SUBJECT_MARKER}\r\n\r\n"
        f"Hello, {BODY_MARKER}.\r\n"
    ).encode()
    path = tmp_path / "bulk.log"
    log = EventLog.open(path, secret=PASSWORD)
    log.run_started(send=True, concurrency=1, rate=None, journal="j.sqlite", rows=1)
    async with await SmtpSession.open(
        SessionOptions(settings=settings, secret=lambda: PASSWORD)
    ) as session:
        log.session_opened(session=1, host="127.0.0.1", port=server.port, tls=False)
        outcome = await session.transact(Envelope("a@example.org", ("b@example.org",)), message)
    assert PASSWORD in (outcome.final_reply.message if outcome.final_reply else "")
    log.row(
        "sent",
        line=2,
        recipient="b@example.org",
        attempts=1,
        reply=outcome.final_reply,
        latency_ms=1.5,
        message_id="<1@example.org>",
        queue_id=outcome.queue_id,
    )
    log.session_closed(session=1, messages=1, reason="done")
    log.throttled(reply=outcome.final_reply, concurrency=1, rate=None)
    log.breaker_tripped(reason=f"auth failed for u/{PASSWORD}", reply=outcome.final_reply)
    log.quota_reached(reply=outcome.final_reply or Reply(550, "5.4.5 x"))
    log.run_stopped(reason="done", counts={"sent": 1}, elapsed_s=0.1)
    log.close()

    raw = path.read_bytes()
    auth_b64 = base64.b64encode(f"\0u\0{PASSWORD}".encode())
    for secret in (PASSWORD.encode(), auth_b64, BODY_MARKER.encode(), SUBJECT_MARKER.encode()):
        assert secret not in raw
    events = [entry["event"] for entry in lines(path)]
    assert events == [
        "run_started",
        "session_opened",
        "row_sent",
        "session_closed",
        "throttled",
        "breaker_tripped",
        "quota_reached",
        "run_stopped",
    ]
    row = lines(path)[2]
    assert row["code"] == 250 and row["recipient"] == "b@example.org"
    assert "<redacted>" in str(row["text"])


def test_lines_are_bounded_and_one_line_each(tmp_path: Path) -> None:
    path = tmp_path / "bulk.log"
    with EventLog.open(path) as log:
        hostile = "x\r\nINJECTED: 1\n" + "\u202e" * 5000 + "y" * 100_000
        log.row(
            "failed",
            line=3,
            recipient=hostile,
            attempts=2,
            reply=Reply(550, "5.1.1 " + hostile),
            message_id=hostile,
            queue_id=hostile,
        )
        log.breaker_tripped(reason=hostile)
    raw = path.read_bytes()
    assert raw.count(b"\n") == 2  # two events, two lines: no line break got through
    for line in raw.splitlines(keepends=True):
        assert len(line) <= MAX_LINE
    first, second = lines(path)
    assert first["event"] == "row_failed" and first["line"] == 3 and first["code"] == 550
    assert first.get("truncated") is True
    assert second["event"] == "breaker_tripped"
    assert all(b"INJECTED" not in line[:1] for line in raw.splitlines())


def test_appends_with_o_append_and_creates_0600(tmp_path: Path) -> None:
    path = tmp_path / "bulk.log"
    first = EventLog.open(path)
    second = EventLog.open(path)  # a second writer: lines interleave, never overwrite
    first.run_started(send=False, concurrency=1, rate=None, journal="j", rows=None)
    first.flush()
    second.run_started(send=True, concurrency=2, rate=50.0, journal="j", rows=10)
    second.flush()
    first.run_stopped(reason="done", counts={"sent": 0}, elapsed_s=0.0)
    first.close()
    second.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [entry["event"] for entry in lines(path)] == [
        "run_started",
        "run_started",
        "run_stopped",
    ]
    assert [entry.get("concurrency") for entry in lines(path)] == [1, 2, None]


def test_existing_file_keeps_its_lines_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "bulk.log"
    path.write_bytes(b'{"event":"older"}\n')
    os.chmod(path, 0o640)
    with EventLog.open(path) as log:
        log.session_closed(session=1, messages=5, reason="max_messages")
    assert [entry["event"] for entry in lines(path)] == ["older", "session_closed"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_buffered_until_flush(tmp_path: Path) -> None:
    """No system call per row: lines wait for the batch boundary (the journal's commit)."""
    path = tmp_path / "bulk.log"
    with EventLog.open(path) as log:
        for n in range(10):
            log.row("sent", line=n + 2, recipient=f"r{n}@example.org", attempts=1)
        assert path.read_bytes() == b""
        log.flush()
        assert len(lines(path)) == 10
        for n in range(2000):  # past 64 KiB buffered: written without waiting for flush
            log.row("deferred", line=n, recipient=f"r{n}@example.org", attempts=1)
        assert len(lines(path)) > 10


def test_row_events_by_state_and_the_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "bulk.log"
    with EventLog.open(path) as log:
        for state in ("sent", "failed", "deferred", "unknown", "duplicate", "invalid"):
            log.row(state, line=2, recipient="a@example.org", attempts=0)
        with pytest.raises(ValueError):
            log.row("pending", line=2, recipient="a@example.org", attempts=0)
    entries = lines(path)
    assert [entry["event"] for entry in entries] == [
        EventKind.ROW_SENT,
        EventKind.ROW_FAILED,
        EventKind.ROW_DEFERRED,
        EventKind.ROW_UNKNOWN,
        EventKind.ROW_DUPLICATE,
        EventKind.ROW_INVALID,
    ]
    stamp = str(entries[0]["ts"])
    assert stamp.endswith("Z") and "T" in stamp and len(stamp) == len("2026-01-01T00:00:00.000Z")


def test_a_directory_or_a_fifo_nobody_reads_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CantCreateError):
        EventLog.open(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(CantCreateError) as caught:
        EventLog.open(fifo)
    assert "nobody is reading" in caught.value.message


def test_to_a_fifo_with_a_reader(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    got = bytearray()

    def reader() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                return
            got.extend(chunk)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        with EventLog.open(fifo) as log:
            log.quota_reached(reply=Reply(550, "5.4.5 Daily sending quota exceeded"))
        thread.join(timeout=30)
    finally:
        os.close(fd)
    entry = json.loads(bytes(got))
    assert entry["event"] == "quota_reached" and entry["enhanced"] == "5.4.5"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_our_own_descriptor_is_written_not_closed(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        with EventLog.open(Path(f"/dev/fd/{write_end}")) as log:
            log.session_opened(session=1, host="127.0.0.1", port=25, tls=True)
        os.fstat(write_end)  # still open: not ours to close
        os.close(write_end)
        write_end = -1
        data = os.read(read_end, 65536)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    assert json.loads(data)["event"] == "session_opened"


def test_a_long_text_is_capped_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "bulk.log"
    with EventLog.open(path) as log:
        log.row("failed", line=2, recipient="r" * 1000 + "@example.org", attempts=1)
    (entry,) = lines(path)
    assert str(entry["recipient"]) == "r" * 320 + "..."
    assert "truncated" not in entry


@dataclass(frozen=True)
class Record:
    """Shaped like the journal's RowRecord."""

    identity: str = "abc"
    line: int = 7
    state: str = "failed"
    recipient: str = "b@example.org"
    message_id: str = "<7@example.org>"
    attempts: int = 3
    code: int | None = 451
    enhanced: str | None = "4.7.1"
    text: str | None = f"Try later\nuser u pass {PASSWORD}"
    queue_id: str | None = None
    latency_ms: float | None = 12.3456


def test_a_journal_record_is_logged_as_its_row_event(tmp_path: Path) -> None:
    path = tmp_path / "bulk.log"
    with EventLog.open(path, secret=PASSWORD) as log:
        log.record(Record())
        log.record(Record(state="sent", code=250, enhanced="2.0.0", text="Ok", queue_id="Q9"))
    failed, sent = lines(path)
    assert failed["event"] == "row_failed" and failed["line"] == 7 and failed["attempts"] == 3
    assert failed["code"] == 451 and failed["enhanced"] == "4.7.1"
    assert failed["text"] == "Try later user u pass <redacted>"  # one line, secret masked
    assert failed["latency_ms"] == 12.346
    assert sent["event"] == "row_sent" and sent["queue_id"] == "Q9"
    assert PASSWORD.encode() not in path.read_bytes()
