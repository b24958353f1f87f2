"""The core session pool against real servers: mailctl's sink with faults, aiosmtpd, a
throttling server written here, and a real Postfix.

Each test runs a `SessionPool` on jobs with distinct Message-IDs and compares what the pool
reported (outcomes per job, connection counts) with what the server stored, logged or
counted: every message sent exactly once, none lost, every connection attempt seen on both
sides. Every server and loop here is bounded in time and count.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from list_feed import ListFeed
from servers.postfix import PostfixServer
from servers.sink_process import SinkProcess, sinks
from servers.smtp_server import SmtpServerFactory
from servers.threaded import ThreadedServer

from mailctl.core.pool import (
    Aimd,
    Backoff,
    BreakerLimits,
    CircuitBreaker,
    Job,
    NoRetry,
    Payload,
    Pipelining,
    PoolConfig,
    SessionPool,
    TokenBucket,
)
from mailctl.errors import AuthError, SmtpTransientError
from mailctl.models import Envelope, Security, ServerSettings, Timeouts
from mailctl.protocols.smtp import SessionInfo, SessionOptions, TransactionOutcome
from mailctl.protocols.smtp import TransactionStatus as S

FAST = Timeouts(connect=5.0, command=5.0, data=5.0)
QUICK_RETRIES = Backoff(max_attempts=10, base=0.01, cap=0.05, rng=random.Random(7))
RUN_TIMEOUT = 60.0  # seconds any pool run here may take at most


def message(n: int) -> bytes:
    return (
        f"From: <a@example.org>\r\nTo: <b@example.org>\r\nSubject: pool {n}\r\n"
        f"Message-ID: <{n}@pool.test>\r\n\r\nmessage {n}\r\n"
    ).encode()


def jobs(count: int, recipient: str = "b@example.org") -> list[Job]:
    return [
        Job(Payload(Envelope("a@example.org", (recipient,)), message(n)), tag=n)
        for n in range(count)
    ]


@dataclass
class Journal:
    """The pool's observer: every outcome per job, sessions, the concurrency over time."""

    outcomes: dict[object, list[tuple[TransactionOutcome, bool]]] = field(default_factory=dict)
    opened: int = 0
    closed: int = 0
    limits: list[int] = field(default_factory=list)
    pool: SessionPool | None = None

    def outcome(self, job: Job, outcome: TransactionOutcome, final: bool) -> None:
        self.outcomes.setdefault(job.tag, []).append((outcome, final))
        if self.pool is not None:
            self.limits.append(self.pool.concurrency)

    def session_opened(self, info: SessionInfo) -> None:
        self.opened += 1

    def session_closed(self, seconds: float, last: Job | None) -> None:
        self.closed += 1

    def final(self) -> dict[object, TransactionOutcome]:
        """The final outcome of each job that has one (at most one, and it is the last)."""
        found = {}
        for tag, seen in self.outcomes.items():
            finals = [o for o, final in seen if final]
            assert len(finals) <= 1, (tag, seen)
            if finals:
                assert seen[-1][1], (tag, seen)
                found[tag] = finals[0]
        return found

    def statuses(self) -> Counter[str]:
        return Counter(o.status.value for o in self.final().values())


def options(port: int, **overrides: Any) -> SessionOptions:
    settings = ServerSettings("127.0.0.1", port, Security.NONE, timeouts=FAST)
    return SessionOptions(settings=settings, **overrides)


async def run_pool(
    opts: SessionOptions, config: PoolConfig, items: list[Job], **hooks: Any
) -> tuple[SessionPool, Journal]:
    journal = Journal()
    pool = SessionPool(opts, config, observer=journal, **hooks)
    journal.pool = pool
    await asyncio.wait_for(pool.run(ListFeed(items)), RUN_TIMEOUT)
    return pool, journal


# -- mailctl's sink, faults from the command line ---------------------------------------------


class Sink(SinkProcess):
    """The pool tests name messages `N@pool.test`: Message-IDs without their brackets."""

    def stored(self) -> Counter[str]:
        return Counter({key.strip("<>"): count for key, count in super().stored().items()})


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Callable[..., Sink]]:
    yield from sinks(tmp_path, Sink)  # type: ignore[misc]


def sent_ids(journal: Journal) -> Counter[str]:
    return Counter(f"{tag}@pool.test" for tag, o in journal.final().items() if o.status is S.SENT)


