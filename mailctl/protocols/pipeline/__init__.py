"""RFC 2920 pipelined transactions on an established `SmtpSession` (bench, bulk-send).

`driver` (`pipelined`, `Pipeline`), `prepare` (wire bytes made once), `results` (the
per-transaction outcome), `reader` (bounded reply reader) and `sources` (item sources).
"""

from mailctl.protocols.pipeline.driver import Pipeline, pipelined
from mailctl.protocols.pipeline.prepare import (
    PreparedTransaction,
    WireMessage,
    prepare_message,
    prepare_transaction,
)
from mailctl.protocols.pipeline.reader import MAX_REPLY_LINE
from mailctl.protocols.pipeline.results import TransactionResult, TransactionStatus

__all__ = [
    "MAX_REPLY_LINE",
    "Pipeline",
    "PreparedTransaction",
    "TransactionResult",
    "TransactionStatus",
    "WireMessage",
    "pipelined",
    "prepare_message",
    "prepare_transaction",
]
