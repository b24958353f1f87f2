"""The bench modes new, reuse and pipeline as session-pool configurations, and one mode's run.

`new` is a session per message (connect, EHLO, STARTTLS, AUTH, one message, QUIT), `reuse`
keeps `concurrency` sessions and sends one command at a time through aiosmtplib, `pipeline`
the same sessions with RFC 2920 pipelined transactions (stopping when the server does not
offer PIPELINING). The pool (core/pool) runs them: sessions, the charge of a failed
connection attempt to one message (so a run always ends), the circuit breaker. Bench tries
every message exactly once (NoRetry): it measures the server, it does not deliver mail.
A message counts as sent only when the reply to its final dot was read and was 2xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from mailctl.core.bench.models import BenchMode, Progress, RunResult, Workload
from mailctl.core.bench.recorder import Recorder
from mailctl.core.pool import (
    BreakerLimits,
    CircuitBreaker,
    Job,
    NoRetry,
    Payload,
    Pipelining,
    PoolConfig,
    SessionPool,
)
from mailctl.models import Envelope
from mailctl.protocols.smtp import SessionOptions

__all__ = ["run_mode"]

_PROGRESS_INTERVAL = 0.1
_MODES: dict[BenchMode, dict[str, Any]] = {
    BenchMode.NEW: {"max_messages": 1, "pipelining": Pipelining.OFF},
    BenchMode.REUSE: {"pipelining": Pipelining.OFF},
    BenchMode.PIPELINE: {"pipelining": Pipelining.REQUIRE},
}


class _Feed:
    """The bench schedule as the pool's feed: message indices, bounded by count or duration."""

    def __init__(self, recorder: Recorder, payload: Payload, *, stamp: bool) -> None:
        self._take = recorder.take
        self._exhausted = recorder.take_exhausted
        self._payload = payload
        # A session per message: latency counts from when the message was taken, connect
        # and TLS included; otherwise from the transaction's start (Job.origin 0.0).
        self._stamp = stamp

    def take(self) -> Job | None:
        index = self._take()
        if index is None:
            return None
        return Job(self._payload, index, time.perf_counter() if self._stamp else 0.0)

    def exhausted(self) -> bool:
        return self._exhausted()


class _OpenLoop:
    """Open loop (`rate`): each message waits for its turn; latency counts from then."""

    def __init__(self, recorder: Recorder) -> None:
        self._wait_turn = recorder.wait_turn

    async def __call__(self, job: Job) -> None:
        assert isinstance(job.tag, int)
        job.origin = await self._wait_turn(job.tag)


async def _progress_ticker(recorder: Recorder, progress: Progress) -> None:
    total = recorder.total
    while True:
        progress(recorder.done, total, time.perf_counter() - recorder.t0, False)
        await asyncio.sleep(_PROGRESS_INTERVAL)


async def run_mode(
    mode: BenchMode,
    options: SessionOptions,
    work: Workload,
    progress: Progress | None,
) -> RunResult:
    """Run one mode to its RunResult; `stopped_by` holds what stopped it early, if anything.

    Raises only what a worker raised that is not a MailctlError (a bug), once.
    """
    recorder = Recorder(work, time.perf_counter(), mode)
    # Every message is the same one: a message that cannot be sent stops the run (65); and
    # a refused connection is the end of a benchmark, not something to ride out.
    limits = BreakerLimits(bad_message_is_fatal=True, refused_connections_in_a_row=1)
    breaker = CircuitBreaker(limits, concurrency=work.concurrency)
    pool = SessionPool(
        options,
        PoolConfig(concurrency=work.concurrency, retry=NoRetry(), **_MODES[mode]),
        observer=recorder,
        breaker=breaker,
        limiter=_OpenLoop(recorder) if work.rate else None,
    )
    payload = Payload(Envelope(work.sender, work.recipients), work.message)
    ticker = asyncio.create_task(_progress_ticker(recorder, progress)) if progress else None
    interrupted = False
    try:
        await pool.run(_Feed(recorder, payload, stamp=mode is BenchMode.NEW))
    except asyncio.CancelledError:
        # Ctrl-C (asyncio.run cancels the main task): the pool closed its sessions; report.
        interrupted = True
    finally:
        if ticker is not None and progress is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            progress(recorder.done, recorder.total, time.perf_counter() - recorder.t0, True)
    return recorder.result(
        len(work.message), interrupted, counts=pool.counts, stopped_by=breaker.tripped
    )
