"""The rows of a bulk-send CSV, streamed: header, dialect, line numbers, per-row problems, identity.

The file is read one physical line at a time (each line and each row bounded), never whole, so
memory does not grow with the number of rows; each pass (validation, then sending) reads it
again from the start. Problems with the file as a whole (no header row, an empty or repeated
column name, a field over the size bound, the file changing between passes) raise
InputDataError naming the line. Problems of one row (too many or too few fields, bytes that are
not text in the encoding) are carried by that row (`Row.error`), so a caller can report every
bad row and, if asked to skip invalid rows, send the others.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final, TextIO

from mailctl.errors import CantCreateError, InputDataError, UsageError
from mailctl.inputs import KIB, MIB, describe, open_regular
from mailctl.text import quote

if TYPE_CHECKING:
    import sqlite3

__all__ = ["MAX_FIELD", "CsvSource", "Row"]

MAX_FIELD: Final = 16 * MIB  # one field: a long HTML body or a data URL, not a database dump
SNIFF_SAMPLE: Final = 64 * KIB  # the header and enough rows to tell the delimiter by
SNIFF_ROWS: Final = 100
SNIFF_DELIMITERS: Final = ",;\t|"
DELIMITER_NAMES: Final = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
_LINE_ENDS: Final = ("\n", "\r")


# json.dumps with these options builds an encoder per call (~1 us a row): one, made once.
# Its output is the identity's canonical form: never change it (journals hold identities).
_CANONICAL: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Row:
    """One data row of the CSV."""

    line: int  # physical line where the row starts (the header is line 1)
    index: int  # 1-based data row number
    fields: dict[str, str]  # header -> value (for a ragged row: the columns it has)
    identity: str  # sha256 hex of the canonical fields, "#k" added for the k-th identical row
    values: tuple[str, ...] = ()  # the fields as read, in file order (for the failed-rows CSV)
    end_line: int = 0  # the last physical line of the row (> line for quoted multi-line fields)
    error: InputDataError | None = field(default=None, compare=False)  # why it cannot be sent


class CsvSource:
    """A CSV file with a header row, read as `Row`s; every `iter()` streams it from the start.

    `delimiter` (None: sniffed from the first SNIFF_SAMPLE characters, see _dialect),
    `encoding` (a Python codec; the default utf-8-sig drops a byte-order mark, which is also
    dropped from the first column name under plain utf-8), `max_field` (the bound on one field
    in characters; a physical line, too, since a line holding a bigger field cannot be read in
    bounded memory) and `max_row` (the bound on one row, all its lines together; default
    4 x max_field).

    Raises UsageError (64: unknown encoding, bad delimiter), NoInputError (66),
    NotRegularFileError and InputDataError (65: no header, empty or repeated column names).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        delimiter: str | None = None,
        encoding: str = "utf-8-sig",
        max_field: int = MAX_FIELD,
        max_row: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.label = f"CSV file {quote(str(path))}"
        self.encoding = _check_encoding(encoding)
        self.max_field = max_field
        self.max_row = max_row if max_row is not None else 4 * max_field
        self._stamp: tuple[int, ...] | None = None
        with self._open() as text:
            sample = text.read(SNIFF_SAMPLE)
        self.dialect: csv.Dialect = _dialect(delimiter, sample)
        records = self._records()
        try:
            first = next(records, None)
        finally:
            records.close()
        if first is None:
            raise InputDataError(
                f"{self.label} is empty",
                hint="the first line must be a header row naming the columns",
            )
        self.header_line, _, raw = first
        self._raw_header = tuple(raw)
        self.header: tuple[str, ...] = _header(self._raw_header, self.label, self.header_line)
        self._width = len(self.header)
        # Identity is over (name, value) pairs in name order, so reordering columns in a
        # spreadsheet keeps every row's identity (and a rerun sends nothing twice).
        self._order = sorted(range(self._width), key=lambda i: self.header[i])
        self._sorted_names = [self.header[i] for i in self._order]

    def raw_header_line(self) -> tuple[str, ...]:
        """The header row's fields exactly as read (before trimming): with `dialect`, what
        the failed-rows CSV writes to reproduce the header."""
        return self._raw_header

    def __iter__(self) -> Iterator[Row]:
        """Stream the data rows. Raises InputDataError naming the line for a field or row over
        its bound, a line the csv module cannot parse, or a file changed since it was opened."""
        seen = _Occurrences()
        records = self._records()
        try:
            next(records, None)  # the header
            for index, (line, end, values) in enumerate(records, start=1):
                yield self._row(line, end, index, values, seen)
        finally:
            records.close()
            seen.close()

    # -- reading ---------------------------------------------------------------------------

    def _open(self) -> TextIO:
        raw = open_regular(self.path, what="CSV file")
        try:
            self._check_unchanged(raw)
        except BaseException:
            raw.close()
            raise
        # newline="": the csv module sees line ends as they are (RFC 4180 quoted CRLF kept);
        # surrogateescape: a bad byte becomes a row's error instead of ending the whole run.
        return io.TextIOWrapper(raw, encoding=self.encoding, errors="surrogateescape", newline="")

    def _check_unchanged(self, stream: TextIO | BinaryIO) -> None:
        """The file is the one first read, as it was: the validation pass and the sending
        pass must see the same rows (checked when a pass opens it and when it ends)."""
        info = os.fstat(stream.fileno())
        stamp = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        if self._stamp is None:
            self._stamp = stamp
        elif stamp != self._stamp:
            raise InputDataError(
                f"{self.label} changed while mailctl was reading it",
                hint="let it be written completely, then run again",
            )

    def _records(self) -> Generator[tuple[int, int, list[str]], None, None]:
        """(first line, last line, fields) of every non-blank record, header included."""
        text = self._open()
        feed = _LineFeed(text, self.max_field, self.max_row, self.label)
        limit = csv.field_size_limit()
        try:
            reader = csv.reader(feed, self.dialect)
            header = True
            while True:
                start = feed.row_start = feed.lines + 1
                feed.row_chars = 0
                csv.field_size_limit(self.max_field)  # process-wide: set again at every row
                try:
                    values = next(reader, None)
                except csv.Error as err:
                    raise _csv_error(err, self.label, start, self.max_field) from None
                finally:
                    csv.field_size_limit(limit)
                if values is None:
                    self._check_unchanged(text)
                    return
                # A blank line reads as [], and spreadsheets leave rows of empty cells (",,")
                # below the data: nothing to send, so skipped (and counted). Not the header:
                # one without names is an error.
                if any(values) or (values and header):
                    header = False
                    yield start, feed.lines, values
        finally:
            text.close()

    def _row(self, line: int, end: int, index: int, values: list[str], seen: _Occurrences) -> Row:
        error: InputDataError | None = None
        if len(values) != self._width:
            error = _ragged(self.label, line, end, len(values), self._width)
        digest, bad = self._digest(values)
        if bad is not None and error is None:
            error = InputDataError(
                f"{self.label} {_lines(line, end)}: column {quote(bad)} holds bytes that are"
                f" not {self.encoding} text",
                hint="give the file's encoding with --encoding (e.g. cp1252, latin-1)",
                details={"line": line},
            )
        number = seen.number(digest)
        identity = digest.hex() if number == 1 else f"{digest.hex()}#{number}"
        fields = dict(zip(self.header, values, strict=False))
        return Row(
            line=line,
            index=index,
            fields=fields,
            identity=identity,
            values=tuple(values),
            end_line=end,
            error=error,
        )

    def _digest(self, values: list[str]) -> tuple[bytes, str | None]:
        """sha256 over the JSON of [names, values] in name order, extra fields after them.

        JSON's string escaping is fixed (unlike repr, which follows the Unicode database of
        the running Python), so a rerun under another Python finds the same identities. A
        missing field (short row) is null, not "". Also returns the first column whose value
        is not text in the encoding (a lone surrogate from surrogateescape), if any.
        """
        count = len(values)
        ordered: list[object] = [values[i] if i < count else None for i in self._order]
        if count > self._width:
            ordered.append(values[self._width :])
        text = _CANONICAL.encode([self._sorted_names, ordered])
        try:
            return hashlib.sha256(text.encode("utf-8")).digest(), None
        except UnicodeEncodeError:
            bad = next(
                (
                    name
                    for name, value in zip(self.header, values, strict=False)
                    if _undecoded(value)
                ),
                "",
            )
            return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest(), bad or None


