"""Which replies and failures mean "slow down" or "stop everything": the pool's one rulebook.

FACTS.md ("SMTP semantics"): 421 4.7.0, 454 4.7.0 and 452 4.4.5 are rate limits (slow
down); 530/534/535 are authentication problems and a 554 5.7.x to MAIL is the server
refusing this client or sender (stop: every other message would get the same, and
retrying locks accounts). Session set-up failures that every other session would meet too
(TLS, AUTH, a 5xx greeting, a server that never greets) stop the run at once.

A sending quota (`is_quota`: the account may send no more today, or at all for a while)
stops a bulk run cleanly, to be resumed later: every further message would be refused too,
and hammering the server can get the account suspended. It is told apart from a recipient's
full mailbox (RFC 3463 X.2.2, which concerns that recipient only) and from a rate limit
that asks to slow down (a 4xx without a quota word, handled by `is_throttling`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from mailctl.errors import (
    AuthError,
    ConfigError,
    HostNotFoundError,
    InputDataError,
    MailctlError,
    ProtocolError,
    SmtpPermanentError,
    TimeoutFailure,
)
from mailctl.models import Reply
from mailctl.protocols.smtp import TransactionOutcome, TransactionStatus
from mailctl.serialize import to_data

__all__ = ["FATAL_OPEN", "QuotaPatterns", "is_quota", "is_throttling", "session_fatal"]

# Failures to set up a session that every other session would meet too: stop at once.
# TimeoutFailure: the server took the connection but did not greet (or answer EHLO,
# STARTTLS, AUTH) within the timeout, a tarpit. SmtpPermanentError: a 5xx greeting or EHLO
# refusal. ConnectError (refused, unreachable) is counted in a row instead (see
# CircuitBreaker); a 4xx/421 greeting is a server shedding load, also counted in a row.
FATAL_OPEN: tuple[type[MailctlError], ...] = (
    AuthError,
    ConfigError,
    HostNotFoundError,
    InputDataError,
    ProtocolError,
    SmtpPermanentError,
    TimeoutFailure,
)
# Failures of one transaction that end the session's usefulness for every message: a
# protocol violation (replies out of step, TLS failure mid-session) or a configuration
# problem found late.
_FATAL_SEND: tuple[type[MailctlError], ...] = (AuthError, ConfigError, ProtocolError)
# RFC 4954 6: 530 authentication required, 534 mechanism too weak, 535 credentials invalid.
_AUTH_CODES = frozenset({530, 534, 535})
# "too many" but not "too many recipients": RFC 5321 4.5.3.1.10's 452 limits one transaction
# (the rest go in another), it does not ask to slow down.
_THROTTLING_TEXT = re.compile(
    r"too many(?! recipients)|rate.?limit|throttl|slow(?:ing)? down", re.IGNORECASE
)


def is_throttling(reply: Reply | None) -> bool:
    """A 4xx reply that asks the client to slow down (RFC 3463 X.7.x policy or X.4.5
    congestion, or the usual words of servers that send no enhanced code)."""
    if reply is None or not 400 <= reply.code <= 499:
        return False
    enhanced = reply.enhanced
    if enhanced is not None:
        return enhanced.startswith("4.7.") or enhanced == "4.4.5"
    return _THROTTLING_TEXT.search(reply.message) is not None


def session_fatal(outcome: TransactionOutcome) -> MailctlError | None:
    """The error to stop every session with, when this failed transaction means that."""
    exception = outcome.exception
    if outcome.reason == "protocol_error" or isinstance(exception, _FATAL_SEND):
        return outcome.to_error()
    mail = outcome.mail_reply
    if mail is None or mail.code < 400 or outcome.failure_reply != mail:
        return None  # not decided by the reply to MAIL
    text = outcome.error or f"{mail.code} {mail.message}"
    if mail.code in _AUTH_CODES:
        return AuthError(
            text,
            hint="the server wants authentication for this sender: check the user name "
            "and password of the account",
            details={"reply": to_data(mail)},
        )
    enhanced = mail.enhanced or ""
    if outcome.status is TransactionStatus.REFUSED and mail.code == 554 and enhanced[:4] == "5.7.":
        return SmtpPermanentError(
            f"{text} (the server refuses this client or sender: every message would be)",
            details={"reply": to_data(mail)},
        )
    return None


# Words that name the sender's own quota whatever else the reply says (checked first):
# Office 365's "SubmissionQuotaExceededException" and "STOREDRV.Submission...QuotaExceeded"
# (the sender's mailbox is full, which blocks every submission), its "550 5.2.25x Sender
# throttled due to continuous ... errors", and any "sending quota/limit".
_SENDER_QUOTA: Final = re.compile(
    r"submission\W*quota|storedrv\.submission\S*quota|sender throttled"
    r"|sending (?:quota|limit)|sender[\W_]*quota|(?:daily|hourly|24.hour) (?:user |message )?"
    r"(?:sending |send )?(?:quota|limit)|(?:quota|limit) (?:per|a) (?:day|hour)",
    re.IGNORECASE,
)
# A recipient's mailbox over its storage quota: that recipient's problem, not the sender's.
_MAILBOX_FULL: Final = re.compile(
    r"mailbox (?:is )?full|over ?quota|\b(?:mailbox|disk|storage|user|mail) quota"
    r"|storage allocation|insufficient (?:system )?storage|full mailbox",
    re.IGNORECASE,
)
# Quota words: enough for a 4xx (a temporary "quota exceeded" still means "not today").
_QUOTA_WORD: Final = re.compile(r"quota|daily limit|per day", re.IGNORECASE)
# Limit words: a 5xx with these refuses the sender for now (Zoho's "550 5.4.6 mail rate
# exceeded limit"); the same words in a 4xx are throttling (slow down), not a quota.
_LIMIT_WORD: Final = re.compile(
    r"(?:rate|limit) exceeded|exceeded (?:the )?(?:\w+ )?limit|too many messages"
    r"|rate limit|limit reached",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class QuotaPatterns:
    """Extra texts that mean "sending quota reached" for a given provider (configurable):
    plain substrings, matched without case in a 4xx/5xx reply, ahead of the built-in rules."""

    texts: tuple[str, ...] = ()

    @classmethod
    def of(cls, texts: Iterable[str]) -> QuotaPatterns:
        return cls(tuple(text.casefold() for text in texts if text.strip()))

    def match(self, message: str) -> bool:
        folded = message.casefold()
        return any(text in folded for text in self.texts)


def is_quota(reply: Reply | None, *, patterns: QuotaPatterns | None = None) -> bool:
    """A reply saying the sender's sending quota is used up: stop the run, resume later.

    By the enhanced code (RFC 3463) and the text: a 5.4.5 (Gmail's "Daily user sending quota
    exceeded"; a permanent "congestion" is a quota) or any 4xx/5xx naming the sender's quota;
    a recipient's full mailbox (X.2.2, "over quota") is not, nor is a 4xx rate limit without
    a quota word (slow down instead). `patterns` adds provider texts.
    """
    if reply is None or not 400 <= reply.code <= 599:
        return False
    message = reply.message
    if (patterns is not None and patterns.match(message)) or _SENDER_QUOTA.search(message):
        return True
    enhanced = reply.enhanced or ""
    if enhanced.endswith(".2.2") or _MAILBOX_FULL.search(message):
        return False  # RFC 3463 X.2.2 mailbox full: this recipient only
    if enhanced == "5.4.5" or _QUOTA_WORD.search(message):
        return True
    return reply.code >= 500 and _LIMIT_WORD.search(message) is not None
