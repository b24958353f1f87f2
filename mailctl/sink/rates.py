"""Message rates over time: the current rate (a sliding window over counter readings) and busy
time (the time messages were arriving, pauses left out). Pure: times are arguments.

Why both: an average since start falls during every idle moment and says nothing about what the
server does now (the sink showed 19,382 msg/s while bench measured 39,969), and a lifetime
figure divides by the time nobody was sending. The status line shows the window's rate; the
final report shows the busy rate beside the lifetime one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["BURST_GAP", "WINDOW", "BusyClock", "RateWindow", "eta", "window_rate"]

# Seconds a rate is measured over: short enough to follow a change within a second or two,
# long enough to span a few status updates (every 0.1-0.5 s).
WINDOW = 1.0
# A pause longer than this between two messages ends a burst: it is idle time, not busy time.
BURST_GAP = 1.0


def window_rate(readings: Sequence[tuple[float, int]], now: float, span: float = WINDOW) -> float:
    """Messages per second over the last `span` seconds, from (time, total count) readings in
    time order, the last taken at `now`. The window starts at the latest reading at or before
    `now - span` (or the first reading); 0.0 when the readings cover no time."""
    if not readings:
        return 0.0
    start = readings[0]
    for reading in readings:
        if reading[0] <= now - span:
            start = reading
        else:
            break
    end = readings[-1]
    seconds = end[0] - start[0]
    if seconds <= 0:
        return 0.0
    return max(end[1] - start[1], 0) / seconds


@dataclass
class RateWindow:
    """Counter readings of the last `span` seconds (plus the one before), for `window_rate`."""

    span: float = WINDOW
    readings: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, now: float, count: int) -> float:
        """Record the counter `count` read at `now`; return the current rate."""
        readings = self.readings
        readings.append((now, count))
        # Keep one reading at or before the window's start, drop the older ones.
        while len(readings) > 2 and readings[1][0] <= now - self.span:
            readings.popleft()
        return window_rate(readings, now, self.span)


@dataclass
class BusyClock:
    """Busy time from message arrival times: the sum of the gaps between consecutive messages
    that are at most `gap` seconds (a longer pause is idle and starts a new burst).

    `busy_rate` is intervals over busy seconds: a burst of N messages spans N - 1 intervals,
    which makes the rate exact for a steady flow (N messages / span would overstate it).
    """

    gap: float = BURST_GAP
    busy: float = 0.0  # seconds
    intervals: int = 0
    bursts: int = 0
    first: float | None = None
    last: float | None = None

    def arrived(self, now: float) -> None:
        last = self.last
        if last is None or now - last > self.gap:
            self.bursts += 1
            if self.first is None:
                self.first = now
        else:
            self.busy += max(now - last, 0.0)
            self.intervals += 1
        self.last = now

    @property
    def busy_rate(self) -> float:
        """Messages per second while messages were arriving (0.0 before two arrived)."""
        return self.intervals / self.busy if self.busy > 0 else 0.0


def eta(remaining: float, rate: float) -> float | None:
    """Seconds until `remaining` messages are done at `rate` per second; None if unknown."""
    if remaining <= 0:
        return 0.0
    if rate <= 0 or not math.isfinite(rate):
        return None
    return remaining / rate
