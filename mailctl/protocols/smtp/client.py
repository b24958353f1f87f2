"""The aiosmtplib client that feeds a Transcript, speaks AUTH once, tracks the final dot,
refuses to go on when the server sent a reply nobody asked for, and keeps the reply a
server sent just before it hung up."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, Literal

from aiosmtplib import SMTP
from aiosmtplib.auth import (
    auth_crammd5_verify,
    auth_login_encode,
    auth_plain_encode,
    auth_xoauth2_encode,
)
from aiosmtplib.errors import (
    SMTPDataError,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from aiosmtplib.protocol import PERIOD_REGEX, SMTPProtocol, normalize_message_line_endings
from aiosmtplib.response import SMTPResponse
from aiosmtplib.typing import Default

from mailctl.models import AuthMechanism, Reply
from mailctl.protocols.smtp.errors import RepliesOutOfStep, to_reply
from mailctl.protocols.tls import tls_info
from mailctl.protocols.transcript import Transcript
from mailctl.text import excerpt

__all__ = ["Client", "describe_tls"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Unread server output kept to explain a disconnect: one short reply is all that matters.
_UNREAD_LIMIT = 4096
_REPLY_LINE = re.compile(rb"^(\d{3})(?:([ -])(.*?))?\r?$")


def _escape_control(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def _shown(data: bytes) -> str:
    """The first line of unasked-for server output, for a one-line message."""
    return excerpt(data.split(b"\n", 1)[0])


def describe_tls(ssl_object: ssl.SSLObject | None) -> str:
    """The transcript's note for an established TLS session."""
    info = tls_info(ssl_object)
    if info is None:
        return "TLS not active"
    return f"TLS established: {info.version} {info.cipher}"


