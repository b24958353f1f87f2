"""The sink's SMTP server: one asyncio.Protocol per connection, replies batched per read.

Speed comes from doing little per message: every complete command line of one read is
answered in order and the replies leave in one `transport.write` (RFC 2920 pipelining costs
the server nothing extra), and the message body is found with `bytes.find` for
"\\r\\n.\\r\\n" over whole chunks, never line by line. Dot-unstuffing happens only when a
message is stored; discarding just counts.

Correctness rules, each decided here:

* Line endings (RFC 5321 2.3.8): only CRLF ends a line. A command holding a bare CR or LF
  is refused (500 5.5.2), and a message holding one is refused at the final dot with
  "550 5.5.2" instead of being normalised: SMTP smuggling (CVE-2023-51764/5/6) relies on
  servers that accept "\\n.\\r\\n" as an end of data, so the sink never guesses where a
  line ends. The end of data is "\\r\\n.\\r\\n" only.
* Limits: command lines 512 octets (RFC 5321 4.5.3.1.4; AUTH lines 12288, RFC 4954 4),
  text lines 1000 octets (4.5.3.1.6), SIZE (RFC 1870, 552 5.3.4 beyond), 1000 recipients
  (4.5.3.1.8 asks for at least 100; 452 4.5.3 beyond), 20 protocol errors per connection
  (then 421, as Postfix's smtpd_hard_error_limit). A line longer than its limit is answered
  "500 5.5.6 Line too long" and the connection closes, so no buffer grows without bound.
* Memory: a message is held only up to SIZE (beyond it the body is counted and dropped
  until the final dot); reading pauses while the client does not read our replies
  (transport flow control) or while delayed replies are queued.
* STARTTLS (RFC 3207): anything the client pipelined after STARTTLS is discarded
  (CVE-2011-0411 style injection), and all session state is forgotten after the handshake.
* AUTH (RFC 4954) is offered only after TLS when STARTTLS is configured, and then required
  before MAIL (530 5.7.0), as on a submission server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import os
import shutil
import ssl
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, cast

from mailctl.errors import ConnectError, MailctlError
from mailctl.models import Security
from mailctl.sink.config import (
    TEST_PASSWORD,
    TEST_USERNAME,
    Phase,
    SinkConfig,
    StoreKind,
)
from mailctl.sink.faults import Faults
from mailctl.sink.stats import SinkStats

COMMAND_LINE_LIMIT: Final = 512  # RFC 5321 4.5.3.1.4, CRLF included
AUTH_LINE_LIMIT: Final = 12288  # RFC 4954 4
MAX_RECIPIENTS: Final = 1000
HARD_ERROR_LIMIT: Final = 20
QUEUE_HIGH_WATER: Final = 256 * 1024  # delayed reply bytes before reading pauses
TLS_HANDSHAKE_TIMEOUT: Final = 10.0
READ_BUFFER_SIZE: Final = 64 * 1024

_TERMINATOR: Final = b"\r\n.\r\n"
_OK: Final = b"250 2.0.0 Ok\r\n"
_MAIL_OK: Final = b"250 2.1.0 Ok\r\n"
_RCPT_OK: Final = b"250 2.1.5 Ok\r\n"
_GO_AHEAD: Final = b"354 End data with <CR><LF>.<CR><LF>\r\n"
_QUEUED: Final = b"250 2.0.0 Ok: queued\r\n"
_BYE: Final = b"221 2.0.0 Bye\r\n"
_UNKNOWN: Final = b"500 5.5.2 Error: command not recognized\r\n"
_BARE_EOL_COMMAND: Final = b"500 5.5.2 Error: bare CR or LF in command; use CRLF\r\n"
_BARE_EOL_DATA: Final = b"550 5.5.2 Error: bare CR or LF in message; lines must end with CRLF\r\n"
_TOO_LONG: Final = b"500 5.5.6 Error: line too long\r\n"
_TOO_BIG: Final = b"552 5.3.4 Error: message exceeds fixed maximum message size\r\n"
_NEED_HELO: Final = b"503 5.5.1 Error: send HELO/EHLO first\r\n"
_NESTED_MAIL: Final = b"503 5.5.1 Error: nested MAIL command\r\n"
_NEED_MAIL: Final = b"503 5.5.1 Error: need MAIL command\r\n"
_NEED_RCPT: Final = b"503 5.5.1 Error: need RCPT command\r\n"
_NO_RECIPIENTS: Final = b"554 5.5.1 Error: no valid recipients\r\n"
_NEED_AUTH: Final = b"530 5.7.0 Authentication required\r\n"
_NEED_TLS_AUTH: Final = b"538 5.7.11 Encryption required for requested authentication mechanism\r\n"
_NEED_SMTPUTF8: Final = b"553 5.6.7 Error: non-ASCII address needs SMTPUTF8\r\n"
_TOO_MANY_RCPTS: Final = b"452 4.5.3 Error: too many recipients\r\n"
_TOO_MANY_ERRORS: Final = b"421 4.7.0 Error: too many errors\r\n"
_TOO_MANY_MESSAGES: Final = b"421 4.7.0 Error: too many messages on this connection\r\n"
_TOO_MANY_CONNECTIONS: Final = b"421 4.4.5 Error: too many connections; try again later\r\n"
_IDLE: Final = b"421 4.4.2 Error: timeout exceeded\r\n"
_SHUTDOWN: Final = b"421 4.3.2 Error: server shutting down\r\n"
_STORE_FAILED: Final = b"451 4.3.0 Error: could not store the message; try again later\r\n"
_NOT_IMPLEMENTED: Final = b"502 5.5.1 Error: command not implemented\r\n"

# Reply-after-write actions.
_CLOSE: Final = 1
_STARTTLS: Final = 2


class ListenError(ConnectError):
    """The sink could not listen (address in use, not on this host, permission denied)."""

    code = "listen_failed"


class SinkServer:
    """A running sink: `await start()`, then `host`/`port`, `stats`, and `await stop()`.

    Usable as an async context manager. `stop_requested` is set by --max-messages and
    --duration; `run_sink` (and tests) wait on it.
    """

    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        self.stats = SinkStats()
        self.faults = Faults(config.faults)
        self.stop_requested = asyncio.Event()
        self.host = config.host
        self.port = config.port
        self.cert_file: Path | None = config.cert_file
        self.sessions: set[SmtpSession] = set()
        self.ssl_context: ssl.SSLContext | None = None
        self.store: Callable[[bytes, bytes, list[bytes]], None] | None = None
        self._server: asyncio.Server | None = None
        self._temp_dir: Path | None = None
        self._closers: list[Callable[[], None]] = []
        self._timers: list[asyncio.TimerHandle] = []
        self._sweep_timer: asyncio.TimerHandle | None = None
        self.ehlo_plain, self.ehlo_tls = _ehlo_replies(config)
        self.banner = f"220 {config.hostname} ESMTP mailctl sink\r\n".encode()

    @property
    def security(self) -> Security:
        return self.config.security

    def ready_info(self) -> dict[str, Any]:
        """What `--ready-file` holds (the contract `mailctl bench` reads)."""
        return {
            "host": self.host,
            "port": self.port,
            "pid": os.getpid(),
            "security": self.config.security.value,
            "cert_file": str(self.cert_file) if self.cert_file else None,
            "auth": {"username": TEST_USERNAME, "password": TEST_PASSWORD}
            if self.config.auth
            else None,
        }

    async def start(self) -> None:
        """Open the store, make the certificate, and listen; raise ListenError/CantCreateError."""
        config = self.config
        try:
            self._open_store()
            if config.security is not Security.NONE:
                self.ssl_context = self._make_ssl_context()
            loop = asyncio.get_running_loop()
            try:
                self._server = await loop.create_server(
                    lambda: SmtpSession(self),
                    host=config.host,
                    port=config.port,
                    ssl=self.ssl_context if config.security is Security.TLS else None,
                    ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT
                    if config.security is Security.TLS
                    else None,
                    reuse_address=True,
                    backlog=1024,
                )
            except OSError as err:
                raise ListenError(
                    f"cannot listen on {config.host}:{config.port}: {err.strerror or err}",
                    hint="pick another port with --listen HOST:PORT (port 0: any free port)",
                ) from err
        except BaseException:
            self._cleanup()
            raise
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]
        self.stats = SinkStats()
        if config.duration is not None:
            self._timers.append(loop.call_later(config.duration, self.stop_requested.set))
        self._sweep_timer = loop.call_later(self._sweep_interval(), self._sweep)

    async def stop(self) -> SinkStats:
        """Stop listening, flush and close every connection, close the store; return the stats."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.shutdown()
        deadline = asyncio.get_running_loop().time() + 2.0
        while self.sessions and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        for session in list(self.sessions):
            session.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self.stats.stopped is None:
            self.stats.stopped = time.monotonic()
        self._cleanup()
        return self.stats

    async def __aenter__(self) -> SinkServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def message_done(self) -> None:
        """Called after each accepted message: --max-messages stops the sink."""
        limit = self.config.max_messages
        if limit is not None and self.stats.messages >= limit:
            self.stop_requested.set()

    # ------------------------------------------------------------------ internals

    def _make_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        cert, key = self.config.cert_file, self.config.key_file
        if cert is None or key is None:
            from mailctl.sink.certs import write_self_signed

            self._temp_dir = Path(tempfile.mkdtemp(prefix="mailctl-sink-"))
            cert, key = write_self_signed(self._temp_dir)
            self.cert_file = cert
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as err:
            raise ListenError(
                f"cannot load the certificate {cert} / key {key}: {err}",
                hint="give PEM files: --cert CERT.pem --key KEY.pem",
            ) from err
        return context

    def _open_store(self) -> None:
        config = self.config
        if config.store is StoreKind.DISCARD or config.store_path is None:
            return
        from mailctl.mime.compose import dot_unstuff

        if config.store is StoreKind.MAILDIR:
            from mailctl.store.maildir import Maildir

            maildir = Maildir(config.store_path)

            def to_maildir(wire: bytes, sender: bytes, rcpts: list[bytes]) -> None:
                maildir.deliver(_trace(sender, rcpts) + dot_unstuff(wire))

            self.store = to_maildir
        else:
            from mailctl.store.mbox import Mbox

            mbox = Mbox(config.store_path)
            self._closers.append(mbox.close)

            def to_mbox(wire: bytes, sender: bytes, rcpts: list[bytes]) -> None:
                mbox.deliver(
                    _trace(sender, rcpts) + dot_unstuff(wire),
                    sender=sender.decode("utf-8", "replace"),
                )

            self.store = to_mbox

    def _cleanup(self) -> None:
        for close in self._closers:
            with contextlib.suppress(OSError):
                close()
        self._closers.clear()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def _sweep_interval(self) -> float:
        return max(min(self.config.idle_timeout / 4, 30.0), 0.05)

    def _sweep(self) -> None:
        """Close connections idle longer than idle_timeout (one timer for all connections)."""
        loop = asyncio.get_running_loop()
        interval = self._sweep_interval()
        for session in list(self.sessions):
            # A flag set per read is cheaper than reading a clock per read on the hot path.
            if session.active:
                session.active = False
                session.idle_for = 0.0
            else:
                session.idle_for += interval
                if session.idle_for >= self.config.idle_timeout:
                    session.idle_out()
        self._sweep_timer = loop.call_later(self._sweep_interval(), self._sweep)