@pytest.mark.parametrize(
    ("pipelining", "paced"),
    [(Pipelining.OFF, False), (Pipelining.AUTO, False), (Pipelining.AUTO, True)],
    ids=["lock-step", "pipelined", "pipelined-paced"],
)
async def test_421_on_a_reused_connection_reconnects_without_spending_a_retry(
    sink: Callable[..., Sink], pipelining: Pipelining, paced: bool
) -> None:
    server = sink("--421-after", "3")
    # One attempt per message: a reconnect that spent one would leave a message failed.
    config = PoolConfig(
        concurrency=1, pipelining=pipelining, retry=Backoff(max_attempts=1, base=0.01)
    )
    # Paced, the next message is fetched while the current one is on the wire: the one
    # fetched when the 421 comes was never written and goes back in line, not lost.
    hooks = {"limiter": TokenBucket(2000.0, burst=5)} if paced else {}
    pool, journal = await run_pool(options(server.port), config, items := jobs(10), **hooks)
    assert journal.statuses() == {"sent": 10}
    assert server.stored() == Counter(f"{n}@pool.test" for n in range(10))  # once each
    # The 4th, 7th and 10th MAIL got "421 4.7.0 too many messages on this connection".
    reconnected = [job.tag for job in items if job.reconnects]
    assert reconnected == [3, 6, 9]
    assert all(job.attempts == 1 for job in items)
    for tag in reconnected:
        (first, final), _ = journal.outcomes[tag]
        assert not final and (first.status, first.reason) == (S.TRANSIENT, "421")
        assert first.closed_before_mail
    stats = server.stop()
    assert pool.counts.attempted == pool.counts.opened == stats["connections"] == 4
    assert pool.counts.failed == 0


async def test_transient_refusals_are_retried_with_backoff(sink: Callable[..., Sink]) -> None:
    server = sink("--reject-rate", "0.5", "--reject-code", "451", "--seed", "5")
    config = PoolConfig(concurrency=2, pipelining=Pipelining.AUTO, retry=QUICK_RETRIES)
    _, journal = await run_pool(options(server.port), config, items := jobs(30))
    assert journal.statuses() == {"sent": 30}
    assert server.stored() == Counter(f"{n}@pool.test" for n in range(30))
    retried = [job for job in items if job.attempts > 1]
    assert retried, "the seed refuses about half the MAILs"
    for job in retried:
        seen = journal.outcomes[job.tag]
        assert len(seen) == job.attempts
        for (before, _), (after, _) in itertools.pairwise(seen):
            assert (before.status, before.reason) == (S.TRANSIENT, "451")
            # Backoff: at least half the first ceiling (0.01 s) between the attempts.
            assert after.started - before.finished >= 0.005
    assert server.stop()["rejected"] == sum(job.attempts - 1 for job in items)


async def test_permanent_refusals_are_never_retried(sink: Callable[..., Sink]) -> None:
    server = sink("--reject-rate", "0.3", "--reject-code", "550", "--reject-on", "rcpt",
                  "--seed", "2")  # fmt: skip
    config = PoolConfig(concurrency=2, pipelining=Pipelining.AUTO, retry=QUICK_RETRIES)
    _, journal = await run_pool(options(server.port), config, items := jobs(40))
    counts = journal.statuses()
    assert counts["refused"] > 0 and counts["sent"] > 0
    assert counts["sent"] + counts["refused"] == 40
    for job in items:
        assert len(journal.outcomes[job.tag]) == job.attempts == 1  # one try, final
    assert server.stored() == sent_ids(journal)


async def test_an_unknown_outcome_is_never_resent(sink: Callable[..., Sink]) -> None:
    server = sink("--disconnect-rate", "0.3", "--disconnect-on", "eod", "--seed", "4")
    config = PoolConfig(concurrency=2, pipelining=Pipelining.AUTO, retry=QUICK_RETRIES)
    pool, journal = await run_pool(options(server.port), config, jobs(40))
    final = journal.final()
    unknown = [tag for tag, o in final.items() if o.status is S.UNKNOWN]
    assert unknown, "the seed cuts about a third of the connections after the dot"
    for seen in journal.outcomes.values():
        # RFC 1047: an unknown outcome may have been delivered: it is never followed by
        # another try (a chained transaction that never went out is, for free).
        assert all(o.status is S.TRANSIENT for o, _ in seen[:-1]), seen
    # Chained transactions that never went out are retried; everything else was once.
    assert server.stored() == sent_ids(journal)
    assert sum(1 for o in final.values() if o.status is S.SENT) + len(unknown) == 40
    stats = server.stop()
    assert pool.counts.attempted == pool.counts.opened == stats["connections"]


