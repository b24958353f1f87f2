"""A global rate limit awaited before each transaction: a token bucket (GCRA form).

Each caller reserves the next free slot at once (no lock, no await between reading and
writing the state), so concurrent sessions share the rate fairly and a burst never exceeds
`burst` transactions beyond the steady rate: in any window of T seconds at most
burst + rate * T transactions start. The pool scales the rate with its concurrency when
the server throttles (`scale`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from mailctl.core.pool.jobs import Job
from mailctl.errors import UsageError

__all__ = ["RateLimiter", "Scalable", "TokenBucket"]


class RateLimiter(Protocol):
    """Awaited before each transaction of a job (the job is passed, e.g. to set its origin)."""

    async def __call__(self, job: Job) -> None: ...


@runtime_checkable
class Scalable(Protocol):
    """A limiter whose rate follows the pool's concurrency (AIMD): fraction in (0, 1]."""

    def scale(self, fraction: float) -> None: ...


class TokenBucket:
    """At most `rate` transactions a second on average, `burst` at once."""

    def __init__(
        self, rate: float, *, burst: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not rate > 0 or not burst >= 1:
            raise UsageError(f"rate limit: need rate > 0 and burst >= 1 (got {rate:g}, {burst:g})")
        self.base_rate = rate
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tat = -float("inf")  # theoretical arrival time of the next transaction

    def reserve(self, now: float) -> float:
        """Take the next slot; return the seconds to wait before using it (0 if none)."""
        interval = 1.0 / self.rate
        tat = max(self._tat, now)
        self._tat = tat + interval
        return max(0.0, tat - now - (self.burst - 1) * interval)

    async def __call__(self, job: Job | None = None) -> None:
        wait = self.reserve(self._clock())
        if wait > 0:
            await asyncio.sleep(wait)

    def scale(self, fraction: float) -> None:
        """Run at `fraction` of the configured rate (kept above a thousandth of it)."""
        self.rate = self.base_rate * min(1.0, max(fraction, 0.001))
