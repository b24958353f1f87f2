"""bulk-send's journal: states, batching and durability, duplicates, reruns, the run lock,
and kill -9 at random points of a process that claims and finishes rows."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mailctl.core.bulk import CsvSource, Journal, JournalChanges, Row, RowState, default_path
from mailctl.core.bulk.journal import PAGE, TEXT_LIMIT, UNKNOWN_TEXT
from mailctl.errors import (
    ExitCode,
    InputDataError,
    JournalBusyError,
    JournalError,
    NotAJournalError,
    NotRegularFileError,
    TemplateChangedError,
)
from mailctl.models import Reply
from tests.bounded_run import MIB, run_python

ROOT = Path(__file__).resolve().parent.parent


def _db(path: Path, *, readonly: bool = False) -> contextlib.closing[sqlite3.Connection]:
    """A connection of another process's kind, closed at the end (`with connect()` is not)."""
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    return contextlib.closing(sqlite3.connect(uri, uri=True, isolation_level=None))


def _row(line: int, identity: str) -> Row:
    return Row(line=line, index=line - 1, fields={}, identity=identity)


def _state(path: Path, identity: str) -> str:
    """The state as another process would read it: only what is committed."""
    with _db(path, readonly=True) as db:
        return str(
            db.execute("SELECT state FROM rows WHERE identity = ?", (identity,)).fetchone()[0]
        )


def _finish_all(path: Path, plan: list[tuple[str, RowState, int]], identities: str) -> dict:
    """Claim `identities`, finish rows by `plan` in one buffer, flush: {identity: record}."""
    with Journal.open(path, template_digest="t") as journal:
        for n, identity in enumerate(identities, start=2):
            journal.add(_row(n, identity), recipient=f"{identity}@x.test")
        journal.claim(list(identities))
        for identity, state, attempts in plan:
            journal.finish(identity, state, attempts=attempts, text=f"{state} {attempts}")
        journal.flush()
        return {record.identity: record for record in journal.records()}


def test_a_batch_of_finishes_is_one_statement_with_the_same_meaning(tmp_path: Path) -> None:
    # Distinct rows are applied by one statement; a row finished twice in one buffer in order
    # (deferred then sent: the retry's attempts add up; sent then failed: sent is final).
    plan = [(f"r{n}", RowState.SENT if n % 3 else RowState.FAILED, 1) for n in range(2500)]
    identities = [identity for identity, _, _ in plan]
    statements: list[str] = []
    with Journal.open(tmp_path / "count", template_digest="t") as journal:
        for n, identity in enumerate(identities, start=2):
            journal.add(_row(n, identity), recipient=f"{identity}@x.test")
        journal.claim(identities)
        for identity, state, attempts in plan:
            journal.finish(identity, state, attempts=attempts)
        journal._db.set_trace_callback(statements.append)  # white-box: the journal's connection
        journal.flush()
        journal._db.set_trace_callback(None)
        states = {r.identity: r.state for r in journal.records()}
    assert states == {identity: state for identity, state, _ in plan}
    assert len([s for s in statements if s.startswith("UPDATE")]) <= 3  # not one per row
    twice = [
        ("a", RowState.DEFERRED, 1), ("a", RowState.SENT, 2),
        ("b", RowState.SENT, 1), ("b", RowState.FAILED, 1),
        ("c", RowState.FAILED, 1),
    ]  # fmt: skip
    records = _finish_all(tmp_path / "twice", twice, "abc")
    assert (records["a"].state, records["a"].attempts, records["a"].text) == (
        RowState.SENT, 3, "sent 2",
    )  # fmt: skip
    assert (records["b"].state, records["b"].attempts) == (RowState.SENT, 1)
    assert (records["c"].state, records["c"].attempts) == (RowState.FAILED, 1)


