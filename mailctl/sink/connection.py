"""One sink connection (`SinkConnection`): the per-read hot loop, MAIL/RCPT/DATA, the body, replies.

Speed comes from doing little per message: every complete command line of one read is
answered in order and the replies leave in one `transport.write` (RFC 2920 pipelining costs
the server nothing extra), and the message body is found with `bytes.find` for
"\\r\\n.\\r\\n" over whole chunks, never line by line. Dot-unstuffing happens only when a
message is stored; discarding just counts. The commands that are not on the per-message path
(HELO/EHLO, STARTTLS, AUTH, RSET, ...) are the `SinkCommands` mixin (`commands.py`), which
this class inherits; the server is known only as a `SinkHost` (`host.py`).

Correctness rules, each decided here:

* Line endings (RFC 5321 2.3.8): only CRLF ends a line. A command holding a bare CR or LF
  is refused (500 5.5.2), and a message holding one is refused at the final dot with
  "550 5.5.2" instead of being normalised: SMTP smuggling (CVE-2023-51764/5/6) relies on
  servers that accept "\\n.\\r\\n" as an end of data, so the sink never guesses where a
  line ends. The end of data is "\\r\\n.\\r\\n" only.
* NUL anywhere in a command is refused (500 5.5.2), and a control byte in an address or an
  EHLO/HELO name makes it invalid (501): RFC 5321 4.1.2 allows none, and addresses reach
  the stored message's trace headers.
* Faults and 421 at the final dot close the connection without answering anything the
  client pipelined after the dot: a chained MAIL must not get a 250 that a client could
  take for the reply to the message (RFC 1047, RFC 2920 3.1).
* Limits: command lines 512 octets (RFC 5321 4.5.3.1.4; AUTH lines 12288, RFC 4954 4),
  text lines 1000 octets (4.5.3.1.6), SIZE (RFC 1870, 552 5.3.4 beyond), 1000 recipients
  (4.5.3.1.8 asks for at least 100; 452 4.5.3 beyond), 20 protocol errors per connection
  (then 421, as Postfix's smtpd_hard_error_limit). A line longer than its limit is answered
  "500 5.5.6 Line too long" and the connection closes, so no buffer grows without bound.
* Memory: a message is held only up to SIZE (beyond it the body is counted and dropped
  until the final dot); reading pauses while the client does not read our replies
  (transport flow control) or while delayed replies are queued.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, cast

from mailctl.errors import MailctlError
from mailctl.models import Security
from mailctl.sink.commands import SinkCommands, has_control
from mailctl.sink.config import Phase
from mailctl.sink.replies import (
    BARE_EOL_COMMAND,
    BARE_EOL_DATA,
    CLOSE_AFTER_REPLY,
    COMMAND_LINE_LIMIT,
    GO_AHEAD,
    IDLE,
    MAIL_OK,
    MAX_RECIPIENTS,
    NEED_AUTH,
    NEED_HELO,
    NEED_MAIL,
    NEED_SMTPUTF8,
    NESTED_MAIL,
    NO_RECIPIENTS,
    NUL_COMMAND,
    QUEUE_HIGH_WATER,
    QUEUED,
    RCPT_OK,
    READ_BUFFER_SIZE,
    SHUTDOWN,
    STARTTLS_AFTER_REPLY,
    STORE_FAILED,
    TERMINATOR,
    TLS_HANDSHAKE_TIMEOUT,
    TOO_BIG,
    TOO_MANY_CONNECTIONS,
    TOO_MANY_MESSAGES,
    TOO_MANY_RCPTS,
    UNKNOWN,
)

if TYPE_CHECKING:
    from mailctl.sink.host import SinkHost


class SinkConnection(SinkCommands, asyncio.BufferedProtocol):
    """One SMTP connection. All state lives in slots; each read is parsed in one pass.

    The transport, the read buffer, the reply batch and the transaction are this class's;
    the session state (greeting, TLS, AUTH, error count) is `SinkCommands`'s.

    A BufferedProtocol: the selector loop's plain-Protocol path allocates a 256 KiB bytes
    object per recv(), which glibc serves with mmap/mremap/munmap, three syscalls per read
    (measured: sys time tripled); recv_into one per-connection buffer avoids them.
    """

    __slots__ = (
        "_action",
        "_body_len",
        "_buf",
        "_faulty",
        "_in_data",
        "_latency",
        "_messages",
        "_out",
        "_overflow",
        "_parts",
        "_paused_reading",
        "_pending_tls",
        "_queue",
        "_queue_bytes",
        "_queue_timer",
        "_rcpts",
        "_read_buffer",
        "_sender",
        "_server",
        "_smtputf8",
        "_stopped",
        "_tail",
        "_task",
        "_transport",
        "_upgrading",
        "_write_paused",
        "active",
        "idle_for",
    )

    def __init__(self, server: SinkHost) -> None:
        super().__init__(tls=server.config.security is Security.TLS)
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buf = b""
        self._out: list[bytes] = []
        self._action = 0
        self._stopped = False  # no more input is processed (closing or upgrading)
        self._sender: bytes | None = None
        self._rcpts: list[bytes] = []
        self._smtputf8 = False
        self._in_data = False
        self._latency = bool(server.config.faults.latency)
        self._faulty = server.config.faults.any
        self._parts: list[bytes] = []
        self._body_len = 0
        self._tail = b""
        self._overflow = False
        self._messages = 0
        self._queue: deque[tuple[float, bytes, int]] = deque()
        self._queue_bytes = 0
        self._queue_timer: asyncio.TimerHandle | None = None
        self._paused_reading = False
        self._write_paused = False
        self._upgrading = False
        self._pending_tls: list[bytes] = []
        self._read_buffer = memoryview(bytearray(READ_BUFFER_SIZE))
        self._task: asyncio.Task[None] | None = None
        self.active = True
        self.idle_for = 0.0

    # ------------------------------------------------------------------ transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        server = self._server
        stats = server.stats
        limit = server.config.max_connections
        if limit is not None and stats.active >= limit:
            # Not counted as a connection: it is refused before any SMTP happens.
            stats.errors[421] += 1
            self._transport.write(TOO_MANY_CONNECTIONS)
            self._transport.close()
            self._stopped = True
            return
        stats.connections += 1
        stats.active += 1
        server.connections.add(self)
        self._send(server.banner, Phase.BANNER)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        server = self._server
        if self in server.connections:
            server.connections.discard(self)
            server.stats.active -= 1
        self._stopped = True
        self._parts = []
        self._buf = b""
        self._queue.clear()
        if self._queue_timer is not None:
            self._queue_timer.cancel()
            self._queue_timer = None
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def pause_writing(self) -> None:
        """The client does not read our replies: stop reading its commands (bounded memory)."""
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self._read_buffer[:nbytes]))

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def data_received(self, data: bytes) -> None:  # noqa: PLR0912, PLR0915 - inlined hot loop
        """Answer every complete line of this read, in order, with one write (RFC 2920)."""
        if self._stopped:
            if self._upgrading:
                # Decrypted data that arrives before start_tls() has returned (TLS 1.3
                # clients send EHLO with their Finished): processed once the upgrade is done.
                self._pending_tls.append(data)
            return
        self.active = True
        if self._in_data:
            rest = self._body(data)
            # None: the body goes on; b"": nothing after the final dot; stopped: a fault
            # or a 421 at the final dot closes the connection, and nothing pipelined after
            # the dot may be answered (RFC 1047: the client must see no reply at all).
            if not rest or self._stopped:
                self._flush()
                return
            data = rest
        buf = self._buf + data if self._buf else data
        start = 0
        find = buf.find
        commands = _COMMANDS
        while True:
            end = find(b"\r\n", start)
            if end < 0:
                break
            line = buf[start:end]
            start = end + 2
            if len(line) > COMMAND_LINE_LIMIT - 2 and self._line_too_long(line):
                break
            # The dispatch is inlined: a call costs ~0.4 us here, a third of a command.
            if 10 in line or 13 in line:  # LF, CR; an int test is 5x faster than b"\n" in
                self._protocol_error(BARE_EOL_COMMAND)  # RFC 5321 2.3.8
            elif 0 in line:  # NUL: no SMTP command or argument may hold one (RFC 5321 4.1.2)
                self._protocol_error(NUL_COMMAND)
            elif self._auth_step:
                self._auth_continue(line)
            else:
                handler = commands.get(line[:4].upper())
                if handler is None or (
                    len(line) > 4 and line[4] != 32 and line[:8].upper() != b"STARTTLS"
                ):
                    self._protocol_error(UNKNOWN)
                else:
                    handler(self, line)
            if self._stopped:
                break
            if self._in_data:
                if start == len(buf):
                    break  # the body comes in a later read (the usual case: after 354)
                rest = self._body(buf[start:])
                if rest is None:
                    start = len(buf)
                    break
                if self._stopped:  # closed at the final dot: the rest is never answered
                    break
                buf, start, find = rest, 0, rest.find
        if self._stopped:
            self._buf = b""
        else:
            remainder = buf[start:] if start else buf
            if len(remainder) >= COMMAND_LINE_LIMIT and self._line_too_long(remainder):
                self._buf = b""
            else:
                self._buf = remainder
        self._flush()

    # ------------------------------------------------------------------ output

    def _server_time(self) -> float:
        return asyncio.get_running_loop().time()

    def _send(self, reply: bytes, phase: Phase | None = None) -> None:
        """Queue one reply for this read's batch; count errors; apply --latency."""
        if reply[0] >= 52:  # "4" or "5": a refusal, counted by code
            self._server.stats.errors[int(reply[:3])] += 1
        if self._latency:
            delay = self._server.faults.delay(phase)
            if delay:
                self._defer(delay, reply)
                return
        self._out.append(reply)

    def _defer(self, delay: float, reply: bytes) -> None:
        """Hold `reply` for `delay` seconds, after everything already queued (order kept)."""
        now = self._server_time()
        self._enqueue(now)
        self._push(now + delay, reply)

    def _enqueue(self, now: float) -> None:
        out = self._out
        if out:
            self._push(now, b"".join(out))
            out.clear()

    def _push(self, due: float, data: bytes) -> None:
        queue = self._queue
        if queue and queue[-1][0] > due:
            due = queue[-1][0]  # never overtake an earlier, longer-delayed reply
        queue.append((due, data, 0))
        self._queue_bytes += len(data)
        if self._queue_timer is None:
            self._queue_timer = asyncio.get_running_loop().call_at(queue[0][0], self._drain)
        if self._queue_bytes > QUEUE_HIGH_WATER:
            self._update_reading()

    def _drain(self) -> None:
        """Write every queued reply that is due; reschedule for the rest."""
        self._queue_timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            self._queue.clear()
            return
        now = self._server_time()
        queue = self._queue
        ready: list[bytes] = []
        action = 0
        while queue and queue[0][0] <= now:
            _, data, action = queue.popleft()
            ready.append(data)
            self._queue_bytes -= len(data)
            if action:
                break
        if ready:
            transport.write(b"".join(ready))
        if action:
            queue.clear()
            self._queue_bytes = 0
            self._act(action)
            return
        if queue:
            self._queue_timer = asyncio.get_running_loop().call_at(queue[0][0], self._drain)
        self._update_reading()

    def _flush(self) -> None:
        """Send this read's replies in one write (or behind delayed ones), then act."""
        out = self._out
        if not self._action and not self._queue:  # the hot path: just write
            if out:
                self._transport.write(out[0] if len(out) == 1 else b"".join(out))  # type: ignore[union-attr]
                out.clear()
            return
        action, self._action = self._action, 0
        if self._queue:
            now = self._server_time()
            self._enqueue(now)
            if action:
                due, data, _ = self._queue[-1]
                self._queue[-1] = (due, data, action)
            return
        out = self._out
        transport = self._transport
        if out and transport is not None:
            transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()
        if action:
            self._act(action)

    def _act(self, action: int) -> None:
        transport = self._transport
        if transport is None:
            return
        if action == CLOSE_AFTER_REPLY:
            transport.close()
        elif action == STARTTLS_AFTER_REPLY:
            self._task = asyncio.get_running_loop().create_task(self._upgrade_to_tls(transport))

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing() or self._upgrading:
            return
        pause = self._write_paused or self._queue_bytes > QUEUE_HIGH_WATER
        if pause and not self._paused_reading:
            self._paused_reading = True
            transport.pause_reading()
        elif not pause and self._paused_reading:
            self._paused_reading = False
            transport.resume_reading()

    def _reset_transaction(self) -> None:
        """Forget the envelope: RSET, a new HELO/EHLO and a TLS upgrade all start afresh."""
        self._sender = None
        self._rcpts = []

    def _switch_to_tls(self) -> None:
        """STARTTLS was answered 220: read nothing more; the handshake starts after the write.

        RFC 3207 4.2 / CVE-2011-0411: whatever the client pipelined after STARTTLS is dropped.
        """
        self._stopped = True
        self._upgrading = True
        self._action = STARTTLS_AFTER_REPLY
        if self._transport is not None:
            self._transport.pause_reading()

    async def _upgrade_to_tls(self, transport: asyncio.Transport) -> None:
        """Run the server side of STARTTLS after the 220 left; abort the connection if it fails."""
        server = self._server
        assert server.ssl_context is not None
        loop = asyncio.get_running_loop()
        self._tls_started()
        self._reset_transaction()
        self._buf = b""
        try:
            new = await loop.start_tls(
                transport,
                self,
                server.ssl_context,
                server_side=True,
                ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
            transport.abort()
            return
        if new is None:  # pragma: no cover - the loop closed the connection
            transport.abort()
            return
        self._transport = new
        self._upgrading = False
        self._stopped = False
        self._paused_reading = False
        pending, self._pending_tls = self._pending_tls, []
        for data in pending:
            self.data_received(data)

    def _close_after_reply(self) -> None:
        self._stopped = True
        self._action = CLOSE_AFTER_REPLY

    def _drop(self) -> None:
        """Injected disconnect: send what is already answered, then close without a reply."""
        self._server.stats.disconnected += 1
        self._close_after_reply()

    def shutdown(self) -> None:
        """Server stop: deliver queued replies now, say 421 (unless mid-reply), and close."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._queue_timer is not None:
            self._queue_timer.cancel()
            self._queue_timer = None
        pending = b"".join(data for _, data, _ in self._queue) + b"".join(self._out)
        self._queue.clear()
        self._out.clear()
        self._stopped = True
        transport.write(pending + SHUTDOWN)
        transport.close()

    @property
    def buffered(self) -> int:
        """Octets of an unfinished command line held until its CRLF (bounded by the limits)."""
        return len(self._buf)

    def abort(self) -> None:
        """Drop the connection at once (server stop, after the grace period)."""
        if self._transport is not None:
            self._transport.abort()

    def idle_out(self) -> None:
        """The idle sweep's verdict: say 421 4.4.2 and close."""
        if self._transport is None or self._transport.is_closing():
            return
        self._send(IDLE)
        self._close_after_reply()
        self._flush()

    # ------------------------------------------------------------------ MAIL, RCPT, DATA
    # The per-message commands; the others are SinkCommands' (commands.py).

    def _mail(self, line: bytes) -> None:  # noqa: PLR0911 - one guard per refusal
        if self._sender is not None:
            self._protocol_error(NESTED_MAIL)
            return
        if not self._greeted:
            self._protocol_error(NEED_HELO)
            return
        server = self._server
        config = server.config
        if config.auth and not self._authed:
            self._send(NEED_AUTH)
            return
        if line[4:10].upper() != b" FROM:":
            self._protocol_error(b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
            return
        address, params = _path(line[10:])
        if address is None:
            self._protocol_error(b"501 5.1.7 Bad sender address syntax\r\n")
            return
        smtputf8 = self._mail_params(params) if params else False
        if smtputf8 is None:
            return
        if not smtputf8 and not address.isascii():
            self._send(NEED_SMTPUTF8)
            return
        if self._faulty:
            close_after = config.faults.close_after
            if close_after is not None and self._messages >= close_after:
                self._send(TOO_MANY_MESSAGES, Phase.MAIL)
                self._close_after_reply()
                return
            if self._faulted(Phase.MAIL):
                return
        self._sender = address
        self._rcpts = []
        self._smtputf8 = smtputf8
        if self._latency:
            self._send(MAIL_OK, Phase.MAIL)
        else:
            self._out.append(MAIL_OK)

    def _mail_params(self, params: bytes) -> bool | None:
        """Check MAIL parameters; return whether SMTPUTF8 was given, None after refusing."""
        config = self._server.config
        smtputf8 = False
        for param in params.split():
            key, _, value = param.partition(b"=")
            key = key.upper()
            if key == b"SIZE":  # RFC 1870 6
                if not value.isdigit():
                    self._protocol_error(b"501 5.5.4 Syntax: SIZE=number\r\n")
                    return None
                if int(value) > config.max_size:
                    self._send(TOO_BIG)
                    return None
            elif key == b"BODY":  # RFC 6152
                if value.upper() not in (b"7BIT", b"8BITMIME"):
                    self._protocol_error(b"501 5.5.4 Syntax: BODY=7BIT|8BITMIME\r\n")
                    return None
            elif key == b"SMTPUTF8" and not value:  # RFC 6531 3.4
                smtputf8 = True
            elif key != b"AUTH" or not config.auth:  # RFC 4954 5: AUTH= accepted, ignored
                self._protocol_error(b"555 5.5.4 Error: unsupported MAIL parameter\r\n")
                return None
        return smtputf8

    def _rcpt(self, line: bytes) -> None:  # noqa: PLR0911 - one guard per refusal
        if self._sender is None:
            self._protocol_error(NEED_MAIL)
            return
        if line[4:8].upper() != b" TO:":
            self._protocol_error(b"501 5.5.4 Syntax: RCPT TO:<address>\r\n")
            return
        address, params = _path(line[8:])
        if not address:  # None (syntax) or "<>", which is no recipient
            self._protocol_error(b"501 5.1.3 Bad recipient address syntax\r\n")
            return
        if params.strip():
            self._protocol_error(b"555 5.5.4 Error: unsupported RCPT parameter\r\n")
            return
        if not self._smtputf8 and not address.isascii():
            self._send(NEED_SMTPUTF8)
            return
        if len(self._rcpts) >= MAX_RECIPIENTS:
            self._send(TOO_MANY_RCPTS)
            return
        if self._faulty and self._faulted(Phase.RCPT):
            return
        self._rcpts.append(address)
        if self._latency:
            self._send(RCPT_OK, Phase.RCPT)
        else:
            self._out.append(RCPT_OK)

    def _data(self, line: bytes) -> None:
        if len(line) > 4:
            self._protocol_error(b"501 5.5.4 Syntax: DATA\r\n")
            return
        if self._sender is None:
            self._protocol_error(NEED_MAIL)
            return
        if not self._rcpts:
            # RFC 2920 3.1: with pipelining, DATA after refused recipients gets 554.
            self._send(NO_RECIPIENTS)
            return
        if self._faulty and self._faulted(Phase.DATA):
            return
        self._in_data = True
        self._parts = []
        self._body_len = 0
        self._overflow = False
        # As if the CRLF ending the DATA line were part of the body: an empty message's
        # terminator ".\r\n" then matches "\r\n.\r\n" like any other.
        self._tail = b"\r\n"
        self._send(GO_AHEAD, Phase.DATA)

    def _faulted(self, phase: Phase) -> bool:
        """Apply --disconnect-rate and --reject-rate at `phase`; True if one fired."""
        faults = self._server.faults
        if faults.disconnect(phase):
            self._drop()
            return True
        if faults.reject(phase):
            self._server.stats.rejected += 1
            self._send(faults.reject_reply, phase)
            if faults.config.reject_code == 421:  # RFC 5321 3.8: 421 closes the connection
                self._close_after_reply()
            return True
        return False

    # ------------------------------------------------------------------ message body

    def _body(self, data: bytes) -> bytes | None:
        """Consume body bytes; return what follows the final dot, or None if it has not come.

        Usual case: the whole body is in this read, found by one `find`. Otherwise the
        terminator may straddle two reads: the last 4 body bytes are kept in _tail and
        joined with the first 4 new ones, an 8-byte search, before the full `find`.
        """
        if not self._body_len:
            # The body's first bytes: the CRLF ending "DATA" counts as the line start, so an
            # empty message is just ".\r\n" (RFC 5321 4.1.1.4).
            if data[:3] == b".\r\n":
                self._end_of_data(b"", 0)
                return data[3:]
            index = data.find(TERMINATOR)
            if index >= 0:
                size = index + 2
                fits = size <= self._server.config.max_size
                self._end_of_data(data[:size] if fits else None, size)
                return data[index + 5 :]
        tail = self._tail
        joined = tail + data[:4]
        index = joined.find(TERMINATOR)
        if index >= 0:
            cut = index + 2 - len(tail)
            after = index + 5 - len(tail)
        else:
            index = data.find(TERMINATOR)
            if index < 0:
                self._add(data)
                return None
            cut = index + 2
            after = index + 5
        if cut > 0:
            self._add(data[:cut])
        elif cut < 0:
            # The content ended inside the previous read ("\r\n" then ".\r\n" next time).
            self._body_len += cut
            if not self._overflow:
                self._parts = [b"".join(self._parts)[:cut]]
        parts = self._parts
        content = None if self._overflow else b"".join(parts)
        self._end_of_data(content, self._body_len)
        return data[after:]

    def _add(self, chunk: bytes) -> None:
        size = self._body_len + len(chunk)
        self._body_len = size
        if size > self._server.config.max_size:
            if not self._overflow:
                self._overflow = True  # keep counting, stop keeping: memory stays bounded
                self._parts = []
        else:
            self._parts.append(chunk)
        self._tail = chunk[-4:] if len(chunk) >= 4 else (self._tail + chunk)[-4:]

    def _end_of_data(self, content: bytes | None, size: int) -> None:
        """The final dot arrived: check the message (None: over SIZE), keep or count it, reply."""
        self._in_data = False
        self._parts = []
        sender, rcpts = self._sender, self._rcpts
        self._sender = None
        self._rcpts = []
        server = self._server
        if self._faulty and self._faulted(Phase.EOD):
            return
        if content is None:
            self._send(TOO_BIG, Phase.EOD)
            return
        # RFC 5321 2.3.8: CRLF only. Equal counts mean every LF and every CR is in a CRLF.
        lf = content.count(b"\n")
        if lf != content.count(b"\r\n") or content.count(b"\r") != lf:
            self._send(BARE_EOL_DATA, Phase.EOD)
            return
        store = server.store
        if store is not None:
            try:
                store(content, sender or b"", rcpts)
            except (MailctlError, OSError):
                # Never acknowledge a message that is not on disk.
                self._send(STORE_FAILED, Phase.EOD)
                return
        server.stats.message(size)
        self._messages += 1
        if self._latency:
            self._send(QUEUED, Phase.EOD)
        else:
            self._out.append(QUEUED)
        if server.config.max_messages is not None:
            server.message_done()


def _path(rest: bytes) -> tuple[bytes | None, bytes]:
    """Split "<address> params" (RFC 5321 4.1.2); (None, b"") when there are no brackets.

    An address holding a control byte (NUL, TAB, ESC, DEL, ...) is no address: RFC 5321
    4.1.2 allows none in a path, not even quoted, and the address would reach the stored
    message's trace headers (storage.py) and the mbox From_ line.
    """
    rest = rest.lstrip(b" ")
    if rest[:1] != b"<":
        return None, b""
    end = rest.find(b">")
    if end < 0:
        return None, b""
    address = rest[1:end]
    if has_control(address):
        return None, b""
    return address, rest[end + 1 :]


_COMMANDS: Final[dict[bytes, Callable[[SinkConnection, bytes], None]]] = {
    b"HELO": SinkConnection._helo,
    b"EHLO": SinkConnection._ehlo,
    b"MAIL": SinkConnection._mail,
    b"RCPT": SinkConnection._rcpt,
    b"DATA": SinkConnection._data,
    b"RSET": SinkConnection._rset,
    b"NOOP": SinkConnection._noop,
    b"QUIT": SinkConnection._quit,
    b"VRFY": SinkConnection._vrfy,
    b"HELP": SinkConnection._help,
    b"STAR": SinkConnection._starttls,
    b"AUTH": SinkConnection._auth,
    b"EXPN": SinkConnection._not_implemented,
    b"BDAT": SinkConnection._not_implemented,
    b"ETRN": SinkConnection._not_implemented,
    b"TURN": SinkConnection._not_implemented,
}
