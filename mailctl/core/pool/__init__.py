"""The core session pool shared by bench and bulk-send: sessions, retries, throttling, breaker.

`pool` (`SessionPool`, `PoolConfig`, the worker loop), `jobs` (`Payload`, `Job`, the retry
queue), `retry` (`RetryPolicy`, `Backoff`, `NoRetry`), `aimd` (`Aimd`, concurrency under
throttling), `ratelimit` (`TokenBucket`), `breaker` (`CircuitBreaker`), `classify`
(throttling, session-fatal and sending-quota replies) and `domains` (`DomainCaps`:
messages in flight per recipient domain) are its parts.
"""

from mailctl.core.pool.aimd import Aimd
from mailctl.core.pool.breaker import BreakerLimits, CircuitBreaker
from mailctl.core.pool.classify import QuotaPatterns, is_quota, is_throttling, session_fatal
from mailctl.core.pool.domains import DomainCaps
from mailctl.core.pool.jobs import Job, Payload
from mailctl.core.pool.pool import (
    MAX_CONCURRENCY,
    ConnectionCounts,
    Feed,
    Pipelining,
    PoolConfig,
    PoolObserver,
    SessionPool,
)
from mailctl.core.pool.ratelimit import RateLimiter, Scalable, TokenBucket
from mailctl.core.pool.retry import Backoff, NoRetry, Retry, RetryPolicy

__all__ = [
    "MAX_CONCURRENCY",
    "Aimd",
    "Backoff",
    "BreakerLimits",
    "CircuitBreaker",
    "ConnectionCounts",
    "DomainCaps",
    "Feed",
    "Job",
    "NoRetry",
    "Payload",
    "Pipelining",
    "PoolConfig",
    "PoolObserver",
    "QuotaPatterns",
    "RateLimiter",
    "Retry",
    "RetryPolicy",
    "Scalable",
    "SessionPool",
    "TokenBucket",
    "is_quota",
    "is_throttling",
    "session_fatal",
]
