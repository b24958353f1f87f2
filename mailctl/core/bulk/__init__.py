"""bulk-send: one personalised message per CSV row, through the session pool, never losing a row.

`run` (`bulk_send`: validation, dry run, the send), `engine` (the send loop over the core
session pool), `models` (request, result, progress, the stop switch), `cache` (rendered
messages kept from the validation pass), `hooks` (event log and metrics of a run), `rows`
(the CSV stream), `journal` (the SQLite journal of every row's state), `metrics` and
`eventlog` (--metrics-file/--metrics-port, --log-file) are its parts.
"""

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
