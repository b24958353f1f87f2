"""IMAP sessions over imapclient (`ImapSession`): IMAP's words for the `MailSession` skeleton."""

from __future__ import annotations

import contextlib
import imaplib
import ssl
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from mailctl.errors import (
    AuthUnsupportedError,
    ConnectionLostError,
    HeaderInjectionError,
    ProtocolError,
)
from mailctl.models import AuthMechanism, Protocol, Security, ServerSettings
from mailctl.protocols.checks import SecretBox
from mailctl.protocols.limits import ReadLimits
from mailctl.protocols.mailsession import MailSession
from mailctl.protocols.tls import TlsInfo, tls_info
from mailctl.text import excerpt

if TYPE_CHECKING:  # the bulk reader builds them; imported when it runs
    from mailctl.protocols.imap.types import ImapMessage


class ImapSession(MailSession):
    """An IMAP session: `open()` (TLS, capabilities, login), operations, `close()` (LOGOUT)."""

    protocol = Protocol.IMAP
    starttls_command = "STARTTLS"
    any_login = "plain or login"
    transient_codes = frozenset({"UNAVAILABLE", "INUSE", "LIMIT"})  # RFC 5530

    def __init__(self, settings: ServerSettings, box: SecretBox, limits: ReadLimits) -> None:
        super().__init__(settings, box, limits)
        self._client: Any = None  # a BoundedIMAPClient once connected
        self._capability_list: tuple[str, ...] = ()

    # -- operations (fetch) ------------------------------------------------------------

    def select(self, folder: str) -> int:
        """Open `folder` read-only; return how many messages it holds.

        Raises HeaderInjectionError (CR, LF or NUL in the name: imapclient would send it
        inline, its issue #657), ProtocolError, and the session's I/O errors.
        """
        if any(char in folder for char in "\r\n\0"):
            raise HeaderInjectionError(
                "the IMAP folder name contains a CR, LF or NUL character",
                hint="remove line breaks and NUL characters from the folder name",
            )
        with self.guard("select"):
            response = self._client.select_folder(folder, readonly=True)
            return int(response.get(b"EXISTS", 0))

    def uids(self) -> list[int]:
        """The UIDs of every message in the selected folder (UID SEARCH ALL).

        The answer is one line: a folder of more than a few thousand messages needs a
        larger `ReadLimits.max_line`.
        """
        with self.guard("search"):
            return [int(uid) for uid in self._client.search("ALL")]

    def fetch_message(self, uid: int) -> bytes:
        """The whole message with `uid`, without setting \\Seen (BODY.PEEK[]).

        The literal may be up to `max_message` octets and the answer has `data_timeout`.
        Raises ResponseLimitError, ProtocolError (no such message), and I/O errors.
        """
        with self.guard("fetch"), self.wire.message_command("UID FETCH"):
            response = self._client.fetch([uid], [b"BODY.PEEK[]"])
        item = response.get(uid) or {}
        body = item.get(b"BODY[]")
        if not isinstance(body, bytes):
            raise ProtocolError(f"IMAP server {self.where} sent no message for UID {uid}")
        return body

    # == bulk reads (branch i10-fast): the lean UID FETCH reader of imap/bulk.py ========
    # The merge keeps these two over the simple versions with the same signatures.

    def fetch_bodies(
        self, uids: Sequence[int], *, mark_seen: bool = False, batch: int = 500
    ) -> Iterator[ImapMessage]:
        """The messages with `uids` (whole, raw), one UID FETCH per `batch` UIDs (the
        next one sent while the current one is answered).

        BODY.PEEK[] leaves \\Seen alone unless `mark_seen`. Messages come as they arrive
        (server order within a batch); a UID the server no longer has is left out. Each
        message is bounded by `max_message` and has `data_timeout`; memory holds one
        message at a time. Consume the iterator to the end: stopping early abandons the
        connection (the session can then only be aborted).

        Raises ResponseLimitError, TimeoutFailure, ConnectionLostError, ProtocolError.
        """
        return self._bulk(uids, section=b"", peek=not mark_seen, batch=batch)

    def fetch_headers(self, uids: Sequence[int], *, batch: int = 500) -> Iterator[ImapMessage]:
        """Like `fetch_bodies`, with `data` the header block only (BODY.PEEK[HEADER])."""
        return self._bulk(uids, section=b"HEADER", peek=True, batch=batch)

    def _bulk(
        self, uids: Sequence[int], *, section: bytes, peek: bool, batch: int
    ) -> Iterator[ImapMessage]:
        from mailctl.protocols.imap.bulk import read_batches

        if batch < 1:
            raise ValueError("batch must be at least 1")
        if any(uid < 1 for uid in uids):
            raise ValueError("IMAP UIDs are positive (RFC 3501 2.3.1.1)")
        if not uids:
            return
        with self.guard("fetch"):
            yield from read_batches(
                self._client.bounded,
                self.wire,
                where=self.where,
                batches=[uids[start : start + batch] for start in range(0, len(uids), batch)],
                section=section,
                peek=peek,
            )

    # == end of bulk reads (branch i10-fast) ============================================

    # -- the skeleton's steps ----------------------------------------------------------

    def _dial(self, context: ssl.SSLContext | None) -> None:
        from mailctl.protocols.imap.wire import BoundedIMAPClient  # imapclient is slow to import

        settings = self.settings
        self._client = BoundedIMAPClient(
            settings.host,
            settings.port,
            wire=self.wire,
            context=context,
            implicit_tls=settings.security is Security.TLS,
            timeouts=settings.timeouts,
            tls_name=settings.tls_name,
        )

    def _offers_starttls(self) -> bool:
        return "STARTTLS" in self._capabilities()

    def _starttls(self, context: ssl.SSLContext) -> None:
        self._client.starttls(context)

    def _capabilities(self) -> tuple[str, ...]:
        raw: tuple[bytes, ...] = self._client.capabilities()
        self._capability_list = tuple(item.decode("ascii", "replace").upper() for item in raw)
        return self._capability_list

    def _tls_info(self) -> TlsInfo | None:
        return tls_info(self._client.socket())

    def _tls_socket(self) -> ssl.SSLSocket | None:
        sock = self._client.socket() if self._client is not None else None
        return sock if isinstance(sock, ssl.SSLSocket) else None

    def _logins(self) -> dict[AuthMechanism, str]:
        logins: dict[AuthMechanism, str] = {}
        # AUTHENTICATE PLAIN carries UTF-8 and needs no quoting: preferred when offered.
        if "AUTH=PLAIN" in self._capability_list:
            logins[AuthMechanism.PLAIN] = "plain"
        # RFC 3501 6.2.3: LOGINDISABLED forbids the LOGIN command. For IMAP, auth = login is
        # the LOGIN command, not SASL LOGIN.
        if "LOGINDISABLED" not in self._capability_list:
            logins[AuthMechanism.LOGIN] = "login"
        return logins

    def _login(self, method: str, password: str) -> None:
        from imapclient.exceptions import LoginError

        username = self.settings.username or ""
        try:
            if method == "plain":
                # RFC 4616 PLAIN is one message. imapclient's plain_login sends it again for
                # every continuation a server asks; once answered, return None: imaplib then
                # sends "*", which cancels the exchange (RFC 3501 6.2.2).
                answers = [f"\0{username}\0{password}"]
                self._client.sasl_login("PLAIN", lambda _: answers.pop() if answers else None)
            else:
                if not (username.isascii() and password.isascii()):
                    raise AuthUnsupportedError(
                        f"the IMAP LOGIN command cannot carry a non-ASCII user name or "
                        f"password to {self.where}",
                        hint="use auth = plain if the server offers AUTH=PLAIN",
                    )
                self._client.login(_quoted(username), password)
        except LoginError as err:
            dropped = err.__context__
            if isinstance(dropped, imaplib.IMAP4.abort):
                # imapclient turns every failure inside LOGIN into LoginError, drops included.
                raise self._dropped(dropped) from err
            raise self._login_refused(excerpt(_error_text(err), secret=password)) from err

    def _dropped(self, err: imaplib.IMAP4.abort) -> ConnectionLostError:
        """The connection ended: say why with the server's BYE if it sent one.

        RFC 3501 7.1.5: a server sends BYE with its reason before it closes. imaplib keeps
        the BYE among the untagged responses and raises with its own text ("socket error:
        EOF") when the close comes first, as it does inside AUTHENTICATE.
        """
        imap = getattr(self._client, "_imap", None)
        byes = getattr(imap, "untagged_responses", {}).get("BYE") or []
        text = f"BYE {_server_text(byes[-1])}" if byes else _error_text(err)
        return ConnectionLostError(
            f"IMAP server {self.where} dropped the connection during {self.clock.phase}: "
            f"{excerpt(text, secret=self.secret_shown)}"
        )

    def _lost(self, err: Exception) -> ConnectionLostError | None:
        return self._dropped(err) if isinstance(err, imaplib.IMAP4.abort) else None

    def _answer_text(self, err: Exception) -> str | None:
        return _error_text(err) if isinstance(err, imaplib.IMAP4.error) else None

    def _refusal(self, cause: BaseException) -> bool:
        # imaplib raises `error` for a tagged NO/BAD and `abort` (a subclass) for a drop
        # or an answer it cannot parse.
        return isinstance(cause, imaplib.IMAP4.error) and not isinstance(cause, imaplib.IMAP4.abort)

    def _goodbye(self) -> None:
        self._client.logout()

    def _shutdown(self) -> None:
        if self._client is not None:
            with contextlib.suppress(imaplib.IMAP4.error, OSError, EOFError):
                self._client.shutdown()


def _quoted(value: str) -> str:
    """An IMAP quoted string (RFC 3501 4.3); imaplib quotes the password but not the user."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _server_text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _error_text(err: BaseException) -> str:
    """The server text in an imaplib/imapclient error, without a bytes repr around it."""
    first = err.args[0] if err.args else ""
    if isinstance(first, bytes):
        return _server_text(first)
    text = str(first)
    # imapclient re-raises login failures as LoginError(str(imaplib_error)): "b'...'".
    if len(text) >= 3 and text[0] == "b" and text[1] in "'\"" and text[-1] == text[1]:
        text = text[2:-1]
    return text
