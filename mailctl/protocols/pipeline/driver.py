"""RFC 2920 pipelined SMTP transactions on an established SmtpSession (the bulk/bench hot path).

aiosmtplib opens the session (connect, EHLO, STARTTLS or TLS, AUTH) and then lends its
transport (`SmtpSession.borrow_transport`) to `ReplyReader`, a small asyncio.Protocol
that lets one write carry MAIL, every RCPT and DATA, and reads the replies in order. After
the 354 it writes the dot-stuffed body and the final dot, followed in the same write by the
next transaction's MAIL/RCPT/DATA when one is ready (RFC 2920 3.1 allows commands after the
end of data). That turns four round trips per message into one.

Usage (bulk-send and bench)::

    message = prepare_message(data)                       # dot-stuffed once
    item = prepare_transaction(envelope, message, extensions=session.info.extensions, tag=row)
    async with pipelined(session) as pipe:
        async for result in pipe.send_all(items):         # one result per item taken, in order
            journal.mark(result.tag, result.status)       # SENT / REFUSED / TRANSIENT / UNKNOWN

Per-transaction failures never raise: they are outcomes (`TransactionOutcome`, the same type
`SmtpSession.transact` returns; its status follows the table in FACTS.md, by the reply rules
of protocols/smtp/outcome.py). Only problems found before anything is written raise
MailctlError.

This module drives the session (`pipelined`, `Pipeline`); its siblings are `prepare`
(WireMessage, PreparedTransaction), `replies` (the Reply cache), `reader` (`ReplyReader`,
the BufferedProtocol) and `sources` (where the next transaction comes from).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass

from mailctl.errors import ProtocolError
from mailctl.models import RecipientResult, Reply, Timeouts
from mailctl.protocols.pipeline.prepare import LONE_DOT as _LONE_DOT
from mailctl.protocols.pipeline.prepare import (
    PreparedTransaction,
)
from mailctl.protocols.pipeline.reader import ReplyReader as _ReplyReader
from mailctl.protocols.pipeline.reader import ReplyTuple as _ReplyTuple
from mailctl.protocols.pipeline.replies import cached_reply as _reply
from mailctl.protocols.pipeline.replies import one_line as _text
from mailctl.protocols.pipeline.sources import AsyncSource as _AsyncSource
from mailctl.protocols.pipeline.sources import SyncSource as _SyncSource
from mailctl.protocols.smtp import (
    SmtpSession,
    TransactionOutcome,
    TransactionStatus,
    deciding_refusal,
    refusal_status,
    reply_status,
)

__all__ = ["Pipeline", "pipelined"]

_RSET = b"RSET\r\n"


@dataclass(slots=True)
class _Flight:
    """One transaction in flight: what was sent and what came back so far."""

    item: PreparedTransaction
    started: float
    chained: bool
    mail: Reply | None = None
    recipients: tuple[RecipientResult, ...] = ()
    data: Reply | None = None
    mail_done: float = 0.0
    envelope_done: float = 0.0
    data_accepted: float = 0.0
    dot_sent: float = 0.0

    def record(self, raw: list[_ReplyTuple]) -> None:
        """Take MAIL, RCPT... and DATA replies (a lock-step exchange may stop early)."""
        addresses = self.item.envelope.recipients
        self.mail = _reply(raw[0])
        self.mail_done = raw[0][2]
        rcpts = raw[1 : 1 + len(addresses)]
        self.recipients = tuple(
            RecipientResult(address, reply[0] in (250, 251), _reply(reply))
            for address, reply in zip(addresses, rcpts, strict=False)
        )
        if rcpts:
            self.envelope_done = rcpts[-1][2]
        if len(raw) == len(addresses) + 2:
            self.data = _reply(raw[-1])
            self.data_accepted = raw[-1][2]

    def result(
        self,
        status: TransactionStatus,
        *,
        final: Reply | None = None,
        reason: str | None = None,
        error: str | None = None,
        finished: float | None = None,
        failure_reply: Reply | None = None,
        closing_reply: Reply | None = None,
    ) -> TransactionOutcome:
        if failure_reply is None and reason is not None and reason.isdigit():
            # The reply whose code decided the failure, in the order of the exchange.
            code = int(reason)
            replies = (self.mail, *(r.reply for r in self.recipients), self.data, final)
            failure_reply = next((r for r in replies if r is not None and r.code == code), None)
        return TransactionOutcome(
            status,
            self.item.tag,
            self.recipients,
            self.mail,
            self.data,
            final,
            reason=reason,
            error=error,
            closing_reply=closing_reply,
            started=self.started,
            mail_done=self.mail_done,
            envelope_done=self.envelope_done,
            data_accepted=self.data_accepted,
            dot_sent=self.dot_sent,
            finished=time.perf_counter() if finished is None else finished,
            chained=self.chained,
            failure_reply=failure_reply,
        )


def _refusal(refused: list[RecipientResult]) -> tuple[TransactionStatus, Reply]:
    """A transaction's status from its refused recipients, and the reply that decides it."""
    return refusal_status(r.reply.code for r in refused), deciding_refusal(refused).reply


