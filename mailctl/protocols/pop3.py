"""POP3 sessions over poplib: the login check (connect, TLS, capabilities, login, quit)."""

from __future__ import annotations

import base64
import contextlib
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

# RFC 2449 8 / RFC 3206: response codes that mean "try again later", not "wrong password".
_TRANSIENT_CODES = {"SYS/TEMP", "IN-USE", "LOGIN-DELAY"}
_RESPONSE_CODE = re.compile(r"\[([A-Za-z/-]+)")
# poplib raises this text when the server closes the connection mid-reply.
_POPLIB_EOF = "-ERR EOF"


def check_pop3(settings: ServerSettings, *, secret: Callable[[], str] | None) -> LoginCheck:
    """Connect to a POP3 server, read its capabilities, log in if a username is set, quit.

    `secret` is called at most once, after TLS is up, right before PASS/AUTH. Nothing is
    deleted: QUIT after a login only ends the session (RFC 1939 6).

    Raises (before connecting) HeaderInjectionError, PlaintextAuthRefusedError,
    CredentialError; then HostNotFoundError, ConnectError, TimeoutFailure,
    CertificateError, TlsError, StartTlsUnavailableError, AuthUnsupportedError,
    AuthError, TemporaryError, ConnectionLostError, ProtocolError.
    """
    preflight(settings, protocol=Protocol.POP3, secret=secret)
    box = SecretBox(secret, protocol=Protocol.POP3, where=endpoint(settings))
    try:
        return _check(settings, box)
    except MailctlError as err:
        box.scrub(err)
        raise


def _check(settings: ServerSettings, box: SecretBox) -> LoginCheck:
    where = endpoint(settings)
    context: ssl.SSLContext | None = None
    if settings.security is not Security.NONE:
        context = client_context(verify=settings.verify, ca_file=settings.ca_file)
    clock = PhaseClock()
    client: poplib.POP3 | None = None
    result: LoginCheck | None = None
    try:
        client = _connect(settings, context, clock)
        clock.start("capability")
        # RFC 2595 4: what CAPA said before STLS is discarded and asked again.
        capabilities = _capa(client)
        sock = client.sock
        tls = tls_info(sock) if isinstance(sock, ssl.SSLSocket) else None
        authenticated = False
        if settings.username is not None:
            method = _choose_method(settings, capabilities)
            clock.start("login")
            _login(client, method, settings, box.get())
            authenticated = True
        clock.lap()
        result = LoginCheck(
            protocol=Protocol.POP3,
            host=settings.host,
            port=settings.port,
            security=settings.security,
            tls=tls,
            capabilities=_render(capabilities),
            authenticated=authenticated,
            timings=dict(clock.timings),
        )
    except MailctlError:
        raise
    except poplib.error_proto as err:
        raise _map_reply_error(err, where=where, phase=clock.phase, password=box.value) from err
    except (OSError, EOFError, ValueError) as err:
        raise map_os_error(
            err, protocol=Protocol.POP3, settings=settings, phase=clock.phase
        ) from err
    finally:
        if client is not None and result is None:
            _close(client)
    _quit(client)
    return result


def _connect(
    settings: ServerSettings, context: ssl.SSLContext | None, clock: PhaseClock
) -> poplib.POP3:
    """Open the connection, read the greeting and, for STARTTLS, switch to TLS.

    Raises StartTlsUnavailableError; library exceptions pass through to the caller's map.
    """
    # poplib has no certificate checks without a context (FACTS.md): always pass ours.
    client: poplib.POP3
    if context is not None and settings.security is Security.TLS:
        clock.time_handshakes(context)
        client = _Pop3Tls(settings.host, settings.port, settings.timeouts.connect, context)
    else:
        client = _Pop3(settings.host, settings.port, settings.timeouts.connect)
    try:
        client.sock.settimeout(settings.timeouts.command)
        if context is not None and settings.security is Security.STARTTLS:
            clock.start("tls")
            # RFC 2595 4: STLS only when CAPA lists it; never fall back to plaintext.
            if "STLS" not in _capa(client):
                raise StartTlsUnavailableError(
                    f"POP3 server {endpoint(settings)} does not offer STLS (STARTTLS)",
                    hint="use security tls (port 995) if the server supports it",
                )
            client.stls(context)
    except BaseException:
        _close(client)
        raise
    return client


