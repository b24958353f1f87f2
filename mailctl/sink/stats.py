"""Counters of one sink run, shared by every connection and reported at exit."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SinkStats:
    """Plain attributes so the per-message update is two integer additions.

    `rejected` counts injected refusals, `disconnected` injected drops; `errors` counts every
    4xx/5xx reply sent, by code (injected or not).
    """

    messages: int = 0
    bytes: int = 0
    connections: int = 0
    active: int = 0
    rejected: int = 0
    disconnected: int = 0
    errors: Counter[int] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    stopped: float | None = None

    @property
    def elapsed(self) -> float:
        end = self.stopped if self.stopped is not None else time.monotonic()
        return max(end - self.started, 0.0)

    @property
    def rate(self) -> float:
        elapsed = self.elapsed
        return self.messages / elapsed if elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON `data` of `mailctl sink --json` (keys are part of the CLI contract)."""
        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "connections": self.connections,
            "rejected": self.rejected,
            "disconnected": self.disconnected,
            "errors": {str(code): count for code, count in sorted(self.errors.items())},
            "elapsed": round(self.elapsed, 6),
            "rate": round(self.rate, 3),
        }
