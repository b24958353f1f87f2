"""`MailSession`: the skeleton IMAP and POP3 sessions share (open with TLS and login, close).

Opening runs the same steps for both protocols: preflight checks before any socket, the
connection with implicit TLS or required STARTTLS, capabilities asked again after TLS, one
authentication attempt with the password asked for only then, and a `LoginCheck` of what
was seen. Subclasses (`ImapSession`, `Pop3Session`) supply the protocol's steps and its
operations; every read goes through the session's `Wire` under its `ReadLimits`. Errors
are `mailctl.errors` types only, with the password masked in every chained exception.
"""

from __future__ import annotations

import contextlib
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import ClassVar, Self

from mailctl.errors import (
    ConnectError,
    ConnectionLostError,
    HostNotFoundError,
    MailctlError,
    ProtocolError,
    StartTlsUnavailableError,
    TimeoutFailure,
)
from mailctl.models import Protocol, Security, ServerSettings
from mailctl.protocols.checks import (
    LoginCheck,
    PhaseClock,
    SecretBox,
    endpoint,
    map_os_error,
    preflight,
)
from mailctl.protocols.limits import ReadLimits
from mailctl.protocols.tls import TlsInfo, client_context
from mailctl.protocols.wire import Wire

# The libraries parse server answers with few checks: a malformed one can surface as these
# (imapclient: CAPABILITY answered OK with nothing listed -> AttributeError on None). From
# a server they are a protocol error, not "a bug in mailctl"; the chain keeps the detail.
_PARSE_FAILURES = (AttributeError, TypeError, LookupError)


class MailSession(ABC):
    """One IMAP or POP3 connection: `open()`, operations (subclasses), `close()`."""

    protocol: ClassVar[Protocol]

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
        )
        self._box = box
        self._open = False
        self._info: LoginCheck | None = None

    @classmethod
    def open(
        cls,
        settings: ServerSettings,
        *,
        secret: Callable[[], str] | None,
        limits: ReadLimits | None = None,
    ) -> Self:
        """Connect, secure the connection, read capabilities and log in if a username is set.

        `secret` is called at most once, after TLS is up, right before authenticating.

        Raises (before connecting) HeaderInjectionError, PlaintextAuthRefusedError,
        CredentialError; then HostNotFoundError, ConnectError, TimeoutFailure,
        CertificateError, TlsError, StartTlsUnavailableError, ResponseLimitError,
        AuthUnsupportedError, AuthError, TemporaryError, ConnectionLostError, ProtocolError.
        """
        preflight(settings, protocol=cls.protocol, secret=secret)
        box = SecretBox(secret, protocol=cls.protocol, where=endpoint(settings))
        session = cls(settings, box, limits if limits is not None else ReadLimits())
        try:
            with session.guard():
                session._info = session._establish()
        except BaseException as err:
            session._end_after(err)
            raise
        return session

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
            method = self._choose_method()  # before the password: an impossible login asks nothing
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

    @contextlib.contextmanager
    def guard(self, phase: str | None = None) -> Iterator[None]:
        """Run one step: library failures become mailctl errors, the password is masked.

        With `phase`, the step is timed and named as that phase in messages.
        """
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

    # -- the protocol's steps -------------------------------------------------------------

    @abstractmethod
    def _connect(self, context: ssl.SSLContext | None) -> None:
        """Connect, read the greeting and, for STARTTLS, switch to TLS (phases connect, tls)."""

    @abstractmethod
    def _capabilities(self) -> tuple[str, ...]:
        """Ask for the capabilities (after TLS); return them as shown to users."""

    @abstractmethod
    def _tls_info(self) -> TlsInfo | None:
        """Facts about the TLS connection."""

    @abstractmethod
    def _choose_method(self) -> str:
        """Pick the one way to authenticate. Raises AuthUnsupportedError."""

    @abstractmethod
    def _login(self, method: str, password: str) -> None:
        """Authenticate once. Raises AuthError, AuthUnsupportedError, TemporaryError."""

    @abstractmethod
    def _map_error(self, err: Exception) -> MailctlError | None:
        """The mailctl error for a library exception (None: not a library exception)."""

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