class _LineFeed:
    """Physical lines for csv.reader, each at most `max_line` characters, counted, and the
    characters of the current row bounded (csv.reader reads no further than a row's end)."""

    def __init__(self, text: TextIO, max_line: int, max_row: int, label: str) -> None:
        self._readline = text.readline
        self._limit = max_line + 2  # the line end (CRLF) is not part of a field
        self._max_row = max_row
        self._label = label
        self.lines = 0
        self.row_start = 1
        self.row_chars = 0

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        line = self._readline(self._limit)
        if not line:
            raise StopIteration
        self.lines += 1
        if len(line) >= self._limit and not line.endswith(_LINE_ENDS):
            raise InputDataError(
                f"{self._label} line {self.lines} is longer than {describe(self._limit - 2)}",
                hint="a field is limited to that size; is the delimiter or encoding right?",
                details={"line": self.lines},
            )
        self.row_chars += len(line)
        if self.row_chars > self._max_row:
            raise InputDataError(
                f"{self._label} {_lines(self.row_start, self.lines)}: the row is longer than"
                f" {describe(self._max_row)}",
                hint="is a quote left open? a row is limited to that size",
                details={"line": self.row_start},
            )
        return line


class _Occurrences:
    """How many times each row digest has been seen in this pass, in bounded memory.

    A fixed-size Bloom filter answers "never seen" for almost every row; the first occurrences
    are written in batches to a private temporary SQLite file (its page cache bounded), which
    is asked only when the filter says "maybe". A Python set of a million digests would take
    ~100 MB; this takes the filter's 4 MiB plus SQLite's cache, whatever the row count.
    """

    BITS: Final = 1 << 25
    BATCH: Final = 4096

    def __init__(self) -> None:
        self._bits = bytearray(self.BITS // 8)
        self._pending: list[tuple[int]] = []
        self._db: sqlite3.Connection | None = None

    def number(self, digest: bytes) -> int:
        """1 for a digest not seen before in this pass, k for its k-th occurrence.

        Raises CantCreateError (73) when the temporary file cannot be written (TMPDIR).
        """
        import sqlite3

        try:
            return self._number(digest)
        except sqlite3.Error as err:
            raise CantCreateError(
                f"cannot write a temporary file to count identical CSV rows: {err}",
                hint="set TMPDIR to a writable folder with free space",
            ) from err

    def _number(self, digest: bytes) -> int:
        # 64 bits of the digest are the key: two different rows share it with probability
        # ~n^2/2^65 (3e-8 for a million rows), and then the second is numbered #2: still
        # distinct, and the same on every pass.
        key = int.from_bytes(digest[:8], "big", signed=True)
        bits = self._bits
        maybe = True
        for start in (8, 16, 24):
            bit = int.from_bytes(digest[start : start + 8], "big") % self.BITS
            byte, mask = bit >> 3, 1 << (bit & 7)
            if not bits[byte] & mask:
                maybe = False
                bits[byte] |= mask
        if not maybe:
            self._pending.append((key,))
            if len(self._pending) >= self.BATCH:
                self._write()
            return 1
        self._write()
        db = self._connect()
        found = db.execute("UPDATE seen SET n = n + 1 WHERE key = ? RETURNING n", (key,)).fetchone()
        if found is None:  # a false positive of the filter
            db.execute("INSERT INTO seen VALUES (?, 1)", (key,))
            return 1
        return int(found[0])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            import sqlite3

            # "": a private temporary file, deleted on close; never durable, so no journal.
            self._db = sqlite3.connect("", isolation_level=None)
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute("CREATE TABLE seen (key INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        return self._db

    def _write(self) -> None:
        if self._pending:
            self._connect().executemany("INSERT INTO seen VALUES (?, 1)", self._pending)
            self._pending.clear()


def _undecoded(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _lines(line: int, end: int) -> str:
    return f"line {line}" if end <= line else f"lines {line}-{end}"


def _ragged(label: str, line: int, end: int, count: int, width: int) -> InputDataError:
    many = count > width
    return InputDataError(
        f"{label} {_lines(line, end)}: {count} field{'s' if count != 1 else ''},"
        f" the header has {width}",
        hint=(
            "quote a value that contains the delimiter"
            if many
            else "a delimiter is missing, or a quote is left open"
        ),
        details={"line": line, "fields": count, "columns": width},
    )


def _csv_error(err: csv.Error, label: str, line: int, max_field: int) -> InputDataError:
    if "field larger than field limit" in str(err):
        return InputDataError(
            f"{label} line {line}: a field is longer than {describe(max_field)}",
            hint="is a quote left open? a field is limited to that size",
            details={"line": line},
        )
    return InputDataError(f"{label} line {line}: {err}", details={"line": line})


def _header(raw: tuple[str, ...], label: str, line: int) -> tuple[str, ...]:
    """The column names: trimmed (spreadsheets leave blanks around them), a byte-order mark
    dropped, none empty, none twice (a row would be a dict with one value lost)."""
    names = [name.strip() for name in raw]
    names[0] = names[0].removeprefix("\ufeff").strip()
    where: dict[str, int] = {}
    for number, name in enumerate(names, start=1):
        if not name:
            raise InputDataError(
                f"{label} line {line}: column {number} of the header row has no name",
                hint="name every column in the first line (or remove the empty column)",
                details={"line": line, "column": number},
            )
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise InputDataError(
                f"{label} line {line}: the header row is not text in the file's encoding",
                hint="give the file's encoding with --encoding (e.g. cp1252, latin-1)",
                details={"line": line},
            ) from None
        if name in where:
            raise InputDataError(
                f"{label} line {line}: the header names column {quote(name)} twice"
                f" (columns {where[name]} and {number})",
                hint="give every column a different name",
                details={"line": line, "column": number},
            )
        where[name] = number
    return tuple(names)


def _check_encoding(encoding: str) -> str:
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise UsageError(
            f"unknown text encoding {quote(encoding)}",
            hint="give a codec name such as utf-8, cp1252, latin-1 or utf-16",
        )
    return encoding


def _dialect(delimiter: str | None, sample: str) -> csv.Dialect:
    """The dialect: the delimiter given, else the one of SNIFF_DELIMITERS that splits the
    sample's header into the most columns that its rows agree with (comma when none splits it).

    Not csv.Sniffer: it counts characters per physical line, so one quoted multi-line field
    or a ragged row makes it give up, and it reports doublequote False for a sample without
    quotes, which would misread a later RFC 4180 "" escape. Here each candidate is parsed
    by the csv module itself.
    """
    if delimiter is not None:
        char = DELIMITER_NAMES.get(delimiter.lower(), delimiter)
        if len(char) != 1 or char in '"\r\n' or char.isalnum() or char == " ":
            raise UsageError(
                f"bad delimiter {quote(delimiter)}",
                hint="give one character such as , ; | or 'tab'",
            )
        return _with_delimiter(char)
    truncated = len(sample) >= SNIFF_SAMPLE
    best, best_score = ",", (0.0, 0)
    for char in SNIFF_DELIMITERS:
        # The rows scored (the first SNIFF_ROWS) and one more, not the whole sample 4 times.
        found = (row for row in csv.reader(io.StringIO(sample), _with_delimiter(char)) if row)
        rows = list(itertools.islice(found, SNIFF_ROWS + 1))
        if truncated and 1 < len(rows) <= SNIFF_ROWS:
            rows.pop()  # the sample's last row (read whole): cut in half by its end
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        body = rows[1:SNIFF_ROWS] or rows[:1]
        agree = sum(len(row) == width for row in body) / len(body)
        score = (agree, width)
        if score > best_score:
            best, best_score = char, score
    return _with_delimiter(best)


def _with_delimiter(char: str) -> csv.Dialect:
    """RFC 4180 (quote '"', doubled inside a field) with this delimiter."""

    class Dialect(csv.excel):
        delimiter = char

    return Dialect()
