"""The login-check result shared by IMAP and POP3, the phase clock, and the guards both run."""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailctl.errors import (
    ConnectError,
    ConnectionLostError,
    CredentialError,
    HeaderInjectionError,
    HostNotFoundError,
    InputDataError,
    MailctlError,
    PlaintextAuthRefusedError,
    ProtocolError,
    TimeoutFailure,
)
from mailctl.hosts import endpoint as _endpoint
from mailctl.models import Protocol, Security, ServerSettings
from mailctl.protocols.handshake import HandshakeFacts
from mailctl.protocols.resolve import ResolverTimeout, resolver_timeout_error
from mailctl.protocols.tls import map_ssl_error, plaintext_auth_fixes
from mailctl.serialize import SECONDS


@dataclass(frozen=True)
class LoginCheck:
    """What connecting (and, with a username, logging in) to an IMAP or POP3 server showed.

    `timings` are seconds per phase: `connect` (TCP connect and greeting), `tls` (the
    implicit-TLS handshake, or STARTTLS/STLS and its handshake), `capability` (the
    capability query after TLS) and `login`; a phase that did not happen is absent.
    """

    protocol: Protocol
    host: str
    port: int
    security: Security
    tls: HandshakeFacts | None
    capabilities: tuple[str, ...]
    authenticated: bool
    timings: dict[str, float] = field(metadata=SECONDS)