async def test_a_paced_message_fetched_for_a_connection_that_died_is_not_lost(
    sink: Callable[..., Sink],
) -> None:
    """Paced, the next message is fetched while the current one waits for its reply; when
    the connection dies after the dot, that message was never written: it goes back in
    line (before the pool, bench's open loop lost it), and the unknown one is not resent."""
    server = sink("--disconnect-rate", "0.4", "--disconnect-on", "eod", "--seed", "3")
    config = PoolConfig(concurrency=1, pipelining=Pipelining.AUTO, retry=QUICK_RETRIES)
    journal = Journal()
    pool = SessionPool(options(server.port), config, observer=journal,
                       limiter=TokenBucket(300.0))  # fmt: skip
    feed = ListFeed(jobs(30))
    await asyncio.wait_for(pool.run(feed), RUN_TIMEOUT)
    assert_none_lost(pool, journal, feed, 30)
    statuses = journal.statuses()
    assert statuses["unknown"] > 0 and statuses["sent"] + statuses["unknown"] == 30
    assert server.stored() == sent_ids(journal)


async def test_a_cut_before_the_dot_is_retried_on_a_new_connection(
    sink: Callable[..., Sink],
) -> None:
    server = sink("--disconnect-rate", "0.3", "--disconnect-on", "rcpt", "--seed", "9")
    config = PoolConfig(concurrency=2, pipelining=Pipelining.OFF, retry=QUICK_RETRIES)
    pool, journal = await run_pool(options(server.port), config, items := jobs(30))
    assert journal.statuses() == {"sent": 30}
    assert server.stored() == Counter(f"{n}@pool.test" for n in range(30))
    cut = [job for job in items if job.attempts > 1]
    assert cut
    for job in cut:
        first, _ = journal.outcomes[job.tag][0]
        assert (first.status, first.reason) == (S.TRANSIENT, "connection_lost")
        assert not first.closed_before_mail  # MAIL was taken: a retry, not a reconnect
    stats = server.stop()
    assert pool.counts.attempted == pool.counts.opened == stats["connections"] > 2


async def test_connection_limit_throttles_and_every_attempt_is_counted(
    sink: Callable[..., Sink],
) -> None:
    # "421 4.4.5 too many connections" at the greeting beyond 2: AIMD lowers the sessions.
    server = sink("--max-connections", "2", "--latency", "5", "--latency-on", "eod")
    aimd = Aimd(6)
    config = PoolConfig(concurrency=6, pipelining=Pipelining.OFF, retry=QUICK_RETRIES)
    pool, journal = await run_pool(options(server.port), config, items := jobs(60), aimd=aimd)
    assert journal.statuses() == {"sent": 60}
    assert server.stored() == Counter(f"{n}@pool.test" for n in range(60))
    assert aimd.decreases >= 1 and min(journal.limits) <= 3
    counts = pool.counts
    assert counts.failed > 0
    assert counts.attempted == counts.opened + counts.failed
    assert counts.reasons == {"421": counts.failed}
    stats = server.stop()
    # The sink counts sessions it served as connections and the ones it refused as 421s.
    assert counts.opened == stats["connections"] == journal.opened
    assert counts.failed == stats["error_replies"]["421"]
    # Each refused attempt was charged to a message, then sent on a retry (when a message
    # was ready to be charged: an attempt at the very end may find none).
    assert counts.failed - 6 <= sum(job.attempts - 1 for job in items) <= counts.failed


async def test_rate_limiter_paces_every_transaction(sink: Callable[..., Sink]) -> None:
    server = sink()
    bucket = TokenBucket(100.0, burst=2)
    config = PoolConfig(concurrency=3, pipelining=Pipelining.AUTO)
    started = time.monotonic()
    _, journal = await run_pool(options(server.port), config, jobs(30), limiter=bucket)
    elapsed = time.monotonic() - started
    assert journal.statuses() == {"sent": 30}
    starts = sorted(o.started for o in journal.final().values())
    assert starts[-1] - starts[0] >= (30 - 2) / 100.0 * 0.95
    assert elapsed < 10
    assert server.stored() == Counter(f"{n}@pool.test" for n in range(30))


