"""The SMTP commands off the per-message path, as a mixin of the connection: `SinkCommands`.

HELO/EHLO, STARTTLS, AUTH, RSET/NOOP/QUIT/VRFY/HELP and protocol errors. `SinkConnection`
(`connection.py`) inherits these methods, and its command table holds them beside its own
MAIL/RCPT/DATA methods, so keeping them in this module costs the hot loop nothing. The mixin
owns the session's state (greeting, TLS, authentication, the error count) in its own slots;
it changes the connection's transaction and transport only through the connection's methods
(`_reset_transaction`, `_switch_to_tls`, `_close_after_reply`, `_send`).

* STARTTLS (RFC 3207): anything the client pipelined after STARTTLS is discarded
  (CVE-2011-0411 style injection), and all session state is forgotten after the handshake.
* AUTH (RFC 4954) is offered only after TLS when STARTTLS is configured, and then required
  before MAIL (530 5.7.0), as on a submission server.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
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
    TOO_LONG,
    TOO_MANY_ERRORS,
    UNKNOWN,
)

if TYPE_CHECKING:
    from mailctl.sink.host import SinkHost

# C0 controls and DEL: never part of a domain or an address (RFC 5321 4.1.2, 4.1.3).
has_control = re.compile(rb"[\x00-\x1f\x7f]").search


class SinkCommands:
    """The session-level commands and state of one sink connection (a mixin, slots only)."""

    __slots__ = ("_auth_step", "_authed", "_greeted", "_hard_errors", "_login_user", "_tls")

    if TYPE_CHECKING:
        # What the connection class this is mixed into provides (connection.py).
        _server: SinkHost
        _sender: bytes | None

        def _send(self, reply: bytes, phase: Phase | None = None) -> None: ...
        def _close_after_reply(self) -> None: ...
        def _reset_transaction(self) -> None: ...
        def _switch_to_tls(self) -> None: ...

    def __init__(self, *, tls: bool) -> None:
        self._tls = tls
        self._greeted = False
        self._authed = False
        self._auth_step = 0  # 1: PLAIN response, 2: LOGIN user name, 3: LOGIN password
        self._login_user = b""
        self._hard_errors = 0

    def _tls_started(self) -> None:
        """RFC 3207 4.2: forget everything learned before TLS, including EHLO."""
        self._tls = True
        self._greeted = False
        self._authed = False

    # ------------------------------------------------------------------ errors

    def _protocol_error(self, reply: bytes) -> None:
        """A protocol error by the client; too many of them end the session (421)."""
        self._send(reply)
        self._hard_errors += 1
        if self._hard_errors >= HARD_ERROR_LIMIT:
            self._send(TOO_MANY_ERRORS)
            self._close_after_reply()

    def _line_too_long(self, line: bytes) -> bool:
        """Answer 500 5.5.6 and close when `line` exceeds its limit; return True if it did."""
        limit = COMMAND_LINE_LIMIT
        if self._auth_step or line[:5].upper() == b"AUTH ":
            limit = AUTH_LINE_LIMIT
        if len(line) + 2 <= limit:
            return False
        self._send(TOO_LONG)
        self._close_after_reply()
        return True

    # ------------------------------------------------------------------ greeting

    def _helo(self, line: bytes) -> None:
        if not line[5:].strip() or has_control(line[5:].strip()):
            self._protocol_error(b"501 5.5.4 Syntax: HELO hostname\r\n")
            return
        self._greeted = True
        self._reset_transaction()
        self._send(f"250 {self._server.config.hostname}\r\n".encode(), Phase.EHLO)

    def _ehlo(self, line: bytes) -> None:
        if not line[5:].strip() or has_control(line[5:].strip()):
            self._protocol_error(b"501 5.5.4 Syntax: EHLO hostname\r\n")
            return
        self._greeted = True
        self._reset_transaction()
        server = self._server
        self._send(server.ehlo_tls if self._tls else server.ehlo_plain, Phase.EHLO)

    # ------------------------------------------------------------------ other commands

    def _rset(self, line: bytes) -> None:
        if len(line) > 4:
            self._protocol_error(b"501 5.5.4 Syntax: RSET\r\n")
            return
        self._reset_transaction()
        self._send(OK)

    def _noop(self, line: bytes) -> None:
        self._send(OK)  # RFC 5321 4.1.1.9: a parameter is allowed and ignored

    def _quit(self, line: bytes) -> None:
        self._send(BYE)
        self._close_after_reply()

    def _vrfy(self, line: bytes) -> None:
        self._send(b"252 2.5.2 Cannot VRFY; send some mail and see\r\n")

    def _help(self, line: bytes) -> None:
        self._send(b"214 2.0.0 See RFC 5321; mailctl sink\r\n")

    def _not_implemented(self, line: bytes) -> None:
        self._protocol_error(NOT_IMPLEMENTED)

    def _starttls(self, line: bytes) -> None:
        if line.upper() != b"STARTTLS":
            self._protocol_error(
                UNKNOWN if line[:8].upper() != b"STARTTLS" else b"501 5.5.4 Syntax\r\n"
            )
            return
        if self._server.config.security is not Security.STARTTLS:
            self._protocol_error(NOT_IMPLEMENTED)
            return
        if self._tls:
            self._protocol_error(b"503 5.5.1 Error: TLS already active\r\n")
            return
        self._send(b"220 2.0.0 Ready to start TLS\r\n")
        self._switch_to_tls()

    # ------------------------------------------------------------------ AUTH (RFC 4954)

    def _auth(self, line: bytes) -> None:
        config = self._server.config
        if not config.auth:
            self._protocol_error(NOT_IMPLEMENTED)
            return
        if config.security is Security.STARTTLS and not self._tls:
            self._send(NEED_TLS_AUTH)
            return
        if self._authed or self._sender is not None:
            self._protocol_error(b"503 5.5.1 Error: already authenticated or in a transaction\r\n")
            return
        words = line[5:].split()
        if not words or len(words) > 2:
            self._protocol_error(b"501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n")
            return
        mechanism = words[0].upper()
        initial = words[1] if len(words) == 2 else None
        if mechanism == b"PLAIN":
            if initial is None:
                self._auth_step = 1
                self._send(b"334 \r\n")
            else:
                self._auth_plain(initial)
        elif mechanism == b"LOGIN":
            if initial is None:
                self._auth_step = 2
                self._send(b"334 VXNlcm5hbWU6\r\n")  # "Username:"
            else:
                self._auth_login_user(initial)
        else:
            self._send(b"504 5.5.4 Error: unsupported authentication mechanism\r\n")

    def _auth_continue(self, line: bytes) -> None:
        step, self._auth_step = self._auth_step, 0
        if line == b"*":  # RFC 4954 4: the client cancels
            self._send(b"501 5.7.0 Authentication cancelled\r\n")
        elif step == 1:
            self._auth_plain(line)
        elif step == 2:
            self._auth_login_user(line)
        else:
            self._auth_check(self._login_user, decode_base64(line))

    def _auth_plain(self, response: bytes) -> None:
        # RFC 4616: [authzid] NUL authcid NUL passwd; "=" is an empty initial response.
        decoded = b"" if response == b"=" else decode_base64(response)
        if decoded is None:
            self._send(b"501 5.5.2 Error: cannot decode the response\r\n")
            return
        fields = decoded.split(b"\0")
        if len(fields) != 3:
            self._auth_check(b"", b"")
            return
        self._auth_check(fields[1], fields[2])

    def _auth_login_user(self, response: bytes) -> None:
        user = decode_base64(response)
        if user is None:
            self._send(b"501 5.5.2 Error: cannot decode the response\r\n")
            return
        self._login_user = user
        self._auth_step = 3
        self._send(b"334 UGFzc3dvcmQ6\r\n")  # "Password:"

    def _auth_check(self, user: bytes, password: bytes | None) -> None:
        if password is None:
            self._send(b"501 5.5.2 Error: cannot decode the response\r\n")
            return
        ok = hmac.compare_digest(user, TEST_USERNAME.encode()) & hmac.compare_digest(
            password, TEST_PASSWORD.encode()
        )
        if ok:
            self._authed = True
            self._send(b"235 2.7.0 Authentication successful\r\n")
        else:
            self._send(b"535 5.7.8 Error: authentication credentials invalid\r\n")


def decode_base64(data: bytes) -> bytes | None:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
