"""Fault decisions (latency, refusals, drops), reproducible from one seeded random.Random."""

from __future__ import annotations

import random

from mailctl.sink.config import FaultConfig, Phase


class Faults:
    """Decide, per command, whether to delay, refuse or drop; one instance per server.

    A random number is drawn only for a rate strictly between 0 and 1, so rate 1.0 always
    and rate 0 never fires, and a seeded run makes the same choices for the same commands.
    """

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._random = random.Random(config.seed)  # noqa: S311 - fault injection, not crypto
        code = config.reject_code
        # RFC 3463: the enhanced code's class follows the reply's first digit; X.3.0 is
        # "other or undefined mail system status".
        self.reject_reply = f"{code} {code // 100}.3.0 Injected failure (mailctl sink)\r\n".encode()

    def delay(self, phase: Phase | None) -> float:
        """Seconds to hold the reply to a `phase` command (None: any other command), or 0."""
        config = self.config
        if config.latency_on is None or config.latency_on is phase:
            return config.latency
        return 0.0

    def reject(self, phase: Phase) -> bool:
        """True when this `phase` command must be refused with `reject_reply`."""
        config = self.config
        return config.reject_on is phase and self._fires(config.reject_rate)

    def disconnect(self, phase: Phase) -> bool:
        """True when the connection must close at this `phase` without a reply."""
        config = self.config
        return config.disconnect_on is phase and self._fires(config.disconnect_rate)

    def _fires(self, rate: float) -> bool:
        if rate <= 0.0:
            return False
        return rate >= 1.0 or self._random.random() < rate
