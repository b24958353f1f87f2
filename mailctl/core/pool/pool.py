"""The session pool: authenticated SMTP sessions that send jobs, shared by bench and bulk-send.

Each of `concurrency` workers holds at most one session, opened with `SmtpSession.open`
(TLS or STARTTLS, one AUTH attempt) from the same options, and sends jobs on it: RFC 2920
pipelined when the server offers PIPELINING (protocols.pipeline; the next MAIL rides on
the final dot of the previous message), else one command at a time (`SmtpSession.transact`).
A session is reused up to `max_messages` transactions and `max_age` seconds, and replaced
when the server closes it (421, a dead socket). Every connection attempt is counted
(`counts`), refused ones included, and a failed one is charged to one job (so a server
that refuses every connection ends the run instead of looping).

What happens to a job that was not sent is decided by the outcome alone: the retry policy
(retry.py: permanent never, unknown never, transient with backoff, a reused connection
found gone resent at once for free), the circuit breaker (breaker.py: session-fatal
replies stop every worker at once) and, when given, the AIMD controller (aimd.py: a
throttling reply halves the sessions, each message sent grows them back) and the rate
limiter awaited before each transaction (ratelimit.py). Everything is bounded: the
workers (`concurrency`), the jobs waiting for a retry (`max_waiting`; no new job is taken
beyond it), the attempts per job (the policy), every wait (the session timeouts, the
retry delays), and a run ends when the feed is dry and nothing waits for a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from mailctl.core.pool.aimd import Aimd
from mailctl.core.pool.breaker import CircuitBreaker
from mailctl.core.pool.classify import is_throttling
from mailctl.core.pool.domains import CappedFeed, DomainCaps
from mailctl.core.pool.jobs import Job, Payload, RetryQueue
from mailctl.core.pool.ratelimit import RateLimiter, Scalable
from mailctl.core.pool.retry import NoRetry, RetryPolicy
from mailctl.errors import MailctlError, ProtocolError, UsageError
from mailctl.models import MAX_CONCURRENCY
from mailctl.protocols.pipeline import PreparedTransaction, pipelined
from mailctl.protocols.smtp import (
    SessionInfo,
    SessionOptions,
    SmtpSession,
    TransactionOutcome,
    TransactionStatus,
)

__all__ = [
    "MAX_CONCURRENCY",
    "ConnectionCounts",
    "Feed",
    "Pipelining",
    "PoolConfig",
    "PoolObserver",
    "SessionPool",
]

_SENT = TransactionStatus.SENT
# The first pause after a failed connection attempt; it doubles up to PoolConfig.reconnect_delay.
_FIRST_RECONNECT_DELAY = 0.01
# Waits for a retry or for room under the concurrency limit look again at least this often.
_RECHECK = 1.0


def _no_job() -> Job | None:
    return None


class Pipelining(StrEnum):
    AUTO = "auto"  # pipelined when the server offers PIPELINING, else one command at a time
    REQUIRE = "require"  # stop the run (ProtocolError) if it does not (bench --mode pipeline)
    OFF = "off"  # one command at a time through aiosmtplib (bench --mode new/reuse)


@dataclass(frozen=True)
class PoolConfig:
    """How the pool sends; the hooks (observer, breaker, AIMD, limiter) are given to the pool."""

    concurrency: int = 4  # sessions at most (the AIMD controller may run fewer)
    max_messages: int | None = None  # transactions per session; 1: a new session per message
    max_age: float | None = None  # seconds a session is used for new transactions
    pipelining: Pipelining = Pipelining.AUTO
    allow_partial: bool = False  # deliver to the accepted recipients when others are refused
    retry: RetryPolicy = field(default_factory=NoRetry)
    max_waiting: int = 1024  # jobs waiting for a retry; beyond, no new job is taken
    reconnect_delay: float = 0.5  # longest pause after failed connection attempts in a row

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise UsageError(f"concurrency {self.concurrency}: must be 1-{MAX_CONCURRENCY}")
        if self.max_messages is not None and self.max_messages < 1:
            raise UsageError(f"messages per connection: at least 1, not {self.max_messages}")
        if self.max_age is not None and not self.max_age > 0:
            raise UsageError(f"connection age: must be positive, not {self.max_age:g}")
        if self.max_waiting < 1 or self.reconnect_delay < 0:
            raise UsageError("max_waiting must be at least 1 and reconnect_delay not negative")


@dataclass
class ConnectionCounts:
    """Every connection attempt: opened (greeting, EHLO, TLS and AUTH done) or failed."""

    attempted: int = 0
    opened: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # failures by reply or error code
    open_now: int = 0  # sessions open at this moment (a gauge for progress and metrics)


class Feed(Protocol):
    """Where new jobs come from (a bench schedule, CSV rows)."""

    def take(self) -> Job | None:
        """The next job, or None once there are no more."""
        ...

    def exhausted(self) -> bool:
        """True once `take` will only return None."""
        ...


class PoolObserver(Protocol):
    """What the pool reports while it runs (bench's recorder, bulk-send's journal)."""

    def outcome(self, job: Job, outcome: TransactionOutcome, final: bool) -> None:
        """A transaction of `job` ended; `final`: no retry follows (else it waits for one)."""
        ...

    def session_opened(self, info: SessionInfo) -> None: ...

    def session_closed(self, seconds: float, last: Job | None) -> None:
        """A session was closed (QUIT took `seconds`); `last`: its last job, if any."""
        ...


@dataclass(slots=True)
class _Slot:
    """One worker's session and what it carried."""

    session: SmtpSession | None = None
    opened_at: float = 0.0
    taken: int = 0  # transactions begun on this session
    done: int = 0  # transactions ended on this session
    last: Job | None = None
    failures: int = 0  # failed connection attempts in a row


