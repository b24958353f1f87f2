"""Sending-quota replies (mailctl/core/pool/classify.py `is_quota`): bulk-send stops cleanly.

A table of replies providers really send (texts from their documentation and postmaster
pages), each with the verdict: a sending quota (stop the run, resumable), or not (a
recipient's full mailbox, RFC 3463 X.2.2, is that recipient's problem; a 4xx rate limit
asks to slow down, which `is_throttling` handles). The multi-line Gmail reply is also read
from a real socket, so the test sees the text as the SMTP client joins it.
"""

from __future__ import annotations

import pytest
from servers.scripted_smtp import Reply as Script
from servers.scripted_smtp import ScriptedFactory, standard_reply

from mailctl.core.pool.classify import QuotaPatterns, is_quota, is_throttling
from mailctl.models import Envelope, Reply, Security, ServerSettings, Timeouts
from mailctl.protocols.smtp import SessionOptions, SmtpSession, TransactionStatus


def reply(line: str) -> Reply:
    """A reply as the client holds it: code, then the text (lines joined with newlines)."""
    code, _, text = line.partition(" ")
    return Reply(int(code), text)


QUOTA = [
    # Gmail / Google Workspace (support.google.com/a/answer/166852)
    "550 5.4.5 Daily sending quota exceeded. - gsmtp",
    "550 5.4.5 Daily user sending quota exceeded.",
    # the code alone: a permanent X.4.5 ("congestion") is Gmail's quota
    "550 5.4.5 https://support.google.com/mail/?p=DailyLimitExceeded - gsmtp",
    "550 5.4.5 Daily user sending limit exceeded. For more information on Gmail\n"
    "5.4.5 sending limits go to\n5.4.5  https://support.google.com/a/answer/166852 - gsmtp",
    # Exchange Online, SMTP AUTH submission (learn.microsoft.com: 10,000 recipients a day)
    "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
    "process message due to a permanent exception with message Cannot submit message.",
    # Exchange Online: the SENDER's mailbox is full, which blocks every submission (5.2.2!)
    "554 5.2.2 mailbox full; STOREDRV.Submission.Exception:QuotaExceededException."
    "MapiExceptionShutoffQuotaExceeded",
    # Exchange Online continuous-error throttling of a sender (learn.microsoft.com)
    "550 5.2.251 Sender throttled due to continuous mailbox full errors.",
    "550 5.2.252 Sender throttled due to continuous send as denied errors.",
    # Amazon SES SMTP interface (docs.aws.amazon.com/ses manage-sending-quotas-errors)
    "454 Throttling failure: Daily message quota exceeded.",
    # DreamHost (100 messages an hour) and an outbound relay's quota, both at RCPT
    "554 5.7.1 <n@abc.com>: Recipient address rejected: Policy Rejection- --SENDER_QUOTA_REJECTION",
    "554 5.7.1 <email@example.com>: Recipient address rejected: You have exceeded your "
    "Outmail quota.",
    # Zoho Mail
    "550 5.4.6 mail rate exceeded limit",
    # The generic forms the issue names
    "451 4.7.1 daily sending quota exceeded",
    "550 5.7.0 quota exceeded",
    "554 5.7.0 too many messages, limit exceeded",
]

