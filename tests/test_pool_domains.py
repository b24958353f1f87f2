"""Per-recipient-domain caps in the session pool (mailctl/core/pool/domains.py).

Against a small SMTP server written here that counts, per recipient domain, the transactions
open at once (MAIL to final reply) while it holds each message a few milliseconds: with a cap
of 1 on one domain that domain never has two at once, while the other domain uses every
session; every message arrives exactly once, pipelined or not. Bounded in time and count.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import pytest
from list_feed import ListFeed

from mailctl.core.pool import Job, Payload, Pipelining, PoolConfig, SessionPool
from mailctl.core.pool.domains import CappedFeed, DomainCaps, domain_key
from mailctl.errors import UsageError
from mailctl.models import Envelope, Security, ServerSettings, Timeouts
from mailctl.protocols.smtp import SessionInfo, SessionOptions, TransactionOutcome

FAST = Timeouts(connect=5.0, command=5.0, data=5.0)
HOLD = 0.01  # seconds the server keeps each message before its final reply


@dataclass
class CountingServer:
    """SMTP on 127.0.0.1:0 that counts open transactions per recipient domain."""

    pipelining: bool
    now: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)  # Message-ID -> times
    port: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        domains: list[str] = []
        try:
            writer.write(b"220 counting.test ESMTP\r\n")
            for _ in range(10_000):  # bounded: commands per connection
                line = await asyncio.wait_for(reader.readline(), 10)
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"EHLO":
                    extra = b"250-PIPELINING\r\n" if self.pipelining else b""
                    writer.write(b"250-counting.test\r\n" + extra + b"250 8BITMIME\r\n")
                elif verb == b"MAIL":
                    domains = []
                    writer.write(b"250 2.1.0 Ok\r\n")
                elif verb == b"RCPT":
                    domain = line.split(b"@", 1)[1].split(b">", 1)[0].decode().lower()
                    domains.append(domain)
                    self.now[domain] += 1
                    self.peak[domain] = max(self.peak[domain], self.now[domain])
                    writer.write(b"250 2.1.5 Ok\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go\r\n")
                    await writer.drain()
                    message_id = ""
                    for _ in range(1000):
                        body = await asyncio.wait_for(reader.readline(), 10)
                        if body.lower().startswith(b"message-id:"):
                            message_id = body.split(b":", 1)[1].strip().decode()
                        if body in (b".\r\n", b""):
                            break
                    await asyncio.sleep(HOLD)
                    self.received[message_id] += 1
                    for domain in domains:
                        self.now[domain] -= 1
                    domains = []
                    writer.write(b"250 2.0.0 Ok: queued\r\n")
                elif verb == b"RSET":
                    for domain in domains:
                        self.now[domain] -= 1
                    domains = []
                    writer.write(b"250 2.0.0 Ok\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"250 Ok\r\n")
                await writer.drain()
        except (TimeoutError, ConnectionError):
            return
        finally:
            writer.close()


@dataclass
class Observer:
    finals: Counter[object] = field(default_factory=Counter)
    sent: int = 0

    def outcome(self, job: Job, outcome: TransactionOutcome, final: bool) -> None:
        if final:
            self.finals[job.tag] += 1
            self.sent += outcome.status.value == "sent"

    def session_opened(self, info: SessionInfo) -> None:
        pass

    def session_closed(self, seconds: float, last: Job | None) -> None:
        pass


def job(n: int, *recipients: str) -> Job:
    data = (
        f"From: <a@sender.test>\r\nTo: <{recipients[0]}>\r\nSubject: {n}\r\n"
        f"Message-ID: <{n}@pool.test>\r\n\r\nmessage {n}\r\n"
    ).encode()
    return Job(Payload(Envelope("a@sender.test", recipients), data), tag=n)


def mixed(count: int) -> list[Job]:
    """Half to slow.example (capped), half to fast.example, interleaved."""
    return [job(n, f"r{n}@{'Slow.Example' if n % 2 else 'fast.example'}") for n in range(count)]


async def run_pool(pipelining: bool, caps: DomainCaps | None) -> CountingServer:
    server = CountingServer(pipelining=pipelining)
    await server.start()
    try:
        settings = ServerSettings("127.0.0.1", server.port, Security.NONE, timeouts=FAST)
        observer = Observer()
        config = PoolConfig(
            concurrency=4, pipelining=Pipelining.AUTO if pipelining else Pipelining.OFF
        )
        pool = SessionPool(
            SessionOptions(settings=settings), config, observer=observer, domains=caps
        )
        await asyncio.wait_for(pool.run(ListFeed(mixed(60))), 60)
        assert observer.sent == 60 and set(observer.finals.values()) == {1}
        assert pool.leftover() == []
    finally:
        await server.stop()
    assert sorted(server.received.values()) == [1] * 60  # each message once
    return server


@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelined"])
async def test_a_capped_domain_never_has_more_in_flight(pipelining: bool) -> None:
    server = await run_pool(pipelining, DomainCaps({"slow.example.": 1}))
    assert server.peak["slow.example"] == 1
    assert server.peak["fast.example"] > 1  # the other domain still uses the sessions


async def test_without_caps_the_same_run_overlaps() -> None:
    """The control: the workload does put several messages of one domain in flight."""
    server = await run_pool(False, None)
    assert server.peak["slow.example"] > 1


async def test_a_default_cap_applies_to_every_domain() -> None:
    server = await run_pool(False, DomainCaps(default=2))
    assert server.peak["slow.example"] <= 2 and server.peak["fast.example"] <= 2


# -- the feed's bookkeeping, without a server -------------------------------------------------


def test_capped_feed_keeps_order_within_a_domain_and_bounds_what_it_holds() -> None:
    items = [job(n, f"r{n}@a.test") for n in range(5)] + [job(5, "r5@b.test")]
    feed = CappedFeed(ListFeed(items), DomainCaps({"a.test": 1}, max_held=3))
    first = feed.take()
    assert first is not None and first.tag == 0
    # a.test is full: 1, 2, 3 are held (max_held 3), reading stops before b.test's job
    assert feed.take() is None
    assert not feed.exhausted()
    feed.release(first)
    tags = []
    for _ in range(10):
        got = feed.take()
        if got is None:
            break
        tags.append(got.tag)
        feed.release(got)
    assert tags == [1, 2, 3, 4, 5]
    assert feed.take() is None and feed.exhausted()


def test_a_job_counts_against_each_of_its_domains() -> None:
    both = job(0, "x@a.test", "y@B.test", "z@a.test")
    only_b = job(1, "w@b.test")
    feed = CappedFeed(ListFeed([both, only_b]), DomainCaps(default=1))
    assert feed.take() is both
    assert feed.in_flight("a.test") == 1 and feed.in_flight("b.test") == 1  # once per domain
    assert feed.take() is None  # b.test is full
    assert feed.held() == [only_b]
    feed.release(both)
    assert feed.in_flight("b.test") == 0


def test_domain_keys_and_bad_caps() -> None:
    assert domain_key("User@Bücher.Example.") == "xn--bcher-kva.example"
    assert DomainCaps({"Bücher.example": 2}).cap("xn--bcher-kva.example") == 2
    with pytest.raises(UsageError):
        DomainCaps({"a.test": 0})
    with pytest.raises(UsageError):
        DomainCaps(default=0)
