"""IMAP sessions over imapclient (`ImapSession`) and the login check `account test` runs."""

from __future__ import annotations

import contextlib
import imaplib
import re
import ssl
from collections.abc import Callable
from typing import Any

from mailctl.errors import (
    AuthError,
    AuthUnsupportedError,
    ConnectionLostError,
    HeaderInjectionError,
    MailctlError,
    ProtocolError,
    StartTlsUnavailableError,
    TemporaryError,
    TlsError,
)
from mailctl.models import AuthMechanism, Protocol, Security, ServerSettings
from mailctl.protocols.checks import LoginCheck, SecretBox
from mailctl.protocols.limits import ReadLimits, login_check_limits
from mailctl.protocols.mailsession import MailSession
from mailctl.protocols.tls import TlsInfo, tls_info
from mailctl.text import excerpt

# RFC 5530 response codes that mean "try again later", not "wrong credentials".
_TRANSIENT_CODES = {"UNAVAILABLE", "INUSE", "LIMIT"}
_RESPONSE_CODE = re.compile(r"\[([A-Za-z-]+)")


def check_imap(
    settings: ServerSettings,
    *,
    secret: Callable[[], str] | None,
    limits: ReadLimits | None = None,
) -> LoginCheck:
    """Connect to an IMAP server, read its capabilities, log in if a username is set, log out.

    `secret` is called at most once, after TLS is up, right before LOGIN/AUTHENTICATE.
    Default limits: `login_check_limits` (the whole check within its session deadline).
    Raises what `ImapSession.open` raises.
    """
    session = ImapSession.open(
        settings, secret=secret, limits=limits or login_check_limits(settings.timeouts)
    )
    session.close()
    return session.info


class ImapSession(MailSession):
    """An IMAP session: `open()` (TLS, capabilities, login), operations, `close()` (LOGOUT)."""

    protocol = Protocol.IMAP

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

    # -- the skeleton's steps ----------------------------------------------------------

    def _connect(self, context: ssl.SSLContext | None) -> None:
        from mailctl.protocols.imap.wire import BoundedIMAPClient  # imapclient is slow to import

        settings = self.settings
        self._client = BoundedIMAPClient(
            settings.host,
            settings.port,
            wire=self.wire,
            context=context,
            implicit_tls=settings.security is Security.TLS,
            timeouts=settings.timeouts,
        )
        self._greeted()
        if settings.security is Security.STARTTLS:
            self.clock.start("tls")
            # RFC 3501 6.2.1: STARTTLS only when advertised; never fall back to plaintext.
            if "STARTTLS" not in self._read_capabilities():
                raise StartTlsUnavailableError(
                    f"IMAP server {self.where} does not offer STARTTLS",
                    hint="use security tls (port 993) if the server supports it",
                )
            self._client.starttls(context)

    def _read_capabilities(self) -> tuple[str, ...]:
        raw: tuple[bytes, ...] = self._client.capabilities()
        self._capability_list = tuple(item.decode("ascii", "replace").upper() for item in raw)
        return self._capability_list

    def _capabilities(self) -> tuple[str, ...]:
        return self._read_capabilities()

    def _tls_info(self) -> TlsInfo | None:
        return tls_info(self._client.socket())

    def _choose_method(self) -> str:
        settings = self.settings
        capabilities = self._capability_list
        plain = "AUTH=PLAIN" in capabilities
        # RFC 3501 6.2.3: LOGINDISABLED forbids the LOGIN command.
        login = "LOGINDISABLED" not in capabilities
        if settings.auth is None:
            # AUTHENTICATE PLAIN carries UTF-8 and needs no quoting: prefer it when offered.
            if plain:
                return "plain"
            if login:
                return "login"
        elif settings.auth is AuthMechanism.PLAIN:
            if plain:
                return "plain"
        elif settings.auth is AuthMechanism.LOGIN:
            # For IMAP, "login" is the LOGIN command (RFC 3501 6.2.3), not SASL LOGIN.
            if login:
                return "login"
        else:
            raise AuthUnsupportedError(
                f"mailctl cannot authenticate to IMAP server {self.where} "
                f"with {settings.auth.value}",
                hint="use auth = plain or auth = login",
            )
        wanted = settings.auth.value if settings.auth else "plain or login"
        raise AuthUnsupportedError(
            f"IMAP server {self.where} does not allow {wanted} authentication here "
            f"(capabilities: {' '.join(capabilities)})",
            hint="use TLS, or choose another auth mechanism",
        )

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
            text = excerpt(_error_text(err), secret=password)
            match = _RESPONSE_CODE.search(text)
            message = f"IMAP login as {username!r} at {self.where} failed: {text}"
            if match and match.group(1).upper() in _TRANSIENT_CODES:
                raise TemporaryError(message, hint="try again later") from err
            raise AuthError(message, hint="check the user name and password") from err

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

    def _map_error(self, err: Exception) -> MailctlError | None:
        phase = self.clock.phase
        if isinstance(err, imaplib.IMAP4.abort):
            return self._dropped(err)
        if isinstance(err, imaplib.IMAP4.error):
            text = excerpt(_error_text(err), secret=self.secret_shown)
            if phase == "tls":
                return TlsError(f"IMAP STARTTLS with {self.where} failed: {text}")
            return ProtocolError(
                f"IMAP server {self.where} answered unexpectedly during {phase}: {text}"
            )
        return None

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