async def test_sessions_are_replaced_by_count_and_age(sink: Callable[..., Sink]) -> None:
    server = sink("--latency", "20", "--latency-on", "eod")
    config = PoolConfig(concurrency=1, max_messages=4, pipelining=Pipelining.AUTO)
    pool, journal = await run_pool(options(server.port), config, jobs(10))
    assert journal.statuses() == {"sent": 10}
    assert pool.counts.opened == 3 == journal.closed  # 4 + 4 + 2, each closed with QUIT
    assert pool.counts.open_now == 0
    aged = PoolConfig(concurrency=1, max_age=0.05, pipelining=Pipelining.OFF)
    pool, journal = await run_pool(options(server.port), aged, jobs(10))
    assert journal.statuses() == {"sent": 10}
    assert 2 <= pool.counts.opened <= 10  # 20 ms a message: a session lasts 2-3 of them
    server.stop()


async def test_stop_leaves_no_job_behind(sink: Callable[..., Sink]) -> None:
    server = sink("--reject-rate", "1", "--reject-code", "451")
    config = PoolConfig(concurrency=2, pipelining=Pipelining.AUTO, retry=QUICK_RETRIES)
    journal = Journal()
    pool = SessionPool(options(server.port), config, observer=journal)
    items = jobs(20)
    feed = ListFeed(items)

    async def stop_soon() -> None:
        await asyncio.sleep(0.3)
        pool.stop()

    stopper = asyncio.create_task(stop_soon())
    await asyncio.wait_for(pool.run(feed), RUN_TIMEOUT)
    await stopper
    assert_none_lost(pool, journal, feed, 20)
    assert any(not final for seen in journal.outcomes.values() for _, final in seen)
    assert server.stored() == Counter()


def assert_none_lost(pool: SessionPool, journal: Journal, feed: ListFeed, total: int) -> None:
    """Every job ended (one final outcome), waits for a retry (leftover) or was never taken."""
    finals = set(journal.final())
    left = {job.tag for job in pool.leftover()}
    untaken = {job.tag for job in iter(feed.take, None)}
    assert left.isdisjoint(finals) and untaken.isdisjoint(finals | left)
    assert finals | left | untaken == set(range(total))
    assert pool.in_doubt() == []


# -- a throttling server: 454 4.7.0 while too many sessions are open --------------------------


