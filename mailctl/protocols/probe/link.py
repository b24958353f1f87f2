"""`ProbeLink`: one probe connection, every byte in bounded by size, count and deadline.

A probe talks to servers nobody vouched for: a 10 MB banner, an endless run of `250-`
lines or a byte a minute must end in a one-line error, not a hung or bloated run. Each
reply has its own deadline (`reply_seconds`), cut short by the host's overall deadline;
a line longer than `line_octets` or a reply of more than `reply_lines` lines is a
ResponseLimitError. The socket is closed the moment a limit trips.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from dataclasses import dataclass

from mailctl.errors import (
    ConnectError,
    ConnectionLostError,
    HostNotFoundError,
    MailctlError,
    ResponseLimitError,
    TimeoutFailure,
)
from mailctl.protocols.checks import connect_reason
from mailctl.protocols.resolve import ResolverTimeout, connect_within, resolver_timeout_error

_CHUNK = 16 * 1024


@dataclass(frozen=True)
class LinkLimits:
    """Bounds on what one probe connection reads."""

    # RFC 5321 4.5.3.1.5 caps an SMTP reply line at 512 octets; IMAP CAPABILITY lines run
    # longer. 4 KB is far above any honest server and far below a flood.
    line_octets: int = 4096
    reply_lines: int = 200
    reply_seconds: float = 10.0
    connect_seconds: float = 10.0


class ProbeLink:
    """A blocking socket (plain, then maybe TLS) read line by line under `LinkLimits`."""

    def __init__(self, sock: socket.socket, *, where: str, limits: LinkLimits, deadline: float):
        self.sock: socket.socket = sock
        self.where = where
        self.limits = limits
        self.deadline = deadline  # time.monotonic() value: the host's overall deadline
        self._buffer = bytearray()
        self._reply_end = deadline
        self.failed = False

    @classmethod
    def connect(
        cls, host: str, port: int, *, where: str, limits: LinkLimits, deadline: float
    ) -> ProbeLink:
        """Open a TCP connection within the connect limit and the host deadline.

        Raises HostNotFoundError, ConnectError, TimeoutFailure.
        """
        seconds = max(0.001, min(limits.connect_seconds, deadline - time.monotonic()))
        try:
            sock = connect_within(host, port, seconds)
        except ResolverTimeout as err:
            raise resolver_timeout_error(err, where) from err
        except socket.gaierror as err:
            raise HostNotFoundError(
                f"cannot connect to {where}: host not found", hint="check the host name"
            ) from err
        except OSError as err:
            raise ConnectError(
                f"cannot connect to {where}: {connect_reason(err)}",
                hint="check the host, the port and that the server is running",
            ) from err
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, where=where, limits=limits, deadline=deadline)

    def begin_reply(self) -> None:
        """Start the clock of the next reply: `reply_seconds`, or less at the host deadline."""
        self._reply_end = min(time.monotonic() + self.limits.reply_seconds, self.deadline)

    def read_line(self) -> bytes:
        """One line without its line end. Raises TimeoutFailure, ResponseLimitError,
        ConnectionLostError."""
        limit = self.limits.line_octets
        while True:
            end = self._buffer.find(b"\n", 0, limit + 2)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line.rstrip(b"\r")
            if len(self._buffer) > limit:
                raise self._fail(
                    ResponseLimitError(
                        f"{self.where} sent a line longer than {limit} octets; "
                        "mailctl closed the connection",
                        hint="the server is broken or hostile",
                    )
                )
            self._buffer += self._recv()

    def read_lines(self, *, last: object) -> list[bytes]:
        """Lines until `last(line)` says the reply ended (at most `reply_lines`)."""
        self.begin_reply()
        lines: list[bytes] = []
        while True:
            line = self.read_line()
            lines.append(line)
            if callable(last) and last(line):
                return lines
            if len(lines) >= self.limits.reply_lines:
                raise self._fail(
                    ResponseLimitError(
                        f"{self.where} sent a reply of more than {self.limits.reply_lines} "
                        "lines; mailctl closed the connection",
                        hint="the server is broken or hostile",
                    )
                )

    def _recv(self) -> bytes:
        left = self._reply_end - time.monotonic()
        if left <= 0:
            raise self._timeout()
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(_CHUNK)
        except TimeoutError as err:
            raise self._timeout() from err
        except (OSError, ssl.SSLError) as err:
            raise self._fail(
                ConnectionLostError(f"{self.where} closed the connection: {type(err).__name__}")
            ) from err
        if not data:
            raise self._fail(ConnectionLostError(f"{self.where} closed the connection"))
        return data

    def _timeout(self) -> MailctlError:
        at_deadline = self._reply_end >= self.deadline - 0.001
        why = "the per-host deadline" if at_deadline else f"{self.limits.reply_seconds:g} s"
        return self._fail(
            TimeoutFailure(
                f"{self.where} did not finish its answer within {why}",
                hint="the server is slow, stuck or a tarpit; raise --timeout to wait longer",
            )
        )

    def _fail(self, error: MailctlError) -> MailctlError:
        self.failed = True
        self.close()
        return error

    def send(self, data: bytes) -> None:
        """Write one command line. Raises ConnectionLostError."""
        try:
            self.sock.settimeout(max(0.001, self.deadline - time.monotonic()))
            self.sock.sendall(data)
        except OSError as err:
            raise self._fail(
                ConnectionLostError(f"{self.where} closed the connection: {type(err).__name__}")
            ) from err

    def unread(self, grace: float) -> bytes:
        """Bytes the server sent that no reply asked for: what is buffered, plus what arrives
        within `grace` seconds (at most one line's worth). Consumes them."""
        extra = bytes(self._buffer)
        self._buffer.clear()
        with contextlib.suppress(OSError, ValueError):
            ready, _, _ = select.select([self.sock], [], [], grace)
            if ready:
                self.sock.settimeout(0.001)
                with contextlib.suppress(TimeoutError, BlockingIOError):
                    extra += self.sock.recv(self.limits.line_octets)
        return extra

    def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> ssl.SSLSocket:
        """Run the TLS handshake on this connection, within what is left of the deadline.

        Raises ssl.SSLError (the caller records the verdict), TimeoutFailure,
        ConnectionLostError.
        """
        left = min(self.limits.reply_seconds, self.deadline - time.monotonic())
        if left <= 0:
            raise self._timeout()
        self.sock.settimeout(left)
        try:
            wrapped = context.wrap_socket(self.sock, server_hostname=server_hostname)
        except ssl.SSLError:
            self.failed = True
            self.close()
            raise
        except TimeoutError as err:
            raise self._fail(
                TimeoutFailure(
                    f"the TLS handshake with {self.where} did not finish within {left:.3g} s",
                    hint="the server is slow, stuck or a tarpit",
                )
            ) from err
        except OSError as err:
            raise self._fail(
                ConnectionLostError(f"{self.where} closed the connection during the TLS handshake")
            ) from err
        self.sock = wrapped
        return wrapped

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
