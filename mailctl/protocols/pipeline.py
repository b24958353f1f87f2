"""RFC 2920 pipelined SMTP transactions on an established SmtpSession (the bulk/bench hot path).

aiosmtplib opens the session (connect, EHLO, STARTTLS or TLS, AUTH) and then lends its
transport (`SmtpSession.borrow_transport`) to `_ReplyReader`, a small asyncio.Protocol
that lets one write carry MAIL, every RCPT and DATA, and reads the replies in order. After
the 354 it writes the dot-stuffed body and the final dot, followed in the same write by the
next transaction's MAIL/RCPT/DATA when one is ready (RFC 2920 3.1 allows commands after the
end of data). That turns four round trips per message into one.

Usage (bulk-send and bench)::

    message = prepare_message(data)                       # dot-stuffed once
    item = prepare_transaction(envelope, message, extensions=session.info.extensions, tag=row)
    async with pipelined(session) as pipe:
        async for result in pipe.send_all(items):         # one result per item taken, in order
            journal.mark(result.tag, result.status)       # SENT / REFUSED / TRANSIENT / UNKNOWN

Per-transaction failures never raise: they are results (see TransactionStatus, which follows
the table in FACTS.md). Only problems found before anything is written raise MailctlError.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mailctl.errors import InputDataError, MessageTooLargeError, ProtocolError
from mailctl.mime.compose import dot_stuff
from mailctl.models import Envelope, RecipientResult, Reply, Timeouts
from mailctl.protocols.smtp import SmtpSession
from mailctl.protocols.smtp_envelope import envelope_path as _envelope_path
from mailctl.protocols.smtp_envelope import parse_queue_id, require_short_lines
from mailctl.protocols.smtp_envelope import size_limit as _size_limit

__all__ = [
    "MAX_REPLY_LINE",
    "Pipeline",
    "PreparedTransaction",
    "TransactionResult",
    "TransactionStatus",
    "WireMessage",
    "pipelined",
    "prepare_message",
    "prepare_transaction",
]

# RFC 5321 4.5.3.1.5 allows 512 octets per reply line; real servers send longer
# enhanced texts, so be generous but bounded: a server cannot grow our memory.
MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 100  # lines of one multi-line reply
# Replies waiting to be read; a well-behaved server never sends more than we asked for.
MAX_QUEUED_REPLIES = 4096

_READ_SIZE = 64 * 1024
_RSET = b"RSET\r\n"
_LONE_DOT = b".\r\n"

_ReplyTuple = tuple[int, bytes, float]  # code, text (lines joined by \n), arrival time


class TransactionStatus(StrEnum):
    """What a bulk sender must record for a message (FACTS.md, "SMTP semantics")."""

    SENT = "sent"  # 2xx after the final dot: delivered to the server; record durably
    REFUSED = "refused"  # permanent (5xx): do not retry
    TRANSIENT = "transient"  # 4xx, 552 to RCPT, 421, or lost before the final dot: retry later
    UNKNOWN = "unknown"  # lost or timed out after the final dot (RFC 1047): do not resend silently


@dataclass(frozen=True, slots=True)
class WireMessage:
    """A message as it goes on the wire after 354: CRLF-only, dot-stuffed, final dot added."""

    payload: bytes
    size: int  # RFC 1870 SIZE: CRLF line endings, before dot-stuffing, without the final dot


@dataclass(frozen=True, slots=True)
class PreparedTransaction:
    """MAIL/RCPT/DATA encoded once (reusable for any number of sends) plus the message."""

    envelope: Envelope
    commands: bytes  # "MAIL FROM:<..> ...\r\nRCPT TO:<..>\r\n...DATA\r\n"
    message: WireMessage
    tag: Hashable | None = None  # the caller's key (a bulk row id), copied into the result

    @property
    def reply_count(self) -> int:
        return len(self.envelope.recipients) + 2


@dataclass(frozen=True, slots=True)
class TransactionResult:
    """The outcome of one transaction; timestamps are time.perf_counter() values."""

    status: TransactionStatus
    tag: Hashable | None
    recipients: tuple[RecipientResult, ...]
    mail_reply: Reply | None
    data_reply: Reply | None
    final_reply: Reply | None
    # A stable short code for what decided a failure: the reply code ("550", "421") or
    # "connection_lost", "timeout", "protocol_error", "partial_refusal"; None when sent.
    reason: str | None = None
    error: str | None = None  # one line for people
    started: float = 0.0  # MAIL/RCPT/DATA written (with the previous final dot when chained)
    envelope_done: float = 0.0  # last RCPT reply read
    data_accepted: float = 0.0  # 354 read
    dot_sent: float = 0.0  # body and final dot written
    finished: float = 0.0  # final reply read (or the failure noticed)
    chained: bool = field(default=False)  # its commands rode on the previous final dot

    @property
    def accepted(self) -> tuple[str, ...]:
        return tuple(r.address for r in self.recipients if r.accepted)

    @property
    def refused(self) -> tuple[RecipientResult, ...]:
        return tuple(r for r in self.recipients if not r.accepted)

    @property
    def queue_id(self) -> str | None:
        if self.status is not TransactionStatus.SENT or self.final_reply is None:
            return None
        return parse_queue_id(self.final_reply.message)

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per phase: mail_rcpt, data (the 354), end_of_data, total; 0.0 if not reached."""
        out = {"mail_rcpt": 0.0, "data": 0.0, "end_of_data": 0.0, "total": 0.0}
        if self.envelope_done:
            out["mail_rcpt"] = self.envelope_done - self.started
        if self.data_accepted:
            out["data"] = self.data_accepted - (self.envelope_done or self.started)
        if self.dot_sent and self.finished:
            out["end_of_data"] = self.finished - self.dot_sent
        if self.finished:
            out["total"] = self.finished - self.started
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "tag": self.tag if isinstance(self.tag, (str, int, float)) else None,
            "recipients": [r.to_json() for r in self.recipients],
            "mail_reply": self.mail_reply.to_json() if self.mail_reply else None,
            "data_reply": self.data_reply.to_json() if self.data_reply else None,
            "final_reply": self.final_reply.to_json() if self.final_reply else None,
            "queue_id": self.queue_id,
            "reason": self.reason,
            "error": self.error,
            "timings": self.timings,
        }