class Throttling(ThreadedServer):
    """Lock-step SMTP on 127.0.0.1 in a thread; during its first `phase` accepted messages it
    answers MAIL with 454 4.7.0 while more than `limit` sessions are open."""

    def __init__(self, *, limit: int, phase: int, lifetime: float = 60.0) -> None:
        self.limit = limit
        self.phase = phase
        self.active = 0
        self.connections = 0
        self.throttled = 0
        self.stored: Counter[str] = Counter()
        self.peak_after_throttle = 0
        super().__init__(self._session, lifetime)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.active += 1
        try:
            writer.write(b"220 throttle.test ESMTP\r\n")
            body: list[bytes] | None = None
            while line := await asyncio.wait_for(reader.readline(), 10):
                if body is not None:
                    if line == b".\r\n":
                        found = re.search(rb"Message-ID: <([^>]+)>", b"".join(body))
                        self.stored[found.group(1).decode() if found else "?"] += 1
                        writer.write(b"250 2.0.0 Ok: queued\r\n")
                        body = None
                    else:
                        body.append(line)
                    continue
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(b"250-throttle.test\r\n250 8BITMIME\r\n")
                elif verb == b"MAIL":
                    if sum(self.stored.values()) < self.phase and self.active > self.limit:
                        self.throttled += 1
                        writer.write(b"454 4.7.0 Throttling: too many sessions, slow down\r\n")
                    else:
                        writer.write(b"250 2.1.0 Ok\r\n")
                elif verb == b"DATA":
                    body = []
                    writer.write(b"354 go ahead\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    break
                else:
                    writer.write(b"250 2.0.0 Ok\r\n")
                await writer.drain()
        finally:
            self.active -= 1
            writer.close()


@pytest.fixture
def throttling() -> Iterator[Callable[..., Throttling]]:
    started: list[Throttling] = []

    def start(**kwargs: int) -> Throttling:
        server = Throttling(**kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


async def test_aimd_shrinks_on_454_throttling_and_grows_back(
    throttling: Callable[..., Throttling],
) -> None:
    server = throttling(limit=2, phase=40)
    aimd = Aimd(8)
    config = PoolConfig(concurrency=8, pipelining=Pipelining.AUTO, retry=QUICK_RETRIES)
    pool, journal = await run_pool(options(server.port), config, jobs(150), aimd=aimd)
    assert journal.statuses() == {"sent": 150}
    assert server.stored == Counter(f"{n}@pool.test" for n in range(150))  # once each
    assert server.throttled > 0 and aimd.decreases >= 1
    # Down to the server's limit while it throttled, back to 8 once it stopped.
    assert min(journal.limits) <= 2
    assert journal.limits[-1] == pool.concurrency == 8
    # Workers above the limit closed their sessions: more sessions than workers overall.
    assert pool.counts.opened == server.connections > 8
    assert pool.counts.failed == 0


# -- authentication failures trip the breaker once ------------------------------------------


@pytest.mark.parametrize("pipelining", [Pipelining.AUTO, Pipelining.OFF])
async def test_a_535_trips_the_breaker_after_one_auth_attempt(
    smtp_server_factory: SmtpServerFactory, pipelining: Pipelining
) -> None:
    server = smtp_server_factory(security=Security.STARTTLS, auth=True)
    opts = SessionOptions(settings=server.settings(), secret=lambda: "not the password")
    config = PoolConfig(concurrency=5, pipelining=pipelining, retry=QUICK_RETRIES)
    pool, journal = await run_pool(opts, config, items := jobs(20))
    assert isinstance(pool.breaker.tripped, AuthError)
    assert "535" in pool.breaker.tripped.message
    # One AUTH at the server, not one per worker or per retry.
    assert [a.success for a in server.auth_attempts] == [False]
    assert pool.counts.attempted == 1 and pool.counts.opened == 0
    assert server.messages == []
    # The failed attempt was charged to one message; nothing else was taken.
    assert [o.status for seen in journal.outcomes.values() for o, _ in seen] == [S.TRANSIENT]
    assert sum(job.attempts for job in items) == 1
    assert pool.leftover() == []


# -- a real Postfix ---------------------------------------------------------------------------


async def test_postfix_refusing_auth_is_met_once(postfix: PostfixServer) -> None:
    settings = ServerSettings(
        postfix.host, postfix.submission_port, Security.STARTTLS, username=postfix.user,
        ca_file=postfix.ca_pem, timeouts=Timeouts(connect=10.0, command=20.0, data=20.0),
    )  # fmt: skip
    mark = postfix.quiet_mark()
    opts = SessionOptions(settings=settings, secret=lambda: "wrong-" + postfix.password[:3])
    config = PoolConfig(concurrency=4, pipelining=Pipelining.AUTO, retry=QUICK_RETRIES)
    pool, _ = await run_pool(opts, config, jobs(12))
    assert isinstance(pool.breaker.tripped, AuthError)
    assert pool.counts.attempted == 1
    postfix.wait_log(r"SASL \w+ authentication failed", since=mark)
    time.sleep(0.5)  # any other attempt would have logged by now
    log = postfix.log_since(mark)
    assert len(re.findall(r"SASL \w+ authentication failed", log)) == 1, log
    assert len(re.findall(r"smtpd\[\d+\]: connect from", log)) == 1, log


async def test_postfix_concurrency_limit_is_met_with_fewer_sessions(
    postfix: PostfixServer,
) -> None:
    """`smtpd_client_connection_count_limit = 2`: the third concurrent session gets
    "421 4.7.0 ... Error: too many connections from 127.0.0.1"; AIMD gives way."""
    port = postfix.add_service(smtpd_client_connection_count_limit=2)
    mark = postfix.quiet_mark()
    aimd = Aimd(6)
    config = PoolConfig(concurrency=6, pipelining=Pipelining.AUTO, retry=QUICK_RETRIES)
    settings = ServerSettings(postfix.host, port, Security.NONE, timeouts=FAST)
    pool, journal = await run_pool(SessionOptions(settings=settings), config, jobs(40), aimd=aimd)
    final = journal.final()
    assert journal.statuses() == {"sent": 40}
    queue_ids = {o.queue_id for o in final.values()}
    assert len(queue_ids) == 40 and None not in queue_ids  # 40 distinct messages queued
    counts = pool.counts
    assert counts.failed > 0 and aimd.decreases >= 1
    assert counts.attempted == counts.opened + counts.failed
    assert set(counts.reasons) == {"421"}
    # Postfix saw every attempt: each refused one is in its log too.
    postfix.wait_log(
        r"Connection concurrency limit exceeded: \d+ from \S+ for service "
        rf"127\.0\.0\.1:{port}",
        since=mark,
        count=counts.failed,
    )


async def test_postfix_connection_rate_limit_trips_the_breaker_and_loses_nothing(
    postfix: PostfixServer,
) -> None:
    """A fresh budget of 3 connections a minute and 2 messages per session: once the budget
    is gone every attempt is refused; the breaker stops after 5 in a row, and every job
    is sent, finally failed, or handed back (leftover), none lost."""
    port = postfix.add_service(smtpd_client_connection_rate_limit=3)
    mark = postfix.quiet_mark()
    config = PoolConfig(
        concurrency=1, max_messages=2, pipelining=Pipelining.AUTO, retry=QUICK_RETRIES,
        reconnect_delay=0.05,
    )  # fmt: skip
    breaker = CircuitBreaker(BreakerLimits(open_failures_in_a_row=5))
    settings = ServerSettings(postfix.host, port, Security.NONE, timeouts=FAST)
    journal = Journal()
    pool = SessionPool(SessionOptions(settings=settings), config, observer=journal,
                       breaker=breaker)  # fmt: skip
    feed = ListFeed(jobs(12))
    await asyncio.wait_for(pool.run(feed), RUN_TIMEOUT)
    assert isinstance(breaker.tripped, SmtpTransientError)
    assert "5 connections in a row failed" in breaker.tripped.message
    assert "too many connections from 127.0.0.1" in breaker.tripped.message
    counts = pool.counts
    assert (counts.opened, counts.failed) == (3, 5)
    sent = [tag for tag, o in journal.final().items() if o.status is S.SENT]
    assert len(sent) == 6  # 2 on each of the 3 sessions of the budget
    assert_none_lost(pool, journal, feed, 12)
    postfix.wait_log(
        rf"Connection rate limit exceeded: \d+ from \S+ for service 127\.0\.0\.1:{port}",
        since=mark,
        count=5,
    )


# -- bench shares the pool: one message per session, one try ----------------------------------


async def test_no_retry_tries_each_message_once(sink: Callable[..., Sink]) -> None:
    server = sink("--reject-rate", "0.5", "--reject-code", "451", "--seed", "1")
    config = PoolConfig(concurrency=2, max_messages=1, pipelining=Pipelining.OFF,
                        retry=NoRetry())  # fmt: skip
    pool, journal = await run_pool(options(server.port), config, items := jobs(20))
    assert all(job.attempts == 1 for job in items)
    statuses = journal.statuses()
    assert statuses["sent"] + statuses["transient"] == 20 and statuses["transient"] > 0
    assert pool.counts.opened == 20 == journal.closed  # a session per message, QUIT each
    assert server.stored() == sent_ids(journal)


@pytest.mark.parametrize("pipelining", [Pipelining.OFF, Pipelining.AUTO])
async def test_a_cancelled_run_says_which_jobs_are_in_doubt(
    sink: Callable[..., Sink], pipelining: Pipelining
) -> None:
    server = sink("--latency", "300", "--latency-on", "eod")
    journal = Journal()
    config = PoolConfig(concurrency=3, pipelining=pipelining, retry=QUICK_RETRIES)
    pool = SessionPool(options(server.port), config, observer=journal)
    feed = ListFeed(jobs(10))
    task = asyncio.create_task(pool.run(feed))
    await asyncio.sleep(0.5)  # the first messages went, the next ones wait for their reply
    task.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 5  # sessions closed without waiting for replies
    finals = set(journal.final())
    doubt = {job.tag for job in pool.in_doubt()}
    left = {job.tag for job in pool.leftover()}
    untaken = {job.tag for job in iter(feed.take, None)}
    assert doubt, "a transaction was waiting for its reply"
    for one, other in itertools.combinations((finals, doubt, left, untaken), 2):
        assert one.isdisjoint(other)
    assert finals | doubt | left | untaken == set(range(10))
    assert pool.counts.open_now == 0
    stored = server.stored()
    assert set(stored) <= {f"{tag}@pool.test" for tag in finals | doubt}
