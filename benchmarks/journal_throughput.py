"""Rows per second through bulk-send's journal: a commit per state change vs. one per batch.

Every row goes pending -> in_flight (claim, durable before DATA) -> sent (finish, durable at
the next commit). With synchronous=FULL a commit costs an fsync (~220 us on this disk), so:

  per-row     claim([row]) + finish + flush for each row: two commits a row (the naive way)
  batch N     claim(N rows), finish each, flush: two commits per N rows
  ride N      claim(N rows) also commits the previous batch's finishes; one commit per N rows
              (what a pipelined engine does: the flush rides on the next claim)

plus `add` (the validation pass: every row recorded, committed every 10,000) and the bare cost
of one synchronous=FULL commit. Each figure is the median of --runs runs on a fresh journal in
--dir (default: the temp folder; it must be a real disk, not tmpfs, to measure anything).

    python benchmarks/journal_throughput.py
    python benchmarks/journal_throughput.py --rows 50000 --runs 5 --dir /var/tmp
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailctl.core.bulk import Journal, Row, RowState
from mailctl.models import Reply

OK = Reply(250, "2.0.0 Ok: queued as 4XyZ1")


def filesystem(path: Path) -> str:
    best, kind = "", "?"
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _, point, fstype, *_ = line.split()
            if str(path.resolve()).startswith(point) and len(point) > len(best):
                best, kind = point, fstype
    return f"{kind} at {best}"


def fresh(folder: Path, rows: int) -> tuple[Journal, list[str]]:
    path = Path(tempfile.mkdtemp(dir=folder)) / "bench.journal"
    journal = Journal.open(path, template_digest="bench")
    ids = [f"{n:064x}" for n in range(rows)]
    for n, identity in enumerate(ids):
        journal.add(
            Row(line=n + 2, index=n + 1, fields={}, identity=identity),
            recipient=f"user{n}@example.test",
            domain="example.test",
        )
    journal.flush()
    return journal, ids


def run_adds(folder: Path, rows: int) -> float:
    started = time.perf_counter()
    journal, _ = fresh(folder, rows)
    elapsed = time.perf_counter() - started
    journal.close()
    return rows / elapsed


def run_sends(folder: Path, rows: int, batch: int, ride: bool) -> float:
    journal, ids = fresh(folder, rows)
    started = time.perf_counter()
    for start in range(0, rows, batch):
        for identity in journal.claim(ids[start : start + batch]):
            journal.finish(identity, RowState.SENT, attempts=1, reply=OK, queue_id="4XyZ1")
        if not ride:
            journal.flush()
    journal.flush()
    elapsed = time.perf_counter() - started
    assert journal.counts()[RowState.SENT] == rows
    journal.close()
    return rows / elapsed


def commit_cost(folder: Path, commits: int = 300) -> float:
    path = Path(tempfile.mkdtemp(dir=folder)) / "commit.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (x INTEGER)")
    started = time.perf_counter()
    for n in range(commits):
        db.execute("BEGIN")
        db.execute("INSERT INTO t VALUES (?)", (n,))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed / commits * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows per batched run")
    parser.add_argument("--per-row-rows", type=int, default=2_000, help="rows per per-row run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="journal-bench-", dir=args.dir))
    modes: dict[str, Callable[[], float]] = {
        "one synchronous=FULL commit (us)": lambda: commit_cost(folder),
        "add (validation pass)": lambda: run_adds(folder, args.rows),
        "per-row: claim+finish+flush": lambda: run_sends(folder, args.per_row_rows, 1, False),
    }
    for batch in (32, 64):
        modes[f"batch {batch}: claim, finish x{batch}, flush"] = (
            lambda b=batch: run_sends(folder, args.rows, b, False)  # type: ignore[misc]
        )
        modes[f"ride {batch}: claim, finish x{batch}"] = (
            lambda b=batch: run_sends(folder, args.rows, b, True)  # type: ignore[misc]
        )
    results: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(args.runs):  # interleaved: machine noise hits every mode alike
        for name, measure in modes.items():
            results[name].append(measure())
    load = os.getloadavg()[0]
    print(f"journal on {filesystem(folder)}; median of {args.runs} runs; load {load:.1f}")
    base = statistics.median(results["per-row: claim+finish+flush"])
    for name, values in results.items():
        value = statistics.median(values)
        if name.endswith("(us)"):
            print(f"{name:<38} {value:>9,.0f} us")
        elif name.startswith(("batch", "ride", "per-row")):
            print(f"{name:<38} {value:>9,.0f} rows/s {value / base:>5.1f}x")
        else:
            print(f"{name:<38} {value:>9,.0f} rows/s")
    for path in sorted(folder.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    folder.rmdir()


if __name__ == "__main__":
    main()
