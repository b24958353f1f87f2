"""Which replies and failures mean "slow down" or "stop everything": the pool's one rulebook.

FACTS.md ("SMTP semantics"): 421 4.7.0, 454 4.7.0 and 452 4.4.5 are rate limits (slow
down); 530/534/535 are authentication problems and a 554 5.7.x to MAIL is the server
refusing this client or sender (stop: every other message would get the same, and
retrying locks accounts). Session set-up failures that every other session would meet too
(TLS, AUTH, a 5xx greeting, a server that never greets) stop the run at once.
"""

from __future__ import annotations

import re

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

__all__ = ["FATAL_OPEN", "is_throttling", "session_fatal"]

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
_THROTTLING_TEXT = re.compile(r"too many|rate.?limit|throttl|slow(?:ing)? down", re.IGNORECASE)


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
