"""The read side of one IMAP/POP3 connection: every byte in, under `ReadLimits` and deadlines.

imaplib and poplib read from a socket file with no limit on counts, literal sizes or total
time (see `protocols.limits`). Their bounded subclasses (`imap.wire`, `pop3.wire`) read
through a `Wire` instead, so the login check and every later operation share one set of
rules:

- a response's deadline covers the whole response, not each read: before every recv the
  socket timeout is set to what is left, so a server trickling a byte a second is cut off
  at the deadline. The greeting (with the TCP connect and an implicit TLS handshake) has
  `connect_timeout`; each command's response `command_timeout` (`data_timeout` for a
  message); `ReadLimits.session_seconds` caps the whole session.
- A TLS handshake inherits the socket timeout, which CPython applies to the whole
  handshake; for STARTTLS that is what is left of the STARTTLS command's deadline.
- Sizes and counts are checked before the bytes are kept (a literal's announced size
  before reading it).

A limit that trips shuts the socket down at once and is raised as a `mailctl.errors`
error naming the server and the limit; the wire stays failed.
"""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
import time
from collections.abc import Iterator

from mailctl.errors import (
    ConnectError,
    MailctlError,
    ProtocolError,
    ResponseLimitError,
    TimeoutFailure,
)
from mailctl.models import Protocol, Security, Timeouts
from mailctl.protocols.checks import PhaseClock
from mailctl.protocols.limits import ReadLimits, octets
from mailctl.protocols.resolve import connect_within
from mailctl.protocols.tls import security_fixes
from mailctl.protocols.transcript import Transcript
from mailctl.text import excerpt

# Octets asked of the kernel per recv.
_CHUNK = 64 * 1024
# Longest single wait in a recv: the deadline is checked between waits, so a socket timeout
# of this much can stay set across reads (each settimeout is a syscall; a bulk fetch does
# thousands of reads) and is only lowered in the last second before the deadline.
_WAIT = 1.0
_CLOSED = "; mailctl closed the connection"


