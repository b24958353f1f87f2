"""Session set-up steps: the TCP socket, the EHLO name, EHLO/HELO, STARTTLS and the one AUTH."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import Callable
from typing import Any

from aiosmtplib.errors import SMTPException, SMTPResponseException

from mailctl.errors import (
    AuthError,
    AuthUnsupportedError,
    ConnectError,
    CredentialError,
    Fix,
    HostNotFoundError,
    InputDataError,
    ProtocolError,
    SmtpTransientError,
    StartTlsUnavailableError,
)
from mailctl.models import AuthMechanism, Protocol, Reply, ServerSettings
from mailctl.protocols.checks import connect_reason
from mailctl.protocols.ehlo import default_ehlo_name
from mailctl.protocols.resolve import ResolverTimeout, lookup_async, resolver_timeout_error
from mailctl.protocols.smtp.client import Client
from mailctl.protocols.smtp.errors import reply_error, reply_text, to_reply, transport_error
from mailctl.protocols.tls import security_fixes
from mailctl.serialize import to_data

__all__ = [
    "AUTO_MECHANISMS",
    "authenticate",
    "check_command_text",
    "choose_mechanism",
    "default_ehlo_name",
    "ehlo",
    "open_socket",
    "starttls",
]

# Picked in this order when settings.auth is None. XOAUTH2 is never picked on its own:
# its secret is a bearer token, so the user has to ask for it.
AUTO_MECHANISMS: tuple[AuthMechanism, ...] = (
    AuthMechanism.PLAIN,
    AuthMechanism.LOGIN,
    AuthMechanism.CRAM_MD5,
)

# PEP 383: bytes that are not UTF-8 arrive from argv and the environment as lone surrogates.
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_command_text(what: str, value: str) -> None:
    """Refuse CR, LF, NUL and other controls before they can become extra commands."""
    if not value or re.search(r"[\s\x00-\x1f\x7f]", value):
        raise InputDataError(f"{what} {value!r} is empty or contains spaces or control characters")


async def starttls(
    client: Client, settings: ServerSettings, where: str, context: ssl.SSLContext | None
) -> None:
    """Upgrade with STARTTLS, which is required: never fall back to clear text."""
    if not client.supports_extension("starttls"):
        # RFC 3207 4: a client that requires TLS must not go on in clear text.
        raise StartTlsUnavailableError(
            f"{where} does not offer STARTTLS, and STARTTLS is required",
            fixes=security_fixes(Protocol.SMTP, tried=settings.security, seen="no STARTTLS"),
        )
    timeout = settings.timeouts.connect
    try:
        await client.starttls(
            server_hostname=settings.tls_name or settings.host, tls_context=context, timeout=timeout
        )
    except SMTPResponseException as err:
        reply = to_reply(err)
        if reply.code == 421:  # RFC 5321 3.8: closing, not a TLS problem
            client.close()
            raise reply_error(reply, f"{where} is closing the connection") from err
        raise StartTlsUnavailableError(
            f"{where} refused STARTTLS: {reply_text(reply)}",
            details={"reply": to_data(reply)},
        ) from err
    except (SMTPException, OSError) as err:
        raise transport_error(err, where, "STARTTLS", timeout, settings=settings) from err


async def ehlo(client: Client, where: str, timeout: float, *, helo_fallback: bool = False) -> None:
    """Send EHLO; with `helo_fallback`, fall back to HELO for a pre-ESMTP server.

    RFC 5321 3.2 and 4.1.4: a client may retry with HELO when EHLO is not recognised
    (500/502). Only sessions that need no extension (no TLS, no AUTH) may do that.
    """
    try:
        await client.ehlo()
        return
    except SMTPResponseException as err:
        reply = to_reply(err)
        if not (helo_fallback and reply.code in (500, 502) and client.is_connected):
            raise reply_error(reply, f"{where} refused EHLO") from err
    except (SMTPException, OSError) as err:
        client.close()
        raise transport_error(err, where, "EHLO", timeout) from err
    try:
        await client.helo()
    except SMTPResponseException as err:
        raise reply_error(to_reply(err), f"{where} refused HELO") from err
    except (SMTPException, OSError) as err:
        client.close()
        raise transport_error(err, where, "HELO", timeout) from err


def choose_mechanism(client: Client, settings: ServerSettings, where: str) -> AuthMechanism:
    """Pick the one mechanism to try: the configured one, else the first of AUTO_MECHANISMS."""
    advertised = [name.lower() for name in client.server_auth_methods]
    if not client.supports_extension("auth") or not advertised:
        hint = None if client.tls_active else "many servers offer AUTH only over TLS or STARTTLS"
        raise AuthUnsupportedError(f"{where} does not offer AUTH", hint=hint)
    if settings.auth is not None:
        if settings.auth.value not in advertised:
            raise AuthUnsupportedError(
                f"{where} does not offer AUTH {settings.auth.value.upper()} "
                f"(it offers {' '.join(m.upper() for m in advertised)})",
                fixes=[Fix("auth", when="choose one of the offered mechanisms")],
            )
        return settings.auth
    for mechanism in AUTO_MECHANISMS:
        if mechanism.value in advertised:
            return mechanism
    raise AuthUnsupportedError(
        f"{where} offers no AUTH mechanism mailctl uses without being asked "
        f"(it offers {' '.join(m.upper() for m in advertised)})",
        fixes=[Fix("auth", "xoauth2", "if the server wants OAuth, with a bearer token")],
    )


async def authenticate(
    client: Client,
    mechanism: AuthMechanism,
    username: str,
    secret_source: Callable[[], str],
    where: str,
) -> None:
    """Authenticate once; map every failure without ever putting the secret in a message.

    Raises InputDataError for a user name and CredentialError for a secret that UTF-8 cannot
    carry (RFC 4616: PLAIN is UTF-8; LOGIN and CRAM-MD5 send the same bytes), before AUTH.
    """
    if _SURROGATE.search(username):
        raise InputDataError(
            f"the user name for {where} is not valid UTF-8 text",
            hint="give the user name as UTF-8 (iconv -t UTF-8 converts it)",
        )
    secret = secret_source()  # the only call: right before AUTH, never again
    if _SURROGATE.search(secret):  # the sources check this too; never show a byte of it
        raise CredentialError(
            f"the password for {where} is not valid UTF-8 text",
            hint="a password is sent as UTF-8 (RFC 4616); set it from UTF-8 text",
        )
    try:
        response = await client.authenticate(mechanism, username, secret)
    except SMTPException as err:
        if isinstance(err, SMTPResponseException):  # e.g. a bad CRAM-MD5 challenge
            raise ProtocolError(
                f"{where} sent an unusable AUTH {mechanism.value.upper()} challenge"
            ) from err
        raise transport_error(err, where, "AUTH", client.timeout or 0.0) from err
    except OSError as err:
        raise transport_error(err, where, "AUTH", client.timeout or 0.0) from err
    reply = to_reply(response)
    if reply.code == 235:
        return
    # Paranoia: a server echoing the password back must not put it into our message.
    scrubbed = Reply(
        reply.code, reply.message.replace(secret, "<redacted>") if secret else reply.message
    )
    text = reply_text(scrubbed)
    details = {"reply": to_data(scrubbed), "mechanism": mechanism.value.upper()}
    if reply.code == 421 or reply.is_transient:
        # RFC 4954 6: 454 4.7.0 is a temporary authentication failure; after 421 the
        # server is closing (RFC 5321 3.8), after 454 the session can still say QUIT.
        if reply.code == 421:
            client.close()
        raise SmtpTransientError(
            f"{where} could not authenticate {username} right now: {text}", details=details
        )
    raise AuthError(
        f"{where} rejected the credentials for {username} (AUTH {mechanism.value.upper()}): {text}",
        hint="check the user name and password; mailctl tried once and stops so "
        "the account is not locked",
        details=details,
    )


async def _resolve(host: str, port: int, timeout: float, where: str) -> list[Any]:
    try:
        return await lookup_async(host, port, timeout)
    except ResolverTimeout as err:
        raise resolver_timeout_error(err, where) from err
    except socket.gaierror as err:
        reason = err.strerror or str(err)
        raise HostNotFoundError(
            f"cannot connect to {where}: host not found",
            hint="check the server host name",
            details={"resolver": reason},
        ) from err


async def open_socket(
    host: str,
    port: int,
    *,
    timeout: float,
    source_address: tuple[str, int] | None,
    where: str,
) -> socket.socket:
    """Resolve and connect a TCP socket ourselves so DNS and connect errors stay distinct.

    aiosmtplib folds both into SMTPConnectError; owning this step lets a DNS failure
    become HostNotFoundError (EX_NOHOST) and a refusal ConnectError (EX_IOERR).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    infos = await _resolve(host, port, timeout, where)
    last_error: OSError | None = None
    for family, kind, proto, _, address in infos:
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as err:  # EMFILE/ENFILE: out of descriptors here, not the server's fault
            raise ConnectError(
                f"cannot open a socket to connect to {where}: {err.strerror or err}",
                hint="too many open files: raise the limit (ulimit -n) or use fewer connections",
            ) from err
        try:
            sock.setblocking(False)
            if source_address is not None:
                sock.bind(source_address)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            await asyncio.wait_for(loop.sock_connect(sock, address), remaining)
        except TimeoutError as err:
            sock.close()
            raise ConnectError(
                f"cannot connect to {where}: timed out after {timeout:g}s",
                hint="check the host, the port and any firewall",
            ) from err
        except OSError as err:
            sock.close()
            last_error = err
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    reason = connect_reason(last_error) if last_error else "no address found"
    raise ConnectError(
        f"cannot connect to {where}: {reason}",
        hint="check that the server is running and the port is right",
    ) from last_error
