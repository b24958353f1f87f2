"""How many sessions to run while the server throttles: additive increase, multiplicative decrease.

The rule TCP uses against congestion (RFC 5681 3.1), applied to a mail server's throttling
replies (421 4.7.0, 454 4.7.0, 452 4.4.5: FACTS.md): each throttling reply halves the
number of sessions, each message sent adds 1/limit, so about one session more per
"round" of messages. A burst of throttling replies from transactions that were already on
the way when the limit dropped counts once: only a reply to a transaction started after
the last decrease lowers it again. Pure logic, the clock is passed in.
"""

from __future__ import annotations

import math

from mailctl.errors import UsageError

__all__ = ["Aimd"]


class Aimd:
    """The concurrency limit, between `minimum` and `maximum` sessions."""

    def __init__(
        self,
        maximum: int,
        *,
        minimum: int = 1,
        initial: int | None = None,
        increase: float = 1.0,
        decrease: float = 0.5,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise UsageError(f"concurrency: need 1 <= minimum ({minimum}) <= maximum ({maximum})")
        if not 0 < decrease < 1 or increase <= 0:
            raise UsageError("concurrency: need 0 < decrease < 1 and increase > 0")
        self.minimum = minimum
        self.maximum = maximum
        self.increase = increase
        self.decrease = decrease
        start = maximum if initial is None else initial
        self.limit = float(min(max(start, minimum), maximum))
        self.decreases = 0
        self._epoch = -math.inf  # when the limit last went down

    @property
    def current(self) -> int:
        """Sessions allowed now."""
        return max(self.minimum, min(self.maximum, math.floor(self.limit)))

    @property
    def fraction(self) -> float:
        """The limit as a fraction of the maximum (to scale a rate limit with it)."""
        return self.limit / self.maximum

    def succeeded(self) -> None:
        """A message went through: grow by increase / limit (one session per round)."""
        if self.limit < self.maximum:
            self.limit = min(float(self.maximum), self.limit + self.increase / self.limit)

    def throttled(self, started: float, now: float) -> bool:
        """A throttling reply to a transaction (or connection) begun at `started`.

        Shrinks the limit and returns True, unless the transaction began before the last
        decrease (that burst was already answered) or the limit is at its minimum.
        """
        if started < self._epoch or self.limit <= self.minimum:
            return False
        self.limit = max(float(self.minimum), self.limit * self.decrease)
        self._epoch = now
        self.decreases += 1
        return True