def test_a_claim_is_two_statements_whatever_the_batch(tmp_path: Path) -> None:
    # The journal's worker thread waits for the GIL after every SQLite step: not one a row.
    statements: list[str] = []
    with Journal.open(tmp_path / "j", template_digest="t") as journal:
        for n in range(40):
            journal.add(_row(n + 2, f"id{n}"), recipient=f"r{n}@x.test")
        journal.flush()
        journal._db.set_trace_callback(statements.append)  # white-box: the journal's connection
        assert journal.claim([f"id{n}" for n in range(20, 0, -1)]) == [
            f"id{n}" for n in range(20, 0, -1)
        ]
        journal._db.set_trace_callback(None)
    work = [s for s in statements if s.split()[0] in ("SELECT", "UPDATE")]
    assert len(work) == 2, statements


def _table(path: Path) -> list[tuple[object, ...]]:
    with _db(path, readonly=True) as db:
        return db.execute(
            "SELECT id, identity, line, recipient, rcpt_hash, state, text, message_id,"
            " first_run, seen_run FROM rows ORDER BY id"
        ).fetchall()


@pytest.mark.parametrize("seed", range(6))
def test_add_many_is_add_after_add(tmp_path: Path, seed: int) -> None:
    # The validation pass adds rows a batch at a time: the same records, the same duplicate
    # verdicts (within the batch, against earlier batches and earlier runs) and the same
    # table as one add() per row, first run and rerun, with or without --allow-duplicates.
    rng = random.Random(seed)
    people = [f"p{n}@x.test" for n in range(12)] + ["P0@X.test", "", "  "]

    def rows(count: int) -> list[tuple[Row, str, str]]:
        return [
            (_row(n + 2, f"id{rng.randrange(count * 2)}-{n}"), rng.choice(people), "x.test")
            for n in range(count)
        ]

    runs = [rows(60), rows(60)]
    runs[1][5:40] = runs[0][10:45]  # a rerun: known rows among new ones
    allow = seed % 3 == 0
    one, many = tmp_path / "one", tmp_path / "many"
    for number, batch in enumerate(runs):
        with (
            Journal.open(one, template_digest="t") as single,
            Journal.open(many, template_digest="t") as batched,
        ):
            batched._salt = single._salt  # white-box: the same Message-IDs
            if number == 1:  # some rows were sent by the first run
                for row, _, _ in runs[0][::4]:
                    for journal in (single, batched):
                        journal.claim([row.identity])
                        journal.finish(row.identity, RowState.SENT, attempts=1)
            expected = [
                single.add(row, recipient=rcpt, allow_duplicates=allow, domain=domain)
                for row, rcpt, domain in batch
            ]
            got: list[object] = []
            for start in range(0, len(batch), 7):
                got += batched.add_many(batch[start : start + 7], allow_duplicates=allow)
            assert got == expected
            assert any(r.state is RowState.DUPLICATE for r in got) is not allow
    assert _table(one) == _table(many)


