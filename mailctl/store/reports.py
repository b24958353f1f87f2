"""bulk-send's CSV outputs: the per-row report and the failed rows, to feed back in.

Both are streamed (rows are written as they come, a million-row run is never held) and
written by `outputs.open_output`'s rule: a regular file atomically (temp, fsync, rename: a
report cut short by an error leaves the old file), a FIFO, device or /dev/stdout in place.

The report is read in spreadsheets, and its text cells hold what recipients and servers
wrote (a CSV field, a reply text): a cell a spreadsheet would read as a formula (OWASP "CSV
Injection": a first character among = + - @ TAB CR, also after leading blanks, which some
importers trim) gets a leading apostrophe, which spreadsheets take as "this is text" and do
not show. The numbers mailctl writes itself (line, reply code, attempts, latency) are never
negative and stay plain numbers. The failed-rows CSV is different: it is input for mailctl,
so its fields are written back exactly as read (neutralising them would change the data
and the rows' identity in the journal); it holds nothing the user did not give.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final, Protocol

from mailctl.errors import CantCreateError
from mailctl.store.outputs import OutputStream, open_output
from mailctl.text import quote

__all__ = [
    "REPORT_HEADER",
    "ReportRecord",
    "neutralise",
    "report_row",
    "write_failed_csv",
    "write_report",
]

REPORT_HEADER: Final = (
    "line",
    "recipient",
    "status",
    "code",
    "enhanced",
    "text",
    "attempts",
    "latency_ms",
    "message_id",
    "queue_id",
)
# OWASP CSV Injection: the first characters that make Excel, LibreOffice Calc or Google Sheets
# read a cell as a formula (TAB and CR included: some importers drop them and read what
# follows), plus their full-width forms, which some locales' spreadsheets take as the ASCII
# ones.
_FORMULA_START: Final = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
# Blanks an importer may trim before it looks at the first character (TAB and CR are above).
_LEADING_BLANKS: Final = " \n\u00a0\u3000"
_MAX_TEXT: Final = 2000  # a reply text cell: a hostile server's 1 MB reply stays one line
_FLUSH_BYTES: Final = 64 * 1024  # rows are buffered up to this much, then written


class ReportRecord(Protocol):
    """What the report needs of a row's record (the journal's `RowRecord` has all of it)."""

    @property
    def line(self) -> int: ...
    @property
    def recipient(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def code(self) -> int | None: ...
    @property
    def enhanced(self) -> str | None: ...
    @property
    def text(self) -> str | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def latency_ms(self) -> float | None: ...
    @property
    def message_id(self) -> str: ...
    @property
    def queue_id(self) -> str | None: ...


def neutralise(cell: str) -> str:
    """Return `cell` so no spreadsheet reads it as a formula: a leading apostrophe when its
    first character (after blanks an importer may trim) could start one."""
    stripped = cell.lstrip(_LEADING_BLANKS)
    if stripped and stripped[0] in _FORMULA_START:
        return "'" + cell
    return cell


def _one_line(text: str | None) -> str:
    """A server's reply text on one line (multi-line replies joined), capped."""
    if not text:
        return ""
    joined = " ".join(text.split())
    return joined if len(joined) <= _MAX_TEXT else joined[:_MAX_TEXT] + "..."


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def report_row(record: ReportRecord) -> list[str]:
    """One report line: mailctl's own numbers as they are, every text cell neutralised."""
    state = str(getattr(record.state, "value", record.state))
    return [
        str(int(record.line)),
        neutralise(record.recipient),
        neutralise(state),
        "" if record.code is None else str(int(record.code)),
        neutralise(record.enhanced or ""),
        neutralise(_one_line(record.text)),
        str(int(record.attempts)),
        _number(record.latency_ms),
        neutralise(record.message_id),
        neutralise(record.queue_id or ""),
    ]


def write_report(path: Path, records: Iterable[ReportRecord]) -> int:
    """Write the report CSV (UTF-8, comma, CRLF: RFC 4180) from `records`, streamed.

    Returns the number of rows written. Raises CantCreateError (73) naming the path.
    """
    with open_output(path, what="report") as out:
        # backslashreplace: a recipient with undecodable bytes still gets its line
        writer = _Rows(out, csv.excel, encoding="utf-8", errors="backslashreplace", path=path)
        writer.row(REPORT_HEADER)
        count = 0
        for record in records:
            writer.row(report_row(record))
            count += 1
        writer.flush()
    return count


def write_failed_csv(
    path: Path,
    header: Sequence[str],
    dialect: type[csv.Dialect] | csv.Dialect,
    rows: Iterable[Mapping[str, str]],
    *,
    encoding: str = "utf-8",
) -> int:
    """Write the failed-rows CSV: `header`, then each row's fields in header order, in the input's
    `dialect` and `encoding`, so the file is a valid input for the next run.

    A "utf-8-sig" input is written as UTF-8 without a BOM (readers tolerate either). Returns
    the number of rows. Raises CantCreateError (73) naming the path, also when a field cannot
    be written in that dialect or encoding (the old file is unchanged then).
    """
    if encoding.lower().replace("_", "-") in ("utf-8-sig", "utf8-sig"):
        encoding = "utf-8"
    with open_output(path, what="failed-rows CSV") as out:
        writer = _Rows(out, _writable(dialect), encoding=encoding, errors="strict", path=path)
        writer.row(header)
        count = 0
        for fields in rows:
            writer.row([fields.get(name, "") for name in header])
            count += 1
        writer.flush()
    return count


def _writable(dialect: type[csv.Dialect] | csv.Dialect) -> type[csv.Dialect] | csv.Dialect:
    """`dialect`, or a copy that can write a quote character: a sniffed dialect may have
    neither doublequote nor an escapechar, and then csv refuses any field holding a quote."""
    if getattr(dialect, "doublequote", True) or getattr(dialect, "escapechar", None):
        return dialect

    class Writable(csv.Dialect):
        delimiter = dialect.delimiter
        quotechar = dialect.quotechar or '"'
        escapechar = None
        doublequote = True
        skipinitialspace = dialect.skipinitialspace
        lineterminator = dialect.lineterminator
        quoting = dialect.quoting

    return Writable


class _Rows:
    """csv.writer into a small text buffer, encoded and written out every 64 KiB."""

    def __init__(
        self,
        out: OutputStream,
        dialect: type[csv.Dialect] | csv.Dialect,
        *,
        encoding: str,
        errors: str,
        path: Path,
    ) -> None:
        self._out = out
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, dialect=dialect)
        self._encoding = encoding
        self._errors = errors
        self._path = path
        self._rows = 0

    def row(self, cells: Sequence[str]) -> None:
        try:
            self._writer.writerow(cells)
        except csv.Error as err:
            raise CantCreateError(
                f"{quote(self._path)}: cannot write row {self._rows}: {err}",
                details={"file": str(self._path)},
            ) from err
        self._rows += 1
        if self._buffer.tell() >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        try:
            data = text.encode(self._encoding, self._errors)
        except UnicodeEncodeError as err:
            raise CantCreateError(
                f"{quote(self._path)}: a field cannot be written as {self._encoding}",
                hint="read the input with an encoding that holds every character, such as utf-8",
                details={"file": str(self._path)},
            ) from err
        except LookupError as err:
            raise CantCreateError(
                f"{quote(self._path)}: unknown encoding {quote(self._encoding)}",
                details={"file": str(self._path)},
            ) from err
        if data:
            self._out.write(data)