class SessionPool:
    """Run jobs from a feed through up to `config.concurrency` sessions; see the module doc.

    `run(feed)` returns when the feed is dry and no job waits for a retry, or when the
    breaker tripped (`breaker.tripped`) or `stop()` was called; jobs not finished then are
    in `leftover()`. It raises what a worker raised that is not a MailctlError (a bug).
    """

    def __init__(
        self,
        options: SessionOptions,
        config: PoolConfig,
        *,
        observer: PoolObserver,
        breaker: CircuitBreaker | None = None,
        aimd: Aimd | None = None,
        limiter: RateLimiter | None = None,
        domains: DomainCaps | None = None,
    ) -> None:
        self._options = options
        self.config = config
        self._observer = observer
        self._outcome = observer.outcome
        self.breaker = breaker or CircuitBreaker(concurrency=config.concurrency)
        self.aimd = aimd
        self._limiter = limiter
        self._domain_caps = domains
        self._capped: CappedFeed | None = None  # the feed, wrapped when domains are capped
        self.counts = ConnectionCounts()
        self._retry = config.retry
        self._retries = RetryQueue(config.max_waiting)
        self._feed: Feed | None = None
        self._feed_take: Callable[[], Job | None] = _no_job
        self._feed_done = False
        self._running = True
        self._active = aimd.current if aimd is not None else config.concurrency
        self._working = 0  # workers not parked under the concurrency limit
        self._changed: asyncio.Event | None = None
        self._first_open: asyncio.Event | None = None  # set when the first attempt ended
        self._probing = False
        self._abandoned: list[Job] = []
        self._in_doubt: list[Job] = []
        self.crash: BaseException | None = None

    # -- control --------------------------------------------------------------------------

    @property
    def concurrency(self) -> int:
        """Sessions allowed now (the AIMD limit, or the configured concurrency)."""
        return self._active

    @property
    def running(self) -> bool:
        return self._running and self.breaker.tripped is None

    def stop(self) -> None:
        """Take no new job; transactions in flight finish (e.g. on SIGTERM)."""
        self._running = False
        self._wake()

    def leftover(self) -> list[Job]:
        """Jobs not finished when the run stopped: waiting for a retry, or taken and never sent."""
        held = self._capped.held() if self._capped is not None else []
        return [*self._abandoned, *self._retries.drain(), *held]

    def in_doubt(self) -> list[Job]:
        """Jobs in a transaction when the run was cancelled: written or not, delivered or
        not, nobody knows (a journal records them as unknown, RFC 1047)."""
        return list(self._in_doubt)

    async def run(self, feed: Feed) -> None:
        """Send until done (see the class doc). Cancelled: stop, close every session, re-raise."""
        if self._domain_caps is not None:
            feed = self._capped = CappedFeed(feed, self._domain_caps)
        self._feed = feed
        self._feed_take = feed.take
        self._changed = asyncio.Event()
        self._first_open = asyncio.Event()
        self._working = self.config.concurrency
        tasks = [asyncio.create_task(self._guarded()) for _ in range(self.config.concurrency)]
        try:
            await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            self._running = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        if self.crash is not None:
            raise self.crash

    def _tripped(self) -> bool:
        if self.breaker.tripped is not None:
            self._running = False
        return not self._running

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _wait_change(self, timeout: float) -> None:
        changed = self._changed
        assert changed is not None
        changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)

    # -- workers --------------------------------------------------------------------------

    async def _guarded(self) -> None:
        """Run one worker; an error escaping it stops the others instead of going unread."""
        slot = _Slot()
        try:
            await self._worker(slot)
        except MailctlError as err:  # e.g. a message that cannot be sent at all (bench)
            self.breaker.trip(err)
            self._running = False
        except Exception as err:  # a bug: stop, and report it once
            if self.crash is None:
                self.crash = err
            self._running = False
        finally:
            self._working -= 1
            self._wake()  # a parked worker may take this one's place
            await self._retire(slot)

    async def _worker(self, slot: _Slot) -> None:
        while not self._tripped():
            if not await self._park(slot):
                return
            ready = await self._session(slot)
            if ready is None:
                return
            session, job = ready
            if job is None:
                job = await self._next_job()
                if job is None:
                    return
            if self.config.pipelining is not Pipelining.OFF and session.supports("PIPELINING"):
                await self._pipelined(slot, session, job)
            else:
                await self._lockstep(slot, session, job)

    async def _session(self, slot: _Slot) -> tuple[SmtpSession, Job | None] | None:
        """The slot's session, (re)opened when needed; None when the worker should stop.

        With a session per message, the message is taken first (as a script does) and
        returned with it; a failed connection attempt is charged to a message and followed
        by a pause that grows while attempts fail in a row.
        """
        session = slot.session
        if session is not None and self._reusable(slot, session):
            return session, None
        await self._retire(slot)
        while not self._tripped():
            job = None
            if self.config.max_messages == 1:
                job = await self._next_job()
                if job is None:
                    break
            elif self._drained():
                break
            try:
                session = await self._open(slot, job)
            except asyncio.CancelledError:
                if job is not None:
                    self._abandon(job)  # taken, never written
                raise
            if session is not None:
                if self._pipelines(session):
                    return session, job
                if job is not None:
                    self._abandon(job)
                break
            if not await self._pause(slot):
                break
        return None

    async def _park(self, slot: _Slot) -> bool:
        """Leave the working set while it is larger than the limit (AIMD shrank it), closing
        this worker's session; False when everything is done or the run stopped."""
        if self._working <= self._active:
            return True
        self._working -= 1
        try:
            await self._retire(slot)
            while self._working >= self._active and not self._tripped():
                if self._drained():
                    return False
                await self._wait_change(_RECHECK)
            return not self._tripped()
        finally:
            self._working += 1

    def _reusable(self, slot: _Slot, session: SmtpSession) -> bool:
        if not session.connected:
            return False
        cap = self.config.max_messages
        if cap is not None and slot.taken >= cap:
            return False
        age = self.config.max_age
        return age is None or time.perf_counter() - slot.opened_at < age

    def _pipelines(self, session: SmtpSession) -> bool:
        """False (the breaker tripped) when pipelining is required and not offered."""
        if self.config.pipelining is Pipelining.REQUIRE and not session.supports("PIPELINING"):
            self.breaker.trip(
                ProtocolError(
                    f"{session.where} does not offer PIPELINING (RFC 2920)",
                    hint="use one message at a time (bench --mode reuse) on this server",
                )
            )
            self._running = False
            return False
        return True

    # -- sessions -------------------------------------------------------------------------

    async def _open(self, slot: _Slot, job: Job | None) -> SmtpSession | None:
        """Open one session, counting the attempt; a failure is charged to `job` (or to the
        next job that is ready, so a run against a server that refuses us ends).

        The run's first attempt goes alone: the other workers wait for its end, so a
        session-fatal answer (535 to AUTH, a TLS failure) is met once, not by every worker
        at the same moment (FACTS.md: retrying AUTH locks accounts).
        """
        first = self._first_open
        assert first is not None
        if not first.is_set():
            if self._probing:
                await first.wait()  # bounded by the first attempt's own timeouts
                if self._tripped():
                    if job is not None:
                        self._abandon(job)
                    return None
            else:
                self._probing = True
                try:
                    return await self._attempt(slot, job)
                finally:
                    first.set()
        return await self._attempt(slot, job)

    async def _attempt(self, slot: _Slot, job: Job | None) -> SmtpSession | None:
        counts = self.counts
        counts.attempted += 1
        started = time.perf_counter()
        try:
            session = await SmtpSession.open(self._options)
        except MailctlError as err:
            outcome = TransactionOutcome.from_error(
                err, started=started, finished=time.perf_counter()
            )
            counts.failed += 1
            counts.reasons[outcome.reason or err.code] += 1
            self.breaker.open_failed(err)
            if self.aimd is not None and is_throttling(outcome.failure_reply):
                self._throttled(started)
            if job is None:
                job = self._take_now(charge=True)
            if job is not None:
                self._settle(job, outcome)
            return None
        counts.opened += 1
        counts.open_now += 1
        self.breaker.opened()
        slot.session, slot.opened_at = session, time.perf_counter()
        slot.taken = slot.done = slot.failures = 0
        self._observer.session_opened(session.info)
        return session

    async def _pause(self, slot: _Slot) -> bool:
        """Back off after a failed connection attempt; False when there is nothing to do."""
        slot.failures += 1
        if self._tripped() or self._drained():
            return False
        delay = _FIRST_RECONNECT_DELAY * 2 ** min(slot.failures, 16)
        await asyncio.sleep(min(delay, self.config.reconnect_delay))
        return True

    async def _retire(self, slot: _Slot) -> None:
        """QUIT and close the slot's session, if any (never raises)."""
        session, slot.session = slot.session, None
        if session is None:
            return
        self.counts.open_now -= 1
        started = time.perf_counter()
        await session.close()
        self._observer.session_closed(time.perf_counter() - started, slot.last)

    # -- jobs -----------------------------------------------------------------------------

    def _drained(self) -> bool:
        """True once no job will come: the feed is dry and none waits for a retry."""
        if self._retries.heap:
            return False
        if not self._feed_done:
            assert self._feed is not None
            if not self._feed.exhausted():
                return False
            self._feed_done = True
        return True

    def _take_now(self, *, charge: bool = False) -> Job | None:
        """A job to send now without waiting: a due retry first, else the feed's next (unless
        too many jobs wait for a retry); None if there is none right now. `charge`: the job
        is to be charged with a failed connection attempt, also after the breaker tripped."""
        if not self._running and not charge:
            return None
        retries = self._retries
        if retries.heap:
            job = retries.pop_due(time.monotonic())
            if job is not None:
                return job
            if retries.full:
                return None
        if self._feed_done:
            return None
        job = self._feed_take()
        if job is None and (self._capped is None or self._capped.exhausted()):
            self._feed_done = True  # (a capped feed may have nothing *now*, more later)
        return job

    async def _next_job(self) -> Job | None:
        """The next job, waiting for a retry to come due, then paced by the rate limiter;
        None once everything is done or the run stopped."""
        while True:
            job = self._take_now()
            if job is not None:
                limiter = self._limiter
                if limiter is not None:
                    try:
                        await limiter(job)
                    except BaseException:
                        self._put_back(job)
                        raise
                    if self._tripped():
                        self._abandon(job)
                        return None
                return job
            if self._tripped() or self._drained():
                return None
            due = self._retries.next_due()
            wait = _RECHECK if due is None else min(max(due - time.monotonic(), 0.0), _RECHECK)
            if self._capped is None:
                await asyncio.sleep(wait)
            else:  # a job of a full domain may go as soon as one of its own settles
                await self._wait_change(wait)

    def _put_back(self, job: Job) -> None:
        """A job taken but never sent (cancelled, or its session ended first): first in line."""
        self._retries.push(job, 0.0)

    def _abandon(self, job: Job) -> None:
        """A job taken but never sent because the run stopped (see `leftover`)."""
        self._abandoned.append(job)

    # -- transactions ---------------------------------------------------------------------

    async def _lockstep(self, slot: _Slot, session: SmtpSession, job: Job) -> None:
        """One transaction through aiosmtplib, one command at a time."""
        payload = job.payload
        reused = slot.done > 0
        slot.taken += 1
        slot.last = job
        try:
            outcome = await session.transact(
                payload.envelope,
                payload.data,
                smtputf8=payload.smtputf8,
                eight_bit=payload.eight_bit,
                allow_partial=self.config.allow_partial,
                tag=job.tag,
            )
        except MailctlError as err:  # the message cannot be sent (to this server)
            self._bad_message(job, err)
            return
        except asyncio.CancelledError:
            self._in_doubt.append(job)  # maybe written, maybe not: see in_doubt()
            raise
        finally:
            slot.done += 1
        self._settle(job, outcome, reused)

    def _bad_message(self, job: Job, error: MailctlError) -> None:
        self.breaker.bad_message(error)
        now = time.perf_counter()
        self._settle(
            job, TransactionOutcome.from_error(error, tag=job.tag, started=now, finished=now)
        )
        self._tripped()

    async def _pipelined(self, slot: _Slot, session: SmtpSession, first: Job) -> None:
        """Transactions back to back on one borrowed connection (RFC 2920), the next one's
        commands written with the final dot of the one before when it is ready."""
        in_flight: deque[Job] = deque()
        source = self._items(slot, session, first, in_flight)
        taken = slot.taken
        finished = False
        try:
            async with pipelined(session, allow_partial=self.config.allow_partial) as pipe:
                settle = self._settle
                popleft = in_flight.popleft
                reused = slot.done > 0
                # The hot path: a message sent needs no decision, only its report (and,
                # without AIMD, not even a call to _settle).
                report = self._outcome
                breaker = self.breaker
                plain = self.aimd is None and self._capped is None
                async for outcome in pipe.send_all(source):
                    job = popleft()
                    if plain and outcome.status is _SENT:
                        job.attempts += 1
                        if breaker.timeouts:
                            breaker.timeouts = 0
                        report(job, outcome, True)
                    else:
                        settle(job, outcome, reused)
                    reused = True
            finished = True
        except MailctlError as err:  # the session closed before anything was written
            if slot.taken == taken:
                in_flight.append(first)
                slot.taken += 1
            outcome = TransactionOutcome.from_error(err, started=time.perf_counter())
            while in_flight:
                self._settle(in_flight.popleft(), outcome, slot.done > 0)
            finished = True
        finally:
            if isinstance(source, AsyncGenerator):
                await source.aclose()
            if finished:
                slot.taken -= len(in_flight)
                while in_flight:  # taken for the next write, never written: not tried
                    self._put_back(in_flight.popleft())
            else:  # cancelled or a bug: these may have been written (see in_doubt)
                self._in_doubt.extend(in_flight)
            slot.done = slot.taken

    def _items(
        self, slot: _Slot, session: SmtpSession, first: Job, in_flight: deque[Job]
    ) -> Iterator[PreparedTransaction] | AsyncGenerator[PreparedTransaction, None]:
        """The transactions for one pipelined run, `first` first; each job goes into
        `in_flight` as it is handed out. Without a rate limiter the next job is only taken
        when one is ready now (a plain generator: the hot path of bench); with one, an
        async generator waits for it (and for retries coming due)."""
        extensions = session.info.extensions
        cap = self.config.max_messages
        age = self.config.max_age
        append = in_flight.append

        def prepared(job: Job) -> PreparedTransaction | None:
            try:
                found = job.payload.transaction(extensions)
            except MailctlError as err:
                self._bad_message(job, err)
                return None
            append(job)
            slot.taken += 1
            slot.last = job
            return found

        def more() -> bool:
            """Room for another transaction on this session (the hot path: a few loads)."""
            return (
                self._running
                and self._working <= self._active
                and (cap is None or slot.taken < cap)
                and (age is None or time.perf_counter() - slot.opened_at < age)
            )

        def ready_now() -> Iterator[PreparedTransaction]:
            # The hot path of bench: `prepared` and `more` inlined for a payload shared by
            # every job (its transaction is the same object each time).
            take = self._take_now
            last: Payload | None = None
            item: PreparedTransaction | None = None
            job: Job | None = first
            while job is not None:
                payload = job.payload
                if payload is not last or item is None:
                    item = prepared(job)
                    last = payload
                else:
                    append(job)
                    slot.taken += 1
                    slot.last = job
                if item is not None:
                    yield item
                if not (
                    self._running
                    and self._working <= self._active
                    and (cap is None or slot.taken < cap)
                    and (age is None or time.perf_counter() - slot.opened_at < age)
                ):
                    return
                job = take()

        async def paced() -> AsyncGenerator[PreparedTransaction, None]:
            job: Job | None = first
            while job is not None:
                item = prepared(job)
                if item is not None:
                    yield item
                job = await self._next_job() if more() else None

        return ready_now() if self._limiter is None else paced()

    def _settle(self, job: Job, outcome: TransactionOutcome, reused: bool = False) -> None:
        """Report a transaction's outcome and decide the job's fate (the hot path for SENT)."""
        job.attempts += 1
        if outcome.status is _SENT:
            breaker = self.breaker
            if breaker.timeouts:
                breaker.timeouts = 0
            if self.aimd is not None:
                self._grew()
            if self._capped is not None:
                self._released(job)
            self._outcome(job, outcome, True)
            return
        self.breaker.failed(outcome)
        stale = reused and outcome.closed_before_mail
        if self.aimd is not None and not stale and is_throttling(outcome.failure_reply):
            self._throttled(outcome.started)
        decision = None
        if not self._tripped():
            decision = self._retry.decide(
                outcome, attempts=job.attempts, reconnects=job.reconnects, reused=reused
            )
        if decision is None:
            if self._capped is not None:
                self._released(job)
            self._outcome(job, outcome, True)
            return
        if not decision.spend:
            job.attempts -= 1
            job.reconnects += 1
        self._outcome(job, outcome, False)
        self._retries.push(job, time.monotonic() + decision.delay)

    def _released(self, job: Job) -> None:
        """`job` is done: its domains have room again; a worker waiting for one may go."""
        capped = self._capped
        assert capped is not None
        capped.release(job)
        self._wake()

    # -- AIMD -----------------------------------------------------------------------------

    def _grew(self) -> None:
        aimd = self.aimd
        assert aimd is not None
        before = aimd.limit
        aimd.succeeded()
        if aimd.limit != before:
            self._limits_changed()

    def _throttled(self, started: float) -> None:
        aimd = self.aimd
        assert aimd is not None
        if aimd.throttled(started, time.perf_counter()):
            self._limits_changed()

    def _limits_changed(self) -> None:
        aimd = self.aimd
        assert aimd is not None
        limiter = self._limiter
        if isinstance(limiter, Scalable):
            limiter.scale(aimd.fraction)
        current = aimd.current
        if current != self._active:
            self._active = current
            self._wake()