class _Pop3(poplib.POP3):
    """poplib.POP3 that closes its socket when the greeting fails (poplib leaves it open)."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        try:
            super().__init__(host, port, timeout)
        except BaseException:
            _close_partial(self)
            raise


class _Pop3Tls(poplib.POP3_SSL):
    """poplib.POP3_SSL that closes its socket when the greeting fails."""

    def __init__(self, host: str, port: int, timeout: float, context: ssl.SSLContext) -> None:
        try:
            super().__init__(host, port, timeout=timeout, context=context)
        except BaseException:
            _close_partial(self)
            raise


def _close_partial(client: poplib.POP3) -> None:
    """Close what a half-constructed poplib object opened (attributes may be missing)."""
    for name in ("file", "sock"):
        handle = getattr(client, name, None)
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()


def _map_reply_error(
    err: poplib.error_proto, *, where: str, phase: str, password: str | None
) -> MailctlError:
    """An unexpected -ERR (or poplib's own complaint) outside the login exchange."""
    text = quote_server(_reply_text(err), secret=password)
    if text == _POPLIB_EOF:
        return ConnectionLostError(f"POP3 server {where} closed the connection during {phase}")
    if phase == "tls":
        return TlsError(f"POP3 STLS with {where} failed: {text}")
    return ProtocolError(f"POP3 server {where} answered unexpectedly during {phase}: {text}")


def _capa(client: poplib.POP3) -> dict[str, list[str]]:
    """CAPA (RFC 2449); an RFC 1939-only server answers -ERR, which means "none listed"."""
    try:
        capabilities = client.capa()
    except poplib.error_proto as err:
        if _reply_text(err) == _POPLIB_EOF:
            raise
        return {}
    return {name.upper(): args for name, args in capabilities.items()}


def _render(capabilities: dict[str, list[str]]) -> tuple[str, ...]:
    return tuple(" ".join([name, *args]) for name, args in capabilities.items())


def _sasl(capabilities: dict[str, list[str]]) -> set[str]:
    return {mechanism.upper() for mechanism in capabilities.get("SASL", [])}


def _choose_method(settings: ServerSettings, capabilities: dict[str, list[str]]) -> str:
    """Pick the one way to authenticate; it is tried once (retrying locks accounts).

    Raises AuthUnsupportedError.
    """
    where = endpoint(settings)
    # Without CAPA we cannot know; USER/PASS is the RFC 1939 baseline worth one try.
    user_pass = "USER" in capabilities or not capabilities
    plain = "PLAIN" in _sasl(capabilities)
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
            f"mailctl cannot authenticate to POP3 server {where} with {settings.auth.value}",
            hint="use auth = plain or auth = login",
        )
    wanted = settings.auth.value if settings.auth else "USER/PASS or SASL PLAIN"
    raise AuthUnsupportedError(
        f"POP3 server {where} does not allow {wanted} authentication here "
        f"(capabilities: {', '.join(_render(capabilities))})",
        hint="use TLS, or choose another auth mechanism",
    )


def _login(client: poplib.POP3, method: str, settings: ServerSettings, password: str) -> None:
    """Authenticate once with `method`. poplib's debug output is never enabled: it prints PASS.

    Raises AuthError, TemporaryError.
    """
    username = settings.username or ""
    try:
        if method == "plain":
            # RFC 5034 4 with an RFC 4616 initial response: one round trip, UTF-8 safe.
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")
            # poplib has no AUTH command; _shortcmd is how its own commands send a line.
            send = getattr(client, "_shortcmd")  # noqa: B009
            send(f"AUTH PLAIN {token}")
        else:
            client.user(username)
            client.pass_(password)
    except poplib.error_proto as err:
        text = quote_server(_reply_text(err), secret=password)
        if text == _POPLIB_EOF:
            raise
        where = endpoint(settings)
        match = _RESPONSE_CODE.search(text)
        message = f"POP3 login as {username!r} at {where} failed: {text}"
        if match and match.group(1).upper() in _TRANSIENT_CODES:
            raise TemporaryError(message, hint="try again later") from err
        raise AuthError(message, hint="check the user name and password") from err


def _reply_text(err: poplib.error_proto) -> str:
    """The server line poplib put in the exception (bytes or str), as text."""
    first = err.args[0] if err.args else ""
    if isinstance(first, bytes):
        return first.decode("utf-8", "replace")
    return str(first)


def _quit(client: poplib.POP3) -> None:
    """Say QUIT after a successful check; a failure here changes nothing the check found."""
    try:
        client.quit()
    except (poplib.error_proto, OSError, EOFError):
        _close(client)


def _close(client: poplib.POP3) -> None:
    """Close the socket without a QUIT exchange (after a failure the peer may not answer)."""
    with contextlib.suppress(poplib.error_proto, OSError, EOFError):
        client.close()