def _trace(sender: bytes, rcpts: list[bytes]) -> bytes:
    """The trace header block prepended to a stored message.

    RFC 5321 4.4: the final delivery adds Return-Path with the envelope sender. The envelope
    recipients are kept as one X-Mailctl-Rcpt header each, since the headers of a Bcc'd or
    forwarded message do not name them. Both values came through command lines, which
    cannot hold CR or LF, so they cannot inject headers.
    """
    lines = [b"Return-Path: <", sender, b">\r\n"]
    for rcpt in rcpts:
        lines += (b"X-Mailctl-Rcpt: <", rcpt, b">\r\n")
    return b"".join(lines)


def _ehlo_replies(config: SinkConfig) -> tuple[bytes, bytes]:
    """The EHLO reply before TLS and with TLS active (RFC 5321 4.1.1.1, one keyword a line)."""

    def build(tls: bool) -> bytes:
        keywords = [
            "PIPELINING",  # RFC 2920
            f"SIZE {config.max_size}",  # RFC 1870
            "8BITMIME",  # RFC 6152
            "SMTPUTF8",  # RFC 6531
            "ENHANCEDSTATUSCODES",  # RFC 2034
        ]
        if config.security is Security.STARTTLS and not tls:
            keywords.append("STARTTLS")  # RFC 3207
        if config.auth and (config.security is not Security.STARTTLS or tls):
            keywords.append("AUTH PLAIN LOGIN")  # RFC 4954
        lines = [config.hostname, *keywords]
        text = "".join(f"250-{line}\r\n" for line in lines[:-1]) + f"250 {lines[-1]}\r\n"
        return text.encode()

    return build(False), build(True)