def _observe_handshake(context: ssl.SSLContext, done: Callable[[ssl.SSLObject], None]) -> None:
    """Call `done` the moment a TLS handshake made with `context` completes.

    asyncio runs the handshake inside the library call that also reads the greeting
    (aiosmtplib's connect), so nothing outside that call can see it end in between. The
    SSLObject it drives is made by `context.sslobject_class` (a documented hook), and its
    `do_handshake` returns normally exactly once, when the handshake is complete.
    """

    class _Observed(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()
            done(self)

    context.sslobject_class = _Observed


def _reply_lines(reply: Reply) -> list[str]:
    """Rebuild the wire form of a (possibly multi-line) reply for the transcript."""
    parts = reply.message.split("\n") if reply.message else [""]
    lines = []
    for index, part in enumerate(parts):
        separator = "-" if index < len(parts) - 1 else " "
        lines.append(f"{reply.code}{separator}{part}".rstrip())
    return lines


def _closing_reply(data: bytes) -> Reply | None:
    """The first complete 421 reply in `data` (bytes no command has read), if any."""
    lines: list[str] = []
    for raw in data.split(b"\n")[:-1]:  # the last piece has no line end: incomplete
        match = _REPLY_LINE.match(raw)
        if match is None:
            return None  # not a reply: do not guess
        lines.append((match.group(3) or b"").decode("utf-8", "replace").strip())
        if match.group(2) != b"-":
            if match.group(1) == b"421":
                return Reply(421, "\n".join(lines))
            lines = []
    return None


class Client(SMTP):
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
        # True from the final dot until its reply is read: if the session ends in
        # between (lost, timed out, interrupted), the message may have been delivered.
        self.awaiting_final_reply = False
        # The last `data` call: the reply to DATA, when it came and when the dot went
        # (time.perf_counter(); 0.0 if not reached), for the transaction's outcome.
        self.data_reply: SMTPResponse | None = None
        self.data_accepted_at = 0.0
        self.dot_sent_at = 0.0
        self._watched: SMTPProtocol | None = None
        self._unsolicited = bytearray()
        self._parting_taken = False
        self._surplus_reported = False
        # Implicit TLS (RFC 8314 3.3): the handshake completes before the server greets.
        # It is noted in the transcript when it completes, not after the greeting was read.
        self.handshake_done = False
        context = kwargs.get("tls_context")
        if kwargs.get("use_tls") and isinstance(context, ssl.SSLContext):
            _observe_handshake(context, self._handshake_done)

    def _handshake_done(self, ssl_object: ssl.SSLObject) -> None:
        self.handshake_done = True
        if self._transcript is not None:
            self._transcript.info(describe_tls(ssl_object))

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

    # -- the reply that came with the disconnect ------------------------------------------

    async def connect(self, *args: Any, **kwargs: Any) -> SMTPResponse:
        response = await super().connect(*args, **kwargs)
        self._watch(self.protocol)
        return response

    def _watch(self, protocol: SMTPProtocol | None) -> None:
        """Keep (bounded) the server output aiosmtplib drops because no command awaits it.

        aiosmtplib discards bytes that arrive while no reply is expected, so that they can
        never be taken for a later command's reply. A server that is closing may send
        exactly such bytes: RFC 5321 3.8 lets it send 421 at any time and hang up, e.g.
        on an idle timeout. They are kept aside, never used as a reply to a command,
        only to explain the disconnect that follows (`parting_reply`).
        """
        if protocol is None:
            return
        self._watched = protocol
        deliver = protocol.data_received
        unsolicited = self._unsolicited

        def keep(data: bytes) -> None:
            unsolicited.extend(data[: max(0, _UNREAD_LIMIT - len(unsolicited))])

        def data_received(data: bytes) -> None:
            waiter = getattr(protocol, "_response_waiter", None)
            if not getattr(protocol, "_response_pending", True) or (
                waiter is not None and waiter.done()
            ):
                keep(data)
                deliver(data)
                return
            deliver(data)
            # One command, one reply (no PIPELINING here): bytes that came in the same read
            # after the reply are a reply nobody asked for. aiosmtplib leaves them in its
            # buffer, where they would answer the next command.
            leftover = getattr(protocol, "_buffer", b"")
            if leftover and waiter is not None and waiter.done():
                keep(bytes(leftover))

        protocol.data_received = data_received  # type: ignore[method-assign]

    def parting_reply(self) -> Reply | None:
        """The 421 a server sent before closing that no command has read, else None.

        Postfix at smtpd_hard_error_limit writes its last error and ``421 4.7.0 Error:
        too many errors`` in one segment and closes: aiosmtplib hands out the first reply
        and leaves the 421 unread in its buffer, so the next command only sees the
        connection gone. The 421 says why, with the server's own text.
        """
        protocol = self._watched
        buffered = bytes(getattr(protocol, "_buffer", b"")) if protocol is not None else b""
        return _closing_reply(buffered) or _closing_reply(bytes(self._unsolicited))

    def _take_parting_reply(
        self, note: str = "the server closed the connection after sending:"
    ) -> SMTPResponse | None:
        """The parting 421 as the answer to a command that found the connection closed.

        Given out once: after it the connection is simply gone.
        """
        if self._parting_taken:
            return None
        reply = self.parting_reply()
        if reply is None:
            return None
        self._parting_taken = True
        if self._transcript is not None:
            self._transcript.info(note)
        self.record_reply(reply, tls=False)
        return SMTPResponse(reply.code, reply.message)

    def _surplus(self) -> bytes:
        """Server output beyond the replies read so far (bounded), oldest first."""
        if self._unsolicited:
            return bytes(self._unsolicited)
        protocol = self._watched
        return bytes(getattr(protocol, "_buffer", b"")) if protocol is not None else b""

    def ensure_in_step(self, before: str) -> SMTPResponse | None:
        """Check that nothing the server sent is waiting to be read, before `before` is sent.

        Without PIPELINING a server sends exactly one reply per command (RFC 5321 4.2;
        RFC 2920 3.1 for the pipelined path). Output nobody asked for (extra lines after
        the banner, a second reply after any reply, a reply after the 354) would be taken
        for the answer to the next command, and so on down the session, up to a 250 for
        a final dot whose real answer was a refusal: so the connection is closed and
        RepliesOutOfStep raised, before anything more is written. The one exception is
        a 421 (RFC 5321 3.8: a server may say it unasked before it closes): it is
        returned as the answer to `before`, the connection closed. Either is reported
        once; None when the connection is in step (or the surplus was already reported).
        """
        surplus = self._surplus()
        if not surplus or self._surplus_reported:
            return None
        self._surplus_reported = True
        self.close()
        if surplus.startswith(b"421"):
            parting = self._take_parting_reply("the server is closing the connection:")
            if parting is not None:
                return parting
        if self._transcript is not None:
            self._transcript.info(f"unasked-for server output before {before}: {_shown(surplus)}")
        raise RepliesOutOfStep(f"sent a reply nobody asked for before {before} ({_shown(surplus)})")

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
        closing = self.ensure_in_step(args[0].decode("ascii", "replace") if args else "")
        if closing is not None:
            return closing
        tls = self.tls_active
        if self._transcript is not None:
            if self._redact_next is not None:
                self._transcript.redacted_sent(self._redact_next, tls=tls)
            else:
                text = b" ".join(args).decode("utf-8", "backslashreplace")
                self._transcript.sent(_CONTROL.sub(_escape_control, text), tls=tls)
        self._redact_next = None
        try:
            response = await super().execute_command(*args, timeout=timeout)
        except SMTPServerDisconnected:
            # aiosmtplib closed the client; a 421 it left unread answers for the server.
            parting = self._take_parting_reply()
            if parting is None:
                raise
            return parting
        self.record_reply(to_reply(response), tls=tls)
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
        closing = self.ensure_in_step("STARTTLS")
        if closing is not None:
            raise SMTPResponseException(closing.code, closing.message)
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
        except SMTPServerDisconnected:
            parting = self._take_parting_reply()
            if parting is None:
                raise
            raise SMTPResponseException(parting.code, parting.message) from None
        except SMTPResponseException as err:
            self.record_reply(to_reply(err), tls=False)
            raise
        self.record_reply(to_reply(response), tls=False)
        # RFC 3207 4.2: a server sends nothing after its 220 until TLS is up. aiosmtplib
        # drops what came (it is never believed); anything there was injected on the
        # path or the server is broken, so the session stops before a word goes over TLS.
        if self._unsolicited:
            injected = _shown(bytes(self._unsolicited))
            self.close()
            if self._transcript is not None:
                self._transcript.info(f"clear text after the 220 to STARTTLS: {injected}")
            raise RepliesOutOfStep(
                f"sent more in clear text after its 220 reply to STARTTLS ({injected}); "
                "refusing the session (RFC 3207 4.2: possible injection on the path)"
            )
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
        self.awaiting_final_reply = False
        self.data_reply = None
        self.data_accepted_at = self.dot_sent_at = 0.0
        if isinstance(message, str):
            message = message.encode("ascii")
        start = await self.execute_command(b"DATA")
        self.data_reply = start
        if start.code != 354:
            raise SMTPDataError(start.code, start.message)
        self.data_accepted_at = time.perf_counter()
        # A reply waiting now would pass for the final reply to a body it never read.
        closing = self.ensure_in_step("the message body")
        if closing is not None:
            raise SMTPDataError(closing.code, closing.message)
        protocol = self.protocol
        if protocol is None or not protocol.is_connected:
            raise SMTPServerDisconnected("Connection lost")  # before the body: not sent
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
            self.dot_sent_at = time.perf_counter()
            self.final_dot_sent = True
            self.awaiting_final_reply = True
            response = await protocol.read_response(
                timeout=self.timeout if timeout is Default.token else timeout
            )
        except SMTPServerDisconnected:
            self.close()  # out of step after a lost reply: never reuse it
            parting = self._take_parting_reply()
            if parting is None:
                raise
            # A 421 the server sent and then closed: it did not take the message.
            response = parting
        except SMTPTimeoutError:
            self.close()  # a late reply would answer the next command: never reuse it
            raise
        else:
            self.record_reply(to_reply(response), tls=tls)
        self.awaiting_final_reply = False
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
