"""The SMTP commands off the per-message path: HELO/EHLO, STARTTLS, AUTH, RSET/NOOP/QUIT and errors.

Each handler takes the session it acts on and works on its slots: the command table in
`session.py` calls them exactly as it calls the session's own MAIL/RCPT/DATA methods, so
moving them here costs the hot loop nothing.

* STARTTLS (RFC 3207): anything the client pipelined after STARTTLS is discarded
  (CVE-2011-0411 style injection), and all session state is forgotten after the handshake.
* AUTH (RFC 4954) is offered only after TLS when STARTTLS is configured, and then required
  before MAIL (530 5.7.0), as on a submission server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import re
import ssl
from typing import TYPE_CHECKING

from mailctl.models import Security
from mailctl.sink.config import TEST_PASSWORD, TEST_USERNAME, Phase
from mailctl.sink.replies import (
    AUTH_LINE_LIMIT,
    BYE,
    COMMAND_LINE_LIMIT,
    HARD_ERROR_LIMIT,
    NEED_TLS_AUTH,
    NOT_IMPLEMENTED,
    OK,
    STARTTLS_AFTER_REPLY,
    TLS_HANDSHAKE_TIMEOUT,
    TOO_LONG,
    TOO_MANY_ERRORS,
    UNKNOWN,
)

if TYPE_CHECKING:
    from mailctl.sink.session import SmtpSession

# C0 controls and DEL: never part of a domain or an address (RFC 5321 4.1.2, 4.1.3).
has_control = re.compile(rb"[\x00-\x1f\x7f]").search

# ------------------------------------------------------------------ errors


def protocol_error(session: SmtpSession, reply: bytes) -> None:
    """A protocol error by the client; too many of them end the session (421)."""
    session._send(reply)
    session._hard_errors += 1
    if session._hard_errors >= HARD_ERROR_LIMIT:
        session._send(TOO_MANY_ERRORS)
        session._close_after_reply()


def line_too_long(session: SmtpSession, line: bytes) -> bool:
    """Answer 500 5.5.6 and close when `line` exceeds its limit; return True if it did."""
    limit = COMMAND_LINE_LIMIT
    if session._auth_step or line[:5].upper() == b"AUTH ":
        limit = AUTH_LINE_LIMIT
    if len(line) + 2 <= limit:
        return False
    session._send(TOO_LONG)
    session._close_after_reply()
    return True


# ------------------------------------------------------------------ greeting, reset


def reset_transaction(session: SmtpSession) -> None:
    """Forget the envelope: RSET, a new HELO/EHLO and a TLS upgrade all start afresh."""
    session._sender = None
    session._rcpts = []


def smtp_helo(session: SmtpSession, line: bytes) -> None:
    if not line[5:].strip() or has_control(line[5:].strip()):
        protocol_error(session, b"501 5.5.4 Syntax: HELO hostname\r\n")
        return
    session._greeted = True
    reset_transaction(session)
    session._send(f"250 {session._server.config.hostname}\r\n".encode(), Phase.EHLO)


def smtp_ehlo(session: SmtpSession, line: bytes) -> None:
    if not line[5:].strip() or has_control(line[5:].strip()):
        protocol_error(session, b"501 5.5.4 Syntax: EHLO hostname\r\n")
        return
    session._greeted = True
    reset_transaction(session)
    server = session._server
    session._send(server.ehlo_tls if session._tls else server.ehlo_plain, Phase.EHLO)


# ------------------------------------------------------------------ other commands


def smtp_rset(session: SmtpSession, line: bytes) -> None:
    if len(line) > 4:
        protocol_error(session, b"501 5.5.4 Syntax: RSET\r\n")
        return
    reset_transaction(session)
    session._send(OK)


def smtp_noop(session: SmtpSession, line: bytes) -> None:
    session._send(OK)  # RFC 5321 4.1.1.9: a parameter is allowed and ignored


def smtp_quit(session: SmtpSession, line: bytes) -> None:
    session._send(BYE)
    session._close_after_reply()


def smtp_vrfy(session: SmtpSession, line: bytes) -> None:
    session._send(b"252 2.5.2 Cannot VRFY; send some mail and see\r\n")


def smtp_help(session: SmtpSession, line: bytes) -> None:
    session._send(b"214 2.0.0 See RFC 5321; mailctl sink\r\n")


def smtp_not_implemented(session: SmtpSession, line: bytes) -> None:
    protocol_error(session, NOT_IMPLEMENTED)


def smtp_starttls(session: SmtpSession, line: bytes) -> None:
    if line.upper() != b"STARTTLS":
        protocol_error(
            session, UNKNOWN if line[:8].upper() != b"STARTTLS" else b"501 5.5.4 Syntax\r\n"
        )
        return
    if session._server.config.security is not Security.STARTTLS:
        protocol_error(session, NOT_IMPLEMENTED)
        return
    if session._tls:
        protocol_error(session, b"503 5.5.1 Error: TLS already active\r\n")
        return
    session._send(b"220 2.0.0 Ready to start TLS\r\n")
    # RFC 3207 4.2 / CVE-2011-0411: whatever was pipelined after STARTTLS is dropped.
    session._stopped = True
    session._upgrading = True
    session._action = STARTTLS_AFTER_REPLY
    if session._transport is not None:
        session._transport.pause_reading()


async def upgrade_to_tls(session: SmtpSession, transport: asyncio.Transport) -> None:
    """Run the server side of STARTTLS after the 220 left; abort the connection if it fails."""
    server = session._server
    assert server.ssl_context is not None
    loop = asyncio.get_running_loop()
    # RFC 3207 4.2: forget everything learned before TLS, including EHLO.
    session._tls = True
    session._greeted = False
    session._authed = False
    reset_transaction(session)
    session._buf = b""
    try:
        new = await loop.start_tls(
            transport,
            session,
            server.ssl_context,
            server_side=True,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT,
        )
    except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
        transport.abort()
        return
    if new is None:  # pragma: no cover - the loop closed the connection
        transport.abort()
        return
    session._transport = new
    session._upgrading = False
    session._stopped = False
    session._paused_reading = False
    pending, session._pending_tls = session._pending_tls, []
    for data in pending:
        session.data_received(data)


def smtp_auth(session: SmtpSession, line: bytes) -> None:
    config = session._server.config
    if not config.auth:
        protocol_error(session, NOT_IMPLEMENTED)
        return
    if config.security is Security.STARTTLS and not session._tls:
        session._send(NEED_TLS_AUTH)
        return
    if session._authed or session._sender is not None:
        protocol_error(session, b"503 5.5.1 Error: already authenticated or in a transaction\r\n")
        return
    words = line[5:].split()
    if not words or len(words) > 2:
        protocol_error(session, b"501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n")
        return
    mechanism = words[0].upper()
    initial = words[1] if len(words) == 2 else None
    if mechanism == b"PLAIN":
        if initial is None:
            session._auth_step = 1
            session._send(b"334 \r\n")
        else:
            auth_plain(session, initial)
    elif mechanism == b"LOGIN":
        if initial is None:
            session._auth_step = 2
            session._send(b"334 VXNlcm5hbWU6\r\n")  # "Username:"
        else:
            auth_login_user(session, initial)
    else:
        session._send(b"504 5.5.4 Error: unsupported authentication mechanism\r\n")


def auth_continue(session: SmtpSession, line: bytes) -> None:
    step, session._auth_step = session._auth_step, 0
    if line == b"*":  # RFC 4954 4: the client cancels
        session._send(b"501 5.7.0 Authentication cancelled\r\n")
    elif step == 1:
        auth_plain(session, line)
    elif step == 2:
        auth_login_user(session, line)
    else:
        auth_check(session, session._login_user, decode_base64(line))


def auth_plain(session: SmtpSession, response: bytes) -> None:
    # RFC 4616: [authzid] NUL authcid NUL passwd; "=" is an empty initial response.
    decoded = b"" if response == b"=" else decode_base64(response)
    if decoded is None:
        session._send(b"501 5.5.2 Error: cannot decode the response\r\n")
        return
    fields = decoded.split(b"\0")
    if len(fields) != 3:
        auth_check(session, b"", b"")
        return
    auth_check(session, fields[1], fields[2])


def auth_login_user(session: SmtpSession, response: bytes) -> None:
    user = decode_base64(response)
    if user is None:
        session._send(b"501 5.5.2 Error: cannot decode the response\r\n")
        return
    session._login_user = user
    session._auth_step = 3
    session._send(b"334 UGFzc3dvcmQ6\r\n")  # "Password:"


def auth_check(session: SmtpSession, user: bytes, password: bytes | None) -> None:
    if password is None:
        session._send(b"501 5.5.2 Error: cannot decode the response\r\n")
        return
    ok = hmac.compare_digest(user, TEST_USERNAME.encode()) & hmac.compare_digest(
        password, TEST_PASSWORD.encode()
    )
    if ok:
        session._authed = True
        session._send(b"235 2.7.0 Authentication successful\r\n")
    else:
        session._send(b"535 5.7.8 Error: authentication credentials invalid\r\n")


def decode_base64(data: bytes) -> bytes | None:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
