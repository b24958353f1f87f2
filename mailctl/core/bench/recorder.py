"""The bench schedule (which message is next, and when it is due) and the per-message
recording: the session pool's feed and observer (the circuit breaker is the pool's)."""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections import Counter

from mailctl.core.bench.models import PHASES, BenchMode, ErrorGroup, RunResult, Samples, Workload
from mailctl.core.pool import ConnectionCounts, Job
from mailctl.core.stats import histogram, qps, summarize
from mailctl.errors import MailctlError
from mailctl.protocols.smtp import SessionInfo, TransactionOutcome, TransactionStatus

__all__ = ["MAX_ERROR_GROUPS", "MAX_SAMPLES", "Recorder"]

# Exact samples are kept for percentiles (8 floats each); beyond this many they are
# counted but not stored, so a long --duration run cannot exhaust memory.
MAX_SAMPLES = 5_000_000
# Distinct (reason, text) error groups kept; beyond that they are counted under "other", so
# a server that puts a queue id or a counter in every refusal cannot grow the report.
MAX_ERROR_GROUPS = 50
_MAX_TEXT = 300
_SENT = TransactionStatus.SENT
_UNKNOWN = TransactionStatus.UNKNOWN
_NAN = math.nan
_NO_PHASES = (_NAN, _NAN, _NAN)


