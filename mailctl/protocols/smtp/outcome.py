"""One SMTP transaction's outcome, for the lock-step session and the pipeline alike, and the
reply rules that decide it (each written once: RFC 5321 4.5.3.1.10, RFC 1047, worst first)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from mailctl.errors import (
    ConnectionLostError,
    ExitCode,
    InputDataError,
    MailctlError,
    OutcomeUnknownError,
    ProtocolError,
    SmtpPermanentError,
    SmtpTransientError,
    TimeoutFailure,
)
from mailctl.models import RecipientResult, Reply
from mailctl.protocols.smtp.envelope import parse_queue_id
from mailctl.serialize import SECONDS, SKIP, JsonAttrs, to_data

__all__ = [
    "TransactionOutcome",
    "TransactionStatus",
    "deciding_refusal",
    "rcpt_status",
    "refusal_status",
    "reply_status",
    "worst",
]

_UNKNOWN_HINT = "check the recipient's mailbox or the server log before resending"


class TransactionStatus(StrEnum):
    """What a sender must record for a message (FACTS.md, "SMTP semantics")."""

    SENT = "sent"  # 2xx after the final dot: delivered to the server; record durably
    REFUSED = "refused"  # permanent (5xx): do not retry
    TRANSIENT = "transient"  # 4xx, 552 to RCPT, 421, or lost before the final dot: retry later
    UNKNOWN = "unknown"  # lost or timed out after the final dot (RFC 1047): do not resend silently

    @property
    def exit_code(self) -> ExitCode:
        """sysexits class of a message with this status: 0, 69 permanent, else 75."""
        return _EXIT[self]


_EXIT = {
    TransactionStatus.SENT: ExitCode.OK,
    TransactionStatus.REFUSED: ExitCode.UNAVAILABLE,
    TransactionStatus.TRANSIENT: ExitCode.TEMPFAIL,
    TransactionStatus.UNKNOWN: ExitCode.TEMPFAIL,
}
# Worst last: among several failed items the worst class decides (DESIGN.md "Exit codes":
# 69 permanent over 75), and an unknown outcome (a person must look) over a plain transient.
_SEVERITY = {
    TransactionStatus.SENT: 0,
    TransactionStatus.TRANSIENT: 1,
    TransactionStatus.UNKNOWN: 2,
    TransactionStatus.REFUSED: 3,
}


def reply_status(code: int) -> TransactionStatus:
    """What one reply means for the transaction: 2xx went through, 5xx refused, else transient.

    For MAIL, DATA and the final dot. RCPT replies go through `rcpt_status`.
    """
    if 200 <= code <= 299:
        return TransactionStatus.SENT
    if 500 <= code <= 599:
        return TransactionStatus.REFUSED
    return TransactionStatus.TRANSIENT


def rcpt_status(code: int) -> TransactionStatus:
    """What a reply to RCPT means for that recipient (250/251 accepted, RFC 5321 4.2.5).

    RFC 5321 4.5.3.1.10: 552 to RCPT ("too many recipients") is treated as 452.
    """
    if code == 552:
        return TransactionStatus.TRANSIENT
    return reply_status(code)


def refusal_status(rcpt_codes: Iterable[int]) -> TransactionStatus:
    """A transaction refused at RCPT is permanent only if every refusal is permanent: while
    one recipient was only deferred, trying the transaction again can still help."""
    if all(rcpt_status(code) is TransactionStatus.REFUSED for code in rcpt_codes):
        return TransactionStatus.REFUSED
    return TransactionStatus.TRANSIENT


def deciding_refusal(refused: Sequence[RecipientResult]) -> RecipientResult:
    """The refused recipient whose reply decides the transaction: the first one of the
    transaction's own class (`refusal_status`). `refused` must not be empty."""
    wanted = refusal_status(r.reply.code for r in refused)
    return next((r for r in refused if rcpt_status(r.reply.code) is wanted), refused[0])


def worst(statuses: Iterable[TransactionStatus]) -> TransactionStatus:
    """The worst of several items' statuses (refused > unknown > transient > sent); SENT if none."""
    return max(statuses, key=_SEVERITY.__getitem__, default=TransactionStatus.SENT)


