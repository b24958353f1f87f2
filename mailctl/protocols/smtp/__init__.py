"""SMTP client sessions over aiosmtplib: required STARTTLS, one AUTH mechanism, transactions.

`session` holds `SmtpSession`; `outcome` (`TransactionOutcome`, the one per-transaction
result of this path and of protocols.pipeline, and the reply rules that decide it),
`client` (the aiosmtplib subclass), `connect` (socket, EHLO, STARTTLS, AUTH), `envelope`
(paths, SIZE, line lengths, queue ids) and `errors` (replies and library failures ->
mailctl.errors) are its parts.
"""

from mailctl.protocols.smtp.envelope import parse_queue_id
from mailctl.protocols.smtp.outcome import (
    TransactionOutcome,
    TransactionStatus,
    deciding_refusal,
    rcpt_status,
    refusal_status,
    reply_status,
    worst,
)
from mailctl.protocols.smtp.session import (
    AUTO_MECHANISMS,
    SessionInfo,
    SessionOptions,
    SmtpSession,
)

__all__ = [
    "AUTO_MECHANISMS",
    "SessionInfo",
    "SessionOptions",
    "SmtpSession",
    "TransactionOutcome",
    "TransactionStatus",
    "deciding_refusal",
    "parse_queue_id",
    "rcpt_status",
    "refusal_status",
    "reply_status",
    "worst",
]
