"""The reply reader of a pipelined connection: bounded, in-order SMTP replies, one watchdog."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from mailctl.text import excerpt, quote

__all__ = [
    "MAX_QUEUED_REPLIES",
    "MAX_REPLY_LINE",
    "MAX_REPLY_LINES",
    "ReplyReader",
    "ReplyTuple",
]

# RFC 5321 4.5.3.1.5 allows 512 octets per reply line; real servers send longer
# enhanced texts, so be generous but bounded: a server cannot grow our memory.
MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 100  # lines of one multi-line reply
# Replies waiting to be read; a well-behaved server never sends more than we asked for.
MAX_QUEUED_REPLIES = 4096

_READ_SIZE = 64 * 1024

ReplyTuple = tuple[int, bytes, float]  # code, text (lines joined by \n), arrival time


class ReplyReader(asyncio.BufferedProtocol):
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
        self.replies: deque[ReplyTuple] = deque()
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
                self._fail("protocol_error", f"malformed reply line {quote(line, limit=80)}")
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

    async def read(self, count: int, timeout: float) -> list[ReplyTuple]:
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

    def out_of_step(self) -> bool:
        """True, and the connection failed as a protocol error, when replies are queued
        where every reply asked for has been read: the server answered something nobody
        sent, so each later reply would be taken for the one before it (a MAIL's 250 for
        the final dot's). Call it where nothing may be pending: before new commands that
        do not ride on a final dot, and before the body after the 354."""
        if not self.replies:
            return False
        code, text, _ = self.replies[0]
        shown = excerpt(text, limit=80)
        if code == 421:  # RFC 5321 3.8: the server may say 421 unasked before it closes
            self._fail("421", f"the server is closing the connection: 421 {shown}")
        else:
            self._fail(
                "protocol_error", f"the server sent a reply nobody asked for ({code} {shown})"
            )
        return True

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
