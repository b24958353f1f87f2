"""bulk-send's CSV source: header, dialect, encodings, line numbers, per-row errors, identity,
and memory that does not grow with the number of rows."""

from __future__ import annotations

import csv
import hashlib
import io
import os
from pathlib import Path

import pytest

from mailctl.core.bulk import CsvSource, Row
from mailctl.errors import (
    ExitCode,
    InputDataError,
    NoInputError,
    NotRegularFileError,
    UsageError,
)
from tests.bounded_run import MIB, run_python


def _write(tmp_path: Path, data: bytes | str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def test_bom_sniffed_semicolons_and_multiline_fields_keep_line_numbers(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        b"\xef\xbb\xbfname;email;note\r\n"
        b'Ann;ann@example.test;"two\r\nlines"\r\n'
        b"\r\n"  # a blank line: skipped, counted
        b'Bob;bob@example.test;"a ""quoted""\nword\nand three"\r\n'
        b"Cid;cid@example.test;plain\r\n",
    )
    source = CsvSource(path)
    assert source.header == ("name", "email", "note")
    assert source.dialect.delimiter == ";"
    rows = list(source)
    spans = [(row.index, row.line, row.end_line) for row in rows]
    assert spans == [(1, 2, 3), (2, 5, 7), (3, 8, 8)]
    assert rows[0].fields == {"name": "Ann", "email": "ann@example.test", "note": "two\r\nlines"}
    assert rows[1].fields["note"] == 'a "quoted"\nword\nand three'
    assert all(row.error is None for row in rows)


@pytest.mark.parametrize(
    ("given", "char"), [("tab", "\t"), ("\\t", "\t"), ("\t", "\t"), ("|", "|"), ("semicolon", ";")]
)
def test_delimiter_given(tmp_path: Path, given: str, char: str) -> None:
    path = _write(tmp_path, f"a{char}b\n1{char}2,3\n")
    source = CsvSource(path, delimiter=given)
    assert [row.fields for row in source] == [{"a": "1", "b": "2,3"}]


@pytest.mark.parametrize("given", ["", ",,", '"', "a", " ", "\n"])
def test_bad_delimiter_is_a_usage_error(tmp_path: Path, given: str) -> None:
    path = _write(tmp_path, "a,b\n1,2\n")
    with pytest.raises(UsageError, match="delimiter"):
        CsvSource(path, delimiter=given)


def test_sniffing_tab_and_single_column(tmp_path: Path) -> None:
    assert CsvSource(_write(tmp_path, "a\tb\tc\n1\t2\t3\n", "t.csv")).dialect.delimiter == "\t"
    one = CsvSource(_write(tmp_path, "email\nx@example.test\n", "o.csv"))
    assert one.dialect.delimiter == ","
    assert [row.fields for row in one] == [{"email": "x@example.test"}]
    # commas inside quoted fields do not make the comma win over the real delimiter
    text = 'a;b\n"1,2,3";x\n"4,5";y\n'
    assert CsvSource(_write(tmp_path, text, "q.csv")).dialect.delimiter == ";"


def test_encodings(tmp_path: Path) -> None:
    text = "name,email\nJosé,j@example.test\nAnn,a@example.test\n"
    path = _write(tmp_path, text.encode("cp1252"))
    assert next(iter(CsvSource(path, encoding="cp1252"))).fields["name"] == "José"
    # read as UTF-8: that row is refused, with its line and column; the next one is fine
    rows = list(CsvSource(path))
    assert rows[0].error is not None
    assert rows[0].error.exit_code == ExitCode.DATAERR
    assert "line 2" in rows[0].error.message and "'name'" in rows[0].error.message
    assert "--encoding" in (rows[0].error.hint or "")
    assert rows[1].error is None
    # a byte-order mark under plain utf-8, and UTF-16 with its own
    bom = _write(tmp_path, b"\xef\xbb\xbfemail\nx@example.test\n", "bom.csv")
    assert CsvSource(bom, encoding="utf-8").header == ("email",)
    utf16 = _write(tmp_path, "email,name\nx@example.test,Zoë\n".encode("utf-16"), "u16.csv")
    assert next(iter(CsvSource(utf16, encoding="utf-16"))).fields["name"] == "Zoë"
    with pytest.raises(UsageError, match="encoding"):
        CsvSource(path, encoding="no-such-codec")
    with pytest.raises(UsageError, match="encoding"):
        CsvSource(path, encoding="rot13")  # a codec, but not bytes <-> text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("name,email,name\n", r"column 'name' twice \(columns 1 and 3\)"),
        ("name, email ,email\n", r"column 'email' twice \(columns 2 and 3\)"),
        ("name,,email\n", "column 2 of the header row has no name"),
        ("name,email,\n", "column 3 of the header row has no name"),
    ],
)
def test_header_problems_refuse_the_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputDataError, match=message) as info:
        CsvSource(_write(tmp_path, text))
    assert info.value.exit_code == ExitCode.DATAERR
    assert info.value.hint