def prepare_message(data: bytes) -> WireMessage:
    """Normalise line endings to CRLF, dot-stuff (RFC 5321 4.5.2) and add the final dot, once.

    A bare CR or LF never reaches the wire (SMTP smuggling, CVE-2023-51764).
    Raises InputDataError for a line over 998 octets (RFC 5321 4.5.3.1.6).
    """
    stuffed = dot_stuff(data)
    require_short_lines(stuffed)
    # SIZE counts the unstuffed CRLF text: one octet less per stuffed dot.
    stuffed_dots = stuffed.count(b"\r\n..") + (1 if stuffed.startswith(b"..") else 0)
    return WireMessage(payload=stuffed + _LONE_DOT, size=len(stuffed) - stuffed_dots)


def prepare_transaction(
    envelope: Envelope,
    message: WireMessage,
    *,
    extensions: Mapping[str, str],
    smtputf8: bool = False,
    eight_bit: bool = False,
    tag: Hashable | None = None,
) -> PreparedTransaction:
    """Encode MAIL FROM (with SIZE/BODY/SMTPUTF8 as the server offers), RCPT TO and DATA.

    `extensions` is the post-TLS EHLO reply (`session.info.extensions`). Addresses with
    CR, LF, NUL, spaces or <> are refused here, before anything reaches the wire.
    Raises AddressError, InputDataError (no recipients, SMTPUTF8 not offered) and
    MessageTooLargeError (RFC 1870 SIZE limit).
    """
    if not envelope.recipients:
        raise InputDataError("the envelope has no recipients")
    sender = _envelope_path("sender", envelope.sender, smtputf8=smtputf8, allow_empty=True)
    parts = [b"MAIL FROM:" + sender]
    if "SIZE" in extensions:
        limit = _size_limit(extensions["SIZE"])
        if limit is not None and message.size > limit:
            raise MessageTooLargeError(
                f"the message is {message.size} octets; the server accepts at most {limit}",
                details={"size": message.size, "limit": limit},
            )
        parts.append(b" SIZE=%d" % message.size)  # RFC 1870 6
    if eight_bit and "8BITMIME" in extensions:
        parts.append(b" BODY=8BITMIME")  # RFC 6152
    if smtputf8:
        if "SMTPUTF8" not in extensions:
            raise InputDataError(
                "the message needs SMTPUTF8, which the server does not offer (RFC 6531)",
                hint="use ASCII addresses (IDNA domains) or another server",
            )
        parts.append(b" SMTPUTF8")
    parts.append(b"\r\n")
    for address in envelope.recipients:
        path = _envelope_path("recipient", address, smtputf8=smtputf8, allow_empty=False)
        parts.append(b"RCPT TO:" + path + b"\r\n")
    parts.append(b"DATA\r\n")
    return PreparedTransaction(
        envelope=envelope, commands=b"".join(parts), message=message, tag=tag
    )


