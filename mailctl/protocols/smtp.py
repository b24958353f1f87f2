"""SMTP sessions over aiosmtplib: TLS or required STARTTLS, one AUTH attempt, transactions."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from aiosmtplib import SMTP
from aiosmtplib.auth import (
    auth_crammd5_verify,
    auth_login_encode,
    auth_plain_encode,
    auth_xoauth2_encode,
)
from aiosmtplib.errors import (
    SMTPDataError,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from aiosmtplib.response import SMTPResponse
from aiosmtplib.typing import Default

from mailctl.errors import (
    AddressError,
    AuthError,
    AuthUnsupportedError,
    ConnectError,
    ConnectionLostError,
    CredentialError,
    HostNotFoundError,
    InputDataError,
    MailctlError,
    MessageTooLargeError,
    OutcomeUnknownError,
    PlaintextAuthRefusedError,
    ProtocolError,
    SmtpPermanentError,
    SmtpTransientError,
    StartTlsUnavailableError,
    TimeoutFailure,
)
from mailctl.models import (
    AuthMechanism,
    Envelope,
    RecipientResult,
    Reply,
    Security,
    ServerSettings,
)
from mailctl.protocols.tls import TlsInfo, client_context, map_ssl_error, tls_info
from mailctl.protocols.transcript import Transcript

__all__ = [
    "AUTO_MECHANISMS",
    "SessionInfo",
    "SessionOptions",
    "SmtpSession",
    "Transaction",
    "parse_queue_id",
]

# Picked in this order when settings.auth is None. XOAUTH2 is never picked on its own:
# its secret is a bearer token, so the user has to ask for it.
AUTO_MECHANISMS: tuple[AuthMechanism, ...] = (
    AuthMechanism.PLAIN,
    AuthMechanism.LOGIN,
    AuthMechanism.CRAM_MD5,
)

# RFC 5321 4.5.3.1.6: a text line is at most 998 octets plus CRLF.
MAX_LINE_OCTETS = 998
# Seconds close() waits for a clean (TLS close_notify) shutdown before aborting.
_CLOSE_WAIT = 2.0

_TIMEOUT_TYPES = (SMTPTimeoutError, TimeoutError)
# "Ok: queued as 4BvX2k1Qz" (Postfix), "queued as <id>" (many), "OK id=1rXyZ-000abc-Q1" (Exim).
_QUEUE_ID = re.compile(
    r"(?:\bqueued as|\bid=)\s*<?([A-Za-z0-9][A-Za-z0-9._@+=:/-]*)", re.IGNORECASE
)
_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_QUOTED_LOCAL_PART = re.compile(r'^"(?:[^"\\\r\n]|\\.)*"')
_ADDRESS_FORBIDDEN = re.compile(r'[\s<>"\x00-\x1f\x7f]')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _escape_control(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def parse_queue_id(text: str) -> str | None:
    """Best-effort queue id from the final 250 text ("queued as X", "id=X"); None if absent."""
    match = _QUEUE_ID.search(text)
    if match is None:
        return None
    found = match.group(1).rstrip(".,;:>)")
    return found or None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _reply_text(reply: Reply) -> str:
    return _one_line(f"{reply.code} {reply.message}")


def _to_reply(response: SMTPResponse | SMTPResponseException) -> Reply:
    return Reply(code=response.code, message=response.message)


def _reply_lines(reply: Reply) -> list[str]:
    """Rebuild the wire form of a (possibly multi-line) reply for the transcript."""
    parts = reply.message.split("\n") if reply.message else [""]
    lines = []
    for index, part in enumerate(parts):
        separator = "-" if index < len(parts) - 1 else " "
        lines.append(f"{reply.code}{separator}{part}".rstrip())
    return lines


@dataclass(frozen=True)
class SessionOptions:
    """Everything needed to open one SMTP session."""

    settings: ServerSettings
    ehlo_name: str | None = None  # default: the FQDN if the host has one, else [address]
    # Called at most once, right before AUTH; repr=False keeps even a partial() that
    # closes over a password out of tracebacks and logs.
    secret: Callable[[], str] | None = field(default=None, repr=False)
    transcript: Transcript | None = None
    source_address: tuple[str, int] | None = None


@dataclass
class SessionInfo:
    """What the server told us while the session was set up."""

    banner: Reply
    extensions: dict[str, str]  # EHLO keyword (upper case) -> parameters
    tls: TlsInfo | None
    auth_mechanism: str | None
    timings: dict[str, float]  # seconds: connect, banner, ehlo, starttls, auth

    def to_json(self) -> dict[str, Any]:
        return {
            "banner": self.banner.to_json(),
            "extensions": dict(self.extensions),
            "tls": self.tls.to_json() if self.tls else None,
            "auth_mechanism": self.auth_mechanism,
            "timings": dict(self.timings),
        }


@dataclass(frozen=True)
class Transaction:
    """The outcome of one MAIL/RCPT/DATA transaction that the server accepted."""

    recipients: tuple[RecipientResult, ...]
    final_reply: Reply | None
    queue_id: str | None
    timings: dict[str, float]  # seconds: mail, rcpt, data

    @property
    def accepted(self) -> tuple[str, ...]:
        return tuple(r.address for r in self.recipients if r.accepted)

    @property
    def refused(self) -> tuple[RecipientResult, ...]:
        return tuple(r for r in self.recipients if not r.accepted)

    def to_json(self) -> dict[str, Any]:
        return {
            "recipients": [r.to_json() for r in self.recipients],
            "final_reply": self.final_reply.to_json() if self.final_reply else None,
            "queue_id": self.queue_id,
            "timings": dict(self.timings),
        }


class _Client(SMTP):
    """aiosmtplib.SMTP that feeds a Transcript and speaks AUTH exactly as mailctl wants.

    aiosmtplib sends every command through `execute_command`, so overriding it sees all
    lines except STARTTLS and the message data, which `starttls` and `data` cover.
    """

    def __init__(
        self, *, transcript: Transcript | None, sock: socket.socket, **kwargs: Any
    ) -> None:
        super().__init__(sock=sock, **kwargs)
        self._transcript = transcript
        self._raw_sock = sock
        self._closed_transports: list[asyncio.BaseTransport] = []
        self._redact_next: str | None = None  # describes the next line instead of logging it
        self._scrub: str | None = None  # a secret to blank out of replies during AUTH
        self.final_dot_sent = False

    def close(self) -> None:
        # aiosmtplib calls this from many places (421, timeouts, lost connections);
        # remember what it closed so wait_closed() can make sure it really went away.
        if self.transport is not None:
            self._closed_transports.append(self.transport)
        super().close()

    def abort(self) -> None:
        """Drop the connection at once, without a TLS close_notify."""
        self.close()
        for transport in self._closed_transports:
            if isinstance(transport, asyncio.Transport):
                transport.abort()

    async def wait_closed(self, timeout: float) -> None:
        """Wait until the socket is really closed, aborting after `timeout` seconds.

        transport.close() only starts closing: over TLS it first exchanges close_notify
        with the server. A caller that returns at once (a test, a short-lived command)
        could otherwise leave the socket to the garbage collector and a ResourceWarning.
        The raw socket is closed by asyncio as the very last step, so it is the signal.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await asyncio.sleep(0)
        while self._raw_sock.fileno() != -1 and loop.time() < deadline:
            await asyncio.sleep(0.002)
        if self._raw_sock.fileno() != -1:
            self.abort()
            await asyncio.sleep(0)
        if self._raw_sock.fileno() != -1:  # no transport ever took the socket
            self._raw_sock.close()

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        """The TLS session, read from the transport directly: get_transport_info raises
        once the transport is closing, and a describing helper must never raise."""
        transport = self.transport
        if transport is None:
            return None
        found = transport.get_extra_info("ssl_object")
        return found if isinstance(found, ssl.SSLObject) else None

    @property
    def tls_active(self) -> bool:
        return self.ssl_object is not None

    def record_reply(self, reply: Reply, *, tls: bool) -> None:
        if self._transcript is None:
            return
        for line in _reply_lines(reply):
            text = line.replace(self._scrub, "<redacted>") if self._scrub else line
            self._transcript.received(text, tls=tls)

    async def execute_command(
        self, *args: bytes, timeout: float | Literal[Default.token] | None = Default.token
    ) -> SMTPResponse:
        tls = self.tls_active
        if self._transcript is not None:
            if self._redact_next is not None:
                self._transcript.redacted_sent(self._redact_next, tls=tls)
            else:
                text = b" ".join(args).decode("utf-8", "backslashreplace")
                self._transcript.sent(_CONTROL.sub(_escape_control, text), tls=tls)
        self._redact_next = None
        response = await super().execute_command(*args, timeout=timeout)
        self.record_reply(_to_reply(response), tls=tls)
        return response

    async def starttls(
        self,
        *,
        server_hostname: str | None = None,
        validate_certs: bool | None = None,
        client_cert: str | Literal[Default.token] | None = Default.token,
        client_key: str | Literal[Default.token] | None = Default.token,
        cert_bundle: str | Literal[Default.token] | None = Default.token,
        tls_context: ssl.SSLContext | Literal[Default.token] | None = Default.token,
        timeout: float | Literal[Default.token] | None = Default.token,
    ) -> SMTPResponse:
        # aiosmtplib writes STARTTLS from the protocol, bypassing execute_command.
        if self._transcript is not None:
            self._transcript.sent("STARTTLS", tls=False)
        try:
            response = await super().starttls(
                server_hostname=server_hostname,
                validate_certs=validate_certs,
                client_cert=client_cert,
                client_key=client_key,
                cert_bundle=cert_bundle,
                tls_context=tls_context,
                timeout=timeout,
            )
        except SMTPResponseException as err:
            self.record_reply(_to_reply(err), tls=False)
            raise
        self.record_reply(_to_reply(response), tls=False)
        return response

    async def data(
        self,
        message: str | bytes,
        /,
        *,
        timeout: float | Literal[Default.token] | None = Default.token,
    ) -> SMTPResponse:
        """Send DATA and the message; `timeout` bounds only the wait after the final dot.

        aiosmtplib's own `data` uses one timeout for both replies and cannot tell
        whether a failure came before or after the final dot, which RFC 1047 makes
        the difference between "not delivered" and "outcome unknown". `final_dot_sent`
        records that, and the 354 wait uses the command timeout.
        """
        self.final_dot_sent = False
        if isinstance(message, str):
            message = message.encode("ascii")
        start = await self.execute_command(b"DATA")
        if start.code != 354:
            raise SMTPDataError(start.code, start.message)
        protocol = self.protocol
        if protocol is None:
            raise SMTPServerDisconnected("Connection lost")
        # RFC 5321 4.5.2: CRLF line endings only (a bare CR or LF is what SMTP smuggling,
        # CVE-2023-51764, relies on) and a leading dot doubled on every line.
        payload = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"
        tls = self.tls_active
        if self._transcript is not None:
            # Like swaks, show the header block; the body is summarised (it may be large or binary).
            head, _, _ = payload.partition(b"\r\n\r\n")
            for line in head.split(b"\r\n")[:200]:
                self._transcript.sent(line.decode("utf-8", errors="replace"), tls=tls)
            self._transcript.info(f"message data: {len(payload) - 3} octets after dot-stuffing")
            self._transcript.sent(".", tls=tls)
        try:
            protocol.write(payload)
            self.final_dot_sent = True
            response = await protocol.read_response(
                timeout=self.timeout if timeout is Default.token else timeout
            )
        except (SMTPServerDisconnected, SMTPTimeoutError):
            # The protocol is out of step after a lost or late reply: never reuse it.
            self.close()
            raise
        self.record_reply(_to_reply(response), tls=tls)
        if response.code == 421:
            self.close()  # RFC 5321 3.8: the server is closing the channel
        if response.code != 250:
            raise SMTPDataError(response.code, response.message)
        return response

    async def authenticate(
        self, mechanism: AuthMechanism, username: str, secret: str
    ) -> SMTPResponse:
        """Run one AUTH exchange (RFC 4954) and return the final reply, success or not.

        Unlike aiosmtplib's `login`, this never moves on to another mechanism after a
        failure: each extra attempt counts against account lockout limits.
        """
        self._scrub = secret
        try:
            if mechanism is AuthMechanism.PLAIN:
                # RFC 4616: authzid NUL authcid NUL passwd, as an initial response.
                self._redact_next = "AUTH PLAIN credentials"
                return await self.execute_command(
                    b"AUTH", b"PLAIN", auth_plain_encode(username, secret)
                )
            if mechanism is AuthMechanism.LOGIN:
                encoded_user, encoded_secret = auth_login_encode(username, secret)
                self._redact_next = "AUTH LOGIN user name"
                response = await self.execute_command(b"AUTH", b"LOGIN", encoded_user)
                if response.code != 334:
                    return response
                self._redact_next = "AUTH LOGIN password"
                return await self.execute_command(encoded_secret)
            if mechanism is AuthMechanism.CRAM_MD5:
                # RFC 2195: the server's challenge is public, the HMAC answer is not.
                response = await self.execute_command(b"AUTH", b"CRAM-MD5")
                if response.code != 334:
                    return response
                answer = auth_crammd5_verify(username, secret, response.message)
                self._redact_next = "CRAM-MD5 response"
                return await self.execute_command(answer)
            # XOAUTH2: on failure the server sends a 334 with a JSON error and waits for
            # an empty line before the final reply.
            self._redact_next = "AUTH XOAUTH2 token"
            response = await self.execute_command(
                b"AUTH", b"XOAUTH2", auth_xoauth2_encode(username, secret)
            )
            if response.code == 334:
                response = await self.execute_command(b"")
            return response
        finally:
            self._redact_next = None
            self._scrub = None


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_command_text(what: str, value: str) -> None:
    """Refuse CR, LF, NUL and other controls before they can become extra commands."""
    if not value or re.search(r"[\s\x00-\x1f\x7f]", value):
        raise InputDataError(f"{what} {value!r} is empty or contains spaces or control characters")