def test_header_names_trimmed_and_kept_raw(tmp_path: Path) -> None:
    source = CsvSource(_write(tmp_path, " name , email\nA,a@example.test\n"))
    assert source.header == ("name", "email")
    assert source.raw_header_line() == (" name ", " email")


def test_blank_lines_and_rows_of_empty_cells_are_skipped(tmp_path: Path) -> None:
    rows = list(CsvSource(_write(tmp_path, "\n\na,b\n1,2\n\n,\n3,\n,,\n\n")))
    assert [(row.line, row.index, row.values) for row in rows] == [
        (4, 1, ("1", "2")),
        (7, 2, ("3", "")),
    ]
    with pytest.raises(InputDataError, match="line 2: column 1 of the header row has no name"):
        CsvSource(_write(tmp_path, "\n,,\na,b\n", "empty-header.csv"))


def test_ragged_rows_are_errors_of_their_row_only(tmp_path: Path) -> None:
    path = _write(tmp_path, 'a,b,c\n1,2,3\n1,2\n1,2,3,4\n"x\ny",2\n7,8,9\n')
    rows = list(CsvSource(path))
    assert [row.error is None for row in rows] == [True, False, False, False, True]
    few, many, spanning = (row.error for row in rows[1:4])
    assert few is not None and many is not None and spanning is not None
    assert few.message.endswith("line 3: 2 fields, the header has 3")
    assert many.message.endswith("line 4: 4 fields, the header has 3")
    assert "quote" in (many.hint or "")
    assert spanning.message.endswith("lines 5-6: 2 fields, the header has 3")
    assert rows[1].fields == {"a": "1", "b": "2"}
    assert rows[2].values == ("1", "2", "3", "4")
    assert rows[4].line == 7


def test_fields_of_several_megabytes(tmp_path: Path) -> None:
    big = "x" * (5 * MIB)
    path = tmp_path / "big.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "body"])
        writer.writerow(["a@example.test", f"line one\n{big}"])
        writer.writerow(["b@example.test", "short"])
    rows = list(CsvSource(path))
    assert len(rows[0].fields["body"]) == len(big) + 9
    assert (rows[1].line, rows[1].fields["body"]) == (4, "short")
    assert csv.field_size_limit() == 131072  # the process-wide bound is put back


def test_a_field_over_the_bound_names_its_line(tmp_path: Path) -> None:
    quoted = _write(tmp_path, 'email,body\na@x.test,ok\nb@x.test,"' + "y\n" * 600 + '"\n', "q.csv")
    with pytest.raises(InputDataError, match="line 3: a field is longer than 1 KiB"):
        list(CsvSource(quoted, max_field=1024))
    plain = _write(tmp_path, "email,body\na@x.test,ok\nb@x.test," + "z" * 2000 + "\n", "p.csv")
    with pytest.raises(InputDataError, match="line 3 is longer than 1 KiB"):
        list(CsvSource(plain, max_field=1024))


def test_a_quote_left_open_is_bounded_and_named(tmp_path: Path) -> None:
    # the open quote swallows the rest of the file: stopped at the bound, not read whole
    text = 'email,body\na@x.test,ok\nb@x.test,"oops\n' + "c@x.test,fine\n" * 2000
    with pytest.raises(InputDataError, match="line 3: a field is longer than 4 KiB"):
        list(CsvSource(_write(tmp_path, text), max_field=4096))