class _ReplyReader(asyncio.BufferedProtocol):
    """Splits the server's byte stream into replies, in order, with bounded buffers.

    A BufferedProtocol: asyncio reads into one preallocated buffer (recv_into) instead
    of allocating a fresh 256 KiB bytes object per read, which on a busy connection
    costs more than parsing the replies (malloc/mmap churn and page faults).

    Replies are parsed in data_received with bytes operations and queued; `read(n)` waits
    (with a timeout) until n are queued. A lost connection is forwarded to aiosmtplib's
    protocol, so the session learns of it exactly as if it had owned the transport.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport,
        previous: asyncio.BaseProtocol,
    ) -> None:
        self._loop = loop
        self.transport = transport
        self._previous = previous
        self._read_buffer = bytearray(_READ_SIZE)
        self._read_view = memoryview(self._read_buffer)
        self._pending = b""  # an incomplete line
        self._lines: list[bytes] = []  # continuation lines of a multi-line reply
        self.replies: deque[_ReplyTuple] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._need = 0
        self.failure: str | None = None  # "connection_lost", "timeout", "protocol_error"
        self.failure_text = ""
        # One watchdog timer per connection instead of one timer per read: arming and
        # cancelling a TimerHandle for every reply costs more than the reply itself.
        self._deadline = 0.0  # loop.time() by which the awaited replies must be in; 0: none
        self._timeout = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    # -- asyncio.BufferedProtocol -----------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._read_view[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        if self.failure is not None:
            return
        buffer = self._pending + data if self._pending else data
        if b"\n" not in buffer:
            if len(buffer) > MAX_REPLY_LINE:
                self._fail("protocol_error", "a reply line is too long")
            self._pending = buffer
            return
        lines = buffer.split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_REPLY_LINE:
            self._fail("protocol_error", "a reply line is too long")
            return
        now = time.perf_counter()
        replies = self.replies
        for line in lines:
            code = line[:3]
            if len(line) > MAX_REPLY_LINE or not code.isdigit():
                shown = line[:80].decode("ascii", "backslashreplace")
                self._fail("protocol_error", f"malformed reply line {shown!r}")
                return
            if line[3:4] == b"-":
                self._lines.append(line[4:].strip())
                if len(self._lines) > MAX_REPLY_LINES:
                    self._fail("protocol_error", "a multi-line reply is too long")
                    return
                continue
            text = line[4:].strip()
            if self._lines:
                self._lines.append(text)
                text = b"\n".join(self._lines)
                self._lines.clear()
            replies.append((int(code), text, now))
        if len(replies) > MAX_QUEUED_REPLIES:
            self._fail("protocol_error", "the server sent replies nobody asked for")
            return
        waiter = self._waiter
        if waiter is not None and len(replies) >= self._need and not waiter.done():
            waiter.set_result(None)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.failure is None:
            self.failure = "connection_lost"
            self.failure_text = "the server closed the connection"
        self.stop_watchdog()
        self._wake()
        # Tell aiosmtplib too, so SmtpSession.connected turns False.
        self._previous.connection_lost(exc)

    # -- reading and writing ----------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, failure: str, text: str) -> None:
        if self.failure is None:
            self.failure = failure
            self.failure_text = text
        self.stop_watchdog()
        self.transport.abort()
        self._wake()

    def _check_deadline(self) -> None:
        """Watchdog tick: fail the connection when an awaited reply is overdue."""
        self._watchdog = None
        if self.failure is not None:
            return
        deadline = self._deadline
        if deadline and self._loop.time() >= deadline:
            self._fail("timeout", f"no reply within {self._timeout:g}s")
            return
        self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        if self._watchdog is None and deadline:
            # Tick at a tenth of the timeout: a late reply is noticed within 110% of it.
            self._watchdog = self._loop.call_at(
                min(deadline, self._loop.time() + max(self._timeout / 10, 0.01)),
                self._check_deadline,
            )

    @property
    def usable(self) -> bool:
        return self.failure is None and not self.transport.is_closing()

    def write(self, data: bytes) -> bool:
        """Write unless the connection is gone; False if it is."""
        if not self.usable:
            return False
        self.transport.write(data)
        return True

    async def read(self, count: int, timeout: float) -> list[_ReplyTuple]:
        """Return the next `count` replies; fewer only when the connection failed."""
        replies = self.replies
        if len(replies) < count and self.failure is None:
            waiter = self._loop.create_future()
            self._waiter = waiter
            self._need = count
            self._timeout = timeout
            self._deadline = self._loop.time() + timeout
            self._arm(self._deadline)
            try:
                await waiter
            finally:
                self._waiter = None
                self._deadline = 0.0
        take = min(count, len(replies))
        return [replies.popleft() for _ in range(take)]

    def stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def abort(self) -> None:
        if self.failure is None:
            self.failure = "aborted"
            self.failure_text = "the connection was closed by mailctl"
        self.stop_watchdog()
        self.transport.abort()


# Servers repeat the same few replies ("250 2.1.0 Ok"): reuse the immutable Reply objects.
_REPLY_CACHE: dict[tuple[int, bytes], Reply] = {}
_REPLY_CACHE_SIZE = 512


def _reply(raw: _ReplyTuple) -> Reply:
    key = (raw[0], raw[1])
    found = _REPLY_CACHE.get(key)
    if found is None:
        found = Reply(raw[0], raw[1].decode("utf-8", "surrogateescape"))
        if len(_REPLY_CACHE) < _REPLY_CACHE_SIZE:
            _REPLY_CACHE[key] = found
    return found


def _text(reply: Reply) -> str:
    return " ".join(f"{reply.code} {reply.message}".split())


def _refusal_status(codes: Iterable[int]) -> TransactionStatus:
    """Permanent only if every refusal is permanent; RFC 5321 4.5.3.1.10: 552 to RCPT is 452."""
    if all(500 <= code <= 599 and code != 552 for code in codes):
        return TransactionStatus.REFUSED
    return TransactionStatus.TRANSIENT


def _reply_status(code: int) -> TransactionStatus:
    if 200 <= code <= 299:
        return TransactionStatus.SENT
    if 500 <= code <= 599:
        return TransactionStatus.REFUSED
    return TransactionStatus.TRANSIENT


class _SyncSource:
    def __init__(self, items: Iterable[PreparedTransaction]) -> None:
        self._items: Iterator[PreparedTransaction] = iter(items)

    def poll(self) -> PreparedTransaction | None:
        return next(self._items, None)

    async def next(self) -> PreparedTransaction | None:
        return next(self._items, None)

    async def aclose(self) -> None:
        pass


class _AsyncSource:
    """An async source; `poll` returns an item only if one is ready now (for chaining)."""

    def __init__(self, items: AsyncIterable[PreparedTransaction]) -> None:
        self._items = aiter(items)
        self._task: asyncio.Future[PreparedTransaction | None] | None = None

    def poll(self) -> PreparedTransaction | None:
        if self._task is None:
            self._task = asyncio.ensure_future(anext(self._items, None))
        if self._task.done():
            task, self._task = self._task, None
            return task.result()
        return None

    async def next(self) -> PreparedTransaction | None:
        if self._task is None:
            return await anext(self._items, None)
        task, self._task = self._task, None
        return await task

    async def aclose(self) -> None:
        """Cancel a prefetch in progress and wait for it: the caller's generator may then
        be closed (closing it while the prefetch still runs it would fail)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass(slots=True)
