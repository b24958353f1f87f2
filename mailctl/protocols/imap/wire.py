"""imaplib/imapclient bound to a `Wire`: every byte the IMAP session reads goes through it.

imaplib reads through three overridable methods (`open`'s socket, `readline`, `read` for
literals); imapclient builds its imaplib object in `_create_IMAP4`. Overriding those is
the whole binding: parsing, tags and state stay the libraries' own. Imported only when an
IMAP session opens (imapclient is slow to import).
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
from typing import TYPE_CHECKING

from imapclient import IMAPClient, SocketTimeout

from mailctl.models import Timeouts
from mailctl.protocols.wire import Wire

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

# The command name after a tag: "A001 CAPABILITY", "A002 UID FETCH ...". Only the name is
# kept for messages; arguments (LOGIN's password) never are.
_COMMAND = re.compile(rb"(?:UID )?[A-Za-z]{1,32}")


class BoundedIMAP4(imaplib.IMAP4):
    """imaplib.IMAP4 reading only through `wire`; implicit TLS when `context` is given.

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
        self._pending_tag: bytes | None = None
        self._secret_command = False
        super().__init__(host, port)
        if tls_name is not None:
            # imaplib's starttls() hands self.host to wrap_socket as server_hostname; the
            # connection is made, so from here on the host only names the certificate.
            self.host = tls_name

    # imapclient sets debug = 5, and at 4 and above imaplib formats the repr of every
    # response it stores (a message literal's repr is up to 4x its size) for a logger that
    # discards it. The debug level stays 0.
    @property
    def debug(self) -> int:
        return 0

    @debug.setter
    def debug(self, value: int) -> None:
        pass

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self._wire.open_socket(
            self.host, self.port, context=self._implicit_tls, tls_name=self._tls_name
        )

    def readline(self) -> bytes:
        return self._wire.readline(self.sock)

    def read(self, size: int) -> bytes:
        return self._wire.read(self.sock, size)

    def _new_tag(self) -> bytes:
        tag: bytes = getattr(super(), "_new_tag")()  # noqa: B009  # private, not in typeshed
        self._pending_tag = tag
        return tag

    def send(self, data: ReadableBuffer) -> None:
        # The first write after a new tag starts that command (imaplib and imapclient both
        # send "TAG NAME ..." first): its response gets fresh budgets and deadline.
        tag = self._pending_tag
        if tag is not None:
            head = bytes(memoryview(data)[: len(tag) + 40])
            if head.startswith(tag + b" "):
                self._pending_tag = None
                match = _COMMAND.match(head, len(tag) + 1)
                name = match.group(0).decode("ascii").upper() if match else "a command"
                self._wire.begin(self.sock, name)
                self._secret_command = name in ("LOGIN", "AUTHENTICATE")
                self._record(bytes(data), tag, name)
        elif self._wire.transcript is not None:
            # A continuation: an AUTHENTICATE response (secret) or a literal's octets.
            size = len(memoryview(data))
            self._wire.record_sent(
                f"<redacted: {size} octets>"
                if self._secret_command
                else f"<{size} octets of a literal or continuation>"
            )
        super().send(data)

    def _record(self, data: bytes, tag: bytes, name: str) -> None:
        """--trace: the command line; LOGIN's and AUTHENTICATE's arguments redacted."""
        if self._wire.transcript is None:
            return
        if self._secret_command:
            self._wire.record_sent(f"{tag.decode()} {name} <redacted>")
            return
        for line in data.decode("utf-8", "replace").split("\r\n"):
            if line:
                self._wire.record_sent(line)


class BoundedIMAPClient(IMAPClient):  # type: ignore[misc]  # imapclient has no type hints
    """IMAPClient whose imaplib object is a `BoundedIMAP4` on `wire`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        wire: Wire,
        context: ssl.SSLContext | None,
        implicit_tls: bool,
        timeouts: Timeouts,
        tls_name: str | None = None,
    ) -> None:
        self._mailctl_wire = wire
        self._mailctl_tls_name = tls_name
        super().__init__(
            host,
            port=port,
            ssl=implicit_tls,
            ssl_context=context,
            # The wire sets the socket timeout before every read; these only seed it.
            timeout=SocketTimeout(connect=timeouts.connect, read=timeouts.command),
        )

    def _create_IMAP4(self) -> BoundedIMAP4:  # imapclient's name
        context = self.ssl_context if self.ssl else None
        return BoundedIMAP4(
            self.host,
            self.port,
            wire=self._mailctl_wire,
            context=context,
            tls_name=self._mailctl_tls_name,
        )