# Not frozen: one is built per message on the pipelined hot path, and a frozen dataclass
# sets each of its 19 fields through object.__setattr__ (about 0.4 us more per message, 2%
# of bench's pipelined throughput). Treat it as immutable all the same.
@dataclass(slots=True)
class TransactionOutcome:
    """One transaction's outcome; timestamps are time.perf_counter() values, 0.0 if not reached.

    Built by `SmtpSession.transact` (lock-step, aiosmtplib) and by the pipeline
    (`Pipeline.send_all`): the same fields mean the same on both paths.
    """

    status: TransactionStatus
    tag: Hashable | None = None  # the caller's key (a bulk row id), copied from the request
    recipients: tuple[RecipientResult, ...] = ()  # one per RCPT answered, in order
    mail_reply: Reply | None = None
    data_reply: Reply | None = None  # the reply to DATA (354, or its refusal)
    final_reply: Reply | None = None  # the reply after the final dot (or the lone dot)
    # A stable short code for what decided a failure: the reply code ("550", "421") or
    # "connection_lost", "timeout", "protocol_error", "partial_refusal", "aborted", or the
    # `code` of the error that ended it (e.g. "tls_failed"); None when sent.
    reason: str | None = None
    error: str | None = None  # one line for people; None when sent
    # The reply that decided a failure (the refusal, or the 421 that closed the connection);
    # None when sent or when no reply decided it (a cut, a timeout).
    failure_reply: Reply | None = None
    # The 421 the server closed with after the refusal that decided (Postfix at its hard
    # error limit): named, never reused, but the refusal keeps deciding the status.
    closing_reply: Reply | None = None
    # Clock readings, not durations: the JSON form has `timings` computed from them instead.
    started: float = field(default=0.0, metadata=SKIP)  # MAIL written (maybe with a dot)
    mail_done: float = field(default=0.0, metadata=SKIP)  # reply to MAIL read
    envelope_done: float = field(default=0.0, metadata=SKIP)  # last RCPT reply read
    data_accepted: float = field(default=0.0, metadata=SKIP)  # 354 read
    dot_sent: float = field(default=0.0, metadata=SKIP)  # body and final dot written
    finished: float = field(default=0.0, metadata=SKIP)  # final reply read (or failure noticed)
    chained: bool = False  # its commands rode on the previous final dot (RFC 2920 3.1)
    # The typed error a raising caller gets (`SmtpSession.send` raises exactly this); set by
    # the lock-step path, built from the fields by `to_error()` otherwise. JSON: `error`.
    exception: MailctlError | None = field(default=None, repr=False, compare=False, metadata=SKIP)

    # mailctl.serialize: computed members written too (durations as timings_ms).
    JSON_ATTRS: ClassVar[JsonAttrs] = ("queue_id", ("timings", SECONDS))

    @property
    def accepted(self) -> tuple[str, ...]:
        return tuple(r.address for r in self.recipients if r.accepted)

    @property
    def refused(self) -> tuple[RecipientResult, ...]:
        return tuple(r for r in self.recipients if not r.accepted)

    @property
    def queue_id(self) -> str | None:
        if self.status is not TransactionStatus.SENT or self.final_reply is None:
            return None
        return parse_queue_id(self.final_reply.message)

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per phase: mail_rcpt, data (the 354), end_of_data, total; 0.0 if not reached."""
        out = {"mail_rcpt": 0.0, "data": 0.0, "end_of_data": 0.0, "total": 0.0}
        if self.envelope_done:
            out["mail_rcpt"] = self.envelope_done - self.started
        if self.data_accepted:
            out["data"] = self.data_accepted - (self.envelope_done or self.started)
        if self.dot_sent and self.finished:
            out["end_of_data"] = self.finished - self.dot_sent
        if self.finished:
            out["total"] = self.finished - self.started
        return out

    @property
    def closed_before_mail(self) -> bool:
        """True when the connection was gone (closed, or closing with 421) before the server
        answered this transaction's MAIL with anything else: nothing of it was taken.

        On a connection that already carried transactions, that is an idle reused
        connection the server dropped (FACTS.md): reconnect and send again, which is not
        a retry of the message.
        """
        if self.status is not TransactionStatus.TRANSIENT:
            return False
        if self.mail_reply is not None and self.mail_reply.code != 421:
            return False
        return self.reason in ("421", "connection_lost", "aborted")

    def to_error(self) -> MailctlError | None:
        """The typed error for a failed outcome (None when sent), as `SmtpSession.send` raises."""
        if self.status is TransactionStatus.SENT:
            return None
        if self.exception is not None:
            return self.exception
        message = self.error or f"the transaction failed ({self.reason or self.status.value})"
        details: dict[str, Any] = {}
        if self.recipients:
            details["recipients"] = to_data(self.recipients)
        if self.failure_reply is not None:
            details["reply"] = to_data(self.failure_reply)
        if self.closing_reply is not None:
            details["closing_reply"] = to_data(self.closing_reply)
        if self.status is TransactionStatus.UNKNOWN:
            return OutcomeUnknownError(message, hint=_UNKNOWN_HINT, details=details)
        if self.status is TransactionStatus.REFUSED:
            return SmtpPermanentError(message, details=details)
        if self.failure_reply is not None and self.failure_reply.code >= 400:
            # 4xx, or a 552 to RCPT (RFC 5321 4.5.3.1.10)
            return SmtpTransientError(message, hint="try again later", details=details)
        kind = _TRANSIENT_ERRORS.get(self.reason or "", ConnectionLostError)
        return kind(message, details=details)

    @classmethod
    def from_error(
        cls,
        error: MailctlError,
        *,
        tag: Hashable | None = None,
        started: float = 0.0,
        finished: float = 0.0,
    ) -> TransactionOutcome:
        """The outcome of a message that failed outside a transaction's exchange: its session
        could not be opened (the server's reply, if one decided, is the error's "reply"
        detail), or the message cannot be sent at all (InputDataError: REFUSED)."""
        reply = _detail_reply(error)
        if isinstance(error, OutcomeUnknownError):
            status = TransactionStatus.UNKNOWN
        elif isinstance(error, (SmtpPermanentError, InputDataError)):
            status = TransactionStatus.REFUSED
        else:
            status = TransactionStatus.TRANSIENT
        return cls(
            status,
            tag,
            reason=str(reply.code) if reply is not None else error.code,
            error=error.message,
            failure_reply=reply,
            started=started,
            finished=finished,
            exception=error,
        )


# A transient outcome that no reply decided, by its reason; anything else: the connection.
_TRANSIENT_ERRORS: dict[str, type[MailctlError]] = {
    "timeout": TimeoutFailure,
    "protocol_error": ProtocolError,
}


def _detail_reply(error: MailctlError) -> Reply | None:
    """The server reply a protocols error carries in its "reply" detail (as to_data wrote it)."""
    found = error.details.get("reply")
    return Reply.from_data(found) if isinstance(found, dict) else None