def _valid_ehlo_name(name: str) -> bool:
    if name.startswith("[") and name.endswith("]"):
        return True  # RFC 5321 4.1.3 address literal; checked by _check_command_text
    try:
        name.encode("ascii")
    except UnicodeEncodeError:
        return False
    labels = name.rstrip(".").split(".")
    return len(name) <= 253 and all(_HOST_LABEL.match(label) for label in labels)


def _default_ehlo_name(sock: socket.socket) -> str:
    """RFC 5321 4.1.4: our FQDN, or an address literal when the host has none.

    socket.getfqdn() can block for seconds on a broken resolver; the host name plus a
    dot check is instant and an address literal is always acceptable.
    """
    name = socket.gethostname()
    if "." in name.strip(".") and _valid_ehlo_name(name) and not name.endswith(".localdomain"):
        return name
    try:
        local = str(sock.getsockname()[0])
    except OSError:
        return "localhost"  # the connection is already gone; EHLO will fail anyway
    # RFC 5321 4.1.3: IPv6 literals carry an "IPv6:" tag.
    return f"[IPv6:{local}]" if ":" in local else f"[{local}]"


def _envelope_path(role: str, address: str, *, smtputf8: bool, allow_empty: bool) -> bytes:
    """Return `<address>` as bytes for MAIL FROM / RCPT TO, refusing unsafe input."""
    if address == "" and allow_empty:
        return b"<>"  # RFC 5321 4.5.5: the null reverse-path for bounces
    unquoted = _QUOTED_LOCAL_PART.sub("", address, count=1)
    if not address or _ADDRESS_FORBIDDEN.search(unquoted) or _CONTROL.search(address):
        raise AddressError(
            f"envelope {role} {address!r} cannot be sent in an SMTP command",
            hint="an envelope address is a bare addr-spec without spaces, quotes or <>",
        )
    try:
        encoded = address.encode("utf-8" if smtputf8 else "ascii")
    except UnicodeEncodeError as err:
        raise InputDataError(
            f"envelope {role} {address!r} is not ASCII and needs SMTPUTF8 (RFC 6531)",
            hint="send with SMTPUTF8 enabled, or use an ASCII (IDNA-encoded) address",
        ) from err
    return b"<" + encoded + b">"