def _unsent(
    mail: Reply, data: Reply | None, refused: list[RecipientResult], accepted: int
) -> tuple[TransactionStatus, Reply]:
    """The status of a transaction that never got its 354, and the reply that decides it."""
    if mail.code != 250:
        return reply_status(mail.code), mail
    if refused and not accepted:
        return _refusal(refused)
    if data is not None:
        return reply_status(data.code), data
    return _refusal(refused)  # a lock-step exchange that stopped at a 421 to RCPT


class Pipeline:
    """Transactions on one borrowed connection; get one from `pipelined(session)`."""

    def __init__(
        self,
        reader: _ReplyReader,
        *,
        where: str,
        timeouts: Timeouts,
        pipelining: bool,
        allow_partial: bool,
    ) -> None:
        self._reader = reader
        self._where = where
        self._timeouts = timeouts
        self.pipelining = pipelining
        self._allow_partial = allow_partial
        self._rset_pending = False  # a failed envelope left a transaction open
        self._busy = False  # a transaction is in flight (the server state is in between)

    @property
    def usable(self) -> bool:
        """False once the connection is closed or out of step: open a new session then."""
        return self._reader.usable

    async def send(self, item: PreparedTransaction) -> TransactionOutcome:
        """Run one transaction (MAIL/RCPT/DATA in one write when pipelining)."""
        results = [result async for result in self.send_all((item,))]
        return results[0]

    async def send_all(
        self, items: Iterable[PreparedTransaction] | AsyncIterable[PreparedTransaction]
    ) -> AsyncIterator[TransactionOutcome]:
        """Send every item in turn; yield exactly one result per item taken, in order.

        With PIPELINING the next item's commands are written together with the final
        dot of the current one when the next item is ready (RFC 2920 3.1). Iteration ends
        when `items` is exhausted or the connection becomes unusable (421, lost, timeout);
        items not yet taken from `items` stay untouched. Never raises for a failed
        transaction: see TransactionOutcome.status.
        """
        source: _SyncSource | _AsyncSource = (
            _AsyncSource(items) if isinstance(items, AsyncIterable) else _SyncSource(items)
        )
        try:
            item = await source.next()
            chained_at = 0.0
            while item is not None:
                self._busy = True
                result, follow = await self._transaction(item, chained_at, source)
                self._busy = follow is not None  # the next MAIL is already on the wire
                yield result
                if follow is not None and not self.usable:
                    yield self._not_sent(follow)
                    follow = None
                if not self.usable:
                    return
                if follow is not None:
                    item, chained_at = follow, result.dot_sent
                else:
                    item, chained_at = await source.next(), 0.0
        finally:
            await source.aclose()

    # -- one transaction --------------------------------------------------------------

    async def _transaction(
        self,
        item: PreparedTransaction,
        chained_at: float,
        source: _SyncSource | _AsyncSource,
    ) -> tuple[TransactionOutcome, PreparedTransaction | None]:
        """Run `item`; return its result and the next item if its commands were chained."""
        reader = self._reader
        flight = _Flight(item, chained_at or time.perf_counter(), chained=bool(chained_at))
        if not self.pipelining:
            raw = await self._lockstep_envelope(flight)
            if raw is None:
                return self._lost(flight), None
        else:
            # Unless the commands rode on the previous final dot, no reply may be pending.
            if not chained_at and (
                reader.out_of_step()
                or not reader.write((_RSET if self._rset_pending else b"") + item.commands)
            ):
                return self._lost(flight), None
            if self._rset_pending and not await self._rset_reply():
                return self._lost(flight), None
            count = item.reply_count
            raw = await reader.read(count, self._timeouts.command)
            if len(raw) < count:
                return self._lost(flight, raw), None
        flight.record(raw)
        refusal = await self._envelope_refusal(flight)
        if refusal is not None:
            return refusal, None
        return await self._body(flight, source)

    async def _rset_reply(self) -> bool:
        """Read the reply to a pipelined RSET; an unclear state closes the connection."""
        self._rset_pending = False
        rset = await self._reader.read(1, self._timeouts.command)
        if rset and rset[0][0] == 250:
            return True
        self._reader.abort()  # the server's state is unclear: never reuse it
        return False

    async def _lockstep_envelope(self, flight: _Flight) -> list[_ReplyTuple] | None:
        """Without PIPELINING: one command, one reply (RFC 5321); None if the connection failed.

        Stops early, as a lock-step client does, when MAIL is refused, on 421, or when no
        recipient was accepted (DATA is then not sent).
        """
        reader = self._reader
        timeout = self._timeouts.command
        if self._rset_pending and (not reader.write(_RSET) or not await self._rset_reply()):
            return None
        commands = flight.item.commands.split(b"\r\n")[:-1]  # MAIL, RCPT..., DATA
        raw: list[_ReplyTuple] = []
        for index, command in enumerate(commands):
            if reader.replies and reader.replies[0][0] == 421:
                # Postfix sends its 421 in the same segment as the error that reached its
                # hard limit: it answers every command not yet sent (RFC 5321 3.8).
                raw.append(reader.replies.popleft())
                break
            if reader.out_of_step() or not reader.write(command + b"\r\n"):
                return None
            got = await reader.read(1, timeout)
            if not got:
                return None
            raw.extend(got)
            code = got[0][0]
            before_data = index == len(commands) - 2
            if (
                (index == 0 and code != 250)
                or code == 421
                or (before_data and not any(r[0] in (250, 251) for r in raw[1:]))
            ):
                break
        return raw

    async def _envelope_refusal(self, flight: _Flight) -> TransactionOutcome | None:
        """The outcome when MAIL, the recipients or DATA were refused; None to go on."""
        reader = self._reader
        mail, data = flight.mail, flight.data
        assert mail is not None
        refused = [r for r in flight.recipients if not r.accepted]
        accepted = len(flight.recipients) - len(refused)
        if data is None or data.code != 354:
            # Nothing was sent. RFC 2920 3.1: the transaction may still be open on the
            # server, so RSET goes in front of the next MAIL.
            self._rset_pending = True
            status, decided = _unsent(mail, data, refused, accepted)
            error = f"{self._where} refused the transaction: {_text(decided)}"
            bye = self._closing(mail, data, *(r.reply for r in refused))
            if bye is not None:
                # RFC 5321 3.8: the server is closing the connection: never reuse it. The
                # refusals stay its answers for this transaction (as `send` reports them):
                # Postfix at smtpd_hard_error_limit refuses for good, then says 421.
                reader.abort()
                if decided.code != 421:  # else the refusal itself says it
                    error += f"; then it closed the connection: {_text(bye)}"
            return flight.result(
                status,
                reason=str(decided.code),
                error=error,
                failure_reply=decided,
                closing_reply=bye if bye is not decided else None,
            )
        if mail.code != 250 or not accepted:
            # RFC 2920 3.1: DATA accepted although MAIL or every RCPT failed; send a lone
            # dot (no body) and read its reply.
            reader.write(_LONE_DOT)
            final = await reader.read(1, self._timeouts.data)
            if not final:
                return self._lost(flight)
            if mail.code != 250:
                status, decided = reply_status(mail.code), mail
            else:
                status, decided = _refusal(refused)
            error = f"{self._where} refused the transaction: {_text(decided)}"
            bye = self._closing(_reply(final[0]))
            if bye is not None:  # RFC 5321 3.8: as above, named and never reused
                reader.abort()
                error += f"; then it closed the connection: {_text(bye)}"
            return flight.result(
                status,
                final=_reply(final[0]),
                reason=str(decided.code),
                error=error,
                failure_reply=decided,
                closing_reply=bye,
            )
        if refused and not self._allow_partial:
            # After 354 the only way not to deliver to the accepted recipients is to close
            # the connection before the final dot (RFC 5321 4.1.1.4): nothing is delivered.
            reader.abort()
            listed = "; ".join(f"{r.address}: {_text(r.reply)}" for r in refused)
            status, decided = _refusal(refused)
            return flight.result(
                status,
                reason="partial_refusal",
                error=f"{self._where} refused {len(refused)} of {len(flight.recipients)} "
                f"recipients ({listed}); the connection was closed before the final dot, "
                "so nothing was sent",
                failure_reply=decided,
            )
        return None

    def _closing(self, *replies: Reply | None) -> Reply | None:
        """The 421 among `replies`, or one already waiting unread; None if neither.

        Postfix sends its 421 in the same segment as the error that reached its hard
        limit; the lock-step exchange stops before DATA when every RCPT was refused, so
        that 421 is still queued and would only be noticed by the next transaction.
        """
        found = next((r for r in replies if r is not None and r.code == 421), None)
        queued = self._reader.replies
        if found is None and queued and queued[0][0] == 421:
            found = _reply(queued[0])
        return found

    async def _body(
        self, flight: _Flight, source: _SyncSource | _AsyncSource
    ) -> tuple[TransactionOutcome, PreparedTransaction | None]:
        """Write the body and final dot (plus the next item's commands) and read the reply."""
        reader = self._reader
        if reader.out_of_step():  # a reply after the 354 would pass for the final one
            return self._lost(flight), None
        follow = source.poll() if self.pipelining else None
        payload = flight.item.message.payload
        if follow is not None:
            payload += follow.commands  # RFC 2920 3.1: commands may follow the final dot
        if not reader.write(payload):
            return self._lost(flight), follow
        flight.dot_sent = time.perf_counter()
        final_raw = await reader.read(1, self._timeouts.data)
        if not final_raw:
            # RFC 1047: lost after the final dot: it may have been delivered.
            return flight.result(
                TransactionStatus.UNKNOWN,
                reason=reader.failure,
                error=f"{self._where}: {reader.failure_text} after the end of the message; "
                "it may or may not have been delivered",
            ), follow
        final = _reply(final_raw[0])
        status = reply_status(final.code)
        if final.code == 421:
            reader.abort()  # RFC 5321 3.8: closing; a chained transaction is not sent
        if status is TransactionStatus.SENT:
            return flight.result(status, final=final, finished=final_raw[0][2]), follow
        return flight.result(
            status,
            final=final,
            reason=str(final.code),
            error=f"{self._where} refused the message: {_text(final)}",
            finished=final_raw[0][2],
        ), follow

    # -- failures ---------------------------------------------------------------------

    def _lost(self, flight: _Flight, replies: Iterable[_ReplyTuple] = ()) -> TransactionOutcome:
        """The connection failed before the final dot: not delivered (transient)."""
        reader = self._reader
        reader.abort()
        replies = list(replies)
        if replies:
            flight.record(replies)  # what was answered before the connection failed
        closing = next((r for r in replies if r[0] == 421), None)
        reason = "421" if closing else (reader.failure or "connection_lost")
        text = _text(_reply(closing)) if closing else reader.failure_text
        return flight.result(
            TransactionStatus.TRANSIENT,
            reason=reason,
            error=f"{self._where}: {text} before the end of the message; nothing was sent",
            failure_reply=_reply(closing) if closing else None,
        )

    def _not_sent(self, item: PreparedTransaction) -> TransactionOutcome:
        reader = self._reader
        return _Flight(item, 0.0, chained=True).result(
            TransactionStatus.TRANSIENT,
            reason=reader.failure or "connection_lost",
            error=f"{self._where}: the connection ended before this message; nothing was sent",
            finished=0.0,
        )

    async def _finish(self) -> None:
        """Leave the connection as aiosmtplib expects it: no transaction open."""
        if self._busy or not self.usable:
            self._reader.abort()
            return
        if self._rset_pending:
            self._rset_pending = False
            if not self._reader.write(_RSET):
                return
            reply = await self._reader.read(1, self._timeouts.command)
            if not reply or reply[0][0] != 250:
                self._reader.abort()


