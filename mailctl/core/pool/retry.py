"""Whether and when a message that was not sent is tried again: the pluggable retry policy.

FACTS.md ("SMTP semantics") decides by the outcome alone: a permanent refusal (5xx) is never
retried, an unknown outcome (lost after the final dot, RFC 1047) is never resent silently,
anything transient (4xx, 552 to RCPT, 421, lost before the dot, a timeout, a failed
connection) is tried again after an exponential backoff with jitter, a bounded number of
times. A connection that carried messages before and was gone when this one's MAIL went
out (an idle timeout, a 421 for "too many messages on this connection") is a reconnect,
not a retry of the message: it is sent again at once, without spending an attempt.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Protocol

from mailctl.errors import UsageError
from mailctl.protocols.smtp import TransactionOutcome, TransactionStatus

__all__ = ["Backoff", "NoRetry", "Retry", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class Retry:
    """Try the message again after `delay` seconds; `spend`: it counts as an attempt."""

    delay: float
    spend: bool = True


class RetryPolicy(Protocol):
    """Decides, for a message whose transaction was not sent, whether to try it again."""

    def decide(
        self, outcome: TransactionOutcome, *, attempts: int, reconnects: int, reused: bool
    ) -> Retry | None:
        """`attempts`: transactions tried for the message, this one included; `reconnects`:
        free resends so far; `reused`: the session had carried a transaction before this
        one. None: this outcome is final."""
        ...


@dataclass(frozen=True, slots=True)
class NoRetry:
    """Every message is tried exactly once, whatever happens: what bench measures."""

    def decide(
        self, outcome: TransactionOutcome, *, attempts: int, reconnects: int, reused: bool
    ) -> Retry | None:
        return None


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with equal jitter, at most `max_attempts` transactions a message.

    The n-th retry waits between half and all of min(cap, base * factor ** (n - 1))
    seconds: the random half spreads retries of messages that failed together (a burst
    of 451s), the fixed half keeps the wait from collapsing to zero.
    """

    max_attempts: int = 5  # transactions per message, the first included
    base: float = 1.0  # seconds before the first retry (at most)
    cap: float = 300.0  # longest wait
    factor: float = 2.0
    max_reconnects: int = 3  # free resends after a reused connection was found gone
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise UsageError(f"retries: at least one attempt is needed, not {self.max_attempts}")
        if not (0 < self.base <= self.cap) or self.factor < 1:
            raise UsageError(
                f"retry backoff: need 0 < base ({self.base:g}) <= cap ({self.cap:g}) "
                f"and factor ({self.factor:g}) >= 1"
            )
        if self.max_reconnects < 0:
            raise UsageError(f"retries: max_reconnects cannot be negative ({self.max_reconnects})")

    def ceiling(self, attempt: int) -> float:
        """The longest wait after `attempt` failed attempts (attempt >= 1)."""
        exponent = max(attempt - 1, 0)
        # Past the cap without computing factor ** exponent, which overflows a float.
        if self.factor > 1 and exponent > math.log(self.cap / self.base, self.factor):
            return self.cap
        return float(min(self.cap, self.base * self.factor**exponent))

    def delay(self, attempt: int, draw: float) -> float:
        """The wait after `attempt` failed attempts for a uniform `draw` in [0, 1)."""
        ceiling = self.ceiling(attempt)
        return ceiling / 2 + ceiling / 2 * draw

    def decide(
        self, outcome: TransactionOutcome, *, attempts: int, reconnects: int, reused: bool
    ) -> Retry | None:
        if outcome.status is not TransactionStatus.TRANSIENT:
            return None  # sent; refused for good; unknown: never resent silently (RFC 1047)
        if reused and outcome.closed_before_mail and reconnects < self.max_reconnects:
            return Retry(0.0, spend=False)
        if attempts >= self.max_attempts:
            return None
        return Retry(self.delay(attempts, self.rng.random()))