def _size_limit(parameter: str) -> int | None:
    """RFC 1870: "SIZE n" is the server's fixed maximum; no number or 0 means no limit."""
    try:
        limit = int(parameter.split(maxsplit=1)[0])
    except (ValueError, IndexError):
        return None
    return limit or None


def require_short_lines(wire: bytes) -> None:
    """Refuse, before any I/O, a CRLF message with a line over 998 octets (RFC 5321 4.5.3.1.6)."""
    if len(wire) <= MAX_LINE_OCTETS:
        return
    for number, line in enumerate(wire.split(b"\r\n"), start=1):
        if len(line) > MAX_LINE_OCTETS:
            raise InputDataError(
                f"message line {number} is {len(line)} octets; SMTP allows at most "
                f"{MAX_LINE_OCTETS} (RFC 5321 4.5.3.1.6)",
                hint="encode long lines with quoted-printable or base64",
            )


class SmtpSession:
    """One authenticated (or anonymous) SMTP connection that runs transactions in turn.

    Open with `await SmtpSession.open(options)`; use as an async context manager so
    QUIT is always sent. Every failure is a `MailctlError`; aiosmtplib, ssl and socket
    exceptions are mapped here and chained with `from`.
    """

    def __init__(
        self, client: _Client, options: SessionOptions, info: SessionInfo, where: str
    ) -> None:
        self._client = client
        self._options = options
        self._settings = options.settings
        self._transcript = options.transcript
        self._where = where
        self._lock = asyncio.Lock()  # one transaction at a time on one connection
        self.info = info

    def __repr__(self) -> str:
        return f"<SmtpSession {self._where} connected={self.connected}>"

    # -- opening ---------------------------------------------------------------------

    @classmethod
    async def open(cls, options: SessionOptions) -> SmtpSession:
        """Connect, read the banner, EHLO, STARTTLS or implicit TLS, and AUTH once.

        Raises PlaintextAuthRefusedError (before any socket is opened),
        HostNotFoundError, ConnectError, TimeoutFailure, CertificateError, TlsError,
        StartTlsUnavailableError, AuthUnsupportedError, AuthError, CredentialError,
        ConnectionLostError, SmtpTransientError / SmtpPermanentError (banner or EHLO
        refused) and InputDataError (bad EHLO name).
        """
        settings = options.settings
        where = _where(settings.host, settings.port)
        transcript = options.transcript
        if (
            settings.username
            and settings.security is Security.NONE
            and not settings.allow_plaintext_auth
        ):
            # Checked before connecting: the password must not even be looked up
            # for a session that would send it in clear text.
            raise PlaintextAuthRefusedError(
                f"refusing to send the password for {settings.username} to {where} without TLS",
                hint="use --tls or --starttls (security = tls|starttls in the account); "
                "on a trusted network only: --allow-plaintext-auth",
            )
        _check_command_text("server host", settings.host)
        if options.ehlo_name is not None:
            _check_command_text("EHLO name", options.ehlo_name)
            if not _valid_ehlo_name(options.ehlo_name):
                raise InputDataError(
                    f"EHLO name {options.ehlo_name!r} is not a host name or address literal"
                )
        context = (
            None
            if settings.security is Security.NONE
            else client_context(verify=settings.verify, ca_file=settings.ca_file)
        )
        timeouts = settings.timeouts
        timings: dict[str, float] = {}

        if transcript is not None:
            transcript.info(f"connecting to {where} ({settings.security.value})")
        started = time.perf_counter()
        sock = await _open_socket(
            settings.host,
            settings.port,
            timeout=timeouts.connect,
            source_address=options.source_address,
            where=where,
        )
        timings["connect"] = time.perf_counter() - started
        if transcript is not None:
            with contextlib.suppress(OSError):
                peer = sock.getpeername()
                transcript.info(f"connected to {peer[0]} port {peer[1]}")
        try:
            client = _Client(
                transcript=transcript,
                hostname=settings.host,
                sock=sock,
                local_hostname=options.ehlo_name or _default_ehlo_name(sock),
                timeout=timeouts.command,
                use_tls=settings.security is Security.TLS,
                start_tls=False,  # never aiosmtplib's opportunistic default (None)
                tls_context=context,
            )
        except BaseException:
            sock.close()
            raise
        try:
            return await cls._handshake(client, options, where, timings, context)
        except Exception:
            client.close()
            await client.wait_closed(min(timeouts.command, _CLOSE_WAIT))
            raise
        except BaseException:  # cancelled: no time for a polite TLS shutdown
            client.abort()
            raise

    @classmethod
    async def _handshake(
        cls,
        client: _Client,
        options: SessionOptions,
        where: str,
        timings: dict[str, float],
        context: ssl.SSLContext | None,
    ) -> SmtpSession:
        settings = options.settings
        timeouts = settings.timeouts
        transcript = options.transcript

        phase = "TLS handshake or greeting" if settings.security is Security.TLS else "greeting"
        started = time.perf_counter()
        try:
            banner_response = await client.connect(timeout=timeouts.connect)
        except SMTPResponseException as err:
            reply = _to_reply(err)
            client.record_reply(reply, tls=client.tls_active)
            raise _reply_error(reply, f"{where} refused the connection") from err
        except (SMTPException, OSError) as err:
            raise _transport_error(err, where, phase, timeouts.connect) from err
        timings["banner"] = time.perf_counter() - started
        banner = _to_reply(banner_response)
        client.record_reply(banner, tls=client.tls_active)
        if client.tls_active and transcript is not None:
            transcript.info(_describe_tls(client))

        started = time.perf_counter()
        plain_and_anonymous = settings.security is Security.NONE and not settings.username
        await _ehlo(client, where, timeouts.command, helo_fallback=plain_and_anonymous)
        timings["ehlo"] = time.perf_counter() - started

        if settings.security is Security.STARTTLS:
            started = time.perf_counter()
            await _starttls(client, settings, where, context)
            timings["starttls"] = time.perf_counter() - started
            if transcript is not None:
                transcript.info(_describe_tls(client))
            # RFC 3207 4.2: forget the pre-TLS EHLO answer and ask again, now, instead
            # of letting aiosmtplib do it lazily before some later command.
            started = time.perf_counter()
            await _ehlo(client, where, timeouts.command)
            timings["ehlo"] += time.perf_counter() - started

        mechanism: AuthMechanism | None = None
        if settings.username:
            mechanism = _choose_mechanism(client, settings, where)
            if options.secret is None:
                raise CredentialError(
                    f"no password or token available for {settings.username} at {where}",
                    hint="store one with the keyring, set password_command, or MAILCTL_PASSWORD",
                )
            started = time.perf_counter()
            await _authenticate(client, mechanism, settings.username, options.secret, where)
            timings["auth"] = time.perf_counter() - started

        info = SessionInfo(
            banner=banner,
            extensions={key.upper(): value for key, value in client.esmtp_extensions.items()},
            tls=tls_info(client.ssl_object),
            auth_mechanism=mechanism.value.upper() if mechanism else None,
            timings=timings,
        )
        return cls(client, options, info, where)

    # -- state -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """False once the server or a failure closed the connection (reconnect then)."""
        return self._client.is_connected

    def supports(self, extension: str) -> bool:
        """Whether the (post-TLS) EHLO reply advertised `extension`; case-insensitive."""
        return extension.upper() in self.info.extensions

    @property
    def where(self) -> str:
        """The "host:port" used in every message about this session."""
        return self._where

    @property
    def settings(self) -> ServerSettings:
        return self._settings

    @contextlib.asynccontextmanager
    async def borrow_transport(self) -> AsyncIterator[asyncio.Transport]:
        """Lend the established (TLS) transport to another protocol, under the session lock.

        RFC 2920 pipelining (protocols/pipeline.py) writes several commands at once and
        reads the replies in order, which aiosmtplib's one-reply-per-command protocol
        cannot do. The borrower installs its own protocol with `transport.set_protocol()`
        (which works over TLS too); on exit aiosmtplib's protocol is put back if the
        connection is still open, else the session is marked closed.
        Raises ConnectionLostError if the session is already closed.
        """
        async with self._lock:
            self._ensure_connected("pipelined commands")
            client = self._client
            transport = client.transport
            protocol = client.protocol
            if not isinstance(transport, asyncio.Transport) or protocol is None:
                raise ConnectionLostError(f"the connection to {self._where} is closed")
            try:
                yield transport
            finally:
                if transport.is_closing() or client.protocol is not protocol:
                    client.close()
                else:
                    transport.set_protocol(protocol)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Send QUIT and close the connection; never raises."""
        client = self._client
        try:
            if client.is_connected:
                await client.quit(timeout=self._settings.timeouts.command)
        except (SMTPException, OSError, ValueError):
            pass
        finally:
            client.close()
        await client.wait_closed(min(self._settings.timeouts.command, _CLOSE_WAIT))

    async def reset(self) -> None:
        """Send RSET, e.g. to probe an idle connection before reuse (as Postfix does).

        Raises ConnectionLostError, TimeoutFailure, or SmtpTransientError on 421.
        """
        async with self._lock:
            self._ensure_connected("RSET")
            reply = await self._command("RSET", b"RSET")
            if reply.code != 250:
                raise _reply_error(reply, f"{self._where} refused RSET")

    # -- transactions ----------------------------------------------------------------

    async def send(
        self,
        envelope: Envelope,
        data: bytes,
        *,
        smtputf8: bool = False,
        eight_bit: bool = False,
        allow_partial: bool = False,
    ) -> Transaction:
        """Run one MAIL/RCPT/DATA transaction for `data` (the message bytes).

        Any refused recipient aborts the transaction (RSET, nothing sent) unless
        `allow_partial` is set and at least one recipient was accepted.

        Raises InputDataError / AddressError / MessageTooLargeError before sending
        anything; SmtpPermanentError or SmtpTransientError for refusals (with
        details "recipients" and/or "reply"); ConnectionLostError or TimeoutFailure
        before the final dot; OutcomeUnknownError after it (RFC 1047).
        """
        async with self._lock:
            try:
                return await self._send(envelope, data, smtputf8, eight_bit, allow_partial)
            except asyncio.CancelledError:
                # Cancelled mid-transaction: the server's state is unknown, so the
                # connection must not carry another transaction.
                self._client.close()
                raise

    async def _send(
        self,
        envelope: Envelope,
        data: bytes,
        smtputf8: bool,
        eight_bit: bool,
        allow_partial: bool,
    ) -> Transaction:
        where = self._where
        if not envelope.recipients:
            raise InputDataError("the envelope has no recipients")
        sender = _envelope_path("sender", envelope.sender, smtputf8=smtputf8, allow_empty=True)
        recipients = [
            (address, _envelope_path("recipient", address, smtputf8=smtputf8, allow_empty=False))
            for address in envelope.recipients
        ]
        wire = normalize_message_line_endings(data)
        require_short_lines(wire)
        self._ensure_connected("MAIL FROM")

        options: list[bytes] = []
        if self.supports("SIZE"):
            # RFC 1870 3: the size is the message as transmitted, CRLF line endings,
            # without the dot-stuffing and the final dot.
            limit = _size_limit(self.info.extensions["SIZE"])
            if limit is not None and len(wire) > limit:
                raise MessageTooLargeError(
                    f"the message is {len(wire)} octets; {where} accepts at most {limit}",
                    details={"size": len(wire), "limit": limit},
                )
            options.append(f"SIZE={len(wire)}".encode("ascii"))
        if eight_bit:
            if self.supports("8BITMIME"):
                options.append(b"BODY=8BITMIME")  # RFC 6152
            elif self._transcript is not None:
                self._transcript.info(f"{where} does not offer 8BITMIME; sending as is")
        if smtputf8:
            if not self.supports("SMTPUTF8"):
                raise InputDataError(
                    f"the message needs SMTPUTF8 (non-ASCII addresses or headers), but "
                    f"{where} does not offer it (RFC 6531)",
                    hint="use ASCII addresses (IDNA domains) or another server",
                )
            options.append(b"SMTPUTF8")

        timings: dict[str, float] = {}
        started = time.perf_counter()
        reply = await self._command("MAIL FROM", b"MAIL", b"FROM:" + sender, *options)
        timings["mail"] = time.perf_counter() - started
        if reply.code != 250:
            await self._abort()
            raise _reply_error(reply, f"{where} refused sender {envelope.sender!r}")

        results: list[RecipientResult] = []
        started = time.perf_counter()
        for address, path in recipients:
            reply = await self._command(f"RCPT TO {address}", b"RCPT", b"TO:" + path)
            # RFC 5321 4.2.5: 250 accepted, 251 will forward.
            results.append(RecipientResult(address, reply.code in (250, 251), reply))
        timings["rcpt"] = time.perf_counter() - started

        refused = [r for r in results if not r.accepted]
        if refused and (not allow_partial or len(refused) == len(results)):
            await self._abort()
            raise _refusal_error(refused, results, where)

        started = time.perf_counter()
        final = await self._data(data, results)
        timings["data"] = time.perf_counter() - started
        return Transaction(
            recipients=tuple(results),
            final_reply=final,
            queue_id=parse_queue_id(final.message),
            timings=timings,
        )

    async def _data(self, data: bytes, results: list[RecipientResult]) -> Reply:
        where = self._where
        client = self._client
        details = {"recipients": [r.to_json() for r in results]}
        try:
            response = await client.data(data, timeout=self._settings.timeouts.data)
        except SMTPDataError as err:
            reply = _to_reply(err)
            if not client.final_dot_sent:
                await self._abort()  # DATA itself refused: clear the envelope
                raise _reply_error(reply, f"{where} refused DATA", details) from err
            raise _reply_error(reply, f"{where} refused the message", details) from err
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as err:
            client.close()
            if client.final_dot_sent:
                how = (
                    f"did not answer within {self._settings.timeouts.data:g}s"
                    if isinstance(err, _TIMEOUT_TYPES)
                    else "closed the connection"
                )
                raise OutcomeUnknownError(
                    f"{where} {how} after the end of the message; it may or may not "
                    "have been delivered",
                    hint="check the recipient's mailbox or the server log before resending",
                    details=details,
                ) from err
            raise _transport_error(
                err, where, "DATA", self._settings.timeouts.command, details
            ) from err
        return _to_reply(response)

    # -- helpers ---------------------------------------------------------------------

    def _ensure_connected(self, phase: str) -> None:
        if not self._client.is_connected:
            raise ConnectionLostError(
                f"the connection to {self._where} is closed; cannot send {phase}",
                hint="open a new session",
            )

    async def _command(self, phase: str, *args: bytes) -> Reply:
        """Send one command and return its reply; 421 and transport failures raise."""
        try:
            response = await self._client.execute_command(*args)
        except ValueError as err:  # aiosmtplib refuses control characters in arguments
            raise InputDataError(f"{phase}: argument contains control characters") from err
        except (SMTPException, OSError) as err:
            self._client.close()
            raise _transport_error(
                err, self._where, phase, self._settings.timeouts.command
            ) from err
        reply = _to_reply(response)
        if reply.code == 421:
            # RFC 5321 3.8: the server is shutting the channel (aiosmtplib closed it).
            self._client.close()
            raise _reply_error(reply, f"{self._where} is closing the connection at {phase}")
        return reply

    async def _abort(self) -> None:
        """RSET after a failed transaction so the connection can be reused; never raises."""
        client = self._client
        if not client.is_connected:
            return
        try:
            response = await client.execute_command(b"RSET")
        except (SMTPException, OSError, ValueError):
            client.close()
            return
        if response.code != 250:
            client.close()  # the server's state is unclear: do not reuse it


def _describe_tls(client: _Client) -> str:
    info = tls_info(client.ssl_object)
    if info is None:
        return "TLS not active"
    return f"TLS established: {info.version} {info.cipher}"


async def _starttls(
    client: _Client, settings: ServerSettings, where: str, context: ssl.SSLContext | None
) -> None:
    """Upgrade with STARTTLS, which is required: never fall back to clear text."""
    if not client.supports_extension("starttls"):
        # RFC 3207 4: a client that requires TLS must not go on in clear text.
        raise StartTlsUnavailableError(
            f"{where} does not offer STARTTLS, and STARTTLS is required",
            hint="use --security tls (port 465) if the server speaks implicit TLS",
        )
    timeout = settings.timeouts.connect
    try:
        await client.starttls(server_hostname=settings.host, tls_context=context, timeout=timeout)
    except SMTPResponseException as err:
        reply = _to_reply(err)
        if reply.code == 421:  # RFC 5321 3.8: closing, not a TLS problem
            raise _reply_error(reply, f"{where} is closing the connection") from err
        raise StartTlsUnavailableError(
            f"{where} refused STARTTLS: {_reply_text(reply)}",
            details={"reply": reply.to_json()},
        ) from err
    except (SMTPException, OSError) as err:
        raise _transport_error(err, where, "STARTTLS", timeout) from err


async def _ehlo(
    client: _Client, where: str, timeout: float, *, helo_fallback: bool = False
) -> None:
    """Send EHLO; with `helo_fallback`, fall back to HELO for a pre-ESMTP server.

    RFC 5321 3.2 and 4.1.4: a client may retry with HELO when EHLO is not recognised
    (500/502). Only sessions that need no extension (no TLS, no AUTH) may do that.
    """
    try:
        await client.ehlo()
        return
    except SMTPResponseException as err:
        reply = _to_reply(err)
        if not (helo_fallback and reply.code in (500, 502) and client.is_connected):
            raise _reply_error(reply, f"{where} refused EHLO") from err
    except (SMTPException, OSError) as err:
        client.close()
        raise _transport_error(err, where, "EHLO", timeout) from err
    try:
        await client.helo()
    except SMTPResponseException as err:
        raise _reply_error(_to_reply(err), f"{where} refused HELO") from err
    except (SMTPException, OSError) as err:
        client.close()
        raise _transport_error(err, where, "HELO", timeout) from err


def _choose_mechanism(client: _Client, settings: ServerSettings, where: str) -> AuthMechanism:
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
                hint="choose one of the offered mechanisms with --auth",
            )
        return settings.auth
    for mechanism in AUTO_MECHANISMS:
        if mechanism.value in advertised:
            return mechanism
    raise AuthUnsupportedError(
        f"{where} offers no AUTH mechanism mailctl uses without being asked "
        f"(it offers {' '.join(m.upper() for m in advertised)})",
        hint="pass --auth xoauth2 with a bearer token if the server wants OAuth",
    )


async def _authenticate(
    client: _Client,
    mechanism: AuthMechanism,
    username: str,
    secret_source: Callable[[], str],
    where: str,
) -> None:
    """Authenticate once; map every failure without ever putting the secret in a message."""
    secret = secret_source()  # the only call: right before AUTH, never again
    try:
        response = await client.authenticate(mechanism, username, secret)
    except SMTPException as err:
        if isinstance(err, SMTPResponseException):  # e.g. a bad CRAM-MD5 challenge
            raise ProtocolError(
                f"{where} sent an unusable AUTH {mechanism.value.upper()} challenge"
            ) from err
        raise _transport_error(err, where, "AUTH", client.timeout or 0.0) from err
    except OSError as err:
        raise _transport_error(err, where, "AUTH", client.timeout or 0.0) from err
    except ValueError as err:
        raise InputDataError(
            f"the user name for {where} contains characters that cannot be sent"
        ) from err
    reply = _to_reply(response)
    if reply.code == 235:
        return
    # Paranoia: a server echoing the password back must not put it into our message.
    scrubbed = Reply(
        reply.code, reply.message.replace(secret, "<redacted>") if secret else reply.message
    )
    text = _reply_text(scrubbed)
    details = {"reply": scrubbed.to_json(), "mechanism": mechanism.value.upper()}
    if reply.code == 421 or reply.is_transient:
        # RFC 4954 6: 454 4.7.0 is a temporary authentication failure.
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


async def _open_socket(
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
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
        )
    except socket.gaierror as err:
        reason = err.strerror or str(err)
        raise HostNotFoundError(
            f"cannot resolve the host of {where}: {reason}", hint="check the server host name"
        ) from err
    except TimeoutError as err:
        raise HostNotFoundError(
            f"resolving the host of {where} took longer than {timeout:g}s"
        ) from err
    last_error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
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
                f"timed out connecting to {where} after {timeout:g}s",
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
    reason = (last_error.strerror or str(last_error)) if last_error else "no address found"
    raise ConnectError(
        f"cannot connect to {where}: {reason}",
        hint="check that the server is running and the port is right",
    ) from last_error


def _reply_error(reply: Reply, context: str, details: dict[str, Any] | None = None) -> MailctlError:
    """A server refusal as SmtpTransientError (4xx) or SmtpPermanentError (5xx)."""
    merged: dict[str, Any] = dict(details or {})
    merged["reply"] = reply.to_json()
    message = f"{context}: {_reply_text(reply)}"
    if reply.is_transient:
        return SmtpTransientError(message, hint="try again later", details=merged)
    if reply.is_permanent:
        return SmtpPermanentError(message, details=merged)
    return ProtocolError(f"{context}: unexpected reply {_reply_text(reply)}", details=merged)


def _refusal_error(
    refused: Sequence[RecipientResult], results: Sequence[RecipientResult], where: str
) -> MailctlError:
    """RSET was sent; say which recipients were refused and whether retrying can help."""

    # RFC 5321 4.5.3.1.10: 552 to RCPT means "too many recipients": treat it as 452.
    def permanent(result: RecipientResult) -> bool:
        return result.reply.is_permanent and result.reply.code != 552

    details = {"recipients": [r.to_json() for r in results]}
    listed = "; ".join(f"{r.address}: {_reply_text(r.reply)}" for r in refused)
    nothing = "nothing was sent"
    if all(permanent(r) for r in refused):
        return SmtpPermanentError(
            f"{where} refused {len(refused)} of {len(results)} recipients, {nothing}: {listed}",
            hint="fix or drop the refused addresses (or allow partial delivery)",
            details=details,
        )
    return SmtpTransientError(
        f"{where} deferred {len(refused)} of {len(results)} recipients, {nothing}: {listed}",
        hint="try again later",
        details=details,
    )


def _transport_error(
    err: BaseException,
    where: str,
    phase: str,
    timeout: float,
    details: dict[str, Any] | None = None,
) -> MailctlError:
    """Map aiosmtplib/ssl/socket failures after TCP connect to one-line mailctl errors."""
    if isinstance(err, ssl.SSLError) or _has_ssl_cause(err):
        return map_ssl_error(err, host=where)
    if isinstance(err, _TIMEOUT_TYPES):
        return TimeoutFailure(
            f"{where} did not answer {phase} within {timeout:g}s", details=details
        )
    if isinstance(err, (SMTPServerDisconnected, ConnectionError, EOFError)) or isinstance(
        err.__cause__, ConnectionError
    ):
        return ConnectionLostError(f"{where} closed the connection during {phase}", details=details)
    if isinstance(err, SMTPResponseException):
        return _reply_error(_to_reply(err), f"{where} refused {phase}", details)
    text = _one_line(str(err)) or type(err).__name__
    if isinstance(err, OSError):
        return ConnectionLostError(f"{where}: {phase} failed: {text}", details=details)
    return ProtocolError(f"{where}: {phase} failed: {text}", details=details)


def _has_ssl_cause(err: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = err.__cause__ or err.__context__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return True
        current = current.__cause__ or current.__context__
    return False