class Recorder:
    """Hands out message indices (bounded by count or deadline) and keeps the samples."""

    def __init__(self, work: Workload, started: float, mode: BenchMode) -> None:
        self.work = work
        self.mode = mode
        self.pipelined = mode is BenchMode.PIPELINE
        self.t0 = started
        self.warmup = work.warmup
        self.total = None if work.messages is None else work.messages + work.warmup
        self.deadline = None if work.duration is None else started + work.duration
        self.rate = work.rate
        self.next_index = 0
        self.t_measure: float | None = started if work.warmup == 0 else None
        self.last_end = started
        self.samples = Samples()
        self.dropped = 0
        self.sent = 0
        self.permanent = 0
        self.transient = 0
        self.unknown = 0
        self.done = 0
        # Columns of floats (array), not lists of tuples: millions of small tracked
        # objects would make the garbage collector the bottleneck of the load generator.
        self.latencies = array("d")
        self.phases: dict[str, array[float]] = {name: array("d") for name in PHASES}
        self.errors: Counter[str] = Counter()
        self._groups: dict[tuple[str, str], ErrorGroup] = {}

    @property
    def failed(self) -> int:
        return self.permanent + self.transient

    def take(self) -> int | None:
        """The next message index, or None when the count or the duration is used up."""
        index = self.next_index
        if self.total is not None and index >= self.total:
            return None
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return None
        self.next_index = index + 1
        if index == self.warmup and self.t_measure is None:
            self.t_measure = self.intended(index) if self.rate else time.perf_counter()
        return index

    def take_exhausted(self) -> bool:
        """True once no further index will be handed out."""
        if self.total is not None and self.next_index >= self.total:
            return True
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def intended(self, index: int) -> float:
        """Open loop: when message `index` is due (a fixed schedule from the start)."""
        return self.t0 + index / self.rate if self.rate else 0.0

    async def wait_turn(self, index: int) -> float:
        """Open loop: sleep until the message is due; return the latency origin."""
        if not self.rate:
            return time.perf_counter()
        due = self.intended(index)
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        return due

    def record(
        self,
        index: int,
        origin: float,
        end: float,
        *,
        status: str,
        reason: str,
        phases: tuple[float, float, float],
        text: str = "",
    ) -> None:
        """Record message `index`: "sent" (its final reply read, 2xx), or "refused",
        "transient" or "unknown" with the reason (reply code or failure name) and its text."""
        self.done += 1
        if index < self.warmup:
            return
        self.last_end = max(self.last_end, end)
        latency = end - origin
        if status == "sent":
            self.sent += 1
            self.latencies.append(latency)
            for name, value in zip(("mail_rcpt", "data", "end_of_data"), phases, strict=True):
                if not math.isnan(value):
                    self.phases[name].append(value)
        else:
            if status == "unknown":
                self.unknown += 1
            elif status == "refused":
                self.permanent += 1
            else:
                self.transient += 1
            reason = reason or status
            self.errors[reason] += 1
            self._group(reason, text or reason, status)
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(origin - self.t0, latency, status, reason, phases)
        else:
            self.dropped += 1

    def _group(self, reason: str, text: str, status: str) -> None:
        text = " ".join(text.split())[:_MAX_TEXT]
        key = (reason, text)
        group = self._groups.get(key)
        if group is None:
            if len(self._groups) >= MAX_ERROR_GROUPS:
                key = ("other", "other errors")
                group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = ErrorGroup(key[0], key[1], status, 0)
        group.count += 1

    # -- the session pool's observer ------------------------------------------------------

    def outcome(self, job: Job, outcome: TransactionOutcome, final: bool) -> None:
        """Record one transaction (or failed connection attempt charged to a message): sent
        only with its final reply read (2xx). Bench never retries: every outcome is final."""
        index: int = job.tag  # type: ignore[assignment]  # the bench feed's message index
        started = outcome.started
        if outcome.status is _SENT:
            # The same phases on both paths (send's names): mail_rcpt (MAIL and every
            # RCPT), data (DATA to the 354), end_of_data (body and dot to the final reply).
            finished = outcome.finished
            envelope = outcome.envelope_done
            data = outcome.data_accepted
            if self.pipelined:
                # RFC 2920: MAIL, RCPT and DATA leave in one write (with the previous final
                # dot) and their replies arrive together, so neither has a time of its own:
                # DATA would read 0 and mail_rcpt would repeat end_of_data. Not measured.
                phases = (_NAN, _NAN, finished - outcome.dot_sent)
            else:
                phases = (envelope - started, data - envelope, finished - outcome.dot_sent)
            self.record(
                index, job.origin or started, finished, status="sent", reason="", phases=phases
            )
            return
        end = outcome.finished or time.perf_counter()
        # A cut after the dot is reported as outcome_unknown in every mode, whatever ended it.
        unknown = outcome.status is _UNKNOWN
        reason = "outcome_unknown" if unknown else (outcome.reason or outcome.status.value)
        reply = outcome.failure_reply
        text = " ".join(f"{reply.code} {reply.message}".split()) if reply else outcome.error
        self.record(
            index, job.origin or started or end, end, status=outcome.status.value,
            reason=reason, text=text or reason, phases=_NO_PHASES,
        )  # fmt: skip

    def session_opened(self, info: SessionInfo) -> None:
        timings = info.timings
        for name in ("connect", "banner", "ehlo", "starttls", "auth"):
            if name in timings:
                self.phases[name].append(timings[name])

    def session_closed(self, seconds: float, last: Job | None) -> None:
        # QUIT is a phase of the one-session-per-message mode only.
        if self.mode is BenchMode.NEW and last is not None:
            assert isinstance(last.tag, int)
            if last.tag >= self.warmup:
                self.phases["quit"].append(seconds)

    def _not_tried(self) -> int:
        messages = self.work.messages
        if messages is None:
            return 0
        return max(messages - self.sent - self.failed - self.unknown, 0)

    def result(
        self,
        message_size: int,
        interrupted: bool,
        *,
        counts: ConnectionCounts,
        stopped_by: MailctlError | None,
    ) -> RunResult:
        start = self.t_measure if self.t_measure is not None else self.t0
        elapsed = max(self.last_end - start, 0.0)
        ordered = sorted(self.latencies)
        return RunResult(
            mode=self.mode,
            loop=self.work.loop,
            rate=self.rate,
            concurrency=self.work.concurrency,
            message_size=message_size,
            warmup=self.warmup,
            sent=self.sent,
            failed=self.failed,
            permanent=self.permanent,
            transient=self.transient,
            unknown=self.unknown,
            elapsed=elapsed,
            qps=qps(self.sent, elapsed),
            latency=summarize(ordered),
            phases={
                name: summary
                for name, values in self.phases.items()
                if (summary := summarize(values)) is not None
            },
            errors=dict(self.errors.most_common()),
            error_details=sorted(self._groups.values(), key=lambda group: -group.count),
            connections_attempted=counts.attempted,
            connections_opened=counts.opened,
            stopped_by=stopped_by,
            not_tried=self._not_tried(),
            histogram=histogram(ordered) if ordered else None,
            interrupted=interrupted,
            samples_dropped=self.dropped,
            samples=self.samples,
        )