NOT_QUOTA = [
    # A recipient's full mailbox: that row fails (or is deferred), the run goes on
    "452 4.2.2 The email account that you tried to reach is over quota. Please direct the "
    "recipient to\n4.2.2  https://support.google.com/mail/?p=OverQuotaTemp - gsmtp",
    "552 5.2.2 The email account that you tried to reach is over quota.",
    "552 5.2.2 <user@example.org> Quota exceeded (mailbox for user is full)",  # Dovecot LMTP
    "552 <JDOE@JUNO.COM>... Mail quota exceeded",
    "552 Requested mail action aborted: exceeded storage allocation",
    "452 4.3.1 Insufficient system storage",
    # Rate limits that ask to slow down (AIMD), not to stop
    "454 Throttling failure: Maximum sending rate exceeded.",
    "454 4.7.0 Throttling",
    "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume "
    "or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
    "432 4.3.2 Concurrent connections limit exceeded.",
    "421 4.7.0 Too many messages for this session",
    # Ordinary refusals
    "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in virtual "
    "mailbox table",
    "552 5.3.4 Message size exceeds fixed limit",
    "552 5.2.3 Message length exceeds administrative limit",
    "452 4.5.3 Error: too many recipients",
    "535 5.7.8 Username and Password not accepted.",
    "250 2.0.0 Ok: queued as 4Xyz",
]


@pytest.mark.parametrize("line", QUOTA)
def test_sending_quota_replies(line: str) -> None:
    assert is_quota(reply(line))


@pytest.mark.parametrize("line", NOT_QUOTA)
def test_replies_that_are_not_a_sending_quota(line: str) -> None:
    assert not is_quota(reply(line))


def test_rate_limits_still_slow_down() -> None:
    """The two classifiers agree: SES's rate limit is throttling, its daily quota a stop."""
    rate = reply("454 Throttling failure: Maximum sending rate exceeded.")
    assert is_throttling(rate) and not is_quota(rate)
    assert is_quota(reply("454 Throttling failure: Daily message quota exceeded."))


def test_no_reply_is_no_quota() -> None:
    assert not is_quota(None)


def test_configured_texts_add_provider_words() -> None:
    german = reply("550 5.7.1 Tageskontingent ueberschritten")
    assert not is_quota(german)
    patterns = QuotaPatterns.of(["TAGESKONTINGENT", "  "])
    assert is_quota(german, patterns=patterns)
    assert not is_quota(reply("250 2.0.0 Tageskontingent ok"), patterns=patterns)  # 2xx never
    assert patterns.texts == ("tageskontingent",)  # blank entries dropped


GMAIL_QUOTA = (
    b"550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\r\n"
    b"550-5.4.5 sending limits go to\r\n"
    b"550 5.4.5  https://support.google.com/a/answer/166852 - gsmtp\r\n"
)


async def test_gmail_quota_read_from_the_wire(scripted_smtp: ScriptedFactory) -> None:
    """Gmail answers MAIL with a three-line 550 5.4.5: what the session hands the engine
    (the outcome's deciding reply) is recognised as a quota, not a recipient failure."""

    def respond(line: str) -> Script:
        if line.upper().startswith("MAIL"):
            return GMAIL_QUOTA
        return standard_reply(line)

    server = scripted_smtp(respond)
    fast = Timeouts(connect=5.0, command=5.0, data=5.0)
    settings = ServerSettings("127.0.0.1", server.port, Security.NONE, timeouts=fast)
    async with await SmtpSession.open(SessionOptions(settings=settings)) as session:
        outcome = await session.transact(
            Envelope("a@example.org", ("b@example.org",)), b"Subject: x\r\n\r\nhi\r\n"
        )
    assert outcome.status is TransactionStatus.REFUSED
    assert outcome.failure_reply is not None and outcome.failure_reply.code == 550
    assert is_quota(outcome.failure_reply)


@pytest.mark.parametrize(
    "line",
    [
        "452 Too many recipients",  # RFC 5321 4.5.3.1.10's own example text, no enhanced code
        "452 too many recipients for this message",
        "552 Too many recipients",
    ],
)
def test_too_many_recipients_is_about_the_message_not_a_rate(line: str) -> None:
    """RFC 5321 4.5.3.1.8/4.5.3.1.10: "452 Too many recipients" limits one transaction (send
    the rest in another), it does not ask the client to slow down: halving the sessions for
    it (AIMD) would punish every other row. Neither is it a sending quota."""
    assert not is_throttling(reply(line))
    assert not is_quota(reply(line))
