"""The bench schedule (which message is next, and when it is due) and the per-message recording."""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections import Counter

from mailctl.core.bench_models import PHASES, BenchMode, RunResult, Samples, Workload
from mailctl.core.stats import histogram, qps, summarize
from mailctl.errors import MailctlError

__all__ = ["MAX_SAMPLES", "Recorder"]

# Exact samples are kept for percentiles (8 floats each); beyond this many they are
# counted but not stored, so a long --duration run cannot exhaust memory.
MAX_SAMPLES = 5_000_000


class Recorder:
    """Hands out message indices (bounded by count or deadline) and keeps the samples."""

    def __init__(self, work: Workload, started: float) -> None:
        self.work = work
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
        self.failed = 0
        self.unknown = 0
        self.done = 0
        # Columns of floats (array), not lists of tuples: millions of small tracked
        # objects would make the garbage collector the bottleneck of the load generator.
        self.latencies = array("d")
        self.phases: dict[str, array[float]] = {name: array("d") for name in PHASES}
        self.errors: Counter[str] = Counter()
        self.connections = 0
        self.stopped = False
        self.fatal: MailctlError | None = None

    def take(self) -> int | None:
        """The next message index, or None when the count or the duration is used up."""
        if self.stopped:
            return None
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
        if self.stopped or (self.total is not None and self.next_index >= self.total):
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
    ) -> None:
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
            else:
                self.failed += 1
            self.errors[reason or status] += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(origin - self.t0, latency, status, reason, phases)
        else:
            self.dropped += 1

    def record_session(self, timings: dict[str, float]) -> None:
        self.connections += 1
        for key, name in (
            ("connect", "connect"),
            ("starttls", "tls"),
            ("banner", "banner"),
            ("ehlo", "ehlo"),
            ("auth", "auth"),
        ):
            if key in timings:
                self.phases[name].append(timings[key])

    def result(self, mode: BenchMode, message_size: int, interrupted: bool) -> RunResult:
        start = self.t_measure if self.t_measure is not None else self.t0
        elapsed = max(self.last_end - start, 0.0)
        ordered = sorted(self.latencies)
        return RunResult(
            mode=mode,
            loop=self.work.loop,
            rate=self.rate,
            concurrency=self.work.concurrency,
            message_size=message_size,
            warmup=self.warmup,
            sent=self.sent,
            failed=self.failed,
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
            connections_opened=self.connections,
            histogram=histogram(ordered) if ordered else None,
            interrupted=interrupted,
            samples_dropped=self.dropped,
            samples=self.samples,
        )
