"""IMAP sessions over imapclient: the login check (connect, TLS, capabilities, login, logout)."""

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
    MailctlError,
    ProtocolError,
    StartTlsUnavailableError,
    TemporaryError,
    TlsError,
)
from mailctl.models import AuthMechanism, Protocol, Security, ServerSettings
from mailctl.protocols.checks import (
    LoginCheck,
    PhaseClock,
    SecretBox,
    endpoint,
    map_os_error,
    preflight,
    quote_server,
)
from mailctl.protocols.tls import client_context, tls_info

# RFC 5530 response codes that mean "try again later", not "wrong credentials".
_TRANSIENT_CODES = {"UNAVAILABLE", "INUSE", "LIMIT"}
_RESPONSE_CODE = re.compile(r"\[([A-Za-z-]+)")


def check_imap(settings: ServerSettings, *, secret: Callable[[], str] | None) -> LoginCheck:
    """Connect to an IMAP server, read its capabilities, log in if a username is set, log out.

    `secret` is called at most once, after TLS is up, right before LOGIN/AUTHENTICATE.

    Raises (before connecting) HeaderInjectionError, PlaintextAuthRefusedError,
    CredentialError; then HostNotFoundError, ConnectError, TimeoutFailure,
    CertificateError, TlsError, StartTlsUnavailableError, AuthUnsupportedError,
    AuthError, TemporaryError, ConnectionLostError, ProtocolError.
    """
    preflight(settings, protocol=Protocol.IMAP, secret=secret)
    box = SecretBox(secret, protocol=Protocol.IMAP, where=endpoint(settings))
    try:
        return _check(settings, box)
    except MailctlError as err:
        box.scrub(err)
        raise


def _check(settings: ServerSettings, box: SecretBox) -> LoginCheck:
    from imapclient import IMAPClient, SocketTimeout  # heavy: imported only when used

    where = endpoint(settings)
    context: ssl.SSLContext | None = None
    if settings.security is not Security.NONE:
        context = client_context(verify=settings.verify, ca_file=settings.ca_file)
    clock = PhaseClock()
    if context is not None and settings.security is Security.TLS:
        clock.time_handshakes(context)
    client: Any = None
    result: LoginCheck | None = None
    try:
        client = IMAPClient(
            settings.host,
            port=settings.port,
            ssl=settings.security is Security.TLS,
            ssl_context=context,
            # imapclient waits forever by default (FACTS.md): bound connect and every read.
            timeout=SocketTimeout(
                connect=settings.timeouts.connect, read=settings.timeouts.command
            ),
        )
        if settings.security is Security.STARTTLS:
            clock.start("tls")
            # RFC 3501 6.2.1: STARTTLS only when advertised; never fall back to plaintext.
            if "STARTTLS" not in _capabilities(client):
                raise StartTlsUnavailableError(
                    f"IMAP server {where} does not offer STARTTLS",
                    hint="use security tls (port 993) if the server supports it",
                )
            client.starttls(context)
        clock.start("capability")
        # RFC 3501 6.2.1: capabilities learned before STARTTLS are discarded and asked again.
        capabilities = _capabilities(client)
        tls = tls_info(client.socket()) if context is not None else None
        authenticated = False
        if settings.username is not None:
            method = _choose_method(settings, capabilities)
            clock.start("login")
            _login(client, method, settings, box.get())
            authenticated = True
        clock.lap()
        result = LoginCheck(
            protocol=Protocol.IMAP,
            host=settings.host,
            port=settings.port,
            security=settings.security,
            tls=tls,
            capabilities=capabilities,
            authenticated=authenticated,
            timings=dict(clock.timings),
        )
    except MailctlError:
        raise
    except imaplib.IMAP4.abort as err:
        raise ConnectionLostError(
            f"IMAP server {where} dropped the connection during {clock.phase}: "
            f"{quote_server(_error_text(err), secret=box.value)}"
        ) from err
    except imaplib.IMAP4.error as err:
        text = quote_server(_error_text(err), secret=box.value)
        if clock.phase == "tls":
            raise TlsError(f"IMAP STARTTLS with {where} failed: {text}") from err
        raise ProtocolError(
            f"IMAP server {where} answered unexpectedly during {clock.phase}: {text}"
        ) from err
    except (OSError, EOFError, ValueError) as err:
        raise map_os_error(
            err, protocol=Protocol.IMAP, settings=settings, phase=clock.phase
        ) from err
    finally:
        if client is not None and result is None:
            _shutdown(client)
    _logout(client)
    return result