class _Flight:
    """One transaction in flight: what was sent and what came back so far."""

    item: PreparedTransaction
    started: float
    chained: bool
    mail: Reply | None = None
    recipients: tuple[RecipientResult, ...] = ()
    data: Reply | None = None
    envelope_done: float = 0.0
    data_accepted: float = 0.0
    dot_sent: float = 0.0

    def record(self, raw: list[_ReplyTuple]) -> None:
        """Take MAIL, RCPT... and DATA replies (a lock-step exchange may stop early)."""
        addresses = self.item.envelope.recipients
        self.mail = _reply(raw[0])
        rcpts = raw[1 : 1 + len(addresses)]
        self.recipients = tuple(
            RecipientResult(address, reply[0] in (250, 251), _reply(reply))
            for address, reply in zip(addresses, rcpts, strict=False)
        )
        if rcpts:
            self.envelope_done = rcpts[-1][2]
        if len(raw) == len(addresses) + 2:
            self.data = _reply(raw[-1])
            self.data_accepted = raw[-1][2]

    def result(
        self,
        status: TransactionStatus,
        *,
        final: Reply | None = None,
        reason: str | None = None,
        error: str | None = None,
        finished: float | None = None,
    ) -> TransactionResult:
        return TransactionResult(
            status,
            self.item.tag,
            self.recipients,
            self.mail,
            self.data,
            final,
            reason=reason,
            error=error,
            started=self.started,
            envelope_done=self.envelope_done,
            data_accepted=self.data_accepted,
            dot_sent=self.dot_sent,
            finished=time.perf_counter() if finished is None else finished,
            chained=self.chained,
        )


