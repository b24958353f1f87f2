"""`MailSession`: the skeleton IMAP and POP3 sessions share (open with TLS and login, close).

Opening runs the same steps for both protocols: preflight checks before any socket, the
connection with implicit TLS or required STARTTLS, capabilities asked again after TLS, one
authentication attempt with the password asked for only then, and a `LoginCheck` of what
was seen. The rules are decided here once: STARTTLS only when offered, which login to use
for the `auth` setting, which refusals are temporary, how a library failure reads, when a
goodbye is still in order. Subclasses (`ImapSession`, `Pop3Session`) supply only the
protocol's words: how to dial, ask for capabilities, upgrade, log in and say goodbye, what
their library raises, and their operations. Every read goes through the session's `Wire`
under its `ReadLimits`. Errors are `mailctl.errors` types only, with the password masked in
every chained exception.
"""

from __future__ import annotations

import contextlib
import re
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import replace
from types import TracebackType
from typing import ClassVar, Self

from mailctl.errors import (
    AuthError,
    AuthUnsupportedError,
    CertificateError,
    ConnectError,
    ConnectionLostError,
    HostNotFoundError,
    MailctlError,
    ProtocolError,
    StartTlsUnavailableError,
    TemporaryError,
    TimeoutFailure,
    TlsError,
)
from mailctl.models import AuthMechanism, Protocol, Security, ServerSettings, TranscriptCallback
from mailctl.protocols.checks import (
    LoginCheck,
    PhaseClock,
    SecretBox,
    endpoint,
    map_os_error,
    preflight,
)
from mailctl.protocols.handshake import HandshakeFacts, handshake_facts
from mailctl.protocols.limits import ReadLimits, listing_limits, login_check_limits
from mailctl.protocols.tls import (
    certificate_names,
    client_context,
    name_mismatch,
    security_fixes,
    with_names,
)
from mailctl.protocols.transcript import Transcript
from mailctl.protocols.wire import Wire
from mailctl.text import excerpt

# The libraries parse server answers with few checks: a malformed one can surface as these
# (imapclient: CAPABILITY answered OK with nothing listed -> AttributeError on None). From
# a server they are a protocol error, not "a bug in mailctl"; the chain keeps the detail.
_PARSE_FAILURES = (AttributeError, TypeError, LookupError)
# A response code at the start of a refusal: "[UNAVAILABLE]" (RFC 5530), "[SYS/TEMP]" (RFC 3206).
_RESPONSE_CODE = re.compile(r"\[([A-Za-z/-]+)")