@contextlib.asynccontextmanager
async def pipelined(
    session: SmtpSession, *, lockstep_fallback: bool = False, allow_partial: bool = False
) -> AsyncIterator[Pipeline]:
    """Borrow `session`'s connection for pipelined transactions; give it back on exit.

    Requires the PIPELINING extension (RFC 2920) unless `lockstep_fallback` is set, in
    which case the same code sends one command at a time. `allow_partial`: when some (not
    all) recipients are refused, still send to the others (default: close the connection
    before the final dot so nothing is delivered, since after 354 there is no RSET).
    On exit an unfinished transaction closes the connection; a finished one leaves the
    session usable for aiosmtplib again (QUIT, or `SmtpSession.send`).
    Raises ProtocolError (no PIPELINING) and ConnectionLostError (session closed).
    """
    pipelining = session.supports("PIPELINING")
    if not pipelining and not lockstep_fallback:
        raise ProtocolError(
            f"{session.where} does not offer PIPELINING (RFC 2920)",
            hint="use one message at a time (bench --mode reuse) on this server",
        )
    async with session.borrow_transport() as transport:
        reader = _ReplyReader(asyncio.get_running_loop(), transport, transport.get_protocol())
        transport.set_protocol(reader)
        pipe = Pipeline(
            reader,
            where=session.where,
            timeouts=session.settings.timeouts,
            pipelining=pipelining,
            allow_partial=allow_partial,
        )
        try:
            yield pipe
            await pipe._finish()
        except BaseException:
            reader.abort()
            raise
        finally:
            reader.stop_watchdog()
