"""bulk-send's event log file: one JSON object per line per event, appended, never a secret.

Events: `run_started`/`run_stopped`, a row settling (`row_sent`, `row_failed`,
`row_deferred`, `row_unknown`, `row_duplicate`, `row_invalid`), `session_opened`/
`session_closed`, `throttled`, `breaker_tripped`, `quota_reached`. Each line holds `ts` (UTC,
ISO 8601, milliseconds), `event`, and only the fields that event's method takes: typed
scalars (numbers, flags) and short texts (an address, a reply's one-line excerpt). There is
no way to hand it a message, a header block or a credential, so none can be logged; a reply
text is cut to one line with `text.excerpt` (controls escaped) and the account's secret,
when given, masked in it should a server ever echo it.

Lines are bounded (`MAX_LINE` bytes, PIPE_BUF on Linux, so each line is one atomic write to
a pipe too): texts are capped first, then dropped whole (`"truncated": true`) if still too
long. JSON with `ensure_ascii` escapes every line break, so a line is always one line.

The file is opened O_APPEND (several runs, or `tail -f`, interleave whole lines, never
overwrite) and created 0600 (it names recipients); an existing file keeps its mode. Lines are
buffered and written at batch boundaries (`flush`, which the engine calls when it commits
the journal), or when the buffer passes 64 KiB, so logging costs no system call per row.
A FIFO or our own descriptor (/dev/stderr) is written as it is, like every user-named output.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import stat
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Final

from mailctl.errors import CantCreateError
from mailctl.models import Reply
from mailctl.store.outputs import file_kind, own_descriptor
from mailctl.store.reports import ReportRecord
from mailctl.text import excerpt, quote

__all__ = ["MAX_LINE", "EventKind", "EventLog"]

MAX_LINE: Final = 4096  # bytes, newline included (PIPE_BUF)
_MAX_TEXT: Final = 300  # characters of a reply text or reason
_MAX_NAME: Final = 320  # an address: RFC 5321 4.5.3.1.3 path 256 octets, plus room for IDNA
_FLUSH_BYTES: Final = 64 * 1024

Scalar = str | int | float | bool | None


class EventKind(StrEnum):
    RUN_STARTED = "run_started"
    RUN_STOPPED = "run_stopped"
    ROW_SENT = "row_sent"
    ROW_FAILED = "row_failed"
    ROW_DEFERRED = "row_deferred"
    ROW_UNKNOWN = "row_unknown"
    ROW_DUPLICATE = "row_duplicate"
    ROW_INVALID = "row_invalid"
    SESSION_OPENED = "session_opened"
    SESSION_CLOSED = "session_closed"
    THROTTLED = "throttled"
    BREAKER_TRIPPED = "breaker_tripped"
    QUOTA_REACHED = "quota_reached"


_ROW_EVENTS: Final = {
    "sent": EventKind.ROW_SENT,
    "failed": EventKind.ROW_FAILED,
    "deferred": EventKind.ROW_DEFERRED,
    "unknown": EventKind.ROW_UNKNOWN,
    "duplicate": EventKind.ROW_DUPLICATE,
    "invalid": EventKind.ROW_INVALID,
}
# Texts that may be dropped when a line is too long, least useful first.
_DROPPABLE: Final = (
    "text",
    "reason",
    "message_id",
    "queue_id",
    "journal",
    "host",
    "enhanced",
    "recipient",
)


class EventLog:
    """An open event log file. Use `open`, then the event methods, `flush` at batch ends and
    `close` (or `with`)."""

    def __init__(self, fd: int, *, path: Path, owned: bool, secret: str | None = None) -> None:
        self._fd = fd
        self._path = path
        self._owned = owned  # False for our own stdout/stderr: not ours to close
        self._secret = secret or None
        self._buffer: list[bytes] = []
        self._buffered = 0

    @classmethod
    def open(cls, path: Path, *, secret: str | None = None) -> EventLog:
        """Open `path` for appending (created 0600). A FIFO needs a reader now; a directory,
        socket or block device is refused. `secret` (the account's password) is masked in
        any server text logged. Raises CantCreateError (73) naming the path."""
        number = own_descriptor(path)
        if number is not None:
            try:
                os.fstat(number)
            except OSError as err:
                raise _cant(path, err) from err
            return cls(number, path=path, owned=False, secret=secret)
        flags = (
            os.O_WRONLY
            | os.O_APPEND
            | os.O_CREAT
            | os.O_NONBLOCK  # a FIFO without a reader: ENXIO now, not a hang
            | os.O_NOCTTY
            | getattr(os, "O_CLOEXEC", 0)
        )
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as err:
            if err.errno == errno.ENXIO:
                raise CantCreateError(
                    f"{quote(path)}: nobody is reading this FIFO, so the log cannot be written",
                    hint="start its reader first, or name a regular file",
                    details={"file": os.fsdecode(path)},
                ) from err
            raise _cant(path, err) from err
        try:
            mode = os.fstat(fd).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
                raise CantCreateError(
                    f"{quote(path)}: cannot write the log there: it is {file_kind(mode)}",
                    hint="name a regular file (or a FIFO, or a device such as /dev/null)",
                    details={"file": os.fsdecode(path)},
                )
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, path=path, owned=True, secret=secret)

    # -- events ------------------------------------------------------------------------

    def run_started(
        self, *, send: bool, concurrency: int, rate: float | None, journal: str, rows: int | None
    ) -> None:
        self._event(
            EventKind.RUN_STARTED,
            {
                "send": send,
                "concurrency": concurrency,
                "rate": rate,
                "journal": journal,
                "rows": rows,
            },
        )

    def run_stopped(self, *, reason: str, counts: Mapping[str, int], elapsed_s: float) -> None:
        fields: dict[str, Scalar] = {"reason": reason, "elapsed_s": round(elapsed_s, 3)}
        fields.update({f"rows_{_word(state)}": int(n) for state, n in counts.items()})
        self._event(EventKind.RUN_STOPPED, fields)

    def row(
        self,
        state: object,
        *,
        line: int,
        recipient: str,
        attempts: int,
        reply: Reply | None = None,
        latency_ms: float | None = None,
        message_id: str | None = None,
        queue_id: str | None = None,
    ) -> None:
        """A row settled in `state` (a RowState or its value: sent, failed, deferred, ...)."""
        self._event(
            _row_kind(state),
            {
                "line": line,
                "recipient": recipient,
                "attempts": attempts,
                **self._reply(reply),
                "latency_ms": None if latency_ms is None else round(latency_ms, 3),
                "message_id": message_id,
                "queue_id": queue_id,
            },
        )

    def record(self, record: ReportRecord) -> None:
        """A row settled, as the journal recorded it (its `RowRecord`)."""
        text = record.text
        self._event(
            _row_kind(record.state),
            {
                "line": record.line,
                "recipient": record.recipient,
                "attempts": record.attempts,
                "code": record.code,
                "enhanced": record.enhanced,
                "text": None
                if text is None
                else excerpt(text, limit=_MAX_TEXT, secret=self._secret),
                "latency_ms": None if record.latency_ms is None else round(record.latency_ms, 3),
                "message_id": record.message_id,
                "queue_id": record.queue_id,
            },
        )

    def session_opened(self, *, session: int, host: str, port: int, tls: bool) -> None:
        self._event(
            EventKind.SESSION_OPENED, {"session": session, "host": host, "port": port, "tls": tls}
        )

    def session_closed(self, *, session: int, messages: int, reason: str) -> None:
        self._event(
            EventKind.SESSION_CLOSED, {"session": session, "messages": messages, "reason": reason}
        )

    def throttled(self, *, reply: Reply | None, concurrency: int, rate: float | None) -> None:
        self._event(
            EventKind.THROTTLED, {**self._reply(reply), "concurrency": concurrency, "rate": rate}
        )

    def breaker_tripped(self, *, reason: str, reply: Reply | None = None) -> None:
        self._event(EventKind.BREAKER_TRIPPED, {"reason": reason, **self._reply(reply)})

    def quota_reached(self, *, reply: Reply) -> None:
        self._event(EventKind.QUOTA_REACHED, self._reply(reply))

    # -- writing -----------------------------------------------------------------------

    def flush(self) -> None:
        """Write the buffered lines (one write). Raises CantCreateError (73) naming the path."""
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as err:
            raise _cant(self._path, err) from err

    def close(self) -> None:
        """Flush, then close the file (fsync'd when it is a regular file)."""
        try:
            self.flush()
            if self._owned:
                with contextlib.suppress(OSError):  # a FIFO or device cannot be fsync'd
                    os.fsync(self._fd)
        finally:
            if self._owned and self._fd >= 0:
                os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reply(self, reply: Reply | None) -> dict[str, Scalar]:
        if reply is None:
            return {"code": None}
        return {
            "code": reply.code,
            "enhanced": reply.enhanced,
            "text": excerpt(reply.text, limit=_MAX_TEXT, secret=self._secret),
        }

    def _event(self, kind: EventKind, fields: Mapping[str, Scalar]) -> None:
        if self._fd < 0:
            raise ValueError("the event log is closed")
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        record: dict[str, Scalar] = {"ts": now, "event": kind.value}
        for key, value in fields.items():
            record[key] = _bounded(value, self._secret)
        line = _encode(record)
        self._buffer.append(line)
        self._buffered += len(line)
        if self._buffered >= _FLUSH_BYTES:
            self.flush()


def _row_kind(state: object) -> EventKind:
    kind = _ROW_EVENTS.get(str(getattr(state, "value", state)))
    if kind is None:
        raise ValueError(f"not a settled row state: {state!r}")
    return kind


def _bounded(value: Scalar, secret: str | None) -> Scalar:
    if isinstance(value, str):
        if secret and secret in value:
            value = value.replace(secret, "<redacted>")
        return value if len(value) <= _MAX_NAME else value[:_MAX_NAME] + "..."
    if isinstance(value, bool | int | float) or value is None:
        return value
    raise TypeError(f"an event field must be a plain value, not {type(value).__name__}")


def _encode(record: dict[str, Scalar]) -> bytes:
    """One line of ASCII JSON, at most MAX_LINE bytes: long texts dropped if need be."""
    line = (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
    for key in _DROPPABLE:
        if len(line) <= MAX_LINE:
            break
        if record.get(key) is not None:
            record[key] = None
            record["truncated"] = True
            line = (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
    if len(line) > MAX_LINE:  # only numbers left, and still too long: keep what it was
        small = {"ts": record["ts"], "event": record["event"], "truncated": True}
        line = (json.dumps(small, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
    return line


def _word(state: object) -> str:
    return "".join(
        c if c.isalnum() or c == "_" else "_" for c in str(getattr(state, "value", state))
    )


def _cant(path: Path, err: OSError) -> CantCreateError:
    return CantCreateError(
        f"{quote(path)}: cannot write the log: {err.strerror or type(err).__name__}",
        hint="check the path and its permissions",
        details={"file": os.fsdecode(path)},
    )
