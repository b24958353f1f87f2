"""The one circuit breaker of bench and bulk-send: stop every session at once, say why once.

It trips on a session-fatal condition (see classify: AUTH or TLS failures, a 5xx or no
greeting, a protocol violation, 530/535 or 554 5.7.x to MAIL), on refused connections in a
row, on failed connection attempts in a row (421 at the greeting, cut at once: the server
refuses us), and on waits that ran out in a row with nothing sent in between (the server
stopped answering; waiting once more per message would multiply the timeout by the
message count). The first cause is kept; retrying after it would hammer the server or
lock the account.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailctl.core.pool.classify import FATAL_OPEN, session_fatal
from mailctl.errors import ConnectError, MailctlError, TimeoutFailure, UsageError
from mailctl.protocols.smtp import TransactionOutcome

__all__ = ["BreakerLimits", "CircuitBreaker"]


@dataclass(frozen=True)
class BreakerLimits:
    """How many of a kind, in a row, trip the breaker."""

    timeouts_in_a_row: int = 3
    # At least twice the concurrency (see CircuitBreaker), so a pool can ride out a burst.
    open_failures_in_a_row: int = 50
    # ConnectError (refused, unreachable): nothing listens, or a firewall. Bench stops at
    # the first (1); a long run may ride out a server restart.
    refused_connections_in_a_row: int = 3
    # A message that can never be sent (bad address, over SIZE): fatal when every message
    # is the same one (bench), a per-message failure otherwise (bulk-send).
    bad_message_is_fatal: bool = False

    def __post_init__(self) -> None:
        for name in ("timeouts_in_a_row", "open_failures_in_a_row", "refused_connections_in_a_row"):
            if getattr(self, name) < 1:
                raise UsageError(f"circuit breaker: {name} must be at least 1")


class CircuitBreaker:
    """Counts what goes wrong in a row and trips once; `tripped` is the first cause."""

    def __init__(
        self,
        limits: BreakerLimits | None = None,
        *,
        concurrency: int = 1,
        on_trip: Callable[[MailctlError], None] | None = None,
    ) -> None:
        self.limits = limits or BreakerLimits()
        self.tripped: MailctlError | None = None
        self.on_trip = on_trip
        self.timeouts = 0  # waits that ran out, in a row, with nothing sent in between
        self.open_failures = 0  # failed connection attempts in a row
        self.refused = 0  # refused connections (ConnectError) in a row
        self._open_limit = max(self.limits.open_failures_in_a_row, 2 * concurrency)

    def trip(self, error: MailctlError) -> None:
        """Stop everything because of `error` (only the first one is kept)."""
        if self.tripped is None:
            self.tripped = error
            if self.on_trip is not None:
                self.on_trip(error)

    # -- connections ----------------------------------------------------------------------

    def opened(self) -> None:
        self.open_failures = self.refused = 0

    def open_failed(self, error: MailctlError) -> None:
        """A connection attempt failed with `error`."""
        if isinstance(error, ConnectError):
            self.refused += 1
            if self.refused >= self.limits.refused_connections_in_a_row:
                self.trip(error)
            return
        if isinstance(error, FATAL_OPEN):
            self.trip(error)
            return
        self.open_failures += 1
        if self.open_failures >= self._open_limit:
            self.trip(
                type(error)(
                    f"the run was stopped: {self.open_failures} connections in a row "
                    f"failed (last: {error.message})",
                    hint=error.hint,
                    details=error.details,
                )
            )

    # -- transactions ---------------------------------------------------------------------

    def sent(self) -> None:
        """A message went through (the hot path: one comparison)."""
        if self.timeouts:
            self.timeouts = 0

    def failed(self, outcome: TransactionOutcome) -> None:
        """A transaction failed: session-fatal replies trip at once, timeouts in a row."""
        fatal = session_fatal(outcome)
        if fatal is not None:
            self.trip(fatal)
            return
        if outcome.reason == "timeout":
            self.timeouts += 1
            if self.timeouts >= self.limits.timeouts_in_a_row:
                last = outcome.error or "timeout"
                self.trip(
                    TimeoutFailure(
                        f"the run was stopped: {self.timeouts} waits in a row ran out with "
                        f"nothing sent in between (last: {last})",
                        hint="check that the server is healthy, or give it more time with "
                        "--timeout",
                    )
                )

    def bad_message(self, error: MailctlError) -> None:
        """A message that cannot be sent at all (InputDataError before any byte)."""
        if self.limits.bad_message_is_fatal:
            self.trip(error)
