"""The session pool's pure rules: retry/backoff policy, AIMD, token bucket, reply classes.

Property tests (hypothesis): whatever the outcomes, a message is tried a bounded number of
times, never again after a permanent refusal or an unknown outcome; the concurrency limit
stays within its bounds, shrinks on throttling and comes back; the rate limit holds in any
window. The network tests of the pool are in test_pool.py.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailctl.core.pool import (
    Aimd,
    Backoff,
    BreakerLimits,
    CircuitBreaker,
    NoRetry,
    TokenBucket,
    is_throttling,
    session_fatal,
)
from mailctl.errors import (
    AuthError,
    ConnectError,
    SmtpPermanentError,
    SmtpTransientError,
    TimeoutFailure,
    UsageError,
)
from mailctl.models import Reply
from mailctl.protocols.smtp import TransactionOutcome, TransactionStatus

S = TransactionStatus


def outcome(
    status: TransactionStatus,
    *,
    reason: str | None = None,
    mail: Reply | None = None,
    failure: Reply | None = None,
    started: float = 0.0,
) -> TransactionOutcome:
    return TransactionOutcome(
        status, reason=reason, mail_reply=mail, failure_reply=failure, started=started
    )


# Outcomes a message can come to, with what they mean for a retry.
OUTCOMES = {
    "sent": outcome(S.SENT),
    "550": outcome(S.REFUSED, reason="550", failure=Reply(550, "5.1.1 no such user")),
    "unknown": outcome(S.UNKNOWN, reason="connection_lost"),
    "451": outcome(S.TRANSIENT, reason="451", failure=Reply(451, "4.3.0 later")),
    "timeout": outcome(S.TRANSIENT, reason="timeout"),
    # The connection was gone when MAIL went out (idle timeout, 421 "too many messages").
    "gone": outcome(S.TRANSIENT, reason="connection_lost"),
    "421": outcome(
        S.TRANSIENT, reason="421", mail=Reply(421, "4.7.0 bye"), failure=Reply(421, "4.7.0 bye")
    ),
}

policies = st.builds(
    Backoff,
    max_attempts=st.integers(1, 8),
    base=st.floats(0.001, 10.0),
    cap=st.floats(10.0, 600.0),
    factor=st.floats(1.0, 4.0),
    max_reconnects=st.integers(0, 4),
    rng=st.builds(random.Random, st.integers(0, 2**32)),
)


@given(policies, st.integers(1, 200), st.floats(0.0, 1.0, exclude_max=True))
def test_backoff_delay_is_bounded_and_grows(policy: Backoff, attempt: int, draw: float) -> None:
    ceiling = policy.ceiling(attempt)
    delay = policy.delay(attempt, draw)
    assert 0 < ceiling / 2 <= delay <= ceiling <= policy.cap
    assert policy.ceiling(attempt + 1) >= ceiling  # exponential, then flat at the cap
    assert ceiling == pytest.approx(min(policy.cap, policy.base * policy.factor ** (attempt - 1)))


@settings(max_examples=300)
@given(
    policies,
    st.lists(st.sampled_from(sorted(OUTCOMES)), min_size=1, max_size=40),
    st.booleans(),
)
def test_a_message_is_tried_a_bounded_number_of_times(
    policy: Backoff, kinds: list[str], reused: bool
) -> None:
    """Simulate one message through the policy, as the pool counts for it."""
    attempts = reconnects = tries = 0
    for kind in kinds:
        result = OUTCOMES[kind]
        tries += 1
        attempts += 1
        decision = policy.decide(result, attempts=attempts, reconnects=reconnects, reused=reused)
        if result.status is not S.TRANSIENT:
            # Sent, refused for good, or unknown (RFC 1047): never tried again.
            assert decision is None, kind
            break
        if decision is None:  # transient: only once the attempts are spent
            assert attempts >= policy.max_attempts
            break
        if not decision.spend:
            # Only a reused connection that was gone before MAIL: at once, not a retry.
            assert reused and result.closed_before_mail and decision.delay == 0.0
            attempts -= 1
            reconnects += 1
        else:
            assert 0 < decision.delay <= policy.cap
            assert attempts < policy.max_attempts
    assert attempts <= policy.max_attempts
    assert reconnects <= policy.max_reconnects
    assert tries <= policy.max_attempts + policy.max_reconnects


def test_backoff_decisions_by_outcome() -> None:
    policy = Backoff(max_attempts=3, base=1.0, cap=8.0, rng=random.Random(1))
    for kind in ("sent", "550", "unknown"):
        assert policy.decide(OUTCOMES[kind], attempts=1, reconnects=0, reused=True) is None
    first = policy.decide(OUTCOMES["451"], attempts=1, reconnects=0, reused=True)
    assert first is not None and first.spend and 0.5 <= first.delay <= 1.0
    second = policy.decide(OUTCOMES["451"], attempts=2, reconnects=0, reused=True)
    assert second is not None and 1.0 <= second.delay <= 2.0
    assert policy.decide(OUTCOMES["451"], attempts=3, reconnects=0, reused=True) is None
    # A 421 to MAIL on a reused connection: reconnect at once, free; on a new one: a retry.
    free = policy.decide(OUTCOMES["421"], attempts=1, reconnects=0, reused=True)
    assert free is not None and (free.delay, free.spend) == (0.0, False)
    paid = policy.decide(OUTCOMES["421"], attempts=1, reconnects=0, reused=False)
    assert paid is not None and paid.spend
    assert policy.decide(OUTCOMES["gone"], attempts=3, reconnects=3, reused=True) is None
    assert NoRetry().decide(OUTCOMES["451"], attempts=1, reconnects=0, reused=True) is None


def test_backoff_refuses_nonsense() -> None:
    for bad in (
        {"max_attempts": 0},
        {"base": 0.0},
        {"base": 10.0, "cap": 1.0},
        {"factor": 0.5},
        {"max_reconnects": -1},
    ):
        with pytest.raises(UsageError):
            Backoff(**bad)  # type: ignore[arg-type]


# -- AIMD -------------------------------------------------------------------------------------

events = st.lists(
    st.tuples(st.sampled_from(["ok", "throttle", "late-throttle"]), st.floats(0.0, 2.0)),
    max_size=300,
)


@settings(max_examples=300)
@given(st.integers(1, 50), st.integers(1, 50), events)
def test_aimd_stays_within_bounds(low: int, high: int, steps: list[tuple[str, float]]) -> None:
    minimum, maximum = min(low, high), max(low, high)
    aimd = Aimd(maximum, minimum=minimum)
    now = 0.0
    for kind, gap in steps:
        now += gap
        before = aimd.limit
        if kind == "ok":
            aimd.succeeded()
            assert aimd.limit >= before
            assert aimd.limit - before <= aimd.increase / max(before, 1) + 1e-9
        else:
            started = now if kind == "throttle" else now - 10.0  # began before the last cut
            shrank = aimd.throttled(started, now)
            if shrank:
                assert aimd.limit == pytest.approx(max(minimum, before * aimd.decrease))
            else:
                assert aimd.limit == before
        assert minimum <= aimd.limit <= maximum
        assert minimum <= aimd.current <= maximum
        assert aimd.current == max(minimum, min(maximum, math.floor(aimd.limit)))


@given(st.integers(2, 40), st.integers(1, 6))
def test_aimd_halves_on_throttling_and_grows_back(maximum: int, cuts: int) -> None:
    aimd = Aimd(maximum)
    for cut in range(cuts):
        aimd.throttled(float(cut), float(cut))
    assert aimd.limit == pytest.approx(max(1.0, maximum * 0.5**cuts))
    # One session more per "round" of `limit` messages: back to the maximum within
    # sum(limit) over the way up, which is below maximum**2 / 2 + maximum.
    for _ in range(maximum * maximum // 2 + maximum):
        aimd.succeeded()
    assert aimd.current == maximum


def test_aimd_counts_a_burst_of_throttling_replies_once() -> None:
    aimd = Aimd(8)
    assert aimd.throttled(started=1.0, now=2.0)
    # Replies to transactions begun before the cut (at 2.0) were sent at the old rate.
    assert not aimd.throttled(started=1.5, now=2.1)
    assert aimd.current == 4
    assert aimd.throttled(started=2.5, now=3.0)
    assert aimd.current == 2 and aimd.decreases == 2


# -- token bucket -----------------------------------------------------------------------------


@settings(max_examples=300)
@given(
    st.floats(0.5, 1000.0),
    st.integers(1, 20),
    st.lists(st.floats(0.0, 0.05), min_size=1, max_size=200),
)
def test_token_bucket_holds_the_rate_in_any_window(
    rate: float, burst: int, gaps: list[float]
) -> None:
    """GCRA: transactions start no faster than `rate`, with at most `burst` at once."""
    bucket = TokenBucket(rate, burst=burst, clock=lambda: 0.0)
    now = 0.0
    starts = []
    for gap in gaps:
        now += gap
        wait = bucket.reserve(now)
        assert wait >= 0
        starts.append(now + wait)
    assert starts == sorted(starts)
    interval = 1.0 / rate
    for i in range(len(starts)):
        for j in range(i, len(starts)):
            window = starts[j] - starts[i]
            assert j - i + 1 <= burst + window / interval + 1e-6


def test_token_bucket_scales_with_the_pool() -> None:
    bucket = TokenBucket(100.0, clock=lambda: 0.0)
    bucket.scale(0.5)
    assert bucket.rate == 50.0
    bucket.scale(2.0)
    assert bucket.rate == 100.0  # never above the configured rate
    with pytest.raises(UsageError):
        TokenBucket(0.0)


# -- which replies mean what ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "text", "throttling"),
    [
        (421, "4.7.0 Error: too many connections from 127.0.0.1", True),
        (454, "4.7.0 Throttling: slow down", True),
        (452, "4.4.5 Insufficient system storage", True),
        (450, "4.7.1 Error: too much mail from 127.0.0.1", True),
        (421, "4.4.5 Error: too many connections; try again later", True),
        (421, "Too many concurrent SMTP connections", True),
        (451, "4.3.0 Injected failure (mailctl sink)", False),
        (450, "4.2.0 mailbox busy", False),
        (421, "4.3.2 Service shutting down", False),
        (550, "5.7.1 too many recipients", False),
    ],
)
def test_throttling_replies(code: int, text: str, throttling: bool) -> None:
    assert is_throttling(Reply(code, text)) is throttling


@pytest.mark.parametrize(
    ("reply", "fatal"),
    [
        (Reply(530, "5.7.0 Authentication required"), AuthError),
        (Reply(535, "5.7.8 Error: authentication failed"), AuthError),
        (Reply(554, "5.7.1 <a@b>: Sender address rejected: Access denied"), SmtpPermanentError),
        (Reply(550, "5.1.0 sender unknown"), None),
        (Reply(451, "4.7.1 greylisted"), None),
    ],
)
def test_session_fatal_replies_to_mail(reply: Reply, fatal: type[Exception] | None) -> None:
    status = S.REFUSED if reply.is_permanent else S.TRANSIENT
    at_mail = outcome(status, reason=str(reply.code), mail=reply, failure=reply)
    found = session_fatal(at_mail)
    assert (type(found) if found else None) is fatal
    # The same reply to RCPT concerns that recipient only.
    at_rcpt = outcome(status, reason=str(reply.code), mail=Reply(250, "ok"), failure=reply)
    assert session_fatal(at_rcpt) is None


def test_breaker_trips_once_and_keeps_the_first_cause() -> None:
    tripped = []
    breaker = CircuitBreaker(BreakerLimits(timeouts_in_a_row=2), on_trip=tripped.append)
    late = outcome(S.TRANSIENT, reason="timeout")
    breaker.failed(late)
    breaker.sent()  # something went through: the count starts again
    breaker.failed(late)
    assert breaker.tripped is None
    breaker.failed(late)
    assert isinstance(breaker.tripped, TimeoutFailure) and "2 waits in a row" in str(
        breaker.tripped
    )
    breaker.open_failed(AuthError("535 5.7.8 bad password"))
    assert len(tripped) == 1 and tripped[0] is breaker.tripped


def test_breaker_counts_failed_connections_in_a_row() -> None:
    breaker = CircuitBreaker(
        BreakerLimits(open_failures_in_a_row=3, refused_connections_in_a_row=2), concurrency=1
    )
    busy = SmtpTransientError("421 4.4.5 busy")
    breaker.open_failed(busy)
    breaker.open_failed(busy)
    breaker.opened()  # one got through: the count starts again
    breaker.open_failed(busy)
    breaker.open_failed(busy)
    assert breaker.tripped is None
    breaker.open_failed(ConnectError("refused"))
    assert breaker.tripped is None
    breaker.open_failed(busy)
    assert isinstance(breaker.tripped, SmtpTransientError)
    assert "3 connections in a row" in breaker.tripped.message
    refused = CircuitBreaker(BreakerLimits(refused_connections_in_a_row=2))
    refused.open_failed(ConnectError("refused"))
    refused.open_failed(ConnectError("refused"))
    assert isinstance(refused.tripped, ConnectError)
