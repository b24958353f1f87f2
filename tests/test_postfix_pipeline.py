"""Pipelined transactions (protocols/pipeline/) against a real Postfix: its 421 is read."""

from __future__ import annotations

import pytest
from servers.postfix import PostfixServer

from mailctl.models import Envelope, Security, ServerSettings, Timeouts
from mailctl.protocols.pipeline import (
    TransactionStatus,
    pipelined,
    prepare_message,
    prepare_transaction,
)
from mailctl.protocols.smtp import SessionOptions, SmtpSession

FAST = Timeouts(connect=5.0, command=5.0, data=5.0)
MESSAGE = b"From: a@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"
# Three errors reach smtpd_hard_error_limit: Postfix sends the 421 with the third.
RCPTS = ("reject@refused.test", "unknown@refused.test", "other@refused.test", "bob@example.org")


@pytest.fixture(scope="module")
def lockstep_port(postfix: PostfixServer) -> int:
    """A plain service that does not advertise PIPELINING: the lock-step fallback runs."""
    return postfix.add_service(smtpd_discard_ehlo_keywords="pipelining")


@pytest.mark.parametrize("pipelining", [True, False])
@pytest.mark.parametrize(
    ("rcpts", "status", "reason"),
    [
        # bob@ gets no answer but the 421: nothing decided for him, so it may work later.
        (RCPTS, TransactionStatus.TRANSIENT, "421"),
        # Every recipient refused for good: those are the server's answers; the 421 that
        # came with the third only closes the connection (as `mailctl send` reports: 69).
        (RCPTS[:3], TransactionStatus.REFUSED, "554"),
        # One of the refusals is 450: retrying can help, as for `send` (75).
        (("later@refused.test", *RCPTS[:2]), TransactionStatus.TRANSIENT, "450"),
    ],
    ids=["unanswered", "all-permanent", "one-transient"],
)
async def test_hard_error_limit_421_is_named(
    postfix: PostfixServer,
    lockstep_port: int,
    pipelining: bool,
    rcpts: tuple[str, ...],
    status: TransactionStatus,
    reason: str,
) -> None:
    port = postfix.plain_port if pipelining else lockstep_port
    settings = ServerSettings(postfix.host, port, Security.NONE, timeouts=FAST)
    session = await SmtpSession.open(SessionOptions(settings=settings))
    try:
        assert session.supports("PIPELINING") is pipelining
        transaction = prepare_transaction(
            Envelope("a@example.org", rcpts),
            prepare_message(MESSAGE),
            extensions=session.info.extensions,
        )
        async with pipelined(session, lockstep_fallback=True, allow_partial=True) as pipe:
            result = await pipe.send(transaction)
            assert not pipe.usable  # the server closed: the connection is never reused
    finally:
        await session.close()
    assert (result.status, result.reason) == (status, reason), result.error
    assert result.error is not None and "421 4.7.0" in result.error
    assert "too many errors" in result.error