def test_a_row_over_its_bound_names_its_lines(tmp_path: Path) -> None:
    field = '"' + "w\n" * 1500 + '"'  # 3,000 characters on 1,501 lines, under max_field
    text = f"a,b,c,d\n1,2,3,4\n{field},{field},{field},{field}\n"
    with pytest.raises(InputDataError, match=r"lines 3-\d+: the row is longer than 8 KiB"):
        list(CsvSource(_write(tmp_path, text), max_field=4096, max_row=8192))


def test_identity(tmp_path: Path) -> None:
    path = _write(tmp_path, "a,b\n1,2\n3,4\n1,2\n1,2\n1,\n1\n")
    rows = list(CsvSource(path))
    first = rows[0].identity
    assert len(first) == 64 and int(first, 16) >= 0
    expected = [first, rows[1].identity, f"{first}#2", f"{first}#3"]
    assert [row.identity for row in rows[:4]] == expected
    assert len({row.identity for row in rows}) == 6  # empty "b" and missing "b" differ
    # every pass gives the same identities; so does the same data with columns reordered
    assert [row.identity for row in CsvSource(path)] == [row.identity for row in rows]
    swapped = _write(tmp_path, "b,a\n2,1\n4,3\n", "swapped.csv")
    assert [row.identity for row in CsvSource(swapped)] == [rows[0].identity, rows[1].identity]
    renamed = _write(tmp_path, "a,c\n1,2\n", "renamed.csv")
    assert next(iter(CsvSource(renamed))).identity != first


def test_identity_is_pinned(tmp_path: Path) -> None:
    """Journals outlive mailctl versions: if this changes, every row of an old journal looks
    new on a rerun (duplicate detection would be all that stops a second message)."""
    path = _write(tmp_path, "name,email\nAnn,ann@example.test\n")
    canonical = '[["email","name"],["ann@example.test","Ann"]]'
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert expected == "fb4e51d44c26c99479c9dd97f227da907407346a41499cda18efbf6502ca9abd"
    assert next(iter(CsvSource(path))).identity == expected


def test_many_identical_rows_beyond_the_bloom_filter_batch(tmp_path: Path) -> None:
    lines = ["a,b"]
    for i in range(10_000):
        lines.append(f"{i % 3000},x")  # 3,000 distinct rows, most seen 3 or 4 times
    rows = list(CsvSource(_write(tmp_path, "\n".join(lines) + "\n")))
    assert len({row.identity for row in rows}) == 10_000
    assert rows[9_000].identity.endswith("#4")
    assert rows[2_999].identity == rows[2_999].identity.split("#")[0]


def test_file_changed_between_passes(tmp_path: Path) -> None:
    path = _write(tmp_path, "a\n1\n")
    source = CsvSource(path)
    assert len(list(source)) == 1
    path.write_text("a\n1\n2\n")
    with pytest.raises(InputDataError, match="changed while mailctl was reading it"):
        list(source)
    # changed during a pass: found when the pass ends
    grow = _write(tmp_path, "a\n1\n2\n", "grow.csv")
    growing = CsvSource(grow)
    rows = iter(growing)
    next(rows)
    with grow.open("a") as handle:
        handle.write("3\n")
    with pytest.raises(InputDataError, match="changed while mailctl was reading it"):
        list(rows)


def test_missing_and_not_regular(tmp_path: Path) -> None:
    with pytest.raises(NoInputError, match="does not exist"):
        CsvSource(tmp_path / "nope.csv")
    with pytest.raises(NotRegularFileError):
        CsvSource(tmp_path)
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError):
        CsvSource(fifo)  # refused at once: never blocks waiting for a writer


def test_row_is_what_the_plan_says() -> None:
    row = Row(line=2, index=1, fields={"a": "1"}, identity="ab")
    assert (row.values, row.error) == ((), None)


_STREAM = """
import sys
from mailctl.core.bulk import CsvSource
count = 0
for row in CsvSource(sys.argv[1]):
    assert row.error is None, row.error
    count += 1
print(count, file=sys.stderr)
"""


