"""POP3 sessions over poplib (`Pop3Session`): POP3's words for the `MailSession` skeleton."""

from __future__ import annotations

import base64
import poplib
import re
import ssl
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from mailctl.errors import ConnectionLostError, ProtocolError
from mailctl.models import AuthMechanism, Protocol, Security, ServerSettings
from mailctl.protocols.checks import SecretBox
from mailctl.protocols.limits import ReadLimits
from mailctl.protocols.mailsession import MailSession
from mailctl.protocols.pop3.types import Pop3Message
from mailctl.protocols.pop3.wire import EOF_TEXT, BoundedPOP3, NotOkError
from mailctl.text import excerpt

if TYPE_CHECKING:  # the bulk reader builds them; imported when it runs
    from mailctl.protocols.pop3.types import Pop3Message

# RFC 1939 7: a unique-id is 1 to 70 characters in the range 0x21 to 0x7E.
_UNIQUE_ID = re.compile(rb"[\x21-\x7e]{1,70}")


class Pop3Session(MailSession):
    """A POP3 session: `open()` (TLS, CAPA, login), operations, `close()` (QUIT).

    Only `delete` (DELE) removes mail, and only at QUIT (RFC 1939 6).
    """

    protocol = Protocol.POP3
    starttls_command = "STLS"
    any_login = "USER/PASS or SASL PLAIN"
    transient_codes = frozenset({"SYS/TEMP", "IN-USE", "LOGIN-DELAY"})  # RFC 2449 8, RFC 3206

    def __init__(self, settings: ServerSettings, box: SecretBox, limits: ReadLimits) -> None:
        super().__init__(settings, box, limits)
        self._client: BoundedPOP3 | None = None
        self._capability_map: dict[str, list[str]] = {}
        self._listing: tuple[dict[int, int], dict[int, str]] | None = None

    @property
    def client(self) -> BoundedPOP3:
        if self._client is None:
            raise ProtocolError(f"the POP3 session with {self.where} is not connected")
        return self._client

    # -- operations (fetch) ------------------------------------------------------------

    def stat(self) -> tuple[int, int]:
        """(message count, mailbox size in octets) from STAT (RFC 1939 5)."""
        with self.guard("stat"):
            response = self.client.command("STAT")
        fields = response.split()
        if len(fields) < 3 or not (fields[1].isdigit() and fields[2].isdigit()):
            raise self._malformed("STAT", response)
        return int(fields[1]), int(fields[2])

    def list_sizes(self) -> dict[int, int]:
        """Message number -> size in octets, from LIST (RFC 1939 5).

        One line per message, bounded by `max_response_lines`.
        """
        with self.guard("list"):
            _response, lines = self.client.multiline("LIST")
        sizes: dict[int, int] = {}
        for line in lines:
            fields = line.split()
            if len(fields) < 2 or not (fields[0].isdigit() and fields[1].isdigit()):
                raise self._malformed("LIST", line)
            sizes[int(fields[0])] = int(fields[1])
        return sizes

    def list_uids(self) -> dict[int, str]:
        """Message number -> unique id, from UIDL (RFC 1939 7)."""
        with self.guard("uidl"):
            _response, lines = self.client.multiline("UIDL")
        uids: dict[int, str] = {}
        for line in lines:
            fields = line.split()
            if len(fields) < 2 or not fields[0].isdigit() or not _UNIQUE_ID.fullmatch(fields[1]):
                raise self._malformed("UIDL", line)
            uids[int(fields[0])] = fields[1].decode("ascii")
        return uids

    def retr(self, number: int) -> bytes:
        """Message `number` with CRLF line ends (RETR, RFC 1939 7), without deleting it.

        Bounded by `max_message` and `data_timeout`. Raises ResponseLimitError,
        ProtocolError (-ERR: no such message), and the session's I/O errors.
        """
        with self.guard("retr"):
            return self.client.message(f"RETR {int(number)}")

    def retrieve(self, numbers: Sequence[int]) -> Iterator[Pop3Message]:
        """Messages `numbers` in that order: RETR, pipelined in a sliding window when CAPA
        lists PIPELINING (RFC 2449 6.6), else one at a time (pop3/bulk.py).

        LIST and UIDL are asked once per session and kept (`listing`). A number the server
        no longer lists, or whose LIST size exceeds `max_message`, is not retrieved (poplib
        would collect it whole; FACTS.md) and not yielded: the caller tells it from those
        asked for, and one such message does not end the run. Each message is bounded by
        `max_message` (as sent) and has `data_timeout`; memory holds one message (and at
        most a window's unread answers in the socket). Nothing is deleted. Consume the
        iterator to the end: stopping early abandons the connection.

        Raises ResponseLimitError, TimeoutFailure, ConnectionLostError, ProtocolError.
        """
        from mailctl.protocols.pop3.bulk import retrieve

        if not numbers:
            return
        # fetch asked `listing` already (caps sized from STAT); a caller that did not
        # gets LIST, and UIDL when CAPA offers it (RFC 2449 6.5), once per session.
        sizes, uids = self._listing if self._listing is not None else self._bulk_index()
        limit = self.limits.max_message
        wanted = [n for n in numbers if n in sizes and sizes[n] <= limit]
        if not wanted:
            return
        with self.guard("retr"), self.streaming("a window of RETR answers"):
            yield from retrieve(
                self.client,
                self.wire,
                where=self.where,
                numbers=wanted,
                sizes=sizes,
                uids=uids,
                pipelining="PIPELINING" in self._capability_map,
            )

    def _bulk_index(self) -> tuple[dict[int, int], dict[int, str]]:
        sizes = self.list_sizes()
        uids: dict[int, str] = {}
        if "UIDL" in self._capability_map or not self._capability_map:
            try:
                uids = self.list_uids()
            except ProtocolError:
                if self.wire.failed:
                    raise
        self._listing = (sizes, uids)
        return self._listing

    def listing(self) -> tuple[dict[int, int], dict[int, str]]:
        """(LIST sizes, UIDL ids) of the session, asked once; no UIDL (-ERR) gives {}."""
        if self._listing is None:
            count, _size = self.stat()
            self.size_for(count)
            sizes = self.list_sizes()
            try:
                uids = self.list_uids()
            except ProtocolError as err:
                if not (err.__cause__ is not None and self._refusal(err.__cause__)):
                    raise
                uids = {}
            self._listing = (sizes, uids)
        return self._listing

    def delete(self, number: int) -> None:
        """DELE `number` (RFC 1939 5): marked now, removed only when QUIT ends the session
        (UPDATE state); a dropped connection deletes nothing."""
        with self.guard("dele"):
            self.client.command(f"DELE {int(number)}")

    def _malformed(self, command: str, line: bytes) -> ProtocolError:
        return ProtocolError(
            f"POP3 server {self.where} answered {command} with a malformed line: {excerpt(line)}"
        )

    # -- the skeleton's steps ----------------------------------------------------------

    def _dial(self, context: ssl.SSLContext | None) -> None:
        # poplib has no certificate checks without a context (FACTS.md): always pass ours.
        settings = self.settings
        implicit = context if settings.security is Security.TLS else None
        self._client = BoundedPOP3(
            settings.host,
            settings.port,
            wire=self.wire,
            context=implicit,
            tls_name=settings.tls_name,
        )

    def _offers_starttls(self) -> bool:
        return "STLS" in self._capa()

    def _starttls(self, context: ssl.SSLContext) -> None:
        self.client.start_tls(context)

    def _capa(self) -> dict[str, list[str]]:
        """CAPA (RFC 2449); an RFC 1939-only server answers -ERR, which means "none listed"."""
        try:
            _response, lines = self.client.multiline("CAPA")
        except poplib.error_proto as err:
            if _reply_text(err) == EOF_TEXT or isinstance(err, NotOkError):
                raise
            self._capability_map = {}
            return self._capability_map
        capabilities: dict[str, list[str]] = {}
        for line in lines:
            words = line.decode("utf-8", "replace").split()
            if words:
                capabilities[words[0].upper()] = words[1:]
        self._capability_map = capabilities
        return capabilities

    def _capabilities(self) -> tuple[str, ...]:
        return tuple(" ".join([name, *args]) for name, args in self._capa().items())

    def _tls_socket(self) -> ssl.SSLSocket | None:
        sock = self._client.sock if self._client is not None else None
        return sock if isinstance(sock, ssl.SSLSocket) else None

    def _logins(self) -> dict[AuthMechanism, str]:
        capabilities = self._capability_map
        logins: dict[AuthMechanism, str] = {}
        # Without CAPA we cannot know; USER/PASS is the RFC 1939 baseline worth one try. For
        # POP3, auth = login means USER/PASS (RFC 1939 7), the plain-password login.
        if "USER" in capabilities or not capabilities:
            logins[AuthMechanism.LOGIN] = "user"
        if "PLAIN" in {m.upper() for m in capabilities.get("SASL", [])}:
            logins[AuthMechanism.PLAIN] = "plain"  # RFC 5034
        return logins

    def _login(self, method: str, password: str) -> None:
        """poplib's debug output is never enabled: it prints PASS."""
        username = self.settings.username or ""
        client = self.client
        try:
            if method == "plain":
                # RFC 5034 4 with an RFC 4616 initial response: one round trip, UTF-8 safe.
                token = base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")
                client.command(f"AUTH PLAIN {token}")
            else:
                client.user(username)
                client.pass_(password)
        except poplib.error_proto as err:
            text = excerpt(_reply_text(err), secret=password)
            if text == EOF_TEXT or isinstance(err, NotOkError):
                raise  # not a refusal: the guard maps it (connection lost, protocol error)
            raise self._login_refused(text) from err

    def _lost(self, err: Exception) -> ConnectionLostError | None:
        if isinstance(err, poplib.error_proto) and _reply_text(err) == EOF_TEXT:
            return ConnectionLostError(
                f"POP3 server {self.where} closed the connection during {self.clock.phase}"
            )
        return None

    def _answer_text(self, err: Exception) -> str | None:
        """An unexpected -ERR (or poplib's own complaint) outside the login exchange."""
        return _reply_text(err) if isinstance(err, poplib.error_proto) else None

    def _refusal(self, cause: BaseException) -> bool:
        # RFC 1939 3: -ERR is a refusal in step; EOF or a line that is neither +OK nor
        # -ERR is not.
        return (
            isinstance(cause, poplib.error_proto)
            and not isinstance(cause, NotOkError)
            and _reply_text(cause).startswith("-ERR")
            and _reply_text(cause) != EOF_TEXT
        )

    def _goodbye(self) -> None:
        self.client.quit()

    def _shutdown(self) -> None:
        if self._client is not None:
            self._client.close_quietly()


def _reply_text(err: poplib.error_proto) -> str:
    """The server line poplib put in the exception (bytes or str), as text."""
    first = err.args[0] if err.args else ""
    if isinstance(first, bytes):
        return first.decode("utf-8", "replace")
    return str(first)