class Pipeline:
    """Transactions on one borrowed connection; get one from `pipelined(session)`."""

    def __init__(
        self,
        reader: _ReplyReader,
        *,
        where: str,
        timeouts: Timeouts,
        pipelining: bool,
        allow_partial: bool,
    ) -> None:
        self._reader = reader
        self._where = where
        self._timeouts = timeouts
        self.pipelining = pipelining
        self._allow_partial = allow_partial
        self._rset_pending = False  # a failed envelope left a transaction open
        self._busy = False  # a transaction is in flight (the server state is in between)

    @property
    def usable(self) -> bool:
        """False once the connection is closed or out of step: open a new session then."""
        return self._reader.usable

    async def send(self, item: PreparedTransaction) -> TransactionResult:
        """Run one transaction (MAIL/RCPT/DATA in one write when pipelining)."""
        results = [result async for result in self.send_all((item,))]
        return results[0]

    async def send_all(
        self, items: Iterable[PreparedTransaction] | AsyncIterable[PreparedTransaction]
    ) -> AsyncIterator[TransactionResult]:
        """Send every item in turn; yield exactly one result per item taken, in order.

        With PIPELINING the next item's commands are written together with the final
        dot of the current one when the next item is ready (RFC 2920 3.1). Iteration ends
        when `items` is exhausted or the connection becomes unusable (421, lost, timeout);
        items not yet taken from `items` stay untouched. Never raises for a failed
        transaction: see TransactionResult.status.
        """
        source: _SyncSource | _AsyncSource = (
            _AsyncSource(items) if isinstance(items, AsyncIterable) else _SyncSource(items)
        )
        try:
            item = await source.next()
            chained_at = 0.0
            while item is not None:
                self._busy = True
                result, follow = await self._transaction(item, chained_at, source)
                self._busy = follow is not None  # the next MAIL is already on the wire
                yield result
                if follow is not None and not self.usable:
                    yield self._not_sent(follow)
                    follow = None
                if not self.usable:
                    return
                if follow is not None:
                    item, chained_at = follow, result.dot_sent
                else:
                    item, chained_at = await source.next(), 0.0
        finally:
            await source.aclose()

    # -- one transaction --------------------------------------------------------------

    async def _transaction(
        self,
        item: PreparedTransaction,
        chained_at: float,
        source: _SyncSource | _AsyncSource,
    ) -> tuple[TransactionResult, PreparedTransaction | None]:
        """Run `item`; return its result and the next item if its commands were chained."""
        reader = self._reader
        flight = _Flight(item, chained_at or time.perf_counter(), chained=bool(chained_at))
        if not self.pipelining:
            raw = await self._lockstep_envelope(flight)
            if raw is None:
                return self._lost(flight), None
        else:
            if not chained_at and not reader.write(
                (_RSET if self._rset_pending else b"") + item.commands
            ):
                return self._lost(flight), None
            if self._rset_pending and not await self._rset_reply():
                return self._lost(flight), None
            count = item.reply_count
            raw = await reader.read(count, self._timeouts.command)
            if len(raw) < count:
                return self._lost(flight, raw), None
        flight.record(raw)
        refusal = await self._envelope_refusal(flight)
        if refusal is not None:
            return refusal, None
        return await self._body(flight, source)

    async def _rset_reply(self) -> bool:
        """Read the reply to a pipelined RSET; an unclear state closes the connection."""
        self._rset_pending = False
        rset = await self._reader.read(1, self._timeouts.command)
        if rset and rset[0][0] == 250:
            return True
        self._reader.abort()  # the server's state is unclear: never reuse it
        return False

    async def _lockstep_envelope(self, flight: _Flight) -> list[_ReplyTuple] | None:
        """Without PIPELINING: one command, one reply (RFC 5321); None if the connection failed.

        Stops early, as a lock-step client does, when MAIL is refused, on 421, or when no
        recipient was accepted (DATA is then not sent).
        """
        reader = self._reader
        timeout = self._timeouts.command
        if self._rset_pending and (not reader.write(_RSET) or not await self._rset_reply()):
            return None
        commands = flight.item.commands.split(b"\r\n")[:-1]  # MAIL, RCPT..., DATA
        raw: list[_ReplyTuple] = []
        for index, command in enumerate(commands):
            if not reader.write(command + b"\r\n"):
                return None
            got = await reader.read(1, timeout)
            if not got:
                return None
            raw.extend(got)
            code = got[0][0]
            before_data = index == len(commands) - 2
            if (
                (index == 0 and code != 250)
                or code == 421
                or (before_data and not any(r[0] in (250, 251) for r in raw[1:]))
            ):
                break
        return raw

    async def _envelope_refusal(self, flight: _Flight) -> TransactionResult | None:
        """The result when MAIL, the recipients or DATA were refused; None to go on."""
        reader = self._reader
        mail, data = flight.mail, flight.data
        assert mail is not None
        refused = [r for r in flight.recipients if not r.accepted]
        accepted = len(flight.recipients) - len(refused)
        if data is None or data.code != 354:
            # Nothing was sent. RFC 2920 3.1: the transaction may still be open on the
            # server, so RSET goes in front of the next MAIL.
            self._rset_pending = True
            closing = any(
                r is not None and r.code == 421 for r in (mail, data, *(x.reply for x in refused))
            )
            if mail.code != 250:
                decided = mail
                status = _refusal_status([mail.code])
            elif refused and not accepted:
                decided = refused[0].reply
                status = _refusal_status(r.reply.code for r in refused)
            else:
                decided = data or refused[-1].reply
                status = _refusal_status([decided.code])
            if closing:  # RFC 5321 3.8: the server is closing the connection
                reader.abort()
                status = TransactionStatus.TRANSIENT
            return flight.result(
                status,
                reason=str(decided.code),
                error=f"{self._where} refused the transaction: {_text(decided)}",
            )
        if mail.code != 250 or not accepted:
            # RFC 2920 3.1: DATA accepted although MAIL or every RCPT failed; send a lone
            # dot (no body) and read its reply.
            reader.write(_LONE_DOT)
            final = await reader.read(1, self._timeouts.data)
            if not final:
                return self._lost(flight)
            decided = mail if mail.code != 250 else refused[0].reply
            codes = [mail.code] if mail.code != 250 else [r.reply.code for r in refused]
            return flight.result(
                _refusal_status(codes),
                final=_reply(final[0]),
                reason=str(decided.code),
                error=f"{self._where} refused the transaction: {_text(decided)}",
            )
        if refused and not self._allow_partial:
            # After 354 the only way not to deliver to the accepted recipients is to close
            # the connection before the final dot (RFC 5321 4.1.1.4): nothing is delivered.
            reader.abort()
            listed = "; ".join(f"{r.address}: {_text(r.reply)}" for r in refused)
            return flight.result(
                _refusal_status(r.reply.code for r in refused),
                reason="partial_refusal",
                error=f"{self._where} refused {len(refused)} of {len(flight.recipients)} "
                f"recipients ({listed}); the connection was closed before the final dot, "
                "so nothing was sent",
            )
        return None

    async def _body(
        self, flight: _Flight, source: _SyncSource | _AsyncSource
    ) -> tuple[TransactionResult, PreparedTransaction | None]:
        """Write the body and final dot (plus the next item's commands) and read the reply."""
        reader = self._reader
        follow = source.poll() if self.pipelining else None
        payload = flight.item.message.payload
        if follow is not None:
            payload += follow.commands  # RFC 2920 3.1: commands may follow the final dot
        if not reader.write(payload):
            return self._lost(flight), follow
        flight.dot_sent = time.perf_counter()
        final_raw = await reader.read(1, self._timeouts.data)
        if not final_raw:
            # RFC 1047: lost after the final dot: it may have been delivered.
            return flight.result(
                TransactionStatus.UNKNOWN,
                reason=reader.failure,
                error=f"{self._where}: {reader.failure_text} after the end of the message; "
                "it may or may not have been delivered",
            ), follow
        final = _reply(final_raw[0])
        status = _reply_status(final.code)
        if final.code == 421:
            reader.abort()  # RFC 5321 3.8: closing; a chained transaction is not sent
        if status is TransactionStatus.SENT:
            return flight.result(status, final=final, finished=final_raw[0][2]), follow
        return flight.result(
            status,
            final=final,
            reason=str(final.code),
            error=f"{self._where} refused the message: {_text(final)}",
            finished=final_raw[0][2],
        ), follow

    # -- failures ---------------------------------------------------------------------

    def _lost(self, flight: _Flight, replies: Iterable[_ReplyTuple] = ()) -> TransactionResult:
        """The connection failed before the final dot: not delivered (transient)."""
        reader = self._reader
        reader.abort()
        closing = next((r for r in replies if r[0] == 421), None)
        reason = "421" if closing else (reader.failure or "connection_lost")
        text = _text(_reply(closing)) if closing else reader.failure_text
        return flight.result(
            TransactionStatus.TRANSIENT,
            reason=reason,
            error=f"{self._where}: {text} before the end of the message; nothing was sent",
        )

    def _not_sent(self, item: PreparedTransaction) -> TransactionResult:
        reader = self._reader
        return _Flight(item, 0.0, chained=True).result(
            TransactionStatus.TRANSIENT,
            reason=reader.failure or "connection_lost",
            error=f"{self._where}: the connection ended before this message; nothing was sent",
            finished=0.0,
        )

    async def _finish(self) -> None:
        """Leave the connection as aiosmtplib expects it: no transaction open."""
        if self._busy or not self.usable:
            self._reader.abort()
            return
        if self._rset_pending:
            self._rset_pending = False
            if not self._reader.write(_RSET):
                return
            reply = await self._reader.read(1, self._timeouts.command)
            if not reply or reply[0][0] != 250:
                self._reader.abort()