class MailSession(ABC):
    """One IMAP or POP3 connection: `open()`, operations (subclasses), `close()`."""

    protocol: ClassVar[Protocol]
    starttls_command: ClassVar[str]  # STARTTLS (RFC 3501 6.2.1) or STLS (RFC 2595 4)
    any_login: ClassVar[str]  # the logins tried when no `auth` is set, as users read them
    transient_codes: ClassVar[frozenset[str]]  # refusal codes meaning "try again later"

    def __init__(self, settings: ServerSettings, box: SecretBox, limits: ReadLimits) -> None:
        self.settings = settings
        self.where = endpoint(settings)
        self.limits = limits
        self.clock = PhaseClock()
        self.wire = Wire(
            protocol=self.protocol,
            where=self.where,
            limits=limits,
            timeouts=settings.timeouts,
            clock=self.clock,
            security=settings.security,
        )
        self._box = box
        self.tls_chain = False  # `open(tls_chain=True)`: the chain in the TLS facts
        self._open = False
        self._info: LoginCheck | None = None
        self._streaming: str | None = None  # a pipelined answer still being read

    @property
    def name(self) -> str:
        """The protocol as messages name it: IMAP, POP3."""
        return self.protocol.value.upper()

    @classmethod
    def check(
        cls,
        settings: ServerSettings,
        *,
        secret: Callable[[], str] | None,
        limits: ReadLimits | None = None,
    ) -> LoginCheck:
        """Open a session (logging in if a username is set), say goodbye, return what it showed.

        What `account test` runs. Nothing is changed on the server (POP3's QUIT after a login
        deletes nothing unless asked, RFC 1939 6). Default limits: `login_check_limits`, the
        whole check within its session deadline. Raises what `open` raises.
        """
        session = cls.open(
            settings,
            secret=secret,
            limits=limits or login_check_limits(settings.timeouts),
            tls_chain=True,
        )
        session.close()
        return session.info

    @classmethod
    def open(
        cls,
        settings: ServerSettings,
        *,
        secret: Callable[[], str] | None,
        limits: ReadLimits | None = None,
        on_transcript: TranscriptCallback | None = None,
        tls_chain: bool = False,
    ) -> Self:
        """Connect, secure the connection, read capabilities and log in if a username is set.

        `tls_chain`: describe every certificate the server sent in `info.tls` (what
        `account test` shows; it imports cryptography, which fetch need not pay for).

        `secret` is called at most once, after TLS is up, right before authenticating.
        `on_transcript` gets every line in and out as it happens (passwords and SASL
        payloads redacted, literals and messages summarised).

        Raises (before connecting) HeaderInjectionError, PlaintextAuthRefusedError,
        CredentialError; then HostNotFoundError, ConnectError, TimeoutFailure,
        CertificateError, TlsError, StartTlsUnavailableError, ResponseLimitError,
        AuthUnsupportedError, AuthError, TemporaryError, ConnectionLostError, ProtocolError.
        """
        preflight(settings, protocol=cls.protocol, secret=secret)
        box = SecretBox(secret, protocol=cls.protocol, where=endpoint(settings))
        session = cls(settings, box, limits if limits is not None else ReadLimits())
        session.tls_chain = tls_chain
        if on_transcript is not None:
            session.wire.transcript = Transcript(on_transcript)
            session.wire.transcript.info(f"connecting to {session.where} ({settings.security})")
        try:
            with session.guard():
                session._info = session._establish()
        except BaseException as err:
            session._end_after(err)
            if isinstance(err, CertificateError) and name_mismatch(err):
                names = cls._certificate_names(settings)
                if names is not None:
                    raise with_names(err, names) from err.__cause__
            raise
        return session

    @classmethod
    def _certificate_names(cls, settings: ServerSettings) -> tuple[str, ...] | None:
        """The names the server's certificate lists, read on a second connection; None if
        that fails. Only after a session was refused for a name mismatch, to say which
        names would pass: the chain is verified as before, only the name check is off, and
        the connection is dropped right after the handshake (no login), within the
        connect timeout."""
        context = client_context(verify=True, ca_file=settings.ca_file)
        context.check_hostname = False  # to read the names, never to use the connection
        probe = cls(
            replace(settings, username=None),
            SecretBox(None, protocol=cls.protocol, where=endpoint(settings)),
            ReadLimits(),
        )
        try:
            with probe.guard():
                probe._connect(context)
                sock = probe._tls_socket()
                return certificate_names(sock.getpeercert()) if sock is not None else None
        except (MailctlError, OSError, ValueError):
            return None
        finally:
            probe.abort()

    def size_for(self, count: int) -> None:
        """Raise the line and count caps so a listing of `count` messages fits (count from
        STAT or EXISTS: the server's own figure)."""
        self.limits = listing_limits(self.limits, count)
        self.wire.widen(self.limits)

    @property
    def secret_shown(self) -> str | None:
        """The password once it was asked for, to mask in server text quoted in errors."""
        return self._box.value

    @property
    def info(self) -> LoginCheck:
        """What opening the session showed (TLS, capabilities, login, timings)."""
        if self._info is None:
            raise RuntimeError("the session is not open")
        return self._info

    def _establish(self) -> LoginCheck:
        settings = self.settings
        context: ssl.SSLContext | None = None
        if settings.security is not Security.NONE:
            context = client_context(verify=settings.verify, ca_file=settings.ca_file)
        self._connect(context)
        self._greeted()
        self.clock.start("capability")
        # RFC 3501 6.2.1, RFC 2595 4: what was learned before STARTTLS is asked again.
        capabilities = self._capabilities()
        tls = self._tls_info() if context is not None else None
        authenticated = False
        if settings.username is not None:
            # Before the password: an impossible login asks for nothing.
            method = self._choose_method(capabilities)
            self.clock.start("login")
            self._login(method, self._box.get())
            authenticated = True
        self.clock.lap()
        return LoginCheck(
            protocol=self.protocol,
            host=settings.host,
            port=settings.port,
            security=settings.security,
            tls=tls,
            capabilities=capabilities,
            authenticated=authenticated,
            timings=dict(self.clock.timings),
        )

    def _connect(self, context: ssl.SSLContext | None) -> None:
        """Connect and read the greeting; for STARTTLS, switch to TLS (phases connect, tls)."""
        self._dial(context)
        self._greeted()
        if context is not None and self.settings.security is Security.STARTTLS:
            self.clock.start("tls")
            # RFC 3501 6.2.1, RFC 2595 4: only when advertised; never fall back to plaintext.
            if not self._offers_starttls():
                command = self.starttls_command
                shown = command if command == "STARTTLS" else f"{command} (STARTTLS)"
                raise StartTlsUnavailableError(
                    f"{self.name} server {self.where} does not offer {shown}, "
                    "and STARTTLS is required",
                    fixes=security_fixes(
                        self.protocol, tried=self.settings.security, seen="no STARTTLS"
                    ),
                )
            self._starttls(context)

    def _choose_method(self, capabilities: tuple[str, ...]) -> str:
        """Pick the one way to log in for the `auth` setting. Raises AuthUnsupportedError."""
        wanted = self.settings.auth
        if wanted not in (None, AuthMechanism.PLAIN, AuthMechanism.LOGIN):
            raise AuthUnsupportedError(
                f"mailctl cannot authenticate to {self.name} server {self.where} "
                f"with {wanted.value}",
                hint="use auth = plain or auth = login",
            )
        offered = self._logins()
        if wanted is None and offered:
            return next(iter(offered.values()))
        if wanted in offered:
            return offered[wanted]
        shown = wanted.value if wanted is not None else self.any_login
        raise AuthUnsupportedError(
            f"{self.name} server {self.where} does not allow {shown} authentication here "
            f"(capabilities: {', '.join(capabilities)})",
            hint="use TLS, or choose another auth mechanism",
        )

    def _login_refused(self, text: str) -> MailctlError:
        """The error for a refused login with the server's (quoted, masked) `text`."""
        username = self.settings.username or ""
        message = f"{self.name} login as {username!r} at {self.where} failed: {text}"
        match = _RESPONSE_CODE.search(text)
        if match and match.group(1).upper() in self.transient_codes:
            return TemporaryError(message, hint="try again later")
        return AuthError(message, hint="check the user name and password")

    def _map_error(self, err: Exception) -> MailctlError | None:
        """The mailctl error for a library exception (None: not a library exception)."""
        lost = self._lost(err)
        if lost is not None:
            return lost
        text = self._answer_text(err)
        if text is None:
            return None
        text = excerpt(text, secret=self.secret_shown)
        phase = self.clock.phase
        if phase == "tls":
            return TlsError(f"{self.name} {self.starttls_command} with {self.where} failed: {text}")
        return ProtocolError(
            f"{self.name} server {self.where} answered unexpectedly during {phase}: {text}"
        )

    @contextlib.contextmanager
    def streaming(self, what: str) -> Iterator[None]:
        """A pipelined answer (`what`) is being read in this block, which may pause between
        messages (a generator): no other command may go out on the session meanwhile."""
        self._streaming = what
        try:
            yield
        finally:
            self._streaming = None

    @contextlib.contextmanager
    def guard(self, phase: str | None = None) -> Iterator[None]:
        """Run one step: library failures become mailctl errors, the password is masked.

        With `phase`, the step is timed and named as that phase in messages. Refused
        (RuntimeError, a caller's bug) while a pipelined answer is still being read: the
        command would go out mid-answer and read that answer as its own.
        """
        if self._streaming is not None:
            raise RuntimeError(
                f"{self.name} {phase or 'command'} while {self._streaming} is still being "
                "read: consume or abandon it first"
            )
        if phase is not None:
            self.clock.start(phase)
        try:
            try:
                yield
            except MailctlError:
                raise
            except Exception as err:
                mapped = self._map_error(err)
                if mapped is None and isinstance(err, OSError | EOFError | ValueError):
                    mapped = map_os_error(
                        err, protocol=self.protocol, settings=self.settings, phase=self.clock.phase
                    )
                if mapped is None and isinstance(err, _PARSE_FAILURES):
                    mapped = ProtocolError(
                        f"{self.protocol.value.upper()} server {self.where} sent an answer "
                        f"mailctl cannot use during {self.clock.phase} ({type(err).__name__})",
                        hint="the server is broken or hostile; if it is yours, check its logs",
                    )
                if mapped is None:
                    raise
                raise mapped from err
        except MailctlError as err:
            self._box.scrub(err)
            raise
        finally:
            if phase is not None:
                self.clock.lap()

    def _greeted(self) -> None:
        """The server greeted us (`_connect` calls this): from now on a goodbye can be said."""
        self._open = True

    def in_step(self, error: BaseException) -> bool:
        """Whether the session can still say LOGOUT/QUIT after `error`.

        RFC 3501 6.1.3 and RFC 1939 6: a client ends a session with LOGOUT or QUIT, also
        after a refusal: a refused login, STARTTLS not offered or refused, no usable
        mechanism, a command answered NO or -ERR, a check of ours that stopped before
        sending. Never after a timeout, a read limit, a lost connection, a TLS failure or
        a garbled answer: the peer may not be listening, or would read the goodbye as part
        of something else. A protocol error is in step only when it is the server's own
        refusal (the library exception it came from says so).
        """
        if not self._open or self.wire.failed or not isinstance(error, MailctlError):
            return False
        if isinstance(
            error, TimeoutFailure | ConnectionLostError | ConnectError | HostNotFoundError
        ):
            return False
        if isinstance(error, StartTlsUnavailableError):
            return True  # not offered: the plain-text session is fine
        if isinstance(error, ProtocolError):
            cause = error.__cause__
            return cause is not None and self._refusal(cause)
        return True

    def _end_after(self, error: BaseException) -> None:
        """End the session after `error`: goodbye when still in step, else just hang up."""
        if self.in_step(error):
            self.close()
        else:
            self.abort()

    def close(self) -> None:
        """Say goodbye (LOGOUT/QUIT), then close the socket. Never raises: a failure here
        changes nothing the session already did."""
        if self._open:
            self._open = False
            with contextlib.suppress(Exception), self.guard():
                self._goodbye()
        self._shutdown()

    def abort(self) -> None:
        """Close the socket without a goodbye (after a failure the peer may not answer)."""
        self._open = False
        with contextlib.suppress(Exception):
            self._shutdown()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self._end_after(exc)

    # -- the protocol's words --------------------------------------------------------------

    @abstractmethod
    def _dial(self, context: ssl.SSLContext | None) -> None:
        """Open the connection (implicit TLS when `security` is tls) and read the greeting."""

    @abstractmethod
    def _offers_starttls(self) -> bool:
        """Ask for the capabilities before TLS; whether the upgrade is offered."""

    @abstractmethod
    def _starttls(self, context: ssl.SSLContext) -> None:
        """Upgrade the connection to TLS."""

    @abstractmethod
    def _capabilities(self) -> tuple[str, ...]:
        """Ask for the capabilities (after TLS); return them as shown to users."""

    def _tls_info(self) -> HandshakeFacts | None:
        """Facts about the TLS connection, with the chain when asked (`account test`)."""
        verified = True if self.settings.verify else None  # else the handshake had failed
        return handshake_facts(self._tls_socket(), verified=verified, with_chain=self.tls_chain)

    @abstractmethod
    def _tls_socket(self) -> ssl.SSLSocket | None:
        """The TLS socket of the connection (None before TLS)."""

    @abstractmethod
    def _logins(self) -> dict[AuthMechanism, str]:
        """The logins the last capabilities offer, keyed by the `auth` setting each one
        answers, in the protocol's order of preference (the first is used without `auth`)."""

    @abstractmethod
    def _login(self, method: str, password: str) -> None:
        """Authenticate once; a refusal is `_login_refused`. Raises AuthError,
        AuthUnsupportedError, TemporaryError."""

    @abstractmethod
    def _lost(self, err: Exception) -> ConnectionLostError | None:
        """The error for a library exception that means the connection ended, else None."""

    @abstractmethod
    def _answer_text(self, err: Exception) -> str | None:
        """The server text in a library exception for an answer it did not expect
        (None: not the library's exception)."""

    @abstractmethod
    def _refusal(self, cause: BaseException) -> bool:
        """Whether a library exception is the server refusing in step (IMAP NO/BAD,
        POP3 -ERR), as opposed to a dropped connection or an answer it could not parse."""

    @abstractmethod
    def _goodbye(self) -> None:
        """LOGOUT or QUIT."""

    @abstractmethod
    def _shutdown(self) -> None:
        """Close the socket (no exchange); safe to call twice and before connecting."""
