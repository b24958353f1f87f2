"""The bench modes new, reuse and pipeline as workers, and one mode's run to a RunResult."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass

from mailctl.core.bench_models import BenchMode, Progress, RunResult, Workload
from mailctl.core.bench_recorder import Recorder
from mailctl.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    HostNotFoundError,
    InputDataError,
    MailctlError,
    ProtocolError,
)
from mailctl.models import Envelope
from mailctl.protocols.pipeline import (
    PreparedTransaction,
    TransactionStatus,
    pipelined,
    prepare_message,
    prepare_transaction,
)
from mailctl.protocols.smtp import SessionOptions, SmtpSession

__all__ = ["run_mode"]

_PROGRESS_INTERVAL = 0.1
_MAX_BACKOFF = 0.5
# Errors that no amount of retrying fixes: stop the whole run and report them.
_FATAL = (AuthError, ConfigError, HostNotFoundError, InputDataError, ProtocolError)

_NAN = math.nan
_NO_PHASES = (_NAN, _NAN, _NAN)


@dataclass
class _Context:
    options: SessionOptions
    envelope: Envelope
    message: bytes
    recorder: Recorder


async def _open(ctx: _Context, failures: int) -> SmtpSession | None:
    """Open one session, recording its phases; None after a non-fatal failure (charged to
    one message so the loop stays bounded)."""
    recorder = ctx.recorder
    try:
        session = await SmtpSession.open(ctx.options)
    except MailctlError as err:
        fatal = isinstance(err, _FATAL) or (isinstance(err, ConnectError) and not recorder.sent)
        if fatal:
            recorder.fatal = recorder.fatal or err
            recorder.stopped = True
            return None
        index = recorder.take()
        if index is not None:
            now = time.perf_counter()
            recorder.record(index, now, now, status="failed", reason=err.code, phases=_NO_PHASES)
        await asyncio.sleep(min(0.01 * 2**failures, _MAX_BACKOFF))
        return None
    recorder.record_session(session.info.timings)
    return session


def _error_reason(err: MailctlError) -> tuple[str, str]:
    """(status, reason) for a failed aiosmtplib-mode send: the reply code when there is one."""
    reply = err.details.get("reply")
    if isinstance(reply, dict) and isinstance(reply.get("code"), int):
        reason = str(reply["code"])
    else:
        recipients = err.details.get("recipients")
        codes = [
            r["reply"]["code"]
            for r in recipients or ()
            if isinstance(r, dict) and not r.get("accepted")
        ]
        reason = str(codes[0]) if codes else err.code
    return ("unknown" if err.code == "outcome_unknown" else "failed"), reason


async def _new_worker(ctx: _Context) -> None:
    """One session per message: connect, EHLO, STARTTLS, AUTH, one message, QUIT."""
    recorder = ctx.recorder
    failures = 0
    while (index := recorder.take()) is not None:
        origin = await recorder.wait_turn(index)
        try:
            session = await SmtpSession.open(ctx.options)
        except MailctlError as err:
            if isinstance(err, _FATAL) or (isinstance(err, ConnectError) and not recorder.sent):
                recorder.fatal = recorder.fatal or err
                recorder.stopped = True
                return
            now = time.perf_counter()
            recorder.record(index, origin, now, status="failed", reason=err.code, phases=_NO_PHASES)
            failures += 1
            await asyncio.sleep(min(0.01 * 2**failures, _MAX_BACKOFF))
            continue
        failures = 0
        recorder.record_session(session.info.timings)
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
        transaction = await session.send(ctx.envelope, ctx.message)
    except MailctlError as err:
        status, reason = _error_reason(err)
        ctx.recorder.record(
            index, origin, time.perf_counter(), status=status, reason=reason, phases=_NO_PHASES
        )
        return
    timings = transaction.timings
    ctx.recorder.record(
        index, origin, time.perf_counter(), status="sent", reason="",
        phases=(timings["mail"] + timings["rcpt"], timings["data"], _NAN),
    )  # fmt: skip


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
                session = await _open(ctx, failures)
                if session is None:
                    failures += 1
                    if recorder.stopped or recorder.take_exhausted():
                        return
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
            session = await _open(ctx, failures)
            if session is None:
                failures += 1
                if recorder.stopped or recorder.take_exhausted():
                    return
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
    sent = TransactionStatus.SENT
    try:
        pipe_context = pipelined(session)
        pipe = await pipe_context.__aenter__()
    except ProtocolError as err:  # no PIPELINING: say so instead of measuring something else
        recorder.fatal = recorder.fatal or err
        recorder.stopped = True
        return False
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_exit(pipe_context)
        async for result in pipe.send_all(source):
            index, origin = pending.popleft()
            if result.status is sent:
                recorder.record(
                    index,
                    origin or result.started,
                    result.finished,
                    status="sent",
                    reason="",
                    phases=(
                        result.envelope_done - result.started,
                        result.data_accepted - result.envelope_done,
                        result.finished - result.dot_sent,
                    ),
                )
            else:
                end = result.finished or time.perf_counter()
                recorder.record(
                    index,
                    origin or result.started or end,
                    end,
                    status=result.status.value,
                    reason=result.reason or result.status.value,
                    phases=_NO_PHASES,
                )
    if not isinstance(source, Iterator):
        await source.aclose()
    return not recorder.take_exhausted()


_WORKERS = {
    BenchMode.NEW: _new_worker,
    BenchMode.REUSE: _reuse_worker,
    BenchMode.PIPELINE: _pipeline_worker,
}


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
    recorder = Recorder(work, time.perf_counter())
    ctx = _Context(options, Envelope(work.sender, work.recipients), work.message, recorder)
    worker = _WORKERS[mode]
    tasks = [asyncio.create_task(worker(ctx)) for _ in range(work.concurrency)]
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
    if recorder.fatal is not None and not recorder.sent:
        raise recorder.fatal
    return recorder.result(mode, len(work.message), interrupted)