@contextlib.asynccontextmanager
async def pipelined(
    session: SmtpSession, *, lockstep_fallback: bool = False, allow_partial: bool = False
) -> AsyncIterator[Pipeline]:
    """Borrow `session`'s connection for pipelined transactions; give it back on exit.

    Requires the PIPELINING extension (RFC 2920) unless `lockstep_fallback` is set, in
    which case the same code sends one command at a time. `allow_partial`: when some (not
    all) recipients are refused, still send to the others (default: close the connection
    before the final dot so nothing is delivered, since after 354 there is no RSET).
    On exit an unfinished transaction closes the connection; a finished one leaves the
    session usable for aiosmtplib again (QUIT, or `SmtpSession.send`).
    Raises ProtocolError (no PIPELINING) and ConnectionLostError (session closed).
    """
    pipelining = session.supports("PIPELINING")
    if not pipelining and not lockstep_fallback:
        raise ProtocolError(
            f"{session.where} does not offer PIPELINING (RFC 2920)",
            hint="use one message at a time (bench --mode reuse) on this server",
        )
    async with session.borrow_transport() as transport:
        reader = _ReplyReader(asyncio.get_running_loop(), transport, transport.get_protocol())
        transport.set_protocol(reader)
        pipe = Pipeline(
            reader,
            where=session.where,
            timeouts=session.settings.timeouts,
            pipelining=pipelining,
            allow_partial=allow_partial,
        )
        try:
            yield pipe
            await pipe._finish()
        except BaseException:
            reader.abort()
            raise
        finally:
            reader.stop_watchdog()