def _capabilities(client: Any) -> tuple[str, ...]:
    raw: tuple[bytes, ...] = client.capabilities()
    return tuple(item.decode("ascii", "replace").upper() for item in raw)


def _choose_method(settings: ServerSettings, capabilities: tuple[str, ...]) -> str:
    """Pick the one way to authenticate; it is tried once (retrying locks accounts).

    Raises AuthUnsupportedError.
    """
    where = endpoint(settings)
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
            f"mailctl cannot authenticate to IMAP server {where} with {settings.auth.value}",
            hint="use auth = plain or auth = login",
        )
    wanted = settings.auth.value if settings.auth else "plain or login"
    raise AuthUnsupportedError(
        f"IMAP server {where} does not allow {wanted} authentication here "
        f"(capabilities: {' '.join(capabilities)})",
        hint="use TLS, or choose another auth mechanism",
    )


def _quoted(value: str) -> str:
    """An IMAP quoted string (RFC 3501 4.3); imaplib quotes the password but not the user."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _login(client: Any, method: str, settings: ServerSettings, password: str) -> None:
    """Authenticate once with `method`.

    Raises AuthUnsupportedError, AuthError, TemporaryError.
    """
    from imapclient.exceptions import LoginError

    username = settings.username or ""
    where = endpoint(settings)
    try:
        if method == "plain":
            client.plain_login(username, password)
        else:
            if not (username.isascii() and password.isascii()):
                raise AuthUnsupportedError(
                    f"the IMAP LOGIN command cannot carry a non-ASCII user name or password "
                    f"to {where}",
                    hint="use auth = plain if the server offers AUTH=PLAIN",
                )
            client.login(_quoted(username), password)
    except LoginError as err:
        if isinstance(err.__context__, imaplib.IMAP4.abort):
            # imapclient turns every failure inside LOGIN into LoginError, drops included.
            raise ConnectionLostError(
                f"IMAP server {where} dropped the connection during login"
            ) from err
        text = quote_server(_error_text(err), secret=password)
        match = _RESPONSE_CODE.search(text)
        message = f"IMAP login as {username!r} at {where} failed: {text}"
        if match and match.group(1).upper() in _TRANSIENT_CODES:
            raise TemporaryError(message, hint="try again later") from err
        raise AuthError(message, hint="check the user name and password") from err


def _error_text(err: BaseException) -> str:
    """The server text in an imaplib/imapclient error, without a bytes repr around it."""
    first = err.args[0] if err.args else ""
    if isinstance(first, bytes):
        return first.decode("utf-8", "replace")
    text = str(first)
    # imapclient re-raises login failures as LoginError(str(imaplib_error)): "b'...'".
    if len(text) >= 3 and text[0] == "b" and text[1] in "'\"" and text[-1] == text[1]:
        text = text[2:-1]
    return text


def _logout(client: Any) -> None:
    """Say LOGOUT after a successful check; a failure here changes nothing the check found."""
    try:
        client.logout()
    except (imaplib.IMAP4.error, OSError, EOFError):
        _shutdown(client)


def _shutdown(client: Any) -> None:
    """Close the socket without a LOGOUT exchange (after a failure the peer may not answer)."""
    with contextlib.suppress(imaplib.IMAP4.error, OSError, EOFError):
        client.shutdown()
