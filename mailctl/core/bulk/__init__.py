"""bulk-send: CSV rows (`rows`), the crash-safe journal (`journal`)."""

from mailctl.core.bulk.journal import (
    Journal,
    JournalChanges,
    RowRecord,
    RowState,
)
from mailctl.core.bulk.rows import CsvSource, Row

__all__ = [
    "CsvSource",
    "Journal",
    "JournalChanges",
    "Row",
    "RowRecord",
    "RowState",
]
