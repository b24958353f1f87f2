"""RFC 2920 pipelined transactions on an established `SmtpSession` (bench, bulk-send).

`driver` (`pipelined`, `Pipeline`), `prepare` (wire bytes made once), `reader` (bounded
reply reader), `replies` (the Reply cache) and `sources` (item sources). Each transaction
ends in a `TransactionOutcome`, the type `SmtpSession.transact` returns too (defined in
protocols/smtp/outcome.py, re-exported here).
"""

from mailctl.protocols.pipeline.driver import Pipeline, pipelined
from mailctl.protocols.pipeline.prepare import (
    PreparedTransaction,
    WireMessage,
    prepare_message,
    prepare_transaction,
)
from mailctl.protocols.pipeline.reader import MAX_REPLY_LINE
from mailctl.protocols.smtp.outcome import TransactionOutcome, TransactionStatus

__all__ = [
    "MAX_REPLY_LINE",
    "Pipeline",
    "PreparedTransaction",
    "TransactionOutcome",
    "TransactionStatus",
    "WireMessage",
    "pipelined",
    "prepare_message",
    "prepare_transaction",
]
