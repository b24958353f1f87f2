"""POP3 sessions over poplib (`Pop3Session`) and the login check `account test` runs."""

from __future__ import annotations

import base64
import poplib
import re
import ssl
from collections.abc import Callable

from mailctl.errors import (
    AuthError,
    AuthUnsupportedError,
    ConnectionLostError,
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
from mailctl.protocols.pop3.wire import EOF_TEXT, BoundedPOP3, NotOkError
from mailctl.protocols.tls import TlsInfo, tls_info
from mailctl.text import excerpt

# RFC 2449 8 / RFC 3206: response codes that mean "try again later", not "wrong password".
_TRANSIENT_CODES = {"SYS/TEMP", "IN-USE", "LOGIN-DELAY"}
_RESPONSE_CODE = re.compile(r"\[([A-Za-z/-]+)")
# RFC 1939 7: a unique-id is 1 to 70 characters in the range 0x21 to 0x7E.
_UNIQUE_ID = re.compile(rb"[\x21-\x7e]{1,70}")


def check_pop3(
    settings: ServerSettings,
    *,
    secret: Callable[[], str] | None,
    limits: ReadLimits | None = None,
) -> LoginCheck:
    """Connect to a POP3 server, read its capabilities, log in if a username is set, quit.

    `secret` is called at most once, after TLS is up, right before PASS/AUTH. Nothing is
    deleted: QUIT after a login only ends the session (RFC 1939 6). Default limits:
    `login_check_limits`. Raises what `Pop3Session.open` raises.
    """
    session = Pop3Session.open(
        settings, secret=secret, limits=limits or login_check_limits(settings.timeouts)
    )
    session.close()
    return session.info


class Pop3Session(MailSession):
    """A POP3 session: `open()` (TLS, CAPA, login), operations, `close()` (QUIT).

    Nothing here deletes mail: QUIT only ends the session (RFC 1939 6).
    """

    protocol = Protocol.POP3

    def __init__(self, settings: ServerSettings, box: SecretBox, limits: ReadLimits) -> None:
        super().__init__(settings, box, limits)
        self._client: BoundedPOP3 | None = None
        self._capability_map: dict[str, list[str]] = {}

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

    def _malformed(self, command: str, line: bytes) -> ProtocolError:
        return ProtocolError(
            f"POP3 server {self.where} answered {command} with a malformed line: {excerpt(line)}"
        )

    # -- the skeleton's steps ----------------------------------------------------------

    def _connect(self, context: ssl.SSLContext | None) -> None:
        # poplib has no certificate checks without a context (FACTS.md): always pass ours.
        settings = self.settings
        implicit = context if settings.security is Security.TLS else None
        self._client = BoundedPOP3(settings.host, settings.port, wire=self.wire, context=implicit)
        self._greeted()
        if context is not None and settings.security is Security.STARTTLS:
            self.clock.start("tls")
            # RFC 2595 4: STLS only when CAPA lists it; never fall back to plaintext.
            if "STLS" not in self._capa():
                raise StartTlsUnavailableError(
                    f"POP3 server {self.where} does not offer STLS (STARTTLS)",
                    hint="use security tls (port 995) if the server supports it",
                )
            self._client.start_tls(context)

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

    def _tls_info(self) -> TlsInfo | None:
        sock = self.client.sock
        return tls_info(sock) if isinstance(sock, ssl.SSLSocket) else None

    def _choose_method(self) -> str:
        settings = self.settings
        capabilities = self._capability_map
        # Without CAPA we cannot know; USER/PASS is the RFC 1939 baseline worth one try.
        user_pass = "USER" in capabilities or not capabilities
        plain = "PLAIN" in {m.upper() for m in capabilities.get("SASL", [])}
        if settings.auth is None:
            if user_pass:
                return "user"
            if plain:
                return "plain"
        elif settings.auth is AuthMechanism.PLAIN:
            if plain:
                return "plain"
        elif settings.auth is AuthMechanism.LOGIN:
            # For POP3, "login" means USER/PASS (RFC 1939 7), the plain-password login.
            if user_pass:
                return "user"
        else:
            raise AuthUnsupportedError(
                f"mailctl cannot authenticate to POP3 server {self.where} "
                f"with {settings.auth.value}",
                hint="use auth = plain or auth = login",
            )
        wanted = settings.auth.value if settings.auth else "USER/PASS or SASL PLAIN"
        shown = ", ".join(" ".join([name, *args]) for name, args in capabilities.items())
        raise AuthUnsupportedError(
            f"POP3 server {self.where} does not allow {wanted} authentication here "
            f"(capabilities: {shown})",
            hint="use TLS, or choose another auth mechanism",
        )

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
            match = _RESPONSE_CODE.search(text)
            message = f"POP3 login as {username!r} at {self.where} failed: {text}"
            if match and match.group(1).upper() in _TRANSIENT_CODES:
                raise TemporaryError(message, hint="try again later") from err
            raise AuthError(message, hint="check the user name and password") from err

    def _map_error(self, err: Exception) -> MailctlError | None:
        """An unexpected -ERR (or poplib's own complaint) outside the login exchange."""
        if not isinstance(err, poplib.error_proto):
            return None
        phase = self.clock.phase
        text = excerpt(_reply_text(err), secret=self.secret_shown)
        if text == EOF_TEXT:
            return ConnectionLostError(
                f"POP3 server {self.where} closed the connection during {phase}"
            )
        if phase == "tls":
            return TlsError(f"POP3 STLS with {self.where} failed: {text}")
        return ProtocolError(
            f"POP3 server {self.where} answered unexpectedly during {phase}: {text}"
        )

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
