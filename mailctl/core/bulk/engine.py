"""The send loop of bulk-send: CSV rows through the core session pool, every outcome into the
journal.

The pool (core/pool) owns sessions, pipelining, retries, AIMD, the rate limit and the
breaker; this module adds rows. `RowFeed` reads the CSV again (streamed), asks the journal
for each row's state, renders the rows still to send and claims them in batches: one
durable commit moves a batch to in_flight before the pool can write any of their DATA, so
after kill -9 at most a batch plus what is in the pool (sessions x 2 pipelined
transactions, and the retries waiting) is left in_flight, which the next run records as
unknown (RFC 1047: maybe delivered). `JournalObserver` finishes each row in the journal
(buffered) and the ticker flushes every FLUSH_INTERVAL (one commit for many rows); a row
counts as sent in the progress and the result only once flushed. A stop (Ctrl-C) takes no
new row, lets in-flight transactions end (bounded), returns the rows never written to
pending and flushes. The journal is used from the loop's thread while its commits are
cheap, else from a thread of its own (Worker); the loop is uvloop's when installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mailctl.core.bulk.cache import RenderCache
from mailctl.core.bulk.hooks import RowTag, RunHooks
from mailctl.core.bulk.journal import Journal, RowRecord, RowState
from mailctl.core.bulk.models import (
    MAX_INVALID_LISTED,
    BulkProgress,
    BulkRequest,
    InvalidRow,
    ProgressCallback,
    StopSwitch,
)
from mailctl.core.bulk.rows import CsvSource, Row
from mailctl.core.pool import (
    Aimd,
    Backoff,
    BreakerLimits,
    CircuitBreaker,
    Job,
    Payload,
    PoolConfig,
    SessionPool,
    TokenBucket,
)
from mailctl.core.pool.classify import is_quota, session_fatal
from mailctl.core.pool.domains import DomainCaps
from mailctl.errors import InputDataError, MailctlError, SmtpTransientError
from mailctl.mime.template import MessageTemplate
from mailctl.models import Envelope, Reply
from mailctl.protocols.smtp import SessionInfo, SessionOptions, TransactionOutcome
from mailctl.protocols.smtp import TransactionStatus as Status
from mailctl.serialize import to_data

__all__ = ["PIPELINE_DEPTH", "SendOutcome", "loop_factory", "send_rows"]

_T = TypeVar("_T")
# A row's outcome waiting for the journal: identity, state, attempts, reply, queue id,
# latency (ms), text.
Finished = tuple[str, RowState, int, Reply | None, str | None, float | None, str | None]

# Transactions one pipelined session has on the wire at once: the current one and the next,
# whose commands ride on its final dot (protocols/pipeline, RFC 2920 3.1).
PIPELINE_DEPTH = 2
FLUSH_INTERVAL = 0.05  # seconds between journal commits while sending
# A journal whose recent commits took less than this is used from the event loop's thread
# (see Worker): tmpfs ~20 us here, a disk's fsync ~200 us to milliseconds.
INLINE_COMMIT = 100e-6
_STATES = {
    Status.SENT: RowState.SENT,
    Status.REFUSED: RowState.FAILED,
    Status.TRANSIENT: RowState.DEFERRED,
    Status.UNKNOWN: RowState.UNKNOWN,
}


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop the send loop runs on: uvloop's when installed (a dependency except on
    Windows, as for the sink): every message costs a few loop iterations, which uvloop runs
    in C (the 2,000-row benchmark's send phase: ~8% less CPU); else asyncio's (None)."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


@dataclass
class SendOutcome:
    """What the send loop did: durable counts by state, and why it stopped early."""

    counts: Counter[RowState] = field(default_factory=Counter)
    not_tried: int = 0
    elapsed: float = 0.0
    connections_opened: int = 0
    connections_attempted: int = 0
    interrupted: bool = False
    stopped_by: MailctlError | None = None
    quota: bool = False
    invalid: int = 0  # rows valid at the validation pass that no longer rendered (failed)
    invalid_rows: list[InvalidRow] = field(default_factory=list)


class RowFeed:
    """The pool's feed: rows still to send, rendered and claimed a batch at a time.

    The CSV stream and the journal's records of this run in a sendable state are both in
    line order: walked side by side, each row's state and Message-ID come from its record
    without a query per row, and rows already settled are never rendered again. A row the
    validation pass kept rendered (cache.py) needs only its record: the CSV is parsed again
    only as far as the next row the cache does not hold.

    With a `worker` whose journal commits cost an fsync, the next batch is prepared and
    claimed on the journal thread while the pool sends the current one, so the fsync does
    not stall the event loop; with cheap commits, inline (see Worker). Either way the pool
    gets a job only after its claim returned.
    """

    def __init__(
        self,
        rows: Iterator[Row],
        records: Iterator[RowRecord],
        template: MessageTemplate,
        journal: Journal,
        *,
        batch: int,
        limit: int | None,
        resend_unknown: bool,
        cache: RenderCache | None = None,
        worker: Worker | None = None,
    ) -> None:
        self._cache = cache or RenderCache(0)
        self._rows = rows
        self._records = records
        self._template = template
        self._journal = journal
        self._batch = batch
        self._limit = limit
        self._resend_unknown = resend_unknown
        self._worker = worker or Worker(None)
        self._ready: deque[Job] = deque()
        self._next_batch: Future[tuple[list[Job], list[tuple[RowTag, MailctlError]]]] | None = None
        self._asked = 0  # rows asked of batches so far (for the limit)
        self._source_done = False  # set by the worker: no sendable row is left
        self._done = False
        self.taken = 0  # rows handed to the pool
        # Told about a row that no longer renders (it is recorded failed, the run goes on).
        self.on_invalid: Callable[[RowTag, MailctlError], None] | None = None
        # The outcomes finished since the last commit ride on the next claim's commit.
        self.hand_over: Callable[[], tuple[list[Finished], Counter[RowState]]] | None = None
        self.committed: Callable[[Future[Any], Counter[RowState]], None] | None = None

    def stop(self) -> list[Job]:
        """Take no more rows; return the claimed ones never handed out (back to pending)."""
        self._done = True
        left = list(self._ready)
        self._ready.clear()
        pending, self._next_batch = self._next_batch, None
        if pending is not None:
            with contextlib.suppress(MailctlError):  # it claimed nothing if it failed
                left.extend(self._collect(pending))
        return left

    def close(self) -> None:
        """Close the CSV and journal readers (on the thread that used them)."""
        self._worker.call(_close_all, self._records, self._rows).result()

    def take(self) -> Job | None:
        while not self._ready:  # a batch may come back empty: every row failed to render
            if self._done:
                return None
            if self._next_batch is None:
                self._ask()
            pending, self._next_batch = self._next_batch, None
            if pending is None:  # nothing left to ask: the rows or the --limit are used up
                self._done = True
                return None
            self._ready.extend(self._collect(pending))
        self.taken += 1
        job = self._ready.popleft()
        if (
            self._next_batch is None
            and not self._source_done
            and len(self._ready) * 2 < self._batch
        ):
            self._ask()  # prepared and claimed on the worker while these are sent
        return job

    def exhausted(self) -> bool:
        return self._done and not self._ready

    def _room(self) -> int:
        if self._limit is None:
            return self._batch
        return max(min(self._batch, self._limit - self._asked), 0)

    def _ask(self) -> None:
        room = self._room()
        if room == 0 or self._source_done:
            return
        self._asked += room
        items, counts = self.hand_over() if self.hand_over is not None else ([], None)
        self._next_batch = self._worker.call(self._prepare, room, items)
        if counts is not None and self.committed is not None:
            self.committed(self._next_batch, counts)

    def _collect(
        self, pending: Future[tuple[list[Job], list[tuple[RowTag, MailctlError]]]]
    ) -> list[Job]:
        jobs, invalid = pending.result()  # re-raises what the worker raised (a bug, a CSV change)
        if self.on_invalid is not None:
            for tag, error in invalid:
                self.on_invalid(tag, error)
        return jobs

    def _row(self, record: RowRecord) -> Row | None:
        """The CSV row `record` names (the rows before it are passed over: settled, or kept
        rendered in the cache); None when the file ends first."""
        for row in self._rows:
            if row.identity == record.identity:
                return row
            if row.line >= record.line:  # the file no longer holds the row the journal has
                raise InputDataError(
                    f"line {record.line} of the CSV changed while bulk-send was running",
                    hint="leave the file alone during a run, then run the same command again",
                )
        return None

    def _prepare(
        self, room: int, finished: list[Finished]
    ) -> tuple[list[Job], list[tuple[RowTag, MailctlError]]]:
        """Render the next `room` rows to send and claim them: one durable commit before any
        of them can reach the pool (RFC 1047: in_flight first, then DATA), which also makes
        the `finished` outcomes durable. Runs on the worker."""
        apply_finished(self._journal, finished)
        jobs: dict[str, Job] = {}
        invalid: list[tuple[RowTag, MailctlError]] = []
        while len(jobs) + len(invalid) < room:
            record = next(self._records, None)
            if record is None:
                self._source_done = True
                break
            # A row the validation pass rendered is sent as it was validated, by its record
            # alone: the CSV is parsed again only up to the rows the cache does not hold.
            kept = self._cache.pop(record.identity)
            row = None if kept is not None else self._row(record)
            if kept is None and row is None:
                self._source_done = True
                break
            tag = RowTag(record.identity, record.line, record.recipient, record.message_id)
            if row is not None:
                try:
                    rendered = self._template.render(row.fields, message_id=record.message_id)
                except MailctlError as err:  # valid at the validation pass: an attachment gone
                    invalid.append((tag, err))
                    continue
                sender = rendered.sender.addr_spec
                recipients = tuple(r.addr_spec for r in rendered.recipients)
                data, smtputf8 = rendered.data, rendered.smtputf8
            else:
                assert kept is not None
                sender, recipients, data, smtputf8 = (
                    kept.sender, kept.recipients, kept.data, kept.smtputf8,
                )  # fmt: skip
            payload = Payload(
                Envelope(sender, recipients), data, smtputf8=smtputf8, eight_bit=not data.isascii()
            )
            jobs[record.identity] = Job(payload, tag=tag)
        if not jobs:
            self._journal.flush()
            return [], invalid
        # Buffered outcomes ride on the same commit, so a claim never races a finish.
        claimed = self._journal.claim(list(jobs), resend_unknown=self._resend_unknown)
        return [jobs[identity] for identity in claimed], invalid


def apply_finished(journal: Journal, finished: list[Finished]) -> None:
    """Hand buffered outcomes to the journal (durable at its next commit)."""
    for identity, state, attempts, reply, queue_id, latency, text in finished:
        journal.finish(
            identity, state, attempts=attempts, reply=reply, queue_id=queue_id,
            latency_ms=latency, text=text,
        )  # fmt: skip


def _close_all(*iterators: Iterator[object]) -> None:
    for iterator in iterators:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


class Worker:
    """Where the journal is used while the event loop sends: the one journal thread when a
    commit takes long enough to stall the loop (a disk's fsync), else the loop's own thread.

    A claim must be durable before its rows are sent, so the loop waits for it either way;
    on the thread it waits for the GIL hand-overs too (the thread takes the GIL back at every
    SQLite step while the loop runs Python), which cost more than a commit on tmpfs or a
    fast disk (~20-100 us). So each call runs inline while `cheap()` says the journal's
    recent commits are (Journal.commit_cost) and nothing sent to the thread is still running
    (the journal is never used from two threads at once), else on the thread. executor
    None: always inline (after the run, or without a loop).
    """

    def __init__(
        self, executor: ThreadPoolExecutor | None, cheap: Callable[[], bool] | None = None
    ) -> None:
        self.executor = executor
        self._cheap = cheap
        self._last: Future[Any] | None = None  # the thread runs its calls in order
        self.inline_calls = 0
        self.thread_calls = 0

    def call(self, function: Callable[..., _T], *args: object) -> Future[_T]:
        executor = self.executor
        if executor is not None and (
            self._cheap is None
            or (self._last is not None and not self._last.done())
            or not self._cheap()
        ):
            self.thread_calls += 1
            self._last = future = executor.submit(function, *args)
            return future
        self.inline_calls += 1
        done: Future[_T] = Future()
        try:
            done.set_result(function(*args))
        except BaseException as err:  # handed to whoever reads the result
            done.set_exception(err)
        return done


class JournalObserver:
    """The pool's observer: each final outcome becomes the row's state in the journal."""

    def __init__(
        self,
        journal: Journal,
        hooks: RunHooks,
        where: tuple[str, int],
        worker: Worker | None = None,
    ) -> None:
        self._journal = journal
        self._hooks = hooks
        self._where = where
        self.worker = worker or Worker(None)
        self._finished: list[
            tuple[str, RowState, int, Reply | None, str | None, float | None, str | None]
        ] = []
        self._commits: deque[tuple[Future[None], Counter[RowState]]] = deque()
        self.pool: SessionPool | None = None
        self.unflushed: Counter[RowState] = Counter()
        self.durable: Counter[RowState] = Counter()
        self.quota: Reply | None = None
        # The last outcome of each job waiting for a retry (at most PoolConfig.max_waiting).
        self.waiting: dict[object, TransactionOutcome] = {}
        self.invalid_count = 0  # rows that no longer rendered at send time (failed)
        self.invalid_rows: list[InvalidRow] = []

    def outcome(self, job: Job, outcome: TransactionOutcome, final: bool) -> None:
        status = outcome.status
        failure = outcome.failure_reply
        if status is not Status.SENT and failure is not None and is_quota(failure):
            self._quota(failure)
            if not final:  # the pool keeps it for its retry; the stop hands it back (deferred)
                self.waiting[job.tag] = outcome
                return
            final_state = RowState.DEFERRED
        elif not final:
            # A retry follows: the row stays in_flight in the journal (a crash now leaves it
            # unknown, never resent without --resend-unknown: safe, if cautious). Its reply is
            # kept for the record should the run stop before the retry.
            self.waiting[job.tag] = outcome
            return
        else:
            final_state = _STATES[status]
            pool = self.pool
            if (
                pool is not None
                and pool.breaker.tripped is not None
                and status is not Status.UNKNOWN
                and (outcome.mail_reply is None or session_fatal(outcome) is not None)
            ):
                # Charged with the failed session set-up that tripped the breaker (AUTH,
                # TLS), or refused at MAIL for the session's sake (530, 535, 554 5.7.x): not
                # this row's fault, and not delivered. It waits for the next run.
                final_state = RowState.PENDING
        self.finish(job, final_state, outcome)

    def finish(
        self, job: Job, state: RowState, outcome: TransactionOutcome | None, text: str = ""
    ) -> None:
        """Record the row's `state` (buffered until the next flush); `text` says why when no
        outcome does (the run stopped)."""
        reply: Reply | None = None
        queue_id: str | None = None
        latency: float | None = None
        if outcome is not None:
            if outcome.status is Status.SENT:
                reply, queue_id = outcome.final_reply, outcome.queue_id
            else:
                reply = outcome.failure_reply
                text = outcome.error or text  # a cut or a timeout: no reply says it
            if outcome.finished and outcome.started:
                latency = (outcome.finished - (job.origin or outcome.started)) * 1000.0
        tag: RowTag = job.tag  # type: ignore[assignment]  # RowFeed's jobs
        self.waiting.pop(tag, None)
        self._finished.append(
            (tag.identity, state, job.attempts, reply, queue_id, latency, text or None)
        )
        self.unflushed[state] += 1
        self._hooks.row(
            tag, state, attempts=job.attempts, reply=reply, queue_id=queue_id, latency_ms=latency
        )

    def invalid(self, tag: RowTag, error: MailctlError) -> None:
        """A row that passed validation and no longer renders: failed, never tried."""
        text = f"{error.code}: {error.message}"
        self._finished.append((tag.identity, RowState.FAILED, 0, None, None, None, text))
        self.invalid_count += 1
        if len(self.invalid_rows) < MAX_INVALID_LISTED:
            self.invalid_rows.append(InvalidRow(tag.line, 0, error.code, error.message))
        self._hooks.row(
            tag, RowState.FAILED, attempts=0, reply=None, queue_id=None, latency_ms=None
        )

    def flush(self) -> None:
        """One commit (on the worker) for every row finished since the last one; they count
        once it returned (see `collect`)."""
        items, self._finished = self._finished, []
        counts, self.unflushed = self.unflushed, Counter()
        self._commits.append((self.worker.call(self._commit, items), counts))
        self.collect()

    def collect(self, *, wait: bool = False) -> None:
        """Count the rows of every commit done (all of them with `wait`); re-raise what a
        commit raised (JournalError: the disk is full)."""
        commits = self._commits
        while commits and (wait or commits[0][0].done()):
            done, counts = commits.popleft()
            done.result()
            self.durable.update(counts)

    def hand_over(self) -> tuple[list[Finished], Counter[RowState]]:
        """The outcomes finished since the last commit, for a claim's commit to carry."""
        items, self._finished = self._finished, []
        counts, self.unflushed = self.unflushed, Counter()
        return items, counts

    def committed(self, done: Future[Any], counts: Counter[RowState]) -> None:
        """`counts` rows count as durable once `done` (a commit on the worker) returned."""
        self._commits.append((done, counts))

    def _commit(self, items: list[Finished]) -> None:
        apply_finished(self._journal, items)
        self._journal.flush()

    def _quota(self, reply: Reply) -> None:
        if self.quota is None:
            self.quota = reply
            if self.pool is not None:
                self.pool.stop()

    def session_opened(self, info: SessionInfo) -> None:
        self._hooks.session_opened(*self._where, info.tls is not None)

    def session_closed(self, seconds: float, last: Job | None) -> None:
        pass


def _progress(
    total: int, observer: JournalObserver, pool: SessionPool, elapsed: float, stop: StopSwitch
) -> BulkProgress:
    durable = observer.durable
    return BulkProgress(
        total=total,
        sent=durable[RowState.SENT],
        failed=durable[RowState.FAILED],
        deferred=durable[RowState.DEFERRED],
        unknown=durable[RowState.UNKNOWN],
        elapsed=elapsed,
        connections=pool.counts.open_now,
        stopping=stop.stopping or not pool.running,
    )


def _pool(request: BulkRequest, options: SessionOptions, observer: JournalObserver) -> SessionPool:
    concurrency = request.concurrency
    batch = concurrency * PIPELINE_DEPTH
    config = PoolConfig(
        concurrency=concurrency,
        max_messages=request.max_per_connection,
        max_age=request.max_age,
        retry=Backoff(max_attempts=request.retries + 1, base=request.retry_base),
        # Rows waiting for a retry stay in_flight in the journal: bound them like a batch.
        max_waiting=max(batch, 8),
    )
    domains = None
    if request.domain_cap is not None or request.domain_caps:
        # Jobs held while their domain is full are claimed rows that are not on the wire:
        # bounded like a batch, so a crash leaves no more of them unknown.
        domains = DomainCaps(
            caps=dict(request.domain_caps), default=request.domain_cap, max_held=max(batch, 8)
        )
    return SessionPool(
        options,
        config,
        observer=observer,
        breaker=CircuitBreaker(BreakerLimits(), concurrency=concurrency),
        aimd=Aimd(concurrency),
        limiter=TokenBucket(request.rate, burst=float(concurrency)) if request.rate else None,
        domains=domains,
    )


async def send_rows(
    request: BulkRequest,
    options: SessionOptions,
    template: MessageTemplate,
    journal: Journal,
    source: CsvSource,
    *,
    total: int,
    sendable: frozenset[RowState],
    progress: ProgressCallback | None,
    stop: StopSwitch,
    hooks: RunHooks | None = None,
    cache: RenderCache | None = None,
) -> SendOutcome:
    """Send every row of `source` in a `sendable` state (at most request.limit); see the
    module doc. Never raises for a row; returns what stopped the run early, if anything."""
    hooks = hooks or RunHooks()
    settings = options.settings
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mailctl-journal")
    worker = Worker(executor, cheap=lambda: journal.commit_cost() < INLINE_COMMIT)
    observer = JournalObserver(journal, hooks, (settings.host, settings.port), worker)
    pool = _pool(request, options, observer)
    observer.pool = pool
    batch = request.concurrency * PIPELINE_DEPTH
    records = journal.records(sendable, this_run=True)
    feed = RowFeed(
        iter(source), records, template, journal,
        batch=batch, limit=request.limit, resend_unknown=request.resend_unknown, cache=cache,
        worker=worker,
    )  # fmt: skip
    feed.on_invalid = observer.invalid
    feed.hand_over, feed.committed = observer.hand_over, observer.committed
    started = time.perf_counter()
    run = asyncio.create_task(pool.run(feed))

    def report(finished: bool = False) -> None:
        hooks.tick(pool, request.rate)
        if progress is not None:
            now = _progress(total, observer, pool, time.perf_counter() - started, stop)
            now.finished = finished
            progress(now)

    try:
        await _supervise(
            run, pool, observer, stop, settle_timeout=request.settle_timeout, report=report
        )
    finally:
        if not run.done():  # cancelled from outside: cut the pool too
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
        try:
            left = feed.stop()  # waits for a batch being claimed: its rows go back too
            feed.close()
            observer.flush()
        finally:
            executor.shutdown(wait=True)
            worker.executor = None  # from here on the journal is used from this thread
        observer.collect(wait=True)
        _settle_the_rest(pool, left, observer)
    if not run.cancelled():
        crash = run.exception()
        if crash is not None:
            raise crash  # a bug in a worker: not a row's fault
    report(finished=True)
    outcome = _outcome(pool, observer, stop, time.perf_counter() - started)
    hooks.stopped(pool.breaker.tripped, observer.quota)
    return outcome


async def _supervise(
    run: asyncio.Task[None],
    pool: SessionPool,
    observer: JournalObserver,
    stop: StopSwitch,
    *,
    settle_timeout: float,
    report: Callable[[], None],
) -> None:
    """Flush the journal and report progress every FLUSH_INTERVAL until the pool is done;
    on a stop, take no new row and give in-flight transactions `settle_timeout` (a second
    stop: none) before cutting them."""
    stop_seen: float | None = None
    while not run.done():
        await asyncio.wait({run}, timeout=FLUSH_INTERVAL)
        observer.flush()
        now = time.perf_counter()
        if stop.stopping and stop_seen is None:
            stop_seen = now
            pool.stop()
        cut = stop.forced or (stop_seen is not None and now - stop_seen > settle_timeout)
        if cut and not run.done():
            run.cancel()  # in-flight transactions: recorded unknown (_settle_the_rest)
            with contextlib.suppress(asyncio.CancelledError):
                await run
        report()


def _settle_the_rest(pool: SessionPool, left: list[Job], observer: JournalObserver) -> None:
    """What the pool did not finish: cut mid-transaction (maybe delivered: unknown), or
    never written (a retry waiting: deferred; taken or claimed but not sent: pending)."""
    for job in pool.in_doubt():
        observer.finish(job, RowState.UNKNOWN, None, "cut while in flight when the run stopped")
    for job in pool.leftover():
        state = RowState.DEFERRED if job.attempts else RowState.PENDING
        last = observer.waiting.get(job.tag)  # its last failure, if it had one
        observer.finish(job, state, last, "not sent: the run stopped")
    for job in left:
        observer.finish(job, RowState.PENDING, None)
    observer.flush()


def _outcome(
    pool: SessionPool, observer: JournalObserver, stop: StopSwitch, elapsed: float
) -> SendOutcome:
    outcome = SendOutcome(
        counts=observer.durable,
        not_tried=observer.durable[RowState.PENDING],
        elapsed=elapsed,
        connections_opened=pool.counts.opened,
        connections_attempted=pool.counts.attempted,
        interrupted=stop.stopping,
        stopped_by=pool.breaker.tripped,
        invalid=observer.invalid_count,
        invalid_rows=observer.invalid_rows,
    )
    reply = observer.quota
    if reply is not None and outcome.stopped_by is None:
        outcome.quota = True
        outcome.stopped_by = SmtpTransientError(
            f"the server's sending quota is reached: {reply.code} {reply.message}",
            hint="the rest stays in the journal: run the same command again later",
            details={"reply": to_data(reply)},
        )
    return outcome
