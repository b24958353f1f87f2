"""poplib bound to a `Wire`: every byte the POP3 session reads goes through it.

poplib reads every line through `_getline` and sends every command through `_putcmd`;
overriding those two (and `_create_socket`, for implicit TLS within the greeting's
deadline) is the whole binding. Multi-line answers are read here rather than by poplib's
`capa()`/`retr()`: `capa()` turns every failure, a dropped connection included, into "CAPA
not supported", and `retr()` keeps one object per line.
"""

from __future__ import annotations

import contextlib
import poplib
import socket
import ssl
from typing import TYPE_CHECKING

from mailctl.protocols.wire import Wire

CRLF = b"\r\n"
# poplib's text for a connection closed mid-answer; `_getline` below keeps it.
EOF_TEXT = "-ERR EOF"


class NotOkError(poplib.error_proto):
    """An answer that is neither +OK nor -ERR (RFC 1939 3), such as a SASL "+ " continuation."""


class BoundedPOP3(poplib.POP3):
    """poplib.POP3 reading only through `wire`; implicit TLS when `context` is given.

    `tls_name`: the name the certificate is checked against, when not `host`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        wire: Wire,
        context: ssl.SSLContext | None,
        tls_name: str | None = None,
    ) -> None:
        self._wire = wire
        self._implicit_tls = context
        self._tls_name = tls_name
        try:
            super().__init__(host, port)
        except BaseException:
            self.close_quietly()  # poplib leaves the socket open when the greeting fails
            raise

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self._wire.open_socket(
            self.host, self.port, context=self._implicit_tls, tls_name=self._tls_name
        )

    if TYPE_CHECKING:  # poplib internals that typeshed does not list

        def _shortcmd(self, line: str) -> bytes: ...
        def _longcmd(self, line: str) -> tuple[bytes, list[bytes], int]: ...

    def _putcmd(self, line: str) -> None:
        """Every command goes through here: fresh budgets and deadline for its answer."""
        name = line.split(" ", 1)[0].upper()  # never the argument: PASS carries the password
        self._wire.begin(self.sock, name if name.isalpha() else "a command")
        if name == "PASS" or line.upper().startswith("AUTH PLAIN "):
            self._wire.record_sent(
                f"{line.split(' ', 2)[0] if name == 'PASS' else 'AUTH PLAIN'} <redacted>"
            )
        elif name.isalpha():
            self._wire.record_sent(line)
        else:
            self._wire.record_sent(f"<redacted: {len(line)} characters>")
        self.sock.sendall(line.encode(self.encoding) + CRLF)

    def _getline(self) -> tuple[bytes, int]:
        line = self._wire.readline(self.sock)
        if not line.endswith(b"\n"):
            # EOF, possibly mid-line: a truncated line is not an answer.
            raise poplib.error_proto(EOF_TEXT)
        octets = len(line)
        if line.endswith(CRLF):
            return line[:-2], octets
        return line[:-1], octets

    def _getresp(self) -> bytes:
        # poplib takes any line starting with "+" as success; RFC 1939 3 says "+OK".
        response, _octets = self._getline()
        if response.startswith(b"-"):
            raise poplib.error_proto(response)
        if response[:3] != b"+OK" or response[3:4] not in (b"", b" "):
            raise NotOkError(response)
        return response

    def command(self, command: str) -> bytes:
        """Send `command`, return its +OK line. Raises poplib.error_proto for -ERR or EOF."""
        return self._shortcmd(command)

    def start_tls(self, context: ssl.SSLContext) -> None:
        """STLS and the TLS handshake (RFC 2595 4), without poplib's `stls()`: that asks
        CAPA again through `capa()`, whose parser fails on an empty or non-ASCII line.

        The handshake inherits the socket timeout the wire left: what remains of the STLS
        command's deadline. Raises poplib.error_proto, ssl.SSLError, OSError.
        """
        self._shortcmd("STLS")
        self.sock = context.wrap_socket(self.sock, server_hostname=self._tls_name or self.host)
        self.file = self.sock.makefile("rb")  # poplib closes it in close(); we never read it
        self._tls_established = True

    def multiline(self, command: str) -> tuple[bytes, list[bytes]]:
        """Send `command`, return its +OK line and the un-stuffed lines up to the dot.

        Raises poplib.error_proto for -ERR or EOF; the wire's errors for limits.
        """
        response, lines, _octets = self._longcmd(command)
        return response, lines

    def message(self, command: str) -> bytes:
        """Send RETR (or TOP) and return the message with CRLF line ends, un-stuffed.

        The body is collected in one buffer, not one object per line; its lines count
        against `max_message` and the answer has `data_timeout`. Raises poplib.error_proto
        for -ERR or EOF.
        """
        with self._wire.message_command(command.split(" ", 1)[0].upper()):
            self._putcmd(command)
        self._getresp()
        body = bytearray()
        while True:
            line = self._wire.readline(self.sock, message=True)
            if not line.endswith(b"\n"):
                raise poplib.error_proto(EOF_TEXT)  # cut off: a partial message is no message
            line = line[:-2] if line.endswith(CRLF) else line[:-1]
            if line == b".":
                if self._wire.transcript is not None:
                    self._wire.transcript.info(f"<message: {len(body)} octets>")
                return bytes(body)
            if line.startswith(b".."):
                line = line[1:]  # RFC 1939 3: a leading dot was doubled
            body += line
            body += CRLF

    def close_quietly(self) -> None:
        """Close the socket without a QUIT exchange (attributes may be half-built)."""
        for name in ("file", "sock"):
            handle = getattr(self, name, None)
            if handle is not None:
                with contextlib.suppress(OSError):
                    handle.close()