def test_new_journal_file(tmp_path: Path) -> None:
    path = tmp_path / "data.csv.journal"
    with Journal.open(path, template_digest="t") as journal:
        record = journal.add(_row(2, "aa"), recipient="a@example.test", domain="example.test")
        journal.flush()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(Path(f"{path}-wal").stat().st_mode) == 0o600
        assert stat.S_IMODE(Path(f"{path}.lock").stat().st_mode) == 0o600
    with _db(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert record.state is RowState.PENDING
    assert record.message_id.startswith("<") and record.message_id.endswith("@example.test>")
    assert len(record.message_id) == len("<@example.test>") + 32


def test_message_id_is_made_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal.open(path, template_digest="t") as journal:
        first = journal.add(_row(2, "aa"), recipient="a@x.test", domain="x.test").message_id
        other = journal.add(_row(3, "bb"), recipient="b@x.test", domain="x.test").message_id
        assert first != other
    with Journal.open(path, template_digest="t") as journal:
        # a rerun, the row at another line, even another sender domain: the same Message-ID
        again = journal.add(_row(9, "aa"), recipient="a@x.test", domain="other.test")
        assert again.message_id == first
        assert again.line == 9
        idn = journal.add(_row(4, "cc"), recipient="c@x.test", domain="bücher.example")
        assert idn.message_id.endswith("@xn--bcher-kva.example>")
        for bad in ("", "a b.test", "x>y", "evil.test\r\nBcc: x"):
            with pytest.raises(InputDataError, match="Message-ID"):
                journal.add(_row(5, f"d{bad}"), recipient="d@x.test", domain=bad)


def test_claim_finish_flush(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal.open(path, template_digest="t") as journal:
        for n, identity in enumerate("abcdef", start=2):
            journal.add(_row(n, identity), recipient=f"{identity}@x.test")
        assert journal.claim(["a", "b", "c", "zz"]) == ["a", "b", "c"]
        assert _state(path, "a") == "in_flight"  # durable on return, visible to others
        assert journal.claim(["a"]) == []  # in flight already
        reply = Reply(250, "2.0.0 Ok: queued as ABC123")
        journal.finish("a", RowState.SENT, attempts=1, reply=reply, queue_id="ABC123", latency_ms=3)
        journal.finish("b", RowState.FAILED, attempts=1, reply=Reply(550, "5.1.1 No such user"))
        journal.finish("c", RowState.DEFERRED, attempts=1, reply=Reply(451, "x" * 5000))
        assert _state(path, "a") == "in_flight"  # buffered: not durable before flush()
        journal.flush()
        assert [_state(path, i) for i in "abc"] == ["sent", "failed", "deferred"]
        # a sent row is final; deferred is claimable again, failed is not
        journal.finish("a", RowState.FAILED, attempts=2)
        assert journal.claim(["a", "b", "c"]) == ["c"]
        records = {record.identity: record for record in journal.records()}
        assert records["a"].state is RowState.SENT
        assert (records["a"].code, records["a"].enhanced, records["a"].text) == (
            250,
            "2.0.0",
            "Ok: queued as ABC123",
        )
        assert (records["a"].queue_id, records["a"].latency_ms, records["a"].attempts) == (
            "ABC123",
            3,
            1,
        )
        assert records["b"].enhanced == "5.1.1"
        assert len(records["c"].text or "") == TEXT_LIMIT  # a server's text is bounded
        # claim commits buffered finishes too, in the same transaction
        journal.finish("c", RowState.SENT, attempts=2)
        journal.claim(["d"])
        assert _state(path, "c") == "sent"
        total = journal.get("c")
        assert total is not None and total.attempts == 3  # 1 + 2: the total over claims
        counts = journal.counts()
        assert counts == {
            RowState.PENDING: 2,
            RowState.IN_FLIGHT: 1,
            RowState.SENT: 2,
            RowState.FAILED: 1,
            RowState.DEFERRED: 0,
            RowState.UNKNOWN: 0,
            RowState.DUPLICATE: 0,
        }
        with pytest.raises(ValueError, match="cannot set"):
            journal.finish("e", RowState.IN_FLIGHT, attempts=0)


def test_recover_and_resend_unknown(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal.open(path, template_digest="t")
    for n, identity in enumerate("abc", start=2):
        journal.add(_row(n, identity), recipient=f"{identity}@x.test")
    journal.claim(["a", "b", "c"])
    journal.finish("c", RowState.SENT, attempts=1)
    journal.flush()
    journal.close()
    with Journal.open(path, template_digest="t") as journal:
        assert journal.recover() == 2
        assert _state(path, "a") == "unknown"
        left = journal.get("a")
        assert left is not None and left.attempts == 1  # it may have been delivered once
        assert {r.identity: r.text for r in journal.records({RowState.UNKNOWN})} == {
            "a": UNKNOWN_TEXT,
            "b": UNKNOWN_TEXT,
        }
        assert journal.claim(["a", "b", "c"]) == []
        assert journal.claim(["b", "a", "c"], resend_unknown=True) == ["b", "a"]
        assert journal.recover() == 2


def test_duplicates_by_recipient_within_a_run_and_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal.open(path, template_digest="t") as journal:
        a = journal.add(_row(2, "a"), recipient="Ann@Example.test")
        b = journal.add(_row(3, "b"), recipient=" ann@example.TEST")
        c = journal.add(_row(4, "c"), recipient="ann@example.test", allow_duplicates=True)
        d = journal.add(_row(5, "d"), recipient="bob@example.test")
        e = journal.add(_row(6, "e"), recipient="")  # an invalid row: nobody to compare
        f = journal.add(_row(7, "f"), recipient="")
        assert [r.state for r in (a, b, c, d, e, f)] == [
            RowState.PENDING,
            RowState.DUPLICATE,
            RowState.PENDING,
            RowState.PENDING,
            RowState.PENDING,
            RowState.PENDING,
        ]
        assert b.text == "same recipient as line 2"
        assert journal.claim(["a", "b"]) == ["a"]  # a duplicate is never sent
        journal.finish("a", RowState.SENT, attempts=1)
        # known identities keep their state when added again in the same run
        assert journal.add(_row(3, "b"), recipient="ann@example.test").state is RowState.DUPLICATE
    with Journal.open(path, template_digest="t") as journal:
        # an edited row (new identity) to a recipient already sent to: a duplicate
        edited = journal.add(_row(2, "a2"), recipient="ann@example.test")
        assert edited.state is RowState.DUPLICATE
        assert "earlier run" in (edited.text or "")
        # an edited row whose old version was never sent: pending
        assert journal.add(_row(5, "d2"), recipient="bob@example.test").state is RowState.PENDING
        # --allow-duplicates turns a known duplicate back to pending
        again = journal.add(_row(3, "b"), recipient="ann@example.test", allow_duplicates=True)
        assert again.state is RowState.PENDING


def test_duplicate_lookup_uses_the_index(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal.open(path, template_digest="t") as journal:
        journal.add(_row(2, "a"), recipient="a@x.test")
    with _db(path) as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT line FROM rows WHERE rcpt_hash = ?"
            " AND (seen_run = 1 OR state IN ('sent','in_flight','unknown')) LIMIT 1",
            (b"x" * 16,),
        ).fetchall()
        assert "rows_rcpt" in str(plan)
        assert db.execute("SELECT length(rcpt_hash) FROM rows").fetchone()[0] == 16


def test_changes_between_runs(tmp_path: Path) -> None:
    path = tmp_path / "j"
    csv_path = tmp_path / "data.csv"
    csv_path.write_text("email,name\na@x.test,A\nb@x.test,B\nc@x.test,C\n")
    with Journal.open(path, template_digest="t") as journal:
        for row in CsvSource(csv_path):
            journal.add(row, recipient=row.fields["email"])
        first = journal.changes()
        assert first == JournalChanges(run=1, known=0, new=3, vanished=0, sent_before=0)
        assert not first.changed
        journal.claim([journal_row.identity for journal_row in CsvSource(csv_path)][:1])
        journal.finish(next(iter(CsvSource(csv_path))).identity, RowState.SENT, attempts=1)
    csv_path.write_text("email,name\na@x.test,A\nb@x.test,Bea\nc@x.test,C\nd@x.test,D\n")
    with Journal.open(path, template_digest="t") as journal:
        for row in CsvSource(csv_path):
            journal.add(row, recipient=row.fields["email"])
        changes = journal.changes()
        assert changes == JournalChanges(run=2, known=2, new=2, vanished=1, sent_before=1)
        assert changes.changed
        assert changes.explain() == (
            "the CSV changed since the last run: 2 rows as before, 2 new or edited,"
            " 1 no longer in the file (kept in the journal, not sent)"
        )
        assert first.explain() == ""
        assert journal.counts()[RowState.PENDING] == 4
        assert journal.counts(this_run=True)[RowState.PENDING] == 3
        # get() sees a finish before it is flushed (the --failed-csv pass reads the CSV again)
        last = list(CsvSource(csv_path))[-1]
        journal.claim([last.identity])
        journal.finish(last.identity, RowState.FAILED, attempts=1, text="invalid address")
        record = journal.get(last.identity)
        assert record is not None and (record.state, record.text, record.line) == (
            RowState.FAILED,
            "invalid address",
            5,
        )
        assert journal.get("no-such-row") is None
        # the vanished row stays in the journal, and reports of this run can leave it out
        assert len(list(journal.records())) == 5
        assert [r.recipient for r in journal.records(this_run=True)] == [
            "a@x.test",
            "b@x.test",
            "c@x.test",
            "d@x.test",
        ]
    assert default_path(csv_path) == tmp_path / "data.csv.journal"


def test_a_column_added_changes_every_identity_but_sends_nobody_twice(tmp_path: Path) -> None:
    path = tmp_path / "j"
    csv_path = tmp_path / "data.csv"
    csv_path.write_text("email,name\na@x.test,A\nb@x.test,B\n")
    with Journal.open(path, template_digest="t") as journal:
        rows = list(CsvSource(csv_path))
        for row in rows:
            journal.add(row, recipient=row.fields["email"])
        journal.claim([rows[0].identity])
        journal.finish(rows[0].identity, RowState.SENT, attempts=1)
    csv_path.write_text("email,name,city\na@x.test,A,Oslo\nb@x.test,B,Rome\n")
    with Journal.open(path, template_digest="t") as journal:
        states = [
            journal.add(row, recipient=row.fields["email"]).state for row in CsvSource(csv_path)
        ]
        assert states == [RowState.DUPLICATE, RowState.PENDING]
        changes = journal.changes()
        assert (changes.known, changes.new, changes.vanished) == (0, 2, 2)
        assert changes.explain().startswith("no row of the CSV matches the journal's 2 rows")


_BULK_MEMORY = """
import sys
from mailctl.core.bulk import CsvSource, Journal, RowState
journal = Journal.open(sys.argv[2], template_digest="t")
batch = []
for row in CsvSource(sys.argv[1]):
    journal.add(row, recipient=row.fields["email"], domain="example.test")
    batch.append(row.identity)
    if len(batch) == 64:
        for identity in journal.claim(batch):
            journal.finish(identity, RowState.SENT, attempts=1)
        batch = []
journal.flush()
print(journal.counts()[RowState.SENT], file=sys.stderr)
journal.close()
"""


def test_journal_memory_does_not_grow_with_rows(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):  # memory, not the disk's fsync, is measured
        folder = Path(tempfile.mkdtemp(prefix="mailctl-test-", dir=shm))
    else:
        folder = tmp_path
    peaks = []
    try:
        for rows in (5_000, 80_000):
            csv_path = folder / f"{rows}.csv"
            with csv_path.open("w") as handle:
                handle.write("email,name\n")
                handle.writelines(f"user{n}@example.test,Name {n}\n" for n in range(rows))
            run = run_python(
                ["-c", _BULK_MEMORY, str(csv_path), str(folder / f"{rows}.journal")],
                timeout=180,
                address_space=512 * MIB,
            )
            assert run.code == 0, run.stderr
            assert run.lines[-1] == str(rows // 64 * 64)
            peaks.append(run.peak_rss)
    finally:
        if folder != tmp_path:
            shutil.rmtree(folder)
    assert peaks[1] - peaks[0] < 12 * MIB, peaks


def test_records_page_through_many_rows(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j", template_digest="t") as journal:
        total = PAGE * 2 + 17
        for n in range(total):
            journal.add(_row(total - n + 1, f"id{n}"), recipient=f"r{n}@x.test")
        journal.add(_row(5, "zz-same-line"), recipient="z@x.test")
        lines = [record.line for record in journal.records()]
        assert len(lines) == total + 1
        assert lines == sorted(lines)
        pending = list(journal.records({RowState.PENDING, RowState.SENT}))
        assert len(pending) == total + 1


def _vm_steps(journal: Journal, work: Callable[[], object]) -> int:
    """SQLite virtual-machine steps (in hundreds) that `work` costs: a deterministic measure
    of how a query scales, unlike a stopwatch on a shared machine."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    journal._db.set_progress_handler(count, 100)  # white-box: the journal's own connection
    try:
        work()
    finally:
        journal._db.set_progress_handler(None, 0)
    return steps


def test_claim_and_records_do_not_grow_with_the_journal(tmp_path: Path) -> None:
    costs = []
    for size in (1_000, 20_000):
        with Journal.open(tmp_path / f"j{size}", template_digest="t") as journal:
            for n in range(size):
                journal.add(_row(n + 2, f"id{n}"), recipient=f"r{n}@x.test")
            journal.flush()
            batch = [f"id{n}" for n in range(size // 2, size // 2 + 32)]
            claim = _vm_steps(journal, lambda j=journal, b=batch: j.claim(b))  # type: ignore[misc]
            pending = _vm_steps(
                journal,
                lambda j=journal: list(j.records({RowState.PENDING})),  # type: ignore[misc]
            )
            costs.append((claim, pending))
    (small_claim, small_pending), (big_claim, big_pending) = costs
    assert big_claim <= 2 * small_claim + 5, costs  # by index: not by a scan of the table
    # 20 times the rows: one walk of the table in line order costs ~20 times as much; a sort
    # of every match for each page of 1,000 would cost ~400 times
    assert big_pending <= 40 * small_pending, costs


def test_template_change_needs_consent_and_never_resends(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal.open(path, template_digest="one") as journal:
        journal.add(_row(2, "a"), recipient="a@x.test")
        journal.add(_row(3, "b"), recipient="b@x.test")
        journal.claim(["a"])
        journal.finish("a", RowState.SENT, attempts=1)
    with pytest.raises(TemplateChangedError) as info:
        Journal.open(path, template_digest="two")
    assert info.value.exit_code == ExitCode.DATAERR
    assert info.value.code == "template_changed"
    assert "1 row already sent" in info.value.message
    assert "--template-changed" in (info.value.hint or "")
    with Journal.open(path, template_digest="two", template_changed=True) as journal:
        assert journal.template_changed
        assert journal.claim(["a", "b"]) == ["b"]
        journal.finish("b", RowState.SENT, attempts=1)
    with Journal.open(path, template_digest="two") as journal:  # the new one is now the last
        assert journal.run == 3
        assert not journal.template_changed


def test_template_change_before_anything_went_out_needs_no_consent(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal.open(path, template_digest="one") as journal:
        journal.add(_row(2, "a"), recipient="a@x.test")
        journal.add(_row(3, "b"), recipient="b@x.test")
        journal.claim(["a", "b"])
        journal.finish("a", RowState.FAILED, attempts=1, reply=Reply(550, "5.1.1 no"))
        journal.finish("b", RowState.DEFERRED, attempts=1, reply=Reply(451, "4.3.0 later"))
    with Journal.open(path, template_digest="two") as journal:
        assert journal.template_changed  # the engine can say so; nothing sent disagrees
        journal.claim(["b"])  # in flight with the new template from now on
    with pytest.raises(TemplateChangedError, match="1 row already sent"):
        Journal.open(path, template_digest="three")


def test_not_a_journal(tmp_path: Path) -> None:
    csv_path = tmp_path / "data.csv"
    csv_path.write_text("email\na@x.test\n")
    with pytest.raises(NotAJournalError) as info:
        Journal.open(csv_path, template_digest="t")
    assert info.value.exit_code == ExitCode.DATAERR
    assert csv_path.read_text() == "email\na@x.test\n"  # untouched
    other = tmp_path / "other.db"
    with _db(other) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(NotAJournalError, match="not a bulk-send journal"):
        Journal.open(other, template_digest="t")
    newer = tmp_path / "newer"
    Journal.open(newer, template_digest="t").close()
    with _db(newer) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(NotAJournalError, match="newer mailctl"):
        Journal.open(newer, template_digest="t")
    damaged = tmp_path / "damaged"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\xff" * 600)
    with pytest.raises(NotAJournalError, match="damaged or not a journal"):
        Journal.open(damaged, template_digest="t")
    with pytest.raises(NotRegularFileError):
        Journal.open(tmp_path, template_digest="t")
    with pytest.raises(JournalError) as error:
        Journal.open(tmp_path / "missing-dir" / "j", template_digest="t")
    assert error.value.exit_code == ExitCode.CANTCREAT
    # every refusal released the lock: the journal opens
    Journal.open(newer.with_name("fresh"), template_digest="t").close()


_DISK_FULL = """
import resource, signal, sys
from mailctl.core.bulk import Journal, Row, RowState
from mailctl.errors import JournalError
journal = Journal.open(sys.argv[1], template_digest="t")
for n in range(50):
    journal.add(Row(line=n + 2, index=n + 1, fields={}, identity=f"id{n}"), recipient=f"{n}@x.test")
journal.claim([f"id{n}" for n in range(50)])
journal.finish("id0", RowState.SENT, attempts=1)
journal.flush()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
try:
    for n in range(1, 50):
        journal.finish(f"id{n}", RowState.SENT, attempts=1, text="x" * 400)
    journal.flush()
except JournalError as err:
    print(err.exit_code.value, err.one_line())
else:
    sys.exit("flushed past the limit")
# space again: the journal goes on (SQLite rolled the failed transaction back by itself)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
journal.finish("id1", RowState.SENT, attempts=1)
journal.close()
sys.exit(3)
"""


def test_a_journal_that_cannot_be_written_stops_without_counting_rows(tmp_path: Path) -> None:
    path = tmp_path / "j"
    child = _python(_DISK_FULL, str(path))
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 3, out
    code, message = out.split(" ", 1)
    assert int(code) == ExitCode.CANTCREAT
    assert "cannot be written" in message and "disk space" in message
    with Journal.open(path, template_digest="t") as journal:
        counts = journal.counts()
        # what was flushed stayed; what failed to flush is still in flight, never sent
        assert (counts[RowState.SENT], counts[RowState.IN_FLIGHT]) == (2, 48)
        assert journal.recover() == 48


_HOLD = """
import sys, time
from mailctl.core.bulk import Journal
journal = Journal.open(sys.argv[1], template_digest="t")
print("held", flush=True)
time.sleep(60)
"""

_TRY = """
import sys
from mailctl.core.bulk import Journal
from mailctl.errors import JournalBusyError
try:
    Journal.open(sys.argv[1], template_digest="t").close()
except JournalBusyError as err:
    print(err.exit_code.value, err.one_line(), err.details["pid"])
    sys.exit(1)
print("opened")
"""


def _python(code: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,  # type: ignore[call-overload]
    )


def test_a_second_run_is_refused_and_a_killed_run_frees_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "j"
    holder = _python(_HOLD, str(path))
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        second = _python(_TRY, str(path))
        out, _ = second.communicate(timeout=30)
        assert second.returncode == 1
        code, *words, pid = out.split()
        assert int(code) == 75 and int(pid) == holder.pid
        assert f"in use by another bulk-send run (pid {holder.pid})" in " ".join(words)
        # in this process too (flock is per open file, not per process)
        with pytest.raises(JournalBusyError):
            Journal.open(path, template_digest="t")
    finally:
        holder.kill()  # SIGKILL: no cleanup runs; the kernel drops the lock
        holder.wait(30)
        if holder.stdout is not None:
            holder.stdout.close()
    third = _python(_TRY, str(path))
    out, _ = third.communicate(timeout=30)
    assert (third.returncode, out) == (0, "opened\n")
    with Journal.open(path, template_digest="t"), pytest.raises(JournalBusyError):
        Journal.open(path, template_digest="t")
    Journal.open(path, template_digest="t").close()  # closed: free again


# A run as the engine drives it: add every row, then claim a batch, finish each row, flush.
# "C <id>" is written (unbuffered, to a file) after claim() returned, "F <id> <state>" before
# finish(), "D <n>" after flush() returned: the parent knows what must be durable.
_WORKER = """
import os, sys
from mailctl.core.bulk import CsvSource, Journal, RowState
path, csv_path, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = os.open(sys.argv[4], os.O_WRONLY | os.O_APPEND)
journal = Journal.open(path, template_digest="t")
journal.recover()
ids = []
for row in CsvSource(csv_path):
    journal.add(row, recipient=row.fields["email"])
    ids.append(row.identity)
journal.flush()
os.write(out, b"LOOP\\n")
states = [RowState.SENT] * 6 + [RowState.FAILED, RowState.DEFERRED]
for n, start in enumerate(range(0, len(ids), batch)):
    claimed = journal.claim(ids[start : start + batch])
    os.write(out, "".join(f"C {identity}\\n" for identity in claimed).encode())
    for identity in claimed:
        state = states[int(identity[:4], 16) % len(states)]
        os.write(out, f"F {identity} {state}\\n".encode())
        journal.finish(identity, state, attempts=1)
    journal.flush()
    os.write(out, f"D {n}\\n".encode())
os.write(out, b"END\\n")
"""


@pytest.mark.parametrize("seed", range(5))
def test_kill_9_at_random_points_loses_nothing(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    batch = rng.choice([8, 32, 64])
    rows = 20_000
    csv_path = tmp_path / "data.csv"
    with csv_path.open("w") as handle:
        handle.write("email,n\n")
        for n in range(rows):
            handle.write(f"user{n}@example.test,{n}\n")
    path, log = tmp_path / "j", tmp_path / "log"
    log.write_bytes(b"")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _round in range(2):  # kill it, then kill the rerun that resumes
        child = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), str(csv_path), str(batch), str(log)],
            env=env,
        )
        deadline = time.monotonic() + 60
        while log.read_bytes().count(b"LOOP\n") <= _round:
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    # What the journal must say of each row: its last durable event (a claim, or a finish
    # made durable by the flush after it); after the rerun's recover(), in_flight is unknown.
    expected: dict[str, str] = {}
    tentative: dict[str, str] = {}
    maybe: dict[str, str] = {}  # finished, flushed or not when the kill came (no "D" yet)
    finished: set[tuple[str, str]] = set()
    for line in log.read_text().splitlines():
        kind, *rest = line.split()
        if kind == "C":
            expected[rest[0]] = "in_flight"
        elif kind == "F":
            tentative[rest[0]] = rest[1]
            finished.add((rest[0], rest[1]))
        elif kind == "D":
            expected.update(tentative)
            tentative.clear()
        elif kind == "LOOP":
            maybe.update(tentative)
            tentative.clear()
            expected = {i: "unknown" if s == "in_flight" else s for i, s in expected.items()}
    maybe.update(tentative)
    assert "END" not in log.read_text(), "killed too late to test anything"
    # the kernel freed the lock; the reopened journal holds every row in exactly one state
    with Journal.open(path, template_digest="t") as journal:
        with _db(path, readonly=True) as db:
            states = dict(db.execute("SELECT identity, state FROM rows").fetchall())
        assert len(states) == rows
        assert set(states.values()) <= {s.value for s in RowState}
        in_flight = {i for i, s in states.items() if s == "in_flight"}
        assert len(in_flight) <= batch  # at most one claimed batch was in the air
        unlogged = 0
        for identity, state in states.items():
            want = expected.get(identity, "pending")
            if state in ("in_flight", "unknown") and want in ("pending", "deferred"):
                unlogged += 1  # claimed; killed before the claim was logged (then recovered)
                continue
            assert state in (want, maybe.get(identity)), (identity, state, want)
            if state in ("sent", "failed", "deferred"):
                assert (identity, state) in finished  # never recorded unless finished
        assert unlogged <= 2 * batch  # one batch per killed run
        unknown_before = sum(s == "unknown" for s in states.values())
        assert journal.recover() == len(in_flight)
        counts = journal.counts()
        assert counts[RowState.IN_FLIGHT] == 0
        assert counts[RowState.UNKNOWN] == unknown_before + len(in_flight)
        assert sum(counts.values()) == rows


def test_commit_cost_is_measured_on_commits_that_wrote(tmp_path: Path) -> None:
    # The send loop commits claims on its own thread only when they are cheap (engine.Worker).
    with Journal.open(tmp_path / "j", template_digest="t") as journal:
        assert journal.commit_cost() == float("inf")  # not measured yet: the journal thread
        for n in range(12):
            journal.add(_row(n + 2, f"id{n}"), recipient=f"r{n}@x.test")
        journal.flush()
        for n in range(10):
            journal.claim([f"id{n}"])
            journal.claim([f"id{n}"])  # claims nothing: writes nothing, not counted
        cost = journal.commit_cost()
        assert 0 < cost < 5.0
        assert len(journal._commit_costs) == 5  # white-box: the last few, not every one
