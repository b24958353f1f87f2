"""The bench modes new, reuse and pipeline as workers, and one mode's run to a RunResult.

A message counts as sent only when the reply to its final dot was read and was 2xx; a cut
or a timeout after the dot is "unknown" (RFC 1047) in every mode. Each connection attempt
is counted and a failed one is charged to one message, so a run always ends. Session-fatal
conditions stop the run at once (the circuit breaker): no connection, no greeting within the
timeout, a 5xx greeting, TLS or AUTH failures, and a message that no server could take.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass

from mailctl.core.bench.models import BenchMode, Progress, RunResult, Workload
from mailctl.core.bench.recorder import Recorder
from mailctl.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    HostNotFoundError,
    InputDataError,
    MailctlError,
    OutcomeUnknownError,
    ProtocolError,
    SmtpPermanentError,
    TimeoutFailure,
)
from mailctl.models import Envelope
from mailctl.protocols.pipeline import (
    PreparedTransaction,
    TransactionOutcome,
    TransactionStatus,
    pipelined,
    prepare_message,
    prepare_transaction,
)
from mailctl.protocols.smtp import SessionOptions, SmtpSession

__all__ = ["run_mode"]

_PROGRESS_INTERVAL = 0.1
_MAX_BACKOFF = 0.5
# Failures to set up a session that every other session would meet too: stop the run.
# ConnectError: refused, unreachable, connect timeout, out of descriptors. TimeoutFailure:
# the server took the connection but did not greet (or answer EHLO, STARTTLS, AUTH) within
# the timeout, a tarpit. SmtpPermanentError: a 5xx greeting or EHLO refusal. A 4xx/421
# greeting is not here: that is a server shedding load, which bench measures.
_FATAL_OPEN = (
    AuthError,
    ConfigError,
    ConnectError,
    HostNotFoundError,
    InputDataError,
    ProtocolError,
    SmtpPermanentError,
    TimeoutFailure,
)
# Failures of one transaction that every other one would meet too (the same message and
# envelope every time): a message over SIZE, a bad address, a protocol violation.
_FATAL_SEND = (AuthError, ConfigError, InputDataError, ProtocolError)

_NAN = math.nan
_NO_PHASES = (_NAN, _NAN, _NAN)


@dataclass
class _Context:
    options: SessionOptions
    envelope: Envelope
    message: bytes
    recorder: Recorder


@dataclass(frozen=True)
class _Failure:
    status: str  # "refused" (5xx), "transient" or "unknown" (after the final dot)
    reason: str  # the reply code, or the failure's code string
    text: str  # the reply on one line, or the error message
    timed_out: bool


def _reply_line(reply: object) -> tuple[str, str] | None:
    """(code, "code text") of a Reply as mailctl.serialize writes it, or None."""
    if isinstance(reply, dict) and isinstance(reply.get("code"), int):
        code = reply["code"]
        return str(code), " ".join(f"{code} {reply.get('message') or ''}".split())
    return None


def _failure(err: MailctlError) -> _Failure:
    """What a failed session set-up or aiosmtplib-mode send counts as, with its reply."""
    found = _reply_line(err.details.get("reply"))
    if found is None:
        refused = [
            r.get("reply")
            for r in err.details.get("recipients") or ()
            if isinstance(r, dict) and not r.get("accepted")
        ]
        found = _reply_line(refused[0]) if refused else None
    reason, text = found if found is not None else (err.code, err.message)
    if isinstance(err, OutcomeUnknownError):
        status = "unknown"
    elif isinstance(err, SmtpPermanentError):
        status = "refused"
    else:
        status = "transient"
    timed_out = isinstance(err, TimeoutFailure) or isinstance(err.__cause__, TimeoutError)
    return _Failure(status, reason, text, timed_out)


def _record_failure(recorder: Recorder, index: int, origin: float, err: MailctlError) -> None:
    failure = _failure(err)
    recorder.record(
        index, origin, time.perf_counter(), status=failure.status, reason=failure.reason,
        text=failure.text, timed_out=failure.timed_out, phases=_NO_PHASES,
    )  # fmt: skip


async def _backoff(failures: int) -> None:
    await asyncio.sleep(min(0.01 * 2**failures, _MAX_BACKOFF))


async def _open(ctx: _Context, index: int | None, origin: float) -> SmtpSession | None:
    """Open one session, counting the attempt and recording its phases.

    A failure is charged to message `index` (or to the next one when None, so the loop
    stays bounded) and returns None; a session-fatal one also stops the run.
    """
    recorder = ctx.recorder
    recorder.attempt()
    try:
        session = await SmtpSession.open(ctx.options)
    except MailctlError as err:
        if index is None:
            index = recorder.take()
        if index is not None:
            _record_failure(recorder, index, origin or time.perf_counter(), err)
        if isinstance(err, _FATAL_OPEN):
            recorder.stop(err)
        else:
            recorder.open_failed(err)
        return None
    recorder.record_session(session.info.timings)
    return session


async def _new_worker(ctx: _Context) -> None:
    """One session per message: connect, EHLO, STARTTLS, AUTH, one message, QUIT."""
    recorder = ctx.recorder
    failures = 0
    while (index := recorder.take()) is not None:
        origin = await recorder.wait_turn(index)
        session = await _open(ctx, index, origin)
        if session is None:
            failures += 1
            if recorder.stopped:
                return
            await _backoff(failures)
            continue
        failures = 0
        try:
            await _send_and_record(ctx, session, index, origin)
        finally:
            started = time.perf_counter()
            await session.close()
            if index >= recorder.warmup:
                recorder.phases["quit"].append(time.perf_counter() - started)


async def _send_and_record(ctx: _Context, session: SmtpSession, index: int, origin: float) -> None:
    """One transaction through aiosmtplib (new and reuse modes), recorded as sent or failed."""
    try:
        outcome = await session.transact(ctx.envelope, ctx.message)
    except MailctlError as err:  # the message cannot be sent at all: nor can any other
        _record_failure(ctx.recorder, index, origin, err)
        ctx.recorder.stop(err)
        return
    _record_result(ctx.recorder, index, origin, outcome)
    if isinstance(outcome.exception, _FATAL_SEND):
        ctx.recorder.stop(outcome.exception)


async def _reuse_worker(ctx: _Context) -> None:
    """One long-lived session, one message at a time through aiosmtplib."""
    recorder = ctx.recorder
    session: SmtpSession | None = None
    failures = 0
    try:
        while not recorder.stopped:
            if session is None or not session.connected:
                if session is not None:
                    await session.close()
                session = await _open(ctx, None, 0.0)
                if session is None:
                    failures += 1
                    if recorder.stopped or recorder.take_exhausted():
                        return
                    await _backoff(failures)
                    continue
                failures = 0
            index = recorder.take()
            if index is None:
                return
            origin = await recorder.wait_turn(index)
            await _send_and_record(ctx, session, index, origin)
    finally:
        if session is not None:
            await session.close()


async def _pipeline_worker(ctx: _Context) -> None:
    """One long-lived session with RFC 2920 pipelined transactions, chained back to back."""
    recorder = ctx.recorder
    session: SmtpSession | None = None
    prepared: PreparedTransaction | None = None
    failures = 0
    try:
        while not recorder.stopped:
            if session is not None:
                await session.close()
            session = await _open(ctx, None, 0.0)
            if session is None:
                failures += 1
                if recorder.stopped or recorder.take_exhausted():
                    return
                await _backoff(failures)
                continue
            failures = 0
            if prepared is None:
                prepared = prepare_transaction(
                    ctx.envelope,
                    prepare_message(ctx.message),
                    extensions=session.info.extensions,
                )
            if not await _pipeline_session(recorder, session, prepared):
                return
    finally:
        if session is not None:
            await session.close()


def _record_result(
    recorder: Recorder,
    index: int,
    origin: float,
    result: TransactionOutcome,
) -> None:
    """Record one transaction: sent only with its final reply read (2xx).

    Phases, the same on both paths (the names send's timings_ms uses): mail_rcpt (MAIL and
    every RCPT), data (DATA to the 354), end_of_data (body and dot to the final reply).
    """
    if result.status is TransactionStatus.SENT:
        phases = (
            result.envelope_done - result.started,
            result.data_accepted - result.envelope_done,
            result.finished - result.dot_sent,
        )
        recorder.record(
            index, origin or result.started, result.finished, status="sent", reason="",
            phases=phases,
        )  # fmt: skip
        return
    end = result.finished or time.perf_counter()
    # The pipeline says what ended a cut transaction ("connection_lost", "timeout"); bench
    # reports a cut after the dot as outcome_unknown, as the aiosmtplib modes do.
    unknown = result.status is TransactionStatus.UNKNOWN
    reason = "outcome_unknown" if unknown else (result.reason or result.status.value)
    reply = result.failure_reply
    text = " ".join(f"{reply.code} {reply.message}".split()) if reply else (result.error or reason)
    recorder.record(
        index,
        origin or result.started or end,
        end,
        status=result.status.value,
        reason=reason,
        text=text,
        timed_out=result.reason == "timeout",
        phases=_NO_PHASES,
    )


async def _pipeline_session(
    recorder: Recorder, session: SmtpSession, prepared: PreparedTransaction
) -> bool:
    """Send on one session until the work is done (False) or the connection ends (True)."""
    pending: deque[tuple[int, float]] = deque()
    take = recorder.take
    rate = recorder.rate

    def closed_loop() -> Iterator[PreparedTransaction]:
        while (index := take()) is not None:
            pending.append((index, 0.0))
            yield prepared

    async def open_loop() -> AsyncGenerator[PreparedTransaction, None]:
        while (index := take()) is not None:
            pending.append((index, await recorder.wait_turn(index)))
            yield prepared

    source = open_loop() if rate else closed_loop()
    try:
        pipe_context = pipelined(session)
        pipe = await pipe_context.__aenter__()
    except ProtocolError as err:  # no PIPELINING: say so instead of measuring something else
        recorder.stop(err)
        return False
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_exit(pipe_context)
        async for result in pipe.send_all(source):
            index, origin = pending.popleft()
            _record_result(recorder, index, origin, result)
    if not isinstance(source, Iterator):
        await source.aclose()
    return not recorder.take_exhausted()


_WORKERS: dict[BenchMode, Callable[[_Context], Awaitable[None]]] = {
    BenchMode.NEW: _new_worker,
    BenchMode.REUSE: _reuse_worker,
    BenchMode.PIPELINE: _pipeline_worker,
}


async def _guarded(worker: Callable[[_Context], Awaitable[None]], ctx: _Context) -> None:
    """Run one worker; an error escaping it stops the others instead of going unread.

    Without this, one worker's exception ends gather() while the others go on failing,
    and each of them prints a "Task exception was never retrieved" traceback at exit.
    """
    recorder = ctx.recorder
    try:
        await worker(ctx)
    except MailctlError as err:  # e.g. a message that cannot be prepared (InputDataError)
        recorder.stop(err)
    except Exception as err:  # a bug: stop, and report it once
        if recorder.crash is None:
            recorder.crash = err
        recorder.stopped = True


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
    recorder = Recorder(work, time.perf_counter())
    ctx = _Context(options, Envelope(work.sender, work.recipients), work.message, recorder)
    worker = _WORKERS[mode]
    tasks = [asyncio.create_task(_guarded(worker, ctx)) for _ in range(work.concurrency)]
    ticker = asyncio.create_task(_progress_ticker(recorder, progress)) if progress else None
    interrupted = False
    try:
        await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        # Ctrl-C (asyncio.run cancels the main task): stop, clean up, report what we have.
        interrupted = True
        recorder.stopped = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if ticker is not None and progress is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            progress(recorder.done, recorder.total, time.perf_counter() - recorder.t0, True)
    if recorder.crash is not None:
        raise recorder.crash
    return recorder.result(mode, len(work.message), interrupted)
