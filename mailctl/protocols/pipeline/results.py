"""What a pipelined transaction came to: its status and result, and how replies decide them."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from mailctl.models import RecipientResult, Reply
from mailctl.protocols.pipeline.reader import ReplyTuple
from mailctl.protocols.smtp import parse_queue_id
from mailctl.serialize import SECONDS, SKIP, JsonAttrs

__all__ = [
    "TransactionResult",
    "TransactionStatus",
    "cached_reply",
    "one_line",
    "refusal_status",
    "reply_status",
]


class TransactionStatus(StrEnum):
    """What a bulk sender must record for a message (FACTS.md, "SMTP semantics")."""

    SENT = "sent"  # 2xx after the final dot: delivered to the server; record durably
    REFUSED = "refused"  # permanent (5xx): do not retry
    TRANSIENT = "transient"  # 4xx, 552 to RCPT, 421, or lost before the final dot: retry later
    UNKNOWN = "unknown"  # lost or timed out after the final dot (RFC 1047): do not resend silently


@dataclass(frozen=True, slots=True)
class TransactionResult:
    """The outcome of one transaction; timestamps are time.perf_counter() values."""

    status: TransactionStatus
    tag: Hashable | None
    recipients: tuple[RecipientResult, ...]
    mail_reply: Reply | None
    data_reply: Reply | None
    final_reply: Reply | None
    # A stable short code for what decided a failure: the reply code ("550", "421") or
    # "connection_lost", "timeout", "protocol_error", "partial_refusal"; None when sent.
    reason: str | None = None
    error: str | None = None  # one line for people
    # Clock readings, not durations: the JSON form has `timings` computed from them instead.
    started: float = field(default=0.0, metadata=SKIP)  # commands written (maybe with a dot)
    envelope_done: float = field(default=0.0, metadata=SKIP)  # last RCPT reply read
    data_accepted: float = field(default=0.0, metadata=SKIP)  # 354 read
    dot_sent: float = field(default=0.0, metadata=SKIP)  # body and final dot written
    finished: float = field(default=0.0, metadata=SKIP)  # final reply read (or failure noticed)
    chained: bool = field(default=False)  # its commands rode on the previous final dot
    # The reply that decided a failure (the refusal, or the 421 that closed the connection);
    # None when sent or when no reply decided it (a cut, a timeout).
    failure_reply: Reply | None = None

    JSON_ATTRS: ClassVar[JsonAttrs] = (
        "queue_id",
        ("timings", SECONDS),
    )

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


# Servers repeat the same few replies ("250 2.1.0 Ok"): reuse the immutable Reply objects.
_REPLY_CACHE: dict[tuple[int, bytes], Reply] = {}
_REPLY_CACHE_SIZE = 512


def cached_reply(raw: ReplyTuple) -> Reply:
    key = (raw[0], raw[1])
    found = _REPLY_CACHE.get(key)
    if found is None:
        found = Reply(raw[0], raw[1].decode("utf-8", "surrogateescape"))
        if len(_REPLY_CACHE) < _REPLY_CACHE_SIZE:
            _REPLY_CACHE[key] = found
    return found


def one_line(reply: Reply) -> str:
    return " ".join(f"{reply.code} {reply.message}".split())


def refusal_status(codes: Iterable[int]) -> TransactionStatus:
    """Permanent only if every refusal is permanent; RFC 5321 4.5.3.1.10: 552 to RCPT is 452."""
    if all(500 <= code <= 599 and code != 552 for code in codes):
        return TransactionStatus.REFUSED
    return TransactionStatus.TRANSIENT


def reply_status(code: int) -> TransactionStatus:
    if 200 <= code <= 299:
        return TransactionStatus.SENT
    if 500 <= code <= 599:
        return TransactionStatus.REFUSED
    return TransactionStatus.TRANSIENT
