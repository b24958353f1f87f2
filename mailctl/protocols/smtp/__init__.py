"""SMTP client sessions over aiosmtplib: required STARTTLS, one AUTH mechanism, transactions.

`session` holds `SmtpSession`; `client` (the aiosmtplib subclass), `connect` (socket, EHLO,
STARTTLS, AUTH), `envelope` (paths, SIZE, line lengths, queue ids) and `errors` (replies and
library failures -> mailctl.errors) are its parts.
"""

from mailctl.protocols.smtp.envelope import parse_queue_id
from mailctl.protocols.smtp.session import (
    AUTO_MECHANISMS,
    SessionInfo,
    SessionOptions,
    SmtpSession,
    Transaction,
)

__all__ = [
    "AUTO_MECHANISMS",
    "SessionInfo",
    "SessionOptions",
    "SmtpSession",
    "Transaction",
    "parse_queue_id",
]
