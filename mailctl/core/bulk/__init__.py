"""bulk-send: one personalised message per CSV row, through the session pool, never losing a
row: CSV rows (`rows`), the crash-safe journal (`journal`)."""

from mailctl.core.bulk.journal import (
    Journal,
    JournalBusyError,
    JournalChanges,
    RowRecord,
    RowState,
    TemplateChangedError,
    default_path,
)
from mailctl.core.bulk.rows import CsvSource, Row

__all__ = [
    "CsvSource",
    "Journal",
    "JournalBusyError",
    "JournalChanges",
    "Row",
    "RowRecord",
    "RowState",
    "TemplateChangedError",
    "default_path",
]
