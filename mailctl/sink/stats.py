"""Counters of one sink run, shared by every connection and reported at exit."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

from mailctl.serialize import SECONDS, SKIP, JsonAttrs, meta
from mailctl.sink.rates import BusyClock


@dataclass
class SinkStats:
    """Plain attributes so the per-message update is two integer additions.

    `rejected` counts injected refusals, `disconnected` injected drops; `errors` counts every
    4xx/5xx reply sent, by code (injected or not): `error_replies` in JSON, so that it is not
    taken for the envelope's `errors`. `qps` is over the whole run (idle time included);
    `busy_qps` over the time messages were arriving (`busy`, see sink.rates.BusyClock).
    """

    messages: int = 0
    bytes: int = 0
    connections: int = 0
    active: int = field(default=0, metadata=SKIP)  # 0 once stopped, when the report is made
    rejected: int = 0
    disconnected: int = 0
    errors: Counter[int] = field(default_factory=Counter, metadata=SKIP)
    started: float = field(default_factory=time.monotonic, metadata=SKIP)  # clock readings
    stopped: float | None = field(default=None, metadata=SKIP)
    clock: BusyClock = field(default_factory=BusyClock, metadata=SKIP)  # message arrivals

    JSON_ATTRS: ClassVar[JsonAttrs] = (
        "error_replies",
        ("elapsed", SECONDS),
        ("qps", meta(digits=3)),
        ("busy", SECONDS),
        ("busy_qps", meta(digits=3)),
    )

    def message(self, size: int) -> None:
        """Count one accepted message of `size` bytes, arrived now."""
        self.messages += 1
        self.bytes += size
        self.clock.arrived(time.monotonic())

    @property
    def busy(self) -> float:
        """Seconds during which messages were arriving (pauses over BURST_GAP left out)."""
        return self.clock.busy

    @property
    def busy_qps(self) -> float:
        """Messages per second while busy."""
        return self.clock.busy_rate

    @property
    def elapsed(self) -> float:
        end = self.stopped if self.stopped is not None else time.monotonic()
        return max(end - self.started, 0.0)

    @property
    def qps(self) -> float:
        """Messages per second over the whole run."""
        elapsed = self.elapsed
        return self.messages / elapsed if elapsed > 0 else 0.0

    @property
    def error_replies(self) -> dict[int, int]:
        """4xx/5xx replies sent, by code, in code order."""
        return dict(sorted(self.errors.items()))
