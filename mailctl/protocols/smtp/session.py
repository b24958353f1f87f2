"""SMTP sessions over aiosmtplib: TLS or required STARTTLS, one AUTH attempt, transactions."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from aiosmtplib.errors import (
    SMTPDataError,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from aiosmtplib.protocol import normalize_message_line_endings

from mailctl.errors import (
    CertificateError,
    ConnectionLostError,
    CredentialError,
    InputDataError,
    MailctlError,
    MessageTooLargeError,
    OutcomeUnknownError,
    PlaintextAuthRefusedError,
    ProtocolError,
    SmtpPermanentError,
    StartTlsUnavailableError,
    TimeoutFailure,
)
from mailctl.hosts import ehlo_name, endpoint
from mailctl.models import (
    AuthMechanism,
    Envelope,
    Protocol,
    RecipientResult,
    Reply,
    Security,
    ServerSettings,
)
from mailctl.protocols.handshake import HandshakeFacts
from mailctl.protocols.smtp.client import Client, describe_tls
from mailctl.protocols.smtp.connect import (
    AUTO_MECHANISMS,
    authenticate,
    check_command_text,
    choose_mechanism,
    default_ehlo_name,
    ehlo,
    starttls,
)

# Bound under its old private name: tests replace `smtp._open_socket` to prove no socket is opened.
from mailctl.protocols.smtp.connect import open_socket as _open_socket
from mailctl.protocols.smtp.envelope import (
    envelope_path,
    parse_queue_id,
    require_short_lines,
    size_limit,
)
from mailctl.protocols.smtp.errors import (
    TIMEOUT_TYPES,
    RepliesOutOfStep,
    refusal_error,
    reply_error,
    to_reply,
    transport_error,
)
from mailctl.protocols.smtp.outcome import (
    TransactionOutcome,
    TransactionStatus,
    deciding_refusal,
)
from mailctl.protocols.tls import (
    certificate_names,
    client_context,
    name_mismatch,
    plaintext_auth_fixes,
    tls_info,
    with_names,
)
from mailctl.protocols.transcript import Transcript
from mailctl.serialize import SECONDS, to_data

__all__ = [
    "AUTO_MECHANISMS",
    "SessionInfo",
    "SessionOptions",
    "SmtpSession",
    "parse_queue_id",
]

# Seconds close() waits for a clean (TLS close_notify) shutdown before aborting.
_CLOSE_WAIT = 2.0
# Seconds to wait for the reply to QUIT at most: it decides nothing, so never wait long.
_QUIT_WAIT = 5.0


def _in_step(error: MailctlError) -> bool:
    """Whether the connection is still in step after `error`, so QUIT can be said.

    RFC 5321 4.1.1.10: a client ends a session with QUIT, also after a refusal (a
    server logs anything else as a lost connection). Not after a timeout, a lost
    connection or a 421 (the server is closing, RFC 5321 3.8), nor in the middle of a
    TLS handshake or a garbled exchange, where QUIT would be read as something else.
    """
    if isinstance(error, StartTlsUnavailableError):
        return True  # refused or not offered: the plain-text session is fine
    if isinstance(error, (TimeoutFailure, ConnectionLostError, ProtocolError)):
        return False
    reply = error.details.get("reply")
    return not (isinstance(reply, dict) and reply.get("code") == 421)


async def _certificate_names(options: SessionOptions) -> tuple[str, ...] | None:
    """The names the server's certificate lists, read on a second connection; None if that
    fails. Only after the session was refused for a name mismatch, to say which names would
    pass: the chain is verified as before, only the name check is off, and the connection
    is dropped right after the handshake (no AUTH, no mail), within the connect timeout.
    """
    settings = options.settings
    where = endpoint(settings.host, settings.port)
    context = client_context(verify=True, ca_file=settings.ca_file)
    context.check_hostname = False  # to read the names, never to use the connection
    timeout = settings.timeouts.connect
    client: Client | None = None
    sock = None
    try:
        async with asyncio.timeout(timeout):
            sock = await _open_socket(
                settings.host, settings.port, timeout=timeout, source_address=None, where=where
            )
            client = Client(
                transcript=None,
                hostname=settings.tls_name or settings.host,
                sock=sock,
                local_hostname=options.ehlo_name or default_ehlo_name(sock),
                timeout=timeout,
                use_tls=settings.security is Security.TLS,
                start_tls=False,
                tls_context=context,
            )
            await client.connect(timeout=timeout)
            if settings.security is Security.STARTTLS:
                await client.ehlo()
                await client.starttls(
                    server_hostname=settings.tls_name or settings.host,
                    tls_context=context,
                    timeout=timeout,
                )
            ssl_object = client.ssl_object
            return certificate_names(ssl_object.getpeercert()) if ssl_object else None
    except (MailctlError, SMTPException, OSError, ValueError):
        return None
    finally:
        if client is not None:
            client.abort()
        if sock is not None:
            sock.close()


async def _quit(client: Client, timeout: float) -> None:
    """Say QUIT if the connection is open; never raises."""
    try:
        if client.is_connected:
            await client.quit(timeout=min(timeout, _QUIT_WAIT))
    except (SMTPException, OSError, ValueError):
        pass


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
    # Decode the whole presented chain into SessionInfo.tls (`account test`); `send` skips
    # it (cryptography's import and parse cost time it does not show).
    tls_chain: bool = False


@dataclass
class SessionInfo:
    """What the server told us while the session was set up."""

    banner: Reply
    extensions: dict[str, str]  # EHLO keyword (upper case) -> parameters
    tls: HandshakeFacts | None
    auth_mechanism: str | None
    # seconds: connect, banner, ehlo, starttls, auth
    timings: dict[str, float] = field(metadata=SECONDS)


class SmtpSession:
    """One authenticated (or anonymous) SMTP connection that runs transactions in turn.

    Open with `await SmtpSession.open(options)`; use as an async context manager so
    QUIT is always sent. Every failure is a `MailctlError`; aiosmtplib, ssl and socket
    exceptions are mapped here and chained with `from`.
    """

    def __init__(
        self, client: Client, options: SessionOptions, info: SessionInfo, where: str
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
        where = endpoint(settings.host, settings.port)
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
                fixes=plaintext_auth_fixes(Protocol.SMTP),
            )
        check_command_text("server host", settings.host)
        # The one EHLO rule (mailctl.hosts), which flags and the config file were checked by.
        ehlo = ehlo_name(options.ehlo_name) if options.ehlo_name is not None else None
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
            client = Client(
                transcript=transcript,
                # With a socket given, aiosmtplib uses the host name only for TLS
                # (server_hostname: SNI and the certificate's name check).
                hostname=settings.tls_name or settings.host,
                sock=sock,
                local_hostname=ehlo or default_ehlo_name(sock),
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
        except Exception as err:
            if isinstance(err, MailctlError) and _in_step(err):
                await _quit(client, timeouts.command)
            client.close()
            await client.wait_closed(min(timeouts.command, _CLOSE_WAIT))
            if isinstance(err, CertificateError) and name_mismatch(err):
                names = await _certificate_names(options)
                if names is not None:
                    raise with_names(err, names) from err.__cause__
            raise
        except BaseException:  # cancelled: no time for a polite TLS shutdown
            client.abort()
            raise

    @classmethod
    async def _handshake(
        cls,
        client: Client,
        options: SessionOptions,
        where: str,
        timings: dict[str, float],
        context: ssl.SSLContext | None,
    ) -> SmtpSession:
        settings = options.settings
        timeouts = settings.timeouts
        transcript = options.transcript

        started = time.perf_counter()
        try:
            # With implicit TLS the client notes the handshake in the transcript as it
            # completes, before the greeting is read (Client._handshake_done).
            banner_response = await client.connect(timeout=timeouts.connect)
        except SMTPResponseException as err:
            reply = to_reply(err)
            client.record_reply(reply, tls=client.tls_active)
            raise reply_error(reply, f"{where} refused the connection") from err
        except (SMTPException, OSError) as err:
            phase = (
                "TLS handshake"
                if settings.security is Security.TLS and not client.handshake_done
                else "greeting"
            )
            raise transport_error(err, where, phase, timeouts.connect, settings=settings) from err
        timings["banner"] = time.perf_counter() - started
        banner = to_reply(banner_response)
        client.record_reply(banner, tls=client.tls_active)

        started = time.perf_counter()
        plain_and_anonymous = settings.security is Security.NONE and not settings.username
        await ehlo(client, where, timeouts.command, helo_fallback=plain_and_anonymous)
        timings["ehlo"] = time.perf_counter() - started

        if settings.security is Security.STARTTLS:
            started = time.perf_counter()
            await starttls(client, settings, where, context)
            timings["starttls"] = time.perf_counter() - started
            if transcript is not None:
                # aiosmtplib reads the 220 and runs the handshake in one call; the client
                # recorded the 220 after it returned, so this note follows in the right order.
                transcript.info(describe_tls(client.ssl_object))
            # RFC 3207 4.2: forget the pre-TLS EHLO answer and ask again, now, instead
            # of letting aiosmtplib do it lazily before some later command.
            started = time.perf_counter()
            await ehlo(client, where, timeouts.command)
            timings["ehlo"] += time.perf_counter() - started

        mechanism: AuthMechanism | None = None
        if settings.username:
            mechanism = choose_mechanism(client, settings, where)
            if options.secret is None:
                raise CredentialError(
                    f"no password or token available for {settings.username} at {where}",
                    hint="store one with the keyring, set password_command, or MAILCTL_PASSWORD",
                )
            started = time.perf_counter()
            await authenticate(client, mechanism, settings.username, options.secret, where)
            timings["auth"] = time.perf_counter() - started

        info = SessionInfo(
            banner=banner,
            extensions={key.upper(): value for key, value in client.esmtp_extensions.items()},
            tls=tls_info(
                client.ssl_object,
                verified=True if settings.verify else None,
                with_chain=options.tls_chain,
            ),
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
    def anonymous(self) -> bool:
        """The server offered AUTH and the session did not log in: a policy refusal of MAIL
        or RCPT then most likely means "log in first" (RFC 4954 6, RFC 6409 4.3)."""
        return self.info.auth_mechanism is None and self.supports("AUTH")

    @property
    def outcome_unknown(self) -> bool:
        """True when the last final dot was sent but its reply never read (RFC 1047):
        whatever ended the transaction there, the message may have been delivered."""
        return self._client.awaiting_final_reply

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

        RFC 2920 pipelining (protocols/pipeline/) writes several commands at once and
        reads the replies in order, which aiosmtplib's one-reply-per-command protocol
        cannot do. The borrower installs its own protocol with `transport.set_protocol()`
        (which works over TLS too); on exit aiosmtplib's protocol is put back if the
        connection is still open, else the session is marked closed.
        Raises ConnectionLostError if the session is already closed, ProtocolError if
        the server sent a reply nobody asked for, SmtpTransientError if that was a 421.
        """
        async with self._lock:
            self._ensure_in_step("pipelined commands")
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
            await _quit(client, self._settings.timeouts.command)
        finally:
            client.close()
        await client.wait_closed(min(self._settings.timeouts.command, _CLOSE_WAIT))

    def abort(self) -> None:
        """Drop the connection at once, without QUIT (e.g. when cancelled mid-exchange)."""
        self._client.abort()

    async def reset(self) -> None:
        """Send RSET, e.g. to probe an idle connection before reuse (as Postfix does).

        Raises ConnectionLostError, TimeoutFailure, or SmtpTransientError on 421.
        """
        async with self._lock:
            self._ensure_connected("RSET")
            reply = await self._command("RSET", b"RSET")
            self._closing_at("RSET", reply)
            if reply.code != 250:
                raise reply_error(reply, f"{self._where} refused RSET")

    # -- transactions ----------------------------------------------------------------

    async def transact(
        self,
        envelope: Envelope,
        data: bytes,
        *,
        smtputf8: bool = False,
        eight_bit: bool = False,
        allow_partial: bool = False,
        tag: Hashable | None = None,
    ) -> TransactionOutcome:
        """Run one MAIL/RCPT/DATA transaction for `data` (the message bytes); return its outcome.

        Whatever happens once the transaction is on the wire is an outcome, never an
        exception: a refusal (REFUSED or TRANSIENT, the connection reset with RSET so it
        can carry the next one), a 421, a lost connection or a timeout (TRANSIENT before
        the final dot, UNKNOWN after it, RFC 1047; the connection closed). `connected`
        then says whether the session can go on; `outcome.exception` is the typed error
        `send` raises for it. Any refused recipient aborts the transaction (RSET, nothing
        sent) unless `allow_partial` is set and at least one recipient was accepted.

        Raises, before anything is written (the request cannot be sent to this server):
        InputDataError (no recipients, a line over 998 octets, SMTPUTF8 not offered),
        AddressError and MessageTooLargeError (RFC 1870 SIZE).
        """
        async with self._lock:
            sender, recipients, options = self._request(envelope, data, smtputf8, eight_bit)
            progress = _Progress(time.perf_counter())
            try:
                return await self._transact(
                    progress,
                    envelope,
                    data,
                    sender=sender,
                    recipients=recipients,
                    options=options,
                    allow_partial=allow_partial,
                    tag=tag,
                )
            except asyncio.CancelledError:
                # Cancelled mid-transaction: the server's state is unknown, so the
                # connection must not carry another transaction.
                self._client.close()
                raise
            except MailctlError as err:
                return progress.failed(err, self._client, tag)

    async def send(
        self,
        envelope: Envelope,
        data: bytes,
        *,
        smtputf8: bool = False,
        eight_bit: bool = False,
        allow_partial: bool = False,
    ) -> TransactionOutcome:
        """Run one transaction like `transact`, raising its typed error unless it was sent.

        For one-message callers (`mailctl send`, sendmail mode). Raises what `transact`
        raises, and then: SmtpPermanentError or SmtpTransientError for refusals (with
        details "recipients" and/or "reply"); ConnectionLostError, TimeoutFailure or
        ProtocolError before the final dot; OutcomeUnknownError after it (RFC 1047).
        """
        outcome = await self.transact(
            envelope, data, smtputf8=smtputf8, eight_bit=eight_bit, allow_partial=allow_partial
        )
        error = outcome.to_error()
        if error is not None:
            raise error
        return outcome

    def _request(
        self, envelope: Envelope, data: bytes, smtputf8: bool, eight_bit: bool
    ) -> tuple[bytes, list[tuple[str, bytes]], list[bytes]]:
        """Check the request and encode its paths and MAIL parameters; nothing is written."""
        where = self._where
        if not envelope.recipients:
            raise InputDataError("the envelope has no recipients")
        sender = envelope_path("sender", envelope.sender, smtputf8=smtputf8, allow_empty=True)
        recipients = [
            (address, envelope_path("recipient", address, smtputf8=smtputf8, allow_empty=False))
            for address in envelope.recipients
        ]
        wire = normalize_message_line_endings(data)
        require_short_lines(wire)
        options: list[bytes] = []
        if self.supports("SIZE"):
            # RFC 1870 3: the size is the message as transmitted, CRLF line endings,
            # without the dot-stuffing and the final dot.
            limit = size_limit(self.info.extensions["SIZE"])
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
        return sender, recipients, options

    async def _transact(
        self,
        progress: _Progress,
        envelope: Envelope,
        data: bytes,
        *,
        sender: bytes,
        recipients: list[tuple[str, bytes]],
        options: list[bytes],
        allow_partial: bool,
        tag: Hashable | None,
    ) -> TransactionOutcome:
        """The exchange; every failure raises the MailctlError `send` gives its caller, with
        `progress` holding what was answered (turned into the outcome by `transact`)."""
        where = self._where
        self._ensure_connected("MAIL FROM", progress)
        reply = await self._command("MAIL FROM", b"MAIL", b"FROM:" + sender, *options)
        progress.mail, progress.mail_done = reply, time.perf_counter()
        self._closing_at("MAIL FROM", reply, progress)
        if reply.code != 250:
            progress.decided = reply
            progress.closing = await self._abort()
            raise reply_error(
                reply,
                f"{where} refused sender {envelope.sender!r}",
                closing=progress.closing,
                anonymous=self.anonymous,
            )

        results = progress.recipients
        for address, path in recipients:
            reply = await self._command(f"RCPT TO {address}", b"RCPT", b"TO:" + path)
            # RFC 5321 4.2.5: 250 accepted, 251 will forward.
            results.append(RecipientResult(address, reply.code in (250, 251), reply))
            self._closing_at(f"RCPT TO {address}", reply, progress)
        progress.envelope_done = time.perf_counter()

        refused = [r for r in results if not r.accepted]
        if refused and (not allow_partial or len(refused) == len(results)):
            progress.decided = deciding_refusal(refused).reply
            progress.closing = await self._abort()
            raise refusal_error(
                refused,
                results,
                where,
                closing=progress.closing,
                allow_partial=allow_partial,
                anonymous=self.anonymous,
            )

        final = await self._data(data, progress)
        client = self._client
        return TransactionOutcome(
            TransactionStatus.SENT,
            tag,
            tuple(results),
            progress.mail,
            to_reply(client.data_reply) if client.data_reply is not None else None,
            final,
            started=progress.started,
            mail_done=progress.mail_done,
            envelope_done=progress.envelope_done,
            data_accepted=client.data_accepted_at,
            dot_sent=client.dot_sent_at,
            finished=time.perf_counter(),
        )

    async def _data(self, data: bytes, progress: _Progress) -> Reply:
        where = self._where
        client = self._client
        details = {"recipients": to_data(progress.recipients)}
        progress.in_data = True
        try:
            response = await client.data(data, timeout=self._settings.timeouts.data)
        except SMTPDataError as err:
            reply = progress.decided = to_reply(err)
            if not client.final_dot_sent:
                progress.closing = await self._abort()  # DATA itself refused: clear the envelope
                raise reply_error(
                    reply, f"{where} refused DATA", details, closing=progress.closing
                ) from err
            progress.final = reply
            raise reply_error(reply, f"{where} refused the message", details) from err
        except RepliesOutOfStep as err:  # found before the body was written: not sent
            raise transport_error(err, where, "DATA", 0.0, details) from err
        except (SMTPServerDisconnected, SMTPTimeoutError, OSError) as err:
            client.close()
            if client.final_dot_sent:
                timed_out = isinstance(err, TIMEOUT_TYPES)
                progress.reason = "timeout" if timed_out else "connection_lost"
                how = (
                    f"did not answer within {self._settings.timeouts.data:g}s"
                    if timed_out
                    else "closed the connection"
                )
                raise OutcomeUnknownError(
                    f"{where} {how} after the end of the message; it may or may not "
                    "have been delivered",
                    hint="check the recipient's mailbox or the server log before resending",
                    details=details,
                ) from err
            raise transport_error(
                err, where, "DATA", self._settings.timeouts.command, details
            ) from err
        return to_reply(response)

    # -- helpers ---------------------------------------------------------------------

    def _ensure_in_step(self, phase: str) -> None:
        """Raise if the server sent something nobody asked for (see Client.ensure_in_step)."""
        try:
            closing = self._client.ensure_in_step(phase)
        except RepliesOutOfStep as err:
            raise transport_error(err, self._where, phase, 0.0) from err
        if closing is not None:
            raise reply_error(to_reply(closing), f"{self._where} is closing the connection")

    def _ensure_connected(self, phase: str, progress: _Progress | None = None) -> None:
        """Raise unless connected: the server's parting 421 if it sent one, else lost."""
        if not self._client.is_connected:
            parting = self._client.parting_reply()
            if parting is not None:
                if progress is not None:
                    progress.decided = parting
                raise reply_error(parting, f"{self._where} closed the connection before {phase}")
            raise ConnectionLostError(
                f"the connection to {self._where} is closed; cannot send {phase}",
                hint="open a new session",
            )

    async def _command(self, phase: str, *args: bytes) -> Reply:
        """Send one command and return its reply; transport failures raise.

        A 421 closes the connection (RFC 5321 3.8: the server is shutting the channel;
        aiosmtplib has closed it too) and is returned: see `_closing_at`.
        """
        try:
            response = await self._client.execute_command(*args)
        except ValueError as err:  # aiosmtplib refuses control characters in arguments
            raise InputDataError(f"{phase}: argument contains control characters") from err
        except (SMTPException, OSError) as err:
            self._client.close()
            raise transport_error(err, self._where, phase, self._settings.timeouts.command) from err
        reply = to_reply(response)
        if reply.code == 421:
            self._client.close()
        return reply

    def _closing_at(self, phase: str, reply: Reply, progress: _Progress | None = None) -> None:
        """Raise when `reply` is the server's 421: it decides the transaction."""
        if reply.code == 421:
            if progress is not None:
                progress.decided = reply
            raise reply_error(reply, f"{self._where} is closing the connection at {phase}")

    async def _abort(self) -> Reply | None:
        """RSET after a failed transaction so the connection can be reused; never raises.

        Returns the 421 if the server is closing the connection (answering RSET with it,
        or having sent it with its last refusal), so the caller can name it.
        """
        client = self._client
        if not client.is_connected:
            return client.parting_reply()
        try:
            response = await client.execute_command(b"RSET")
        except (SMTPException, OSError, ValueError):
            client.close()
            return None
        if response.code != 250:
            client.close()  # the server's state is unclear: do not reuse it
        return to_reply(response) if response.code == 421 else None