class SmtpSession(asyncio.BufferedProtocol):
    """One SMTP connection. All state lives in slots; each read is parsed in one pass.

    A BufferedProtocol: the selector loop's plain-Protocol path allocates a 256 KiB bytes
    object per recv(), which glibc serves with mmap/mremap/munmap, three syscalls per read
    (measured: sys time tripled); recv_into one per-connection buffer avoids them.
    """

    __slots__ = (
        "_action",
        "_auth_step",
        "_authed",
        "_body_len",
        "_buf",
        "_faulty",
        "_greeted",
        "_hard_errors",
        "_in_data",
        "_latency",
        "_login_user",
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
        "_tls",
        "_transport",
        "_upgrading",
        "_write_paused",
        "active",
        "idle_for",
    )

    def __init__(self, server: SinkServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buf = b""
        self._out: list[bytes] = []
        self._action = 0
        self._stopped = False  # no more input is processed (closing or upgrading)
        self._greeted = False
        self._tls = server.config.security is Security.TLS
        self._authed = False
        self._auth_step = 0
        self._login_user = b""
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
        self._hard_errors = 0
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
            self._transport.write(_TOO_MANY_CONNECTIONS)
            self._transport.close()
            self._stopped = True
            return
        stats.connections += 1
        stats.active += 1
        server.sessions.add(self)
        self._send(server.banner, Phase.BANNER)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        server = self._server
        if self in server.sessions:
            server.sessions.discard(self)
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
            if not rest:  # None (the body goes on) or nothing after the final dot
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
            if len(line) > COMMAND_LINE_LIMIT - 2 and self._too_long(line):
                break
            # The dispatch is inlined: a call costs ~0.4 us here, a third of a command.
            if 10 in line or 13 in line:  # LF, CR; an int test is 5x faster than b"\n" in
                self._error(_BARE_EOL_COMMAND)  # RFC 5321 2.3.8
            elif self._auth_step:
                self._auth_continue(line)
            else:
                handler = commands.get(line[:4].upper())
                if handler is None or (
                    len(line) > 4 and line[4] != 32 and line[:8].upper() != b"STARTTLS"
                ):
                    self._error(_UNKNOWN)
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
                buf, start, find = rest, 0, rest.find
        if self._stopped:
            self._buf = b""
        else:
            remainder = buf[start:] if start else buf
            if len(remainder) >= COMMAND_LINE_LIMIT and self._too_long(remainder):
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
        if action == _CLOSE:
            transport.close()
        elif action == _STARTTLS:
            self._task = asyncio.get_running_loop().create_task(self._upgrade(transport))

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

    def _close_after_reply(self) -> None:
        self._stopped = True
        self._action = _CLOSE

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
        transport.write(pending + _SHUTDOWN)
        transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def idle_out(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        self._send(_IDLE)
        self._close_after_reply()
        self._flush()

    def _error(self, reply: bytes) -> None:
        """A protocol error by the client; too many of them end the session (421)."""
        self._send(reply)
        self._hard_errors += 1
        if self._hard_errors >= HARD_ERROR_LIMIT:
            self._send(_TOO_MANY_ERRORS)
            self._close_after_reply()

    def _too_long(self, line: bytes) -> bool:
        """Answer 500 5.5.6 and close when `line` exceeds its limit; return True if it did."""
        limit = COMMAND_LINE_LIMIT
        if self._auth_step or line[:5].upper() == b"AUTH ":
            limit = AUTH_LINE_LIMIT
        if len(line) + 2 <= limit:
            return False
        self._send(_TOO_LONG)
        self._close_after_reply()
        return True

    # ------------------------------------------------------------------ commands

    def _reset(self) -> None:
        self._sender = None
        self._rcpts = []

    def _helo(self, line: bytes) -> None:
        if not line[5:].strip():
            self._error(b"501 5.5.4 Syntax: HELO hostname\r\n")
            return
        self._greeted = True
        self._reset()
        self._send(f"250 {self._server.config.hostname}\r\n".encode(), Phase.EHLO)

    def _ehlo(self, line: bytes) -> None:
        if not line[5:].strip():
            self._error(b"501 5.5.4 Syntax: EHLO hostname\r\n")
            return
        self._greeted = True
        self._reset()
        server = self._server
        self._send(server.ehlo_tls if self._tls else server.ehlo_plain, Phase.EHLO)

    def _mail(self, line: bytes) -> None:  # noqa: PLR0911 - one guard per refusal
        if self._sender is not None:
            self._error(_NESTED_MAIL)
            return
        if not self._greeted:
            self._error(_NEED_HELO)
            return
        server = self._server
        config = server.config
        if config.auth and not self._authed:
            self._send(_NEED_AUTH)
            return
        if line[4:10].upper() != b" FROM:":
            self._error(b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
            return
        address, params = _path(line[10:])
        if address is None:
            self._error(b"501 5.1.7 Bad sender address syntax\r\n")
            return
        smtputf8 = self._mail_params(params) if params else False
        if smtputf8 is None:
            return
        if not smtputf8 and not address.isascii():
            self._send(_NEED_SMTPUTF8)
            return
        if self._faulty:
            close_after = config.faults.close_after
            if close_after is not None and self._messages >= close_after:
                self._send(_TOO_MANY_MESSAGES, Phase.MAIL)
                self._close_after_reply()
                return
            if self._faulted(Phase.MAIL):
                return
        self._sender = address
        self._rcpts = []
        self._smtputf8 = smtputf8
        if self._latency:
            self._send(_MAIL_OK, Phase.MAIL)
        else:
            self._out.append(_MAIL_OK)

    def _mail_params(self, params: bytes) -> bool | None:
        """Check MAIL parameters; return whether SMTPUTF8 was given, None after refusing."""
        config = self._server.config
        smtputf8 = False
        for param in params.split():
            key, _, value = param.partition(b"=")
            key = key.upper()
            if key == b"SIZE":  # RFC 1870 6
                if not value.isdigit():
                    self._error(b"501 5.5.4 Syntax: SIZE=number\r\n")
                    return None
                if int(value) > config.max_size:
                    self._send(_TOO_BIG)
                    return None
            elif key == b"BODY":  # RFC 6152
                if value.upper() not in (b"7BIT", b"8BITMIME"):
                    self._error(b"501 5.5.4 Syntax: BODY=7BIT|8BITMIME\r\n")
                    return None
            elif key == b"SMTPUTF8" and not value:  # RFC 6531 3.4
                smtputf8 = True
            elif key != b"AUTH" or not config.auth:  # RFC 4954 5: AUTH= accepted, ignored
                self._error(b"555 5.5.4 Error: unsupported MAIL parameter\r\n")
                return None
        return smtputf8

    def _rcpt(self, line: bytes) -> None:  # noqa: PLR0911 - one guard per refusal
        if self._sender is None:
            self._error(_NEED_MAIL)
            return
        if line[4:8].upper() != b" TO:":
            self._error(b"501 5.5.4 Syntax: RCPT TO:<address>\r\n")
            return
        address, params = _path(line[8:])
        if not address:  # None (syntax) or "<>", which is no recipient
            self._error(b"501 5.1.3 Bad recipient address syntax\r\n")
            return
        if params.strip():
            self._error(b"555 5.5.4 Error: unsupported RCPT parameter\r\n")
            return
        if not self._smtputf8 and not address.isascii():
            self._send(_NEED_SMTPUTF8)
            return
        if len(self._rcpts) >= MAX_RECIPIENTS:
            self._send(_TOO_MANY_RCPTS)
            return
        if self._faulty and self._faulted(Phase.RCPT):
            return
        self._rcpts.append(address)
        if self._latency:
            self._send(_RCPT_OK, Phase.RCPT)
        else:
            self._out.append(_RCPT_OK)

    def _data(self, line: bytes) -> None:
        if len(line) > 4:
            self._error(b"501 5.5.4 Syntax: DATA\r\n")
            return
        if self._sender is None:
            self._error(_NEED_MAIL)
            return
        if not self._rcpts:
            # RFC 2920 3.1: with pipelining, DATA after refused recipients gets 554.
            self._send(_NO_RECIPIENTS)
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
        self._send(_GO_AHEAD, Phase.DATA)

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

    def _rset(self, line: bytes) -> None:
        if len(line) > 4:
            self._error(b"501 5.5.4 Syntax: RSET\r\n")
            return
        self._reset()
        self._send(_OK)

    def _noop(self, line: bytes) -> None:
        self._send(_OK)  # RFC 5321 4.1.1.9: a parameter is allowed and ignored

    def _quit(self, line: bytes) -> None:
        self._send(_BYE)
        self._close_after_reply()

    def _vrfy(self, line: bytes) -> None:
        self._send(b"252 2.5.2 Cannot VRFY; send some mail and see\r\n")

    def _help(self, line: bytes) -> None:
        self._send(b"214 2.0.0 See RFC 5321; mailctl sink\r\n")

    def _not_implemented(self, line: bytes) -> None:
        self._error(_NOT_IMPLEMENTED)

    def _starttls(self, line: bytes) -> None:
        if line.upper() != b"STARTTLS":
            self._error(_UNKNOWN if line[:8].upper() != b"STARTTLS" else b"501 5.5.4 Syntax\r\n")
            return
        if self._server.config.security is not Security.STARTTLS:
            self._error(_NOT_IMPLEMENTED)
            return
        if self._tls:
            self._error(b"503 5.5.1 Error: TLS already active\r\n")
            return
        self._send(b"220 2.0.0 Ready to start TLS\r\n")
        # RFC 3207 4.2 / CVE-2011-0411: whatever was pipelined after STARTTLS is dropped.
        self._stopped = True
        self._upgrading = True
        self._action = _STARTTLS
        if self._transport is not None:
            self._transport.pause_reading()

    async def _upgrade(self, transport: asyncio.Transport) -> None:
        server = self._server
        assert server.ssl_context is not None
        loop = asyncio.get_running_loop()
        # RFC 3207 4.2: forget everything learned before TLS, including EHLO.
        self._tls = True
        self._greeted = False
        self._authed = False
        self._reset()
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

    def _auth(self, line: bytes) -> None:
        config = self._server.config
        if not config.auth:
            self._error(_NOT_IMPLEMENTED)
            return
        if config.security is Security.STARTTLS and not self._tls:
            self._send(_NEED_TLS_AUTH)
            return
        if self._authed or self._sender is not None:
            self._error(b"503 5.5.1 Error: already authenticated or in a transaction\r\n")
            return
        words = line[5:].split()
        if not words or len(words) > 2:
            self._error(b"501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n")
            return
        mechanism = words[0].upper()
        initial = words[1] if len(words) == 2 else None
        if mechanism == b"PLAIN":
            if initial is None:
                self._auth_step = 1
                self._send(b"334 \r\n")
            else:
                self._auth_plain(initial)
        elif mechanism == b"LOGIN":
            if initial is None:
                self._auth_step = 2
                self._send(b"334 VXNlcm5hbWU6\r\n")  # "Username:"
            else:
                self._auth_login_user(initial)
        else:
            self._send(b"504 5.5.4 Error: unsupported authentication mechanism\r\n")

    def _auth_continue(self, line: bytes) -> None:
        step, self._auth_step = self._auth_step, 0
        if line == b"*":  # RFC 4954 4: the client cancels
            self._send(b"501 5.7.0 Authentication cancelled\r\n")
        elif step == 1:
            self._auth_plain(line)
        elif step == 2:
            self._auth_login_user(line)
        else:
            self._auth_check(self._login_user, _b64(line))

    def _auth_plain(self, response: bytes) -> None:
        # RFC 4616: [authzid] NUL authcid NUL passwd; "=" is an empty initial response.
        decoded = b"" if response == b"=" else _b64(response)
        if decoded is None:
            self._send(b"501 5.5.2 Error: cannot decode the response\r\n")
            return
        fields = decoded.split(b"\0")
        if len(fields) != 3:
            self._auth_check(b"", b"")
            return
        self._auth_check(fields[1], fields[2])

    def _auth_login_user(self, response: bytes) -> None:
        user = _b64(response)
        if user is None:
            self._send(b"501 5.5.2 Error: cannot decode the response\r\n")
            return
        self._login_user = user
        self._auth_step = 3
        self._send(b"334 UGFzc3dvcmQ6\r\n")  # "Password:"

    def _auth_check(self, user: bytes, password: bytes | None) -> None:
        if password is None:
            self._send(b"501 5.5.2 Error: cannot decode the response\r\n")
            return
        ok = hmac.compare_digest(user, TEST_USERNAME.encode()) & hmac.compare_digest(
            password, TEST_PASSWORD.encode()
        )
        if ok:
            self._authed = True
            self._send(b"235 2.7.0 Authentication successful\r\n")
        else:
            self._send(b"535 5.7.8 Error: authentication credentials invalid\r\n")

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
            index = data.find(_TERMINATOR)
            if index >= 0:
                size = index + 2
                fits = size <= self._server.config.max_size
                self._end_of_data(data[:size] if fits else None, size)
                return data[index + 5 :]
        tail = self._tail
        joined = tail + data[:4]
        index = joined.find(_TERMINATOR)
        if index >= 0:
            cut = index + 2 - len(tail)
            after = index + 5 - len(tail)
        else:
            index = data.find(_TERMINATOR)
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
            self._send(_TOO_BIG, Phase.EOD)
            return
        # RFC 5321 2.3.8: CRLF only. Equal counts mean every LF and every CR is in a CRLF.
        lf = content.count(b"\n")
        if lf != content.count(b"\r\n") or content.count(b"\r") != lf:
            self._send(_BARE_EOL_DATA, Phase.EOD)
            return
        store = server.store
        if store is not None:
            try:
                store(content, sender or b"", rcpts)
            except (MailctlError, OSError):
                # Never acknowledge a message that is not on disk.
                self._send(_STORE_FAILED, Phase.EOD)
                return
        stats = server.stats
        stats.messages += 1
        stats.bytes += size
        self._messages += 1
        if self._latency:
            self._send(_QUEUED, Phase.EOD)
        else:
            self._out.append(_QUEUED)
        if server.config.max_messages is not None:
            server.message_done()


def _path(rest: bytes) -> tuple[bytes | None, bytes]:
    """Split "<address> params" (RFC 5321 4.1.2); (None, b"") when there are no brackets."""
    rest = rest.lstrip(b" ")
    if rest[:1] != b"<":
        return None, b""
    end = rest.find(b">")
    if end < 0:
        return None, b""
    return rest[1:end], rest[end + 1 :]


def _b64(data: bytes) -> bytes | None:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


_COMMANDS: Final[dict[bytes, Callable[[SmtpSession, bytes], None]]] = {
    b"HELO": SmtpSession._helo,
    b"EHLO": SmtpSession._ehlo,
    b"MAIL": SmtpSession._mail,
    b"RCPT": SmtpSession._rcpt,
    b"DATA": SmtpSession._data,
    b"RSET": SmtpSession._rset,
    b"NOOP": SmtpSession._noop,
    b"QUIT": SmtpSession._quit,
    b"VRFY": SmtpSession._vrfy,
    b"HELP": SmtpSession._help,
    b"STAR": SmtpSession._starttls,
    b"AUTH": SmtpSession._auth,
    b"EXPN": SmtpSession._not_implemented,
    b"BDAT": SmtpSession._not_implemented,
    b"ETRN": SmtpSession._not_implemented,
    b"TURN": SmtpSession._not_implemented,
}
