"""`mailctl bench`: load an SMTP server or the embedded sink; measure QPS, latency and phases.

Modes: `new` opens one session per message (connect, EHLO, STARTTLS, AUTH, one message,
QUIT: what mail-merge scripts do), `reuse` keeps `concurrency` authenticated sessions and
sends one message at a time through aiosmtplib, `pipeline` keeps the same sessions and
runs RFC 2920 pipelined transactions (protocols/pipeline/). Closed loop by default (each
connection sends its next message when the previous one is done); with `rate` the load is
open loop and latency is measured from each message's intended send time, so a stalled
server shows up in the percentiles instead of silently lowering the offered load
(coordinated omission).

Every wait is bounded by the timeouts (`--timeout` is the ceiling of all of them), and the
session pool's circuit breaker (core/pool) stops a run that can only wait or fail.

This module validates the request and runs the modes in turn; the parts live in `models`
(request and result types), `target` (loopback rule, embedded sink), `limits` (the
descriptor budget), `recorder` (schedule, samples), `modes` (the modes as pool
configurations) and `baseline`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

from mailctl.core.bench.limits import ensure_descriptors
from mailctl.core.bench.models import (
    BenchMode,
    BenchRequest,
    BenchResult,
    Progress,
    RunResult,
    Target,
    TargetReport,
)
from mailctl.core.bench.modes import run_mode
from mailctl.core.bench.target import EmbeddedSink, check_target
from mailctl.core.pool import MAX_CONCURRENCY
from mailctl.errors import InterruptedByUser, UsageError
from mailctl.models import ServerSettings, Timeouts
from mailctl.protocols.smtp import SessionOptions

__all__ = ["run_bench"]


def _validate(request: BenchRequest) -> None:
    work = request.workload
    if (work.messages is None) == (work.duration is None):
        raise UsageError("give either a message count or a duration", hint="-n N or --duration S")
    if work.messages is not None and work.messages < 1:
        raise UsageError(f"--messages {work.messages}: must be at least 1")
    if work.duration is not None and not 0 < work.duration <= 86_400:
        raise UsageError(f"--duration {work.duration:g}: must be between 0 and 86400 seconds")
    if not 1 <= work.concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency {work.concurrency}: must be 1-{MAX_CONCURRENCY}")
    if work.warmup < 0:
        raise UsageError("--warmup cannot be negative")
    if work.rate is not None and not work.rate > 0:
        raise UsageError(f"--rate {work.rate:g}: must be positive (messages per second)")
    if not request.modes:
        raise UsageError("no mode to run")


def _bounded(settings: ServerSettings, target: Target) -> ServerSettings:
    """Apply --timeout as the ceiling of every wait (greeting and data included) and
    --connect-timeout to the connect and greeting waits."""
    timeouts = settings.timeouts
    if target.timeout is not None:
        timeouts = Timeouts(
            connect=min(timeouts.connect, target.timeout),
            command=target.timeout,
            data=min(timeouts.data, target.timeout),
        )
    if target.connect_timeout is not None:
        timeouts = replace(timeouts, connect=target.connect_timeout)
    return settings if timeouts == settings.timeouts else replace(settings, timeouts=timeouts)


async def _run_all(
    request: BenchRequest,
    options: SessionOptions,
    progress: Callable[[BenchMode], Progress | None] | None,
) -> tuple[list[RunResult], bool]:
    runs: list[RunResult] = []
    for mode in request.modes:
        run = await run_mode(mode, options, request.workload, progress(mode) if progress else None)
        fatal = run.stopped_by
        if fatal is not None and not runs and not run.sent and not run.connections_opened:
            # The run never got going (refused, silent, TLS or AUTH failure): one error
            # line says more than a report of zeros.
            raise fatal
        runs.append(run)
        if run.interrupted:
            return runs, True
        if fatal is not None:
            break  # the next mode would meet the same condition
    return runs, False


def run_bench(
    request: BenchRequest,
    *,
    progress: Callable[[BenchMode], Progress | None] | None = None,
) -> BenchResult:
    """Run every requested mode on the same workload and target; return the report.

    The loopback check happens before any socket is opened; the embedded sink is always
    stopped, also on Ctrl-C (the report is then partial: `interrupted`). Raises
    UsageError (also when the descriptor limit is too low for the concurrency),
    HostNotFoundError, InterruptedByUser (before any result), and the session-fatal
    error of a run that never got going: no session set up and nothing sent (ConnectError,
    TimeoutFailure for a server that never greets, AuthError, TlsError, ConfigError,
    ProtocolError, InputDataError, or the error of the circuit breaker).
    """
    _validate(request)
    ensure_descriptors(request.workload.concurrency)
    check_target(request.target)
    target = request.target
    sink: EmbeddedSink | None = None
    try:
        if target.settings is None:
            sink, settings, secret = EmbeddedSink.start(target.sink)
        else:
            settings, secret = target.settings, target.secret
        settings = _bounded(settings, target)
        options = SessionOptions(settings=settings, secret=secret, ehlo_name=target.ehlo_name)
        runs, interrupted = asyncio.run(_run_all(request, options, progress))
    except KeyboardInterrupt:
        raise InterruptedByUser("interrupted before any result") from None
    finally:
        if sink is not None:
            sink.stop()
    return BenchResult(
        target=TargetReport(
            embedded_sink=sink is not None,
            host=settings.host,
            port=settings.port,
            security=settings.security,
            auth=settings.username is not None,
        ),
        workload=request.workload,
        runs=runs,
        interrupted=interrupted,
    )