@dataclass(slots=True)
class _Progress:
    """What a lock-step transaction got so far, for its outcome when it fails."""

    started: float
    mail: Reply | None = None
    mail_done: float = 0.0
    recipients: list[RecipientResult] = field(default_factory=list)
    envelope_done: float = 0.0
    final: Reply | None = None
    decided: Reply | None = None  # the reply that decided a failure
    closing: Reply | None = None  # the 421 the server closed with after that refusal
    reason: str | None = None  # when no reply decided and the error's code is not the reason
    in_data: bool = False  # DATA was sent: the client's data_* fields are this transaction's

    def failed(
        self, error: MailctlError, client: Client, tag: Hashable | None
    ) -> TransactionOutcome:
        """The outcome of a transaction that ended with `error` (kept as its exception)."""
        if isinstance(error, OutcomeUnknownError):
            status = TransactionStatus.UNKNOWN
        elif isinstance(error, (SmtpPermanentError, InputDataError)):
            status = TransactionStatus.REFUSED
        else:
            status = TransactionStatus.TRANSIENT
        decided = self.decided
        if self.reason is not None:
            reason = self.reason
        elif decided is not None:
            reason = str(decided.code)
        else:
            reason = error.code
        data_reply = client.data_reply if self.in_data else None
        return TransactionOutcome(
            status,
            tag,
            tuple(self.recipients),
            self.mail,
            to_reply(data_reply) if data_reply is not None else None,
            self.final,
            reason=reason,
            error=error.message,
            failure_reply=decided,
            closing_reply=self.closing,
            started=self.started,
            mail_done=self.mail_done,
            envelope_done=self.envelope_done,
            data_accepted=client.data_accepted_at if self.in_data else 0.0,
            dot_sent=client.dot_sent_at if self.in_data else 0.0,
            finished=time.perf_counter(),
            exception=error,
        )
