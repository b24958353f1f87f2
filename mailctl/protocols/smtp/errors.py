"""SMTP replies and aiosmtplib/ssl/socket failures mapped to mailctl.errors types."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

from aiosmtplib.errors import (
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)
from aiosmtplib.response import SMTPResponse

from mailctl.errors import (
    ConnectionLostError,
    Fix,
    MailctlError,
    ProtocolError,
    SmtpPermanentError,
    SmtpTransientError,
    TimeoutFailure,
)
from mailctl.models import Protocol, RecipientResult, Reply, ServerSettings
from mailctl.protocols.smtp.outcome import TransactionStatus, refusal_status
from mailctl.protocols.tls import map_ssl_error, security_fixes
from mailctl.serialize import to_data
from mailctl.text import excerpt

__all__ = [
    "TIMEOUT_TYPES",
    "RepliesOutOfStep",
    "closing_note",
    "login_may_help",
    "refusal_error",
    "reply_error",
    "reply_text",
    "to_reply",
    "transport_error",
]

TIMEOUT_TYPES = (SMTPTimeoutError, TimeoutError)
_OUT_OF_STEP_HINT = (
    "the server (or something on the path) is out of step with its replies; "
    "mailctl sent nothing more on that connection"
)


class RepliesOutOfStep(SMTPException):
    """The server sent output nobody asked for, so the next reply would answer the wrong
    command; the client has closed the connection. The text completes "<host:port> ...".

    An aiosmtplib exception, so every place that already contains aiosmtplib failures
    (QUIT, RSET after a refusal) contains this one too.
    """


# A reply quoted in a message is cut here: Gmail's four-line 550 is ~250 characters; a hostile
# server's hundred lines are not worth repeating.
_REPLY_LIMIT = 1000


def reply_text(reply: Reply) -> str:
    """The reply on one line, for an error message (mailctl.text.excerpt)."""
    return excerpt(f"{reply.code} {reply.message}", limit=_REPLY_LIMIT)


def to_reply(response: SMTPResponse | SMTPResponseException) -> Reply:
    return Reply(code=response.code, message=response.message)


def closing_note(closing: Reply | None) -> str:
    """What to add to an error when the server then closed with a 421 (RFC 5321 3.8)."""
    if closing is None:
        return ""
    return f"; then it closed the connection: {reply_text(closing)}"


# What a refusal says when the server offered AUTH and none was done: the likely fix.
_LOGIN_NOTE = "mailctl did not log in, though the server offers AUTH: the likely reason"
_LOGIN_FIX = Fix("username", when="log in")


def login_may_help(reply: Reply) -> bool:
    """Whether `reply` (to MAIL or RCPT) reads as "you are not allowed to send this way".

    RFC 3463 3.8: X.7.x is a security or policy status; RFC 4954 6: 530 5.7.0 means
    authentication required. A 554 without an enhanced code is how Postfix's client and
    relay restrictions answer when no enhanced codes are configured. Used only when the
    server offered AUTH and none was done, where logging in is the likely fix (a real
    Postfix on the submission port answers an anonymous RCPT with 554 5.7.1 "Client host
    rejected: Access denied").
    """
    enhanced = reply.enhanced
    if enhanced is not None:
        return enhanced[2:4] == "7." or enhanced[2:] == "7"
    return reply.code in (530, 554)


def reply_error(
    reply: Reply,
    context: str,
    details: dict[str, Any] | None = None,
    *,
    closing: Reply | None = None,
    anonymous: bool = False,
) -> MailctlError:
    """A server refusal as SmtpTransientError (4xx) or SmtpPermanentError (5xx).

    `closing`: the 421 the server sent after this refusal, named in the message too.
    `anonymous`: the server offered AUTH and none was done; a policy refusal then says
    that logging in is the likely fix.
    """
    if reply.code == 421:
        closing = None  # the reply itself says it: do not repeat it
    merged: dict[str, Any] = dict(details or {})
    merged["reply"] = to_data(reply)
    if closing is not None:
        merged["closing_reply"] = to_data(closing)
    message = f"{context}: {reply_text(reply)}{closing_note(closing)}"
    if reply.is_transient:
        return SmtpTransientError(message, hint="try again later", details=merged)
    if reply.is_permanent:
        if anonymous and login_may_help(reply):
            return SmtpPermanentError(message, details=merged, hint=_LOGIN_NOTE, fixes=[_LOGIN_FIX])
        return SmtpPermanentError(message, details=merged)
    return ProtocolError(f"{context}: unexpected reply {reply_text(reply)}", details=merged)


def refusal_error(
    refused: Sequence[RecipientResult],
    results: Sequence[RecipientResult],
    where: str,
    *,
    closing: Reply | None = None,
    allow_partial: bool = False,
    anonymous: bool = False,
) -> MailctlError:
    """RSET was sent; say which recipients were refused and whether retrying can help.

    `closing`: the 421 the server sent after the refusals (Postfix at its hard error
    limit); it is named, but the refusals decide permanent or transient (`refusal_status`).
    Partial delivery is offered only when it would send something: some recipient was
    accepted and `allow_partial` was not already given. `anonymous`: the server offered
    AUTH and none was done; when every refusal is a policy one, logging in is the fix.
    """
    details: dict[str, Any] = {"recipients": to_data(results)}
    if closing is not None:
        details["closing_reply"] = to_data(closing)
    listed = "; ".join(f"{r.address}: {reply_text(r.reply)}" for r in refused)
    listed += closing_note(closing)
    nothing = "nothing was sent"
    if refusal_status(r.reply.code for r in refused) is TransactionStatus.REFUSED:
        count = f"{len(refused)} of {len(results)} recipients"
        message = f"{where} refused {count}, {nothing}: {listed}"
        if anonymous and all(login_may_help(r.reply) for r in refused):
            # Not the addresses: the server will not take mail from an anonymous client.
            return SmtpPermanentError(
                message,
                hint=_LOGIN_NOTE,
                details=details,
                fixes=[_LOGIN_FIX],
            )
        fixes = []
        if not allow_partial and len(refused) < len(results):
            fixes.append(Fix("allow_partial", when="to send to the others anyway"))
        return SmtpPermanentError(
            message,
            hint="fix or drop the refused addresses",
            details=details,
            fixes=fixes,
        )
    return SmtpTransientError(
        f"{where} deferred {len(refused)} of {len(results)} recipients, {nothing}: {listed}",
        hint="try again later",
        details=details,
    )


def transport_error(
    err: BaseException,
    where: str,
    phase: str,
    timeout: float,
    details: dict[str, Any] | None = None,
    *,
    settings: ServerSettings | None = None,
) -> MailctlError:
    """Map aiosmtplib/ssl/socket failures after TCP connect to one-line mailctl errors.

    `settings` (when known) let TLS failures and a missing greeting name the security the
    server speaks: an implicit-TLS port says nothing until it gets a ClientHello.
    """
    if isinstance(err, ssl.SSLError) or _has_ssl_cause(err):
        return map_ssl_error(err, host=where, settings=settings)
    if isinstance(err, TIMEOUT_TYPES):
        fixes = []
        if phase == "greeting" and settings is not None:
            fixes = security_fixes(Protocol.SMTP, tried=settings.security, seen="silence")
        return TimeoutFailure(
            f"{where} did not answer {phase} within {timeout:g}s",
            details=details,
            hint="an implicit-TLS port sends nothing until the client starts TLS"
            if fixes
            else None,
            fixes=fixes,
        )
    if isinstance(err, (SMTPServerDisconnected, ConnectionError, EOFError)) or isinstance(
        err.__cause__, ConnectionError
    ):
        return ConnectionLostError(f"{where} closed the connection during {phase}", details=details)
    if isinstance(err, SMTPResponseException):
        return reply_error(to_reply(err), f"{where} refused {phase}", details)
    text = excerpt(str(err)) or type(err).__name__
    if isinstance(err, OSError):
        return ConnectionLostError(f"{where}: {phase} failed: {text}", details=details)
    if isinstance(err, RepliesOutOfStep):  # its text says when: "sent a reply nobody..."
        message, hint = f"{where} {text}", _OUT_OF_STEP_HINT
    else:
        message, hint = f"{where}: {phase} failed: {text}", None
    return ProtocolError(message, hint=hint, details=details)


def _has_ssl_cause(err: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = err.__cause__ or err.__context__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return True
        current = current.__cause__ or current.__context__
    return False
