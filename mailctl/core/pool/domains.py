"""Per-recipient-domain caps: at most N messages in flight to one domain, across all sessions.

Providers meter senders per destination (Gmail, Outlook and Yahoo defer a sender that opens
too much at once toward them: FACTS.md, 421 4.7.0 / TSS04), so a bulk run may cap what it has
in flight to a domain while the other domains use the rest of the sessions. A job counts
against every domain among its envelope recipients from the moment the pool takes it until
its outcome is final: a job waiting for a retry keeps its place, so a domain that defers us
gets no new messages meanwhile.

`CappedFeed` sits between the pool and the real feed: it hands out a job only when each of
its domains has room, and puts the others aside (at most `max_held` jobs; past that it stops
reading the feed until room frees up), so the order within one domain is kept and a capped
domain never blocks the rest. Without caps the pool never builds one, and bench's hot path
is the same code as before.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from mailctl.core.pool.jobs import Job
from mailctl.errors import UsageError
from mailctl.hosts import to_ascii_domain

__all__ = ["CappedFeed", "DomainCaps", "domain_key"]


class _Feed(Protocol):
    """The part of pool.Feed this module needs (pool imports this module, not the reverse)."""

    def take(self) -> Job | None: ...

    def exhausted(self) -> bool: ...


def domain_key(address_or_domain: str) -> str:
    """The domain a cap is kept by: lower case, no trailing dot, A-labels (IDNA)."""
    domain = address_or_domain.rpartition("@")[2].strip().rstrip(".").lower()
    try:
        return to_ascii_domain(domain)
    except UnicodeError:
        return domain  # not encodable: kept as written, still one key per spelling


@dataclass(frozen=True)
class DomainCaps:
    """Messages in flight at most, per recipient domain: `caps` by domain, `default` for
    the others (None: no cap for them)."""

    caps: Mapping[str, int] = field(default_factory=dict)
    default: int | None = None
    max_held: int = 1000  # jobs put aside while their domain is full

    def __post_init__(self) -> None:
        for domain, cap in self.caps.items():
            if cap < 1:
                raise UsageError(f"domain cap for {domain}: at least 1, not {cap}")
        if self.default is not None and self.default < 1:
            raise UsageError(f"default domain cap: at least 1, not {self.default}")
        if self.max_held < 1:
            raise UsageError("max_held must be at least 1")
        object.__setattr__(self, "caps", {domain_key(d): n for d, n in self.caps.items()})

    def cap(self, domain: str) -> int | None:
        return self.caps.get(domain, self.default)


class CappedFeed:
    """A `Feed` that hands out only jobs whose domains have room (see the module doc).

    `take()` returns None when no job may go *now*; `exhausted()` is True only when the
    inner feed is dry and nothing is held, so the pool keeps asking until then. The pool
    calls `release(job)` when a job's outcome is final. Held jobs wait in one line per full
    domain, and a release looks only at the lines of the domains it freed: no scan of
    everything held per take, whatever the mix of domains.
    """

    def __init__(self, inner: _Feed, caps: DomainCaps) -> None:
        self._take = inner.take
        self._exhausted = inner.exhausted
        self._caps = caps
        self._flight: Counter[str] = Counter()
        self._domains: dict[Job, tuple[str, ...]] = {}
        self._held: dict[str, deque[Job]] = {}  # full domain -> its jobs, in feed order
        self._held_count = 0
        self._ready: dict[str, None] = {}  # domains released since, with jobs held (in order)
        self._inner_done = False

    def take(self) -> Job | None:
        held = self._held
        ready = self._ready
        while ready:
            domain = next(iter(ready))
            line = held.get(domain)
            if not line:
                del ready[domain]
                continue
            head = line[0]
            waits_on = self._blocked(head)
            if waits_on == domain:
                del ready[domain]  # no room there after all (taken by another job)
                continue
            line.popleft()
            if not line:
                del held[domain]
            if waits_on is None:
                self._held_count -= 1
                return self._start(head)
            held.setdefault(waits_on, deque()).append(head)  # another of its domains is full
        while self._held_count < self._caps.max_held and not self._inner_done:
            job = self._take()
            if job is None:
                self._inner_done = True
                break
            blocked = self._blocked(job)
            if blocked is None:
                return self._start(job)
            held.setdefault(blocked, deque()).append(job)
            self._held_count += 1
        return None

    def exhausted(self) -> bool:
        if self._held_count:
            return False
        if not self._inner_done:
            self._inner_done = self._exhausted()
        return self._inner_done

    def release(self, job: Job) -> None:
        """`job`'s outcome is final: its domains have room for one more."""
        domains = self._domains.pop(job, None)
        if not domains:
            return
        self._flight.subtract(domains)
        for domain in domains:
            if domain in self._held:
                self._ready[domain] = None

    def held(self) -> list[Job]:
        """Jobs put aside and never handed out (the run's leftovers); emptied."""
        jobs = [job for line in self._held.values() for job in line]
        self._held.clear()
        self._ready.clear()
        self._held_count = 0
        return jobs

    def in_flight(self, domain: str) -> int:
        return self._flight[domain_key(domain)]

    def _keys(self, job: Job) -> tuple[str, ...]:
        found = self._domains.get(job)
        if found is None:
            found = tuple(dict.fromkeys(domain_key(r) for r in job.payload.envelope.recipients))
            self._domains[job] = found
        return found

    def _blocked(self, job: Job) -> str | None:
        """The first of `job`'s domains that is full, or None when all have room."""
        cap = self._caps.cap
        flight = self._flight
        for domain in self._keys(job):
            limit = cap(domain)
            if limit is not None and flight[domain] >= limit:
                return domain
        return None

    def _start(self, job: Job) -> Job:
        self._flight.update(self._keys(job))
        return job