class PhaseClock:
    """Accumulate wall-clock seconds per phase and remember the phase in progress."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.phase = "connect"
        self._mark = time.perf_counter()

    def start(self, phase: str) -> None:
        """Close the running phase and begin `phase`."""
        self.lap()
        self.phase = phase

    def lap(self) -> None:
        """Add the time since the last mark to the running phase."""
        now = time.perf_counter()
        self.timings[self.phase] = self.timings.get(self.phase, 0.0) + (now - self._mark)
        self._mark = now


# Why a TCP connect failed, in the words msmtp and curl use, not Python's ("Connect call
# failed ('127.0.0.1', 2999)" is asyncio's text for ECONNREFUSED).
_CONNECT_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
    errno.ECONNRESET: "connection reset",
    errno.EADDRNOTAVAIL: "address not available",
    errno.EACCES: "permission denied",
}


def connect_reason(err: BaseException) -> str:
    """Why connecting failed, in a few words: connection refused, timed out, no route to host."""
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, OSError) and err.errno in _CONNECT_REASONS:
        return _CONNECT_REASONS[err.errno]
    if isinstance(err, OSError) and err.strerror:
        return err.strerror[:1].lower() + err.strerror[1:]
    return type(err).__name__


def endpoint(settings: ServerSettings) -> str:
    """`host:port` of a server block as messages show it (mailctl.hosts.endpoint's rule)."""
    return _endpoint(settings.host, settings.port)


def validate_credential(what: str, value: str, *, protocol: Protocol, where: str) -> None:
    """Refuse CR, LF and NUL before a credential reaches a command line.

    IMAP and POP3 commands end at CRLF; a username or password carrying one would
    become a second command (the imapclient issue #657 class of bug). The value
    itself is never quoted: it may be a password.

    Raises HeaderInjectionError; InputDataError (username) or CredentialError (password) for
    a value that is not UTF-8 text (PEP 383 surrogate escapes of argv/environment bytes): no
    SASL mechanism or command line can carry it.
    """
    if any("\ud800" <= char <= "\udfff" for char in value):
        error = CredentialError if what == "password" else InputDataError
        raise error(
            f"the {protocol.value.upper()} {what} for {where} is not valid UTF-8 text",
            hint=f"give the {what} as UTF-8 text",
        )
    if any(char in value for char in "\r\n\0"):
        raise HeaderInjectionError(
            f"the {protocol.value.upper()} {what} for {where} contains a CR, LF or NUL character",
            hint=f"remove line breaks and NUL characters from the {what}",
        )


def preflight(
    settings: ServerSettings, *, protocol: Protocol, secret: Callable[[], str] | None
) -> None:
    """Run every check that must pass before a socket is opened.

    Raises HeaderInjectionError, CredentialError, PlaintextAuthRefusedError.
    """
    where = endpoint(settings)
    if settings.username is None:
        return
    validate_credential("username", settings.username, protocol=protocol, where=where)
    if settings.security is Security.NONE and not settings.allow_plaintext_auth:
        raise PlaintextAuthRefusedError(
            f"refusing to send the {protocol.value.upper()} password to {where} "
            "without TLS (security = none)",
            fixes=plaintext_auth_fixes(protocol),
        )
    if secret is None:
        raise CredentialError(
            f"no password available for {protocol.value.upper()} user "
            f"{settings.username!r} at {where}",
            hint="set MAILCTL_PASSWORD, password_command, or store one in the keyring",
        )


class SecretBox:
    """The password, asked for at most once and remembered so error paths can mask it."""

    def __init__(self, secret: Callable[[], str] | None, *, protocol: Protocol, where: str):
        self._secret = secret
        self._protocol = protocol
        self._where = where
        self.value: str | None = None

    def get(self) -> str:
        """Call the provider once and validate the answer.

        Raises CredentialError (no provider, or it failed with anything but a
        MailctlError), HeaderInjectionError.
        """
        if self.value is not None:
            return self.value
        name = self._protocol.value.upper()
        if self._secret is None:
            raise CredentialError(f"no {name} password available for {self._where}")
        try:
            value = self._secret()
        except MailctlError:
            raise
        except Exception as err:
            raise CredentialError(
                f"could not obtain the {name} password for {self._where}: {type(err).__name__}"
            ) from err
        self.value = value
        validate_credential("password", value, protocol=self._protocol, where=self._where)
        return value

    def scrub(self, err: BaseException) -> None:
        """Mask the password in the arguments of `err` and every exception chained to it.

        Messages are built without it, but a library or server text quoted in a chained
        exception could carry it into a traceback.
        """
        if not self.value:
            return
        secret = self.value
        secret_bytes = secret.encode("utf-8", "replace")
        pending: list[BaseException] = [err]
        seen: set[int] = set()
        while pending:
            current = pending.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            masked = tuple(_mask(arg, secret, secret_bytes) for arg in current.args)
            with contextlib.suppress(TypeError, AttributeError):
                current.args = masked
            pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def _mask(arg: object, secret: str, secret_bytes: bytes) -> object:
    if isinstance(arg, str):
        return arg.replace(secret, "<redacted>")
    if isinstance(arg, bytes):
        return arg.replace(secret_bytes, b"<redacted>")
    return arg


def map_os_error(
    err: BaseException, *, protocol: Protocol, settings: ServerSettings, phase: str
) -> MailctlError:
    """Turn a socket, ssl, OS or codec exception into the matching mailctl error.

    Messages are built from the endpoint, the phase and the OS error text only.
    """
    where = endpoint(settings)
    name = protocol.value.upper()
    lost = f"{name} server {where} closed the connection during {phase}"
    error: MailctlError
    if isinstance(err, ssl.SSLError):
        error = map_ssl_error(err, host=where, settings=settings, protocol=protocol)
    elif isinstance(err, ResolverTimeout):
        error = resolver_timeout_error(err, f"{name} server {where}")
    elif isinstance(err, socket.gaierror):
        error = HostNotFoundError(
            f"cannot connect to {name} server {where}: host not found",
            hint="check the host name",
            details={"resolver": str(err.strerror or err)},
        )
    elif isinstance(err, UnicodeError) and phase == "connect":
        # The IDNA codec rejects malformed names (empty or over-long labels).
        error = HostNotFoundError(
            f"invalid host name {settings.host!r} ({name} server {where})",
            hint="check the host name",
        )
    elif isinstance(err, TimeoutError) and phase == "connect":
        # errors.ExitCode: a connect timeout is "cannot connect" (IOERR), like a refusal.
        # The TCP connect itself (the greeting's wait is the Wire's, which says so).
        error = ConnectError(
            f"cannot connect to {name} server {where}: timed out after "
            f"{settings.timeouts.connect:g} s (connect_timeout)",
            hint="check the host, the port and any firewall",
        )
    elif isinstance(err, TimeoutError):
        # A TLS handshake runs under what is left of the greeting's (implicit TLS) or the
        # STARTTLS command's deadline (protocols.wire).
        key, seconds = (
            ("connect_timeout", settings.timeouts.connect)
            if phase == "tls" and settings.security is Security.TLS
            else ("command_timeout", settings.timeouts.command)
        )
        error = TimeoutFailure(
            f"{name} server {where} did not answer within {seconds:g} s during {phase} ({key})",
            hint=f"the server is slow or stuck; try again later or raise {key}",
        )
    elif isinstance(err, ConnectionResetError | BrokenPipeError | EOFError):
        error = ConnectionLostError(lost)
    elif isinstance(err, OSError) and phase == "connect":
        error = ConnectError(
            f"cannot connect to {name} server {where}: {connect_reason(err)}",
            hint="check the host, the port and that the server is running",
        )
    elif isinstance(err, OSError):
        error = ConnectionLostError(f"{lost}: {err.strerror or type(err).__name__}")
    else:
        error = ProtocolError(
            f"unexpected failure talking to {name} server {where} during {phase}: "
            f"{type(err).__name__}"
        )
    return error