class Wire:
    """Bounded, deadline-aware reads for one connection (and its socket after STARTTLS)."""

    def __init__(
        self,
        *,
        protocol: Protocol,
        where: str,
        limits: ReadLimits,
        timeouts: Timeouts,
        clock: PhaseClock,
        security: Security | None = None,
    ) -> None:
        self._name = protocol.value.upper()
        self._protocol = protocol
        self._security = security  # what was tried: a silent greeting may mean implicit TLS
        # RFC 1939 3: one POP3 reply per command. IMAP servers may send untagged data at
        # any time (RFC 3501 7), and tags pair the rest, so only POP3 checks this.
        self._one_reply_each = protocol is Protocol.POP3
        self._where = where
        self._limits = limits
        self._timeouts = timeouts
        self._clock = clock
        now = time.monotonic()
        seconds = limits.session_seconds
        self._session_end = now + seconds if seconds is not None else math.inf
        self._command: str | None = None  # None: the greeting
        self._end = now + timeouts.connect
        self._message = False
        self._next_message: str | None = None
        self._lines = 0
        self._octets = 0
        self._message_octets = 0
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._failure: MailctlError | None = None
        # --trace: every line in and out, recorded by the protocol's wire subclass for what
        # it sends (it knows what to redact) and here for what arrives.
        self.transcript: Transcript | None = None
        self._wait: float | None = None  # the socket timeout `_fill` last set

    @property
    def failed(self) -> bool:
        """True once a limit, a deadline or an injection check failed the connection."""
        return self._failure is not None

    def record_sent(self, text: str) -> None:
        """Note a line mailctl sent (already redacted by the caller) in the transcript."""
        if self.transcript is not None:
            self.transcript.sent(text, tls=isinstance(self._sock, ssl.SSLSocket))

    def _record_received(self, line: bytes) -> None:
        if self.transcript is not None:
            text = line.rstrip(b"\r\n").decode("utf-8", "replace")
            self.transcript.received(text, tls=isinstance(self._sock, ssl.SSLSocket))

    @property
    def buffered(self) -> bool:
        """True when bytes the server sent wait in the buffer (IDLE checks before polling)."""
        return bool(self._buffer)

    def widen(self, limits: ReadLimits) -> None:
        """Use `limits` from the next command on (a listing sized from STAT/EXISTS)."""
        self._limits = limits

    # -- connecting and commands ---------------------------------------------------------

    def open_socket(
        self,
        host: str,
        port: int,
        *,
        context: ssl.SSLContext | None,
        tls_name: str | None = None,
    ) -> socket.socket:
        """Connect (and for implicit TLS, handshake) within the greeting's deadline.

        `tls_name`: the name the certificate is checked against, when not `host`.

        Library exceptions (OSError, ssl.SSLError, TimeoutError) pass to the caller's map.
        """
        sock = connect_within(host, port, self._left())
        try:
            if context is not None:
                self._clock.start("tls")
                sock.settimeout(self._left())
                sock = context.wrap_socket(sock, server_hostname=tls_name or host)
                self._clock.start("connect")  # the greeting belongs to connecting
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._wait = None
        return sock

    def sending(self, sock: socket.socket) -> None:
        """More of the current command is about to be sent (an IMAP literal or SASL answer
        after a continuation): the send gets what is left of the deadline."""
        self._check()
        sock.settimeout(self._left())
        self._wait = None

    def begin(self, sock: socket.socket, command: str) -> None:
        """A command is about to be sent on `sock`: fresh budgets and a fresh deadline.

        `command` is the command's name only (never its arguments: PASS carries a password).
        Raises ProtocolError, before anything is sent, when a POP3 reply nobody asked for
        is waiting: the command would read it as its own answer (a second +OK to USER
        would pass for PASS's, whatever the password).
        """
        self._check()
        self._bind(sock)
        if self._one_reply_each and self._buffer:
            text = excerpt(bytes(self._buffer[:200]).split(b"\n", 1)[0])
            raise self._fail(
                ProtocolError(
                    f"{self._name} server {self._where} sent a reply nobody asked for before "
                    f"{command} ({text}){_CLOSED}",
                    hint="the server (or something on the path) is out of step with its replies",
                )
            )
        self._command = command
        self._message = command == self._next_message
        if self._message:
            self._next_message = None
        self._lines = self._octets = self._message_octets = 0
        seconds = self._timeouts.data if self._message else self._timeouts.command
        self._end = time.monotonic() + seconds
        sock.settimeout(self._left())  # bounds the send as well
        self._wait = None

    @contextlib.contextmanager
    def message_command(self, command: str) -> Iterator[None]:
        """The next `command` sent fetches a message: `max_message` and `data_timeout` apply.

        Named, so that a command the library slips in first (imapclient may ask
        CAPABILITY before FETCH) keeps the ordinary limits.
        """
        self._next_message = command
        try:
            yield
        finally:
            self._next_message = None

    # -- reading ----------------------------------------------------------------------------

    def readline(self, sock: socket.socket, *, message: bool = False) -> bytes:
        """One line, LF included; at EOF whatever is left (b"" when nothing).

        `message`: the line is part of a message body (POP3 RETR) during a message
        command; it counts against `max_message`, not the response's line and size caps.

        Raises ResponseLimitError, TimeoutFailure, ConnectError (greeting), ProtocolError.
        """
        self._check()
        self._bind(sock)
        message = message and self._message
        limit = self._limits.max_message if message else self._limits.max_line
        scanned = 0
        while (end := self._buffer.find(b"\n", scanned)) < 0:
            if len(self._buffer) > limit:
                raise self._over("max_line", limit, f"sent a line longer than {octets(limit)}")
            scanned = len(self._buffer)
            if not self._fill():
                line = bytes(self._buffer)
                self._buffer.clear()
                return line
        size = end + 1
        if size > limit:
            raise self._over("max_line", limit, f"sent a line longer than {octets(limit)}")
        if message:
            self._charge_message(size)
        else:
            self._charge(size, lines=1)
        line = bytes(self._buffer[:size])
        del self._buffer[:size]  # bytearray drops a prefix in O(1)
        if not message:  # a message's lines are summarised by the caller, not listed
            self._record_received(line)
        return line

    def read(self, sock: socket.socket, size: int, *, body: bool = True) -> bytes:
        """An IMAP literal of `size` octets, refused before reading when it is too big.

        During a message command a literal is the message (`max_message`) unless the
        caller knows it is another item (`body=False`: `max_literal`, as outside one).
        Raises ResponseLimitError, TimeoutFailure, ProtocolError.
        """
        self._check()
        self._bind(sock)
        if self._message and body:
            if size > self._limits.max_message:
                raise self._over(
                    "max_message", self._limits.max_message, f"announced a {size}-octet message"
                )
            self._charge_message(size)
        else:
            if size > self._limits.max_literal:
                raise self._over(
                    "max_literal", self._limits.max_literal, f"announced a {size}-octet literal"
                )
            self._charge(size, lines=0)
        buffer = self._buffer
        while len(buffer) < size:
            if not self._fill():
                break  # EOF: the caller sees a short literal and then the EOF
        with memoryview(buffer) as view:
            data = view[:size].tobytes()  # one copy, whatever the size
        del buffer[:size]
        if self.transcript is not None:
            self.transcript.info(f"<literal: {len(data)} octets>")
        return data

    # -- bulk answers (protocols/imap/bulk.py, protocols/pop3/bulk.py) ----------------------

    def next_message(self) -> None:
        """A bulk answer delivered one message: the next gets fresh budgets and data_timeout.

        One UID FETCH (or a window of pipelined RETRs) answers with many messages; each
        is bounded like a single message command (`max_message`, `max_response_lines`,
        `max_response`, `data_timeout`). The caller counts the messages against what it
        asked for, so the budgets cannot be renewed without end.
        """
        self._check()
        if not self._message:
            raise RuntimeError("next_message outside a message command")
        self._lines = self._octets = self._message_octets = 0
        self._end = time.monotonic() + self._timeouts.data

    def read_dot_block(self, sock: socket.socket) -> tuple[bytes, list[int]]:
        """The lines of a POP3 multi-line answer up to and including the lone "." line
        (RFC 1939 3), still dot-stuffed (the block starts at a line start), and where the
        doubled leading dots are (the index of one dot of each pair): found by the same
        scan that looks for the end, so unstuffing need not scan again.

        Counted against `max_message`. At EOF before the end, what arrived (the caller
        sees no terminator). Raises ResponseLimitError, TimeoutFailure, ProtocolError.
        """
        self._check()
        self._bind(sock)
        limit = self._limits.max_message
        buffer = self._buffer
        dots: list[int] = []
        scanned = 0
        while (end := dot_block_end(buffer, scanned, dots)) < 0:
            # + 3: the ".\r\n" line is not part of the message.
            if len(buffer) > limit + 3:
                raise self._over(
                    "max_message", limit, f"sent a message larger than {octets(limit)}"
                )
            scanned = max(0, len(buffer) - 4)  # a terminator may straddle two reads
            if not self._fill():
                block = bytes(buffer)
                buffer.clear()
                return block, dots
        # The message as sent (dot-stuffed), without its terminator line.
        self._charge_message(end - (3 if buffer[end - 2 : end] == b"\r\n" else 2))
        with memoryview(buffer) as view:
            block = view[:end].tobytes()
        del buffer[:end]
        if self.transcript is not None:
            self.transcript.info(f"<message: {len(block)} octets>")
        return block, dots

    def abandon(self, what: str) -> None:
        """Stop reading mid-answer (the caller gave up): the rest of the answer is still on
        its way, so the connection is out of step; fail the wire and hang up."""
        if self._failure is None:
            self._fail(
                ProtocolError(
                    f"{self._name} session with {self._where} stopped reading {what} "
                    f"mid-answer{_CLOSED}"
                )
            )

    # -- internals ----------------------------------------------------------------------------

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _bind(self, sock: socket.socket) -> None:
        """Follow the library to a new socket (after STARTTLS); nothing may be left over.

        Bytes buffered before the switch were sent in plaintext after the STARTTLS answer:
        taking them as TLS-protected answers is the response injection of CVE-2011-0411
        (RFC 3207 5, RFC 2595 3.1: the client discards such data; mailctl refuses).
        """
        if sock is self._sock:
            return
        leftover = bool(self._buffer) and self._sock is not None
        self._sock = sock
        self._wait = None
        if leftover:
            raise self._fail(
                ProtocolError(
                    f"{self._name} server {self._where} sent data after its STARTTLS answer, "
                    "before the TLS handshake (a response injection attempt?)" + _CLOSED,
                    hint="check for a man in the middle between you and the server",
                )
            )

    def _fill(self) -> bool:
        """Receive once into the buffer within the deadline; False at EOF."""
        sock = self._sock
        if sock is None:
            raise ProtocolError(f"{self._name} session with {self._where} is not connected")
        while True:
            wait = min(self._left(), _WAIT)  # raises once the deadline has passed
            if wait != self._wait or wait < _WAIT:
                sock.settimeout(wait)
                self._wait = wait
            try:
                chunk = sock.recv(_CHUNK)
            except TimeoutError:
                continue  # the loop checks the deadline
            if not chunk:
                return False
            self._buffer += chunk
            return True

    def _left(self) -> float:
        """Seconds left before the nearest deadline; raises when none are left."""
        left = min(self._end, self._session_end) - time.monotonic()
        if left <= 0:
            raise self._late()
        return left

    def _charge(self, size: int, *, lines: int) -> None:
        """Count protocol lines and octets of the response (a message's body aside)."""
        limits = self._limits
        self._lines += lines
        if self._lines > limits.max_response_lines:
            raise self._over(
                "max_response_lines",
                limits.max_response_lines,
                f"sent more than {limits.max_response_lines} lines",
                unit="lines",
            )
        self._octets += size
        if self._octets > limits.max_response:
            raise self._over(
                "max_response", limits.max_response, f"sent more than {octets(limits.max_response)}"
            )

    def _charge_message(self, size: int) -> None:
        """Count a message body's octets (literals or POP3 lines) against `max_message`."""
        limit = self._limits.max_message
        self._message_octets += size
        if self._message_octets > limit:
            raise self._over("max_message", limit, f"sent a message larger than {octets(limit)}")

    def _answering(self) -> str:
        return "its greeting" if self._command is None else f"its answer to {self._command}"

    def _over(self, name: str, limit: int, what: str, *, unit: str | None = None) -> MailctlError:
        shown = f"{limit} {unit}" if unit else octets(limit)
        return self._fail(
            ResponseLimitError(
                f"{self._name} server {self._where} {what} in {self._answering()} "
                f"(limit {name} = {shown}){_CLOSED}",
                hint="the server is broken or hostile; if it is yours, check its logs",
            )
        )

    def _late(self) -> MailctlError:
        error: MailctlError
        if self._session_end <= self._end:
            seconds = self._limits.session_seconds or 0.0
            error = TimeoutFailure(
                f"{self._name} server {self._where} did not finish the session within "
                f"{seconds:g} s (limit session_seconds){_CLOSED}",
                hint="the server is slow, stuck or trickling; try again later",
            )
        elif self._command is None:
            fixes = []
            if self._security is not None and self._security is not Security.TLS:
                fixes = security_fixes(self._protocol, tried=self._security, seen="silence")
            error = ConnectError(
                f"{self._name} server {self._where} did not connect and greet within "
                f"{self._timeouts.connect:g} s (connect_timeout){_CLOSED}",
                hint="check the host, port and firewall; an implicit-TLS port sends nothing "
                "until the client starts TLS",
                fixes=fixes,
            )
        else:
            name, seconds = (
                ("data_timeout", self._timeouts.data)
                if self._message
                else ("command_timeout", self._timeouts.command)
            )
            error = TimeoutFailure(
                f"{self._name} server {self._where} did not complete {self._answering()} "
                f"within {seconds:g} s during {self._clock.phase} ({name}){_CLOSED}",
                hint=f"the server is slow, stuck or trickling; try again later or raise {name}",
            )
        return self._fail(error)

    def _fail(self, error: MailctlError) -> MailctlError:
        """Remember the failure and hang up now: nothing more is read from this server."""
        self._failure = error
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        return error


def dot_block_end(buffer: bytearray, start: int, dots: list[int]) -> int:
    """Where the block in `buffer` ends after its lone "." line (CRLF or bare LF), or -1;
    appends to `dots` the index of the first dot of each line starting with two (once).

    The block starts at a line start, so "." at 0 is a terminator too (an empty answer).
    `start`: where the search may begin (earlier bytes held no terminator).
    """
    if buffer[:3] == b".\r\n":
        return 3
    if buffer[:2] == b".\n":
        return 2
    if buffer[:2] == b".." and not dots:
        dots.append(0)
    position = start
    while (position := buffer.find(b"\n.", position)) >= 0:
        after = position + 2
        following = buffer[after : after + 2]
        if following == b"\r\n":
            return after + 2
        if following[:1] == b"\n":
            return after + 1
        if following[:1] == b"." and (not dots or dots[-1] <= position):
            dots.append(position + 1)  # RFC 1939 3: the server doubled this line's dot
        position = after
    return -1