def _generate(path: Path, rows: int) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "note"])
        for i in range(rows):
            n = i % (rows // 2)  # every row twice: the occurrence counting is exercised
            writer.writerow([f"user{n}@example.test", f"Name {n}", "a\nb" if n % 7 == 0 else "c"])


def test_streaming_memory_does_not_grow_with_rows(tmp_path: Path) -> None:
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    _generate(small, 20_000)
    _generate(large, 400_000)
    assert large.stat().st_size > 12 * MIB
    runs = [
        run_python(["-c", _STREAM, str(path)], timeout=120, address_space=512 * MIB)
        for path in (small, large)
    ]
    for run, rows in zip(runs, (20_000, 400_000), strict=True):
        assert run.code == 0, run.stderr
        assert run.lines[-1] == str(rows)
    # a list of 400,000 rows would take hundreds of MB; the difference allowed is noise
    growth = runs[1].peak_rss - runs[0].peak_rss
    assert growth < 12 * MIB, (runs[0].peak_rss, runs[1].peak_rss)


def test_rows_from_a_stream_equal_the_csv_module(tmp_path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    data = [["h1", "h2"], ["a\r\nb", 'q"uote'], ["", "x,y"], ["\u2603", " lead"]]
    writer.writerows(data)
    rows = list(CsvSource(_write(tmp_path, buffer.getvalue())))
    assert [list(row.values) for row in rows] == data[1:]


def _whole_sample_dialect(sample: str) -> str:
    """The sniffing rule, reading every row of the sample (as before it stopped early)."""
    from mailctl.core.bulk.rows import SNIFF_DELIMITERS, SNIFF_ROWS, SNIFF_SAMPLE, _with_delimiter

    truncated = len(sample) >= SNIFF_SAMPLE
    best, best_score = ",", (0.0, 0)
    for char in SNIFF_DELIMITERS:
        rows = [row for row in csv.reader(io.StringIO(sample), _with_delimiter(char)) if row]
        if truncated and len(rows) > 1:
            rows.pop()
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        body = rows[1:SNIFF_ROWS] or rows[:1]
        score = (sum(len(row) == width for row in body) / len(body), width)
        if score > best_score:
            best, best_score = char, score
    return best


@pytest.mark.parametrize("seed", range(40))
def test_sniffing_reads_only_the_rows_it_scores(seed: int) -> None:
    # _dialect parses the first SNIFF_ROWS + 1 rows per delimiter, not the whole 64 KiB
    # sample four times: the same delimiter as the rule applied to every row of the sample.
    import random

    from mailctl.core.bulk.rows import SNIFF_ROWS, SNIFF_SAMPLE, _dialect

    rng = random.Random(seed)
    cells = ["a", "b c", '"x,y"', '"p;q"', "1|2", "t\tu", '"multi\nline"', ""]
    # Some samples end (cut by SNIFF_SAMPLE) before, at, or after the rows scored.
    cells.append("z" * rng.choice([0, 200, 700, 1400]))
    lines = []
    for _ in range(rng.choice([1, 2, SNIFF_ROWS - 1, SNIFF_ROWS, SNIFF_ROWS + 1, 3000])):
        sep = rng.choice(",;\t|")
        lines.append(sep.join(rng.choice(cells) for _ in range(rng.randint(1, 5))))
    sample = ("\n".join(lines) + "\n")[:SNIFF_SAMPLE]
    assert _dialect(None, sample).delimiter == _whole_sample_dialect(sample)


def test_sniffing_leaves_out_the_row_cut_by_the_samples_end() -> None:
    from mailctl.core.bulk.rows import SNIFF_SAMPLE, _dialect

    # Whole, the last row would tie ',' with ';' (',' wins ties); it is cut, so ';' wins.
    sample = ("h1,h2;h3\n" + "x" * (SNIFF_SAMPLE - 100) + ";y\n" + "p,q" + "r" * 200)[:SNIFF_SAMPLE]
    assert _dialect(None, sample).delimiter == _whole_sample_dialect(sample) == ";"
