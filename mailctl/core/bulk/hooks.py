"""What a bulk run reports besides the journal: the `--log-file` events and the Prometheus
metrics (`--metrics-file`, `--metrics-port`), both optional, fed by the send loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from mailctl.core.bulk.journal import RowState
from mailctl.models import Reply

if TYPE_CHECKING:
    from mailctl.core.bulk.eventlog import EventLog
    from mailctl.core.bulk.metrics import BulkMetrics
    from mailctl.core.pool import SessionPool
    from mailctl.errors import MailctlError

__all__ = ["RowTag", "RunHooks"]


class RowTag(NamedTuple):
    """A job's tag: the row it sends (the journal's key and what reports name)."""

    identity: str
    line: int
    recipient: str
    message_id: str


class RunHooks:
    """The optional event log and metrics of one run; every method is a no-op without them."""

    def __init__(self, events: EventLog | None = None, metrics: BulkMetrics | None = None) -> None:
        self.events = events
        self.metrics = metrics
        self._sessions = 0
        self._decreases = 0

    def row(
        self,
        tag: RowTag,
        state: RowState,
        *,
        attempts: int,
        reply: Reply | None,
        queue_id: str | None,
        latency_ms: float | None,
    ) -> None:
        if self.metrics is not None:
            code = reply.code if reply is not None else None
            self.metrics.row_done(state, code, None if latency_ms is None else latency_ms / 1000)
        if self.events is not None and state is not RowState.PENDING:
            self.events.row(
                state, line=tag.line, recipient=tag.recipient, attempts=attempts, reply=reply,
                latency_ms=latency_ms, message_id=tag.message_id, queue_id=queue_id,
            )  # fmt: skip

    def session_opened(self, host: str, port: int, tls: bool) -> None:
        self._sessions += 1
        if self.events is not None:
            self.events.session_opened(session=self._sessions, host=host, port=port, tls=tls)

    def tick(self, pool: SessionPool, rate: float | None) -> None:
        """Every flush of the journal: the connection gauge, the metrics file (at its own
        interval), a throttling event when AIMD lowered the concurrency, the log lines."""
        if self.metrics is not None:
            self.metrics.connections(pool.counts.open_now)
            self.metrics.write()
        aimd = pool.aimd
        if self.events is not None:
            if aimd is not None and aimd.decreases != self._decreases:
                self._decreases = aimd.decreases
                scaled = rate * aimd.fraction if rate is not None else None
                self.events.throttled(reply=None, concurrency=pool.concurrency, rate=scaled)
            self.events.flush()

    def stopped(self, stopped_by: MailctlError | None, quota: Reply | None) -> None:
        if self.events is None:
            return
        if quota is not None:
            self.events.quota_reached(reply=quota)
        elif stopped_by is not None:
            self.events.breaker_tripped(reason=stopped_by.code)
        self.events.flush()
