"""The bulk-send journal: one SQLite file (WAL) holding every row's state, durable in batches.

A row moves pending -> in_flight (claim(): committed with synchronous=FULL before its DATA is
sent) -> sent | failed | deferred | unknown (finish(): buffered, durable at the next flush() or
claim(), one commit for a whole pipelined batch). A commit costs ~220 us on this disk, so one
per state change would cap a run near 2,000 rows/s; one per batch does not. After kill -9, the
rows claimed but not flushed are still in_flight and recover() makes them unknown (RFC 1047:
the connection may have died after the final dot, so they may have been delivered); their
number is at most what the engine had claimed and not yet flushed.

One run at a time: open() takes an flock(2) on "<journal>.lock" for the run's lifetime. The
kernel drops it when the process dies however it dies, so a crashed run never leaves the
journal locked; a second run meanwhile gets JournalBusyError naming the holder's pid.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import sqlite3
import time
from collections import deque
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from mailctl.core.bulk.journal_file import (
    check_file,
    connect,
    lock,
    mapped,
    start_run,
    unlock,
)
from mailctl.errors import InputDataError, JournalBusyError, TemplateChangedError
from mailctl.hosts import to_ascii_domain
from mailctl.text import quote

if TYPE_CHECKING:
    from mailctl.core.bulk.rows import Row
    from mailctl.models import Reply

__all__ = [
    "Journal",
    "JournalBusyError",
    "JournalChanges",
    "RowRecord",
    "RowState",
    "TemplateChangedError",
    "default_path",
]

# Bounds on what a row keeps from a server or the template: the journal stays small whatever
# a server answers.
TEXT_LIMIT: Final = 512
ENHANCED_LIMIT: Final = 16
QUEUE_ID_LIMIT: Final = 128
RECIPIENT_LIMIT: Final = 2048
FINISH_BUFFER: Final = 4096  # finish() flushes by itself past this many: bounded memory
ADD_BATCH: Final = 10_000  # add() commits every so many rows (keeps the WAL checkpointable)
PAGE: Final = 1000  # records() reads this many rows per query
COMMIT_SAMPLES: Final = 5  # commit_cost() is the median of this many recent commits
FINISH_CHUNK: Final = 1000  # finished rows per statement (9 host parameters each)
CLAIM_CHUNK: Final = 500  # identities per claim statement (SQLite host parameters: 32766)
_UPDATE_FROM: Final = sqlite3.sqlite_version_info >= (3, 33, 0)
# finish() for many distinct rows at once: one statement, the finishes as a VALUES table.
_FINISH_MANY: Final = (
    "UPDATE rows SET state = f.column1, attempts = rows.attempts + f.column2,"
    " code = f.column3, enhanced = f.column4, text = f.column5, queue_id = f.column6,"
    " latency_ms = f.column7, updated = f.column8 FROM (VALUES {values}) AS f"
    " WHERE rows.identity = f.column9 AND rows.state != 'sent'"
)
_INSERT_MANY: Final = (
    "INSERT INTO rows (identity, line, recipient, rcpt_hash, state, text, message_id,"
    " first_run, seen_run, updated) VALUES "
)
_INSERT_ROW: Final = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT: Final = _INSERT_MANY + _INSERT_ROW
INSERT_CHUNK: Final = 1000  # rows per INSERT (10 host parameters each)
UNKNOWN_TEXT: Final = "in flight when a run stopped: it may have been delivered (RFC 1047)"


class RowState(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SENT = "sent"
    FAILED = "failed"
    DEFERRED = "deferred"
    UNKNOWN = "unknown"
    DUPLICATE = "duplicate"


CLAIMABLE: Final = (RowState.PENDING, RowState.DEFERRED)
# What finish() may set: a row's outcome, or pending again for a claimed row never tried.
FINISHED: Final = frozenset(
    {RowState.SENT, RowState.FAILED, RowState.DEFERRED, RowState.UNKNOWN, RowState.PENDING}
)
# A row in one of these states may have reached its recipient: a new row to the same
# recipient is a duplicate, whichever run it came from.
MAYBE_DELIVERED: Final = (RowState.SENT, RowState.IN_FLIGHT, RowState.UNKNOWN)


@dataclass(frozen=True)
class RowRecord:
    """One row as the journal knows it."""

    identity: str
    line: int
    state: RowState
    recipient: str
    message_id: str
    attempts: int
    code: int | None
    enhanced: str | None
    text: str | None
    queue_id: str | None
    latency_ms: float | None


@dataclass(frozen=True)
class JournalChanges:
    """How the rows add()-ed in this run compare with the journal's earlier runs.

    After a run has added every row of its CSV: `known` rows were in the journal already
    (their states carry over), `new` ones were not (pending, or duplicate), `vanished` ones
    are from earlier runs and were not seen in this one (edited or removed from the CSV: they
    stay in the journal, never sent by this run). A CSV edited between runs shows as new and
    vanished rows together; a column added or renamed changes every identity (all new, all
    vanished), and duplicate detection against earlier runs' sent rows still keeps their
    recipients from getting a second message.
    """

    run: int  # this run's number on the journal (1: the first)
    known: int
    new: int
    vanished: int
    sent_before: int  # rows sent by earlier runs

    @property
    def changed(self) -> bool:
        """True when this is not the first run and the CSV's rows differ from the last ones."""
        return self.run > 1 and (self.new > 0 or self.vanished > 0)

    def explain(self) -> str:
        """One line for the user when `changed`: what differs, and what happens to it."""
        if not self.changed:
            return ""
        if self.known == 0:
            return (
                f"no row of the CSV matches the journal's {self.vanished} rows (a column added,"
                " renamed or removed changes every row): rows are treated as new, and"
                f" recipients already sent to ({self.sent_before} rows) are not sent again"
            )
        return (
            f"the CSV changed since the last run: {self.known} rows as before, {self.new} new"
            f" or edited, {self.vanished} no longer in the file (kept in the journal, not sent)"
        )


_COLUMNS: Final = (
    "identity, line, state, recipient, message_id, attempts, code, enhanced, text, queue_id,"
    " latency_ms"
)
_DOMAIN: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.v]+\]")


def default_path(csv_path: str | os.PathLike[str]) -> Path:
    """Where a CSV's journal lives unless the user names another: beside it, so a rerun
    on the same file finds it (DATA.csv -> DATA.csv.journal, its lock DATA.csv.journal.lock)."""
    path = Path(csv_path)
    return path.with_name(path.name + ".journal")


class Journal:
    """The journal of one bulk-send run; open with Journal.open(), close (or `with`) at the end.

    Not thread-safe: one caller at a time (it may be handed to a worker thread for a flush).
    Every method raises JournalError (73) when SQLite cannot write the file.
    """

    def __init__(self, path: Path, db: sqlite3.Connection, lock_fd: int, run: int) -> None:
        self.path = path
        self.run = run  # this run's number
        self.template_changed = False  # the template differs from the last run's
        self._db = db
        self._lock_fd: int | None = lock_fd
        self._salt = bytes.fromhex(self._meta("salt"))
        self._adds = 0
        self._finished: list[tuple[Any, ...]] = []
        self._domain: tuple[str, str] = ("", "")
        self._commit_costs: deque[float] = deque(maxlen=COMMIT_SAMPLES)
        self._changes = db.total_changes

    # -- opening and closing ---------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, template_digest: str, template_changed: bool = False
    ) -> Journal:
        """Open (or create, mode 0600) the journal at `path` for one run, and lock it.

        Raises JournalBusyError (75) when another run holds it; TemplateChangedError (65)
        when `template_digest` differs from the last run's, a row may have gone out with the
        old one (sent, in flight, unknown), and `template_changed` is False (the journal's
        `template_changed` then tells whether it differs);
        NotAJournalError/NotRegularFileError (65) for a file that is not a journal;
        JournalError (73) when it cannot be created or written.
        """
        path = Path(path)
        lock_fd = lock(path)
        db: sqlite3.Connection | None = None
        try:
            check_file(path)
            db = connect(path)
            run, differs = start_run(db, path, template_digest, template_changed)
            journal = cls(path, db, lock_fd, run)
            journal.template_changed = differs
        except BaseException:
            if db is not None:
                db.close()
            unlock(lock_fd)
            raise
        return journal

    def close(self) -> None:
        """Flush, record the run's end, release the lock. Safe to call twice."""
        if self._lock_fd is None:
            return
        try:
            self.flush()
            with mapped(self.path):
                self._db.execute("UPDATE runs SET ended = ? WHERE id = ?", (time.time(), self.run))
        finally:
            self._db.close()  # the last connection checkpoints the WAL into the file
            unlock(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    # -- the run ---------------------------------------------------------------------------

    def recover(self) -> int:
        """Make rows a crashed run left in_flight unknown (never resent without
        asking for it); durable on return. Returns how many there were."""
        with mapped(self.path):
            self._begin()
            self._apply_finished()
            count = self._db.execute(
                "UPDATE rows SET state = 'unknown', attempts = attempts + 1, text = ?, updated = ?"
                " WHERE state = 'in_flight'",
                (UNKNOWN_TEXT, time.time()),
            ).rowcount
            self._commit()
        return count

    def add(
        self,
        row: Row,
        *,
        recipient: str,
        allow_duplicates: bool = False,
        domain: str = "localhost",
    ) -> RowRecord:
        """Record a CSV row for this run; return what the journal knows of it.

        A known identity keeps its state (a rerun sends only pending and deferred rows); its
        line (and, while it is not yet sent, its recipient) follow the current file. A new
        one is pending, or duplicate when its recipient (compared case-insensitively through
        a fixed-size hash column with an index) is on an earlier row of this run or on a row
        of any run that may have been delivered; `allow_duplicates` makes it pending (and
        turns a known duplicate back to pending). The row's Message-ID, `<hex@domain>`, is
        made here once (`domain`: the sender's) and kept for every retry and rerun.

        Buffered: committed with the next claim() or flush() (or every ADD_BATCH rows).
        """
        with mapped(self.path):
            self._begin()
            found = self._db.execute(
                f"SELECT {_COLUMNS} FROM rows WHERE identity = ?",  # noqa: S608 (constants)
                (row.identity,),
            ).fetchone()
            if found is not None:
                record = self._update_known(_record(found), row, recipient, allow_duplicates)
            else:
                record = self._insert(row, recipient, allow_duplicates, domain)
            self._adds += 1
            if self._adds >= ADD_BATCH:
                self._commit()
        return record

    def add_many(
        self, items: Sequence[tuple[Row, str, str]], *, allow_duplicates: bool = False
    ) -> list[RowRecord]:
        """add() for (row, recipient, domain) in CSV order: the same records, the same
        duplicates, as one add() after another would give. Rows new to the journal (a first
        run) cost three statements for the whole batch instead of three a row; a batch with
        a row the journal knows already (a rerun) is added one row at a time."""
        if not items:
            return []
        with mapped(self.path):
            self._begin()
            identities = [row.identity for row, _, _ in items]
            if len(set(identities)) != len(identities) or self._any_known(identities):
                return [
                    self.add(row, recipient=recipient, allow_duplicates=allow_duplicates,
                             domain=domain)
                    for row, recipient, domain in items
                ]  # fmt: skip
            records = self._insert_new(items, allow_duplicates)
            self._adds += len(records)
            if self._adds >= ADD_BATCH:
                self._commit()
        return records

    def _any_known(self, identities: Sequence[str]) -> bool:
        found = False
        for start in range(0, len(identities), CLAIM_CHUNK):
            chunk = identities[start : start + CLAIM_CHUNK]
            marks = ",".join("?" * len(chunk))
            found = (
                found
                or self._db.execute(
                    f"SELECT 1 FROM rows WHERE identity IN ({marks}) LIMIT 1",  # noqa: S608
                    chunk,
                ).fetchone()
                is not None
            )
        return found

    def _first_with(self, digests: Collection[bytes]) -> dict[bytes, tuple[int, int]]:
        """For each recipient hash, the (line, seen_run) of the first row (lowest id) that
        makes a new row with it a duplicate: _insert's query, for many hashes at once."""
        first: dict[bytes, tuple[int, int]] = {}
        wanted = list(digests)
        for start in range(0, len(wanted), CLAIM_CHUNK):
            chunk = wanted[start : start + CLAIM_CHUNK]
            marks = ",".join("?" * len(chunk))
            for digest, line, seen_run in self._db.execute(
                f"SELECT rcpt_hash, line, seen_run FROM rows WHERE rcpt_hash IN ({marks})"  # noqa: S608
                " AND (seen_run = ? OR state IN (?, ?, ?)) ORDER BY id DESC",
                (*chunk, self.run, *map(str, MAYBE_DELIVERED)),
            ):
                first[digest] = (line, seen_run)  # the last one written wins: the lowest id
        return first

    def _insert_new(
        self, items: Sequence[tuple[Row, str, str]], allow_duplicates: bool
    ) -> list[RowRecord]:
        recipients = [_bounded(recipient, RECIPIENT_LIMIT) or "" for _, recipient, _ in items]
        digests = [_recipient_hash(recipient) for recipient in recipients]
        first: dict[bytes, tuple[int, int]] = {}
        if not allow_duplicates:
            first = self._first_with({d for d, r in zip(digests, recipients, strict=True) if r})
        records: list[RowRecord] = []
        values: list[tuple[Any, ...]] = []
        now = time.time()
        try:
            for (row, _, domain), recipient, digest in zip(items, recipients, digests, strict=True):
                state, text = RowState.PENDING, None
                other = first.get(digest) if recipient and not allow_duplicates else None
                if other is not None:
                    state = RowState.DUPLICATE
                    text = (
                        f"same recipient as line {other[0]}"
                        if other[1] == self.run
                        else "this recipient was already sent to by an earlier run"
                    )
                first.setdefault(digest, (row.line, self.run))  # later rows match this one
                message_id = self._message_id(row.identity, domain)
                values.append(
                    (row.identity, row.line, recipient, digest, str(state), text, message_id,
                     self.run, self.run, now)
                )  # fmt: skip
                records.append(
                    RowRecord(
                        identity=row.identity, line=row.line, state=state, recipient=recipient,
                        message_id=message_id, attempts=0, code=None, enhanced=None, text=text,
                        queue_id=None, latency_ms=None,
                    )
                )  # fmt: skip
        finally:  # a bad domain raises: the rows before it are added, as add() would have
            # One INSERT of many rows: executemany runs its statement once a row, and SQLite
            # rebuilds the state CHECK's IN list each time (~5 us a row, half the insert).
            for start in range(0, len(values), INSERT_CHUNK):
                chunk = values[start : start + INSERT_CHUNK]
                self._db.execute(
                    _INSERT_MANY + ",".join([_INSERT_ROW] * len(chunk)),
                    [value for row in chunk for value in row],
                )
        return records

    def claim(self, identities: Sequence[str], *, resend_unknown: bool = False) -> list[str]:
        """Mark rows in_flight in ONE commit, durable (synchronous=FULL) on return: call it
        before their DATA is sent. Only pending and deferred rows (and unknown ones when
        `resend_unknown`) are claimed; returns those, in the order given. Buffered finishes
        and adds ride on the same commit."""
        if not identities:
            return []
        kinds = [*CLAIMABLE, RowState.UNKNOWN] if resend_unknown else list(CLAIMABLE)
        claimed: set[str] = set()
        now = time.time()
        with mapped(self.path):
            self._begin()
            self._apply_finished()
            for start in range(0, len(identities), CLAIM_CHUNK):
                chunk = identities[start : start + CLAIM_CHUNK]
                claimed.update(self._claim_chunk(chunk, kinds, now))
            self._commit()
        return [identity for identity in identities if identity in claimed]

    def _claim_chunk(self, chunk: Sequence[str], kinds: list[RowState], now: float) -> set[str]:
        """Two statements for a whole batch, whatever its size: which rows are claimable (as
        one aggregate row), then the update; the caller's transaction holds the write lock
        between them. The worker thread that claims releases the GIL at every SQLite step and
        waits for it back while the event loop runs: a statement per row, or a result row
        per claimed row, would cost a wait each. By the identity's unique index: "+state"
        keeps the planner off the state index, which would scan every pending row (an
        `identity IN (...)` planned that way cost 97 us a row at 20,000 rows)."""
        ids = ",".join("?" * len(chunk))
        marks = ",".join("?" * len(kinds))
        where = f"identity IN ({ids}) AND +state IN ({marks})"
        params = (*chunk, *kinds)
        if any("," in identity for identity in chunk):  # not rows.py's (hex, "#k"): one by one
            found = [i for i in chunk if self._claim_one(i, kinds, marks, now)]
            return set(found)
        (joined,) = self._db.execute(
            f"SELECT group_concat(identity, ',') FROM rows WHERE {where}",  # noqa: S608
            params,
        ).fetchone()
        if not joined:
            return set()
        self._db.execute(
            f"UPDATE rows SET state = 'in_flight', updated = ? WHERE {where}",  # noqa: S608
            (now, *params),
        )
        return set(joined.split(","))

    def _claim_one(self, identity: str, kinds: list[RowState], marks: str, now: float) -> bool:
        return bool(
            self._db.execute(
                f"UPDATE rows SET state = 'in_flight', updated = ?"  # noqa: S608 (only "?")
                f" WHERE identity = ? AND +state IN ({marks})",
                (now, identity, *kinds),
            ).rowcount
        )

    def finish(
        self,
        identity: str,
        state: RowState,
        *,
        attempts: int,
        reply: Reply | None = None,
        queue_id: str | None = None,
        latency_ms: float | None = None,
        text: str | None = None,
    ) -> None:
        """Record a row's outcome (or pending again, for a claimed row never tried); durable
        at the next flush() or claim(), never before. A sent row is never changed again.
        `attempts`: the transactions tried since the claim (0 for a row never tried); the
        journal keeps the total over claims and runs (recover() counts one for a row a
        crash left in flight). `text` describes an outcome without a reply (a lost
        connection, an invalid row)."""
        if state not in FINISHED:
            raise ValueError(f"finish() cannot set {state!r}")
        code = enhanced = None
        if reply is not None:
            code, enhanced, text = reply.code, reply.enhanced, reply.text
        self._finished.append(
            (
                str(state),
                attempts,
                code,
                _bounded(enhanced, ENHANCED_LIMIT),
                _bounded(text, TEXT_LIMIT),
                _bounded(queue_id, QUEUE_ID_LIMIT),
                latency_ms,
                time.time(),
                identity,
            )
        )
        if len(self._finished) >= FINISH_BUFFER:
            self.flush()

    def flush(self) -> None:
        """Commit everything finished (and added) since the last commit: ONE commit."""
        if not self._finished and not self._db.in_transaction:
            return
        with mapped(self.path):
            self._begin()
            self._apply_finished()
            self._commit()

    # -- reading ---------------------------------------------------------------------------

    def counts(self, *, this_run: bool = False) -> dict[RowState, int]:
        """Rows by state, every state present (flushes first); `this_run`: only the rows
        add()-ed by this run, not those of earlier runs gone from the CSV."""
        self.flush()
        counts = dict.fromkeys(RowState, 0)
        query = "SELECT state, COUNT(*) FROM rows GROUP BY state"
        if this_run:
            query = "SELECT state, COUNT(*) FROM rows WHERE seen_run = ? GROUP BY state"
        with mapped(self.path):
            for state, count in self._db.execute(query, (self.run,) if this_run else ()):
                counts[RowState(state)] = count
        return counts

    def get(self, identity: str) -> RowRecord | None:
        """What the journal holds of one row (committed or not), or None: for the failed-rows CSV,
        which reads the CSV again and keeps the rows whose record failed."""
        self._apply_pending()
        with mapped(self.path):
            found = self._db.execute(
                f"SELECT {_COLUMNS} FROM rows WHERE identity = ?",  # noqa: S608 (constants)
                (identity,),
            ).fetchone()
        return None if found is None else _record(found)

    def records(
        self, states: Collection[RowState] | None = None, *, this_run: bool = False
    ) -> Iterator[RowRecord]:
        """Rows in line order (flushes first), PAGE at a time so none is held whole;
        `this_run`: only rows add()-ed by this run (not those vanished from the CSV)."""
        self.flush()
        # "+state": not by the state index, which would sort every matching row again for
        # each page; the line index walks the table once, in order, whatever the filter.
        where = []
        extra: list[Any] = []
        if states is not None:
            where.append(f"+state IN ({','.join('?' * len(states))})")
            extra.extend(str(state) for state in states)
        if this_run:
            where.append("seen_run = ?")
            extra.append(self.run)
        condition = "".join(f" AND {clause}" for clause in where)
        after = (-1, -1)
        while True:
            with mapped(self.path):
                page = self._db.execute(
                    f"SELECT {_COLUMNS}, id FROM rows WHERE (line, id) > (?, ?){condition}"  # noqa: S608
                    f" ORDER BY line, id LIMIT {PAGE}",
                    (*after, *extra),
                ).fetchall()
            for found in page:
                yield _record(found)
            if len(page) < PAGE:
                return
            after = (page[-1][1], page[-1][-1])

    def changes(self) -> JournalChanges:
        """This run's rows against earlier runs' (call after adding every row of the CSV)."""
        self.flush()
        with mapped(self.path):
            known, new, vanished, sent_before = self._db.execute(
                "SELECT"
                " SUM(seen_run = ?1 AND first_run < ?1),"
                " SUM(first_run = ?1),"
                " SUM(seen_run < ?1),"
                " SUM(first_run < ?1 AND state = 'sent')"
                " FROM rows",
                (self.run,),
            ).fetchone()
        return JournalChanges(
            run=self.run,
            known=known or 0,
            new=new or 0,
            vanished=vanished or 0,
            sent_before=sent_before or 0,
        )

    # -- inside ----------------------------------------------------------------------------

    def _update_known(
        self, record: RowRecord, row: Row, recipient: str, allow_duplicates: bool
    ) -> RowRecord:
        state, text = record.state, record.text
        if allow_duplicates and state is RowState.DUPLICATE:
            state, text = RowState.PENDING, None
        recipient = _bounded(recipient, RECIPIENT_LIMIT) or ""
        if state not in (RowState.PENDING, RowState.DEFERRED, RowState.DUPLICATE):
            recipient = record.recipient  # what it was (maybe) delivered to stays on record
        self._db.execute(
            "UPDATE rows SET line = ?, seen_run = ?, state = ?, text = ?, recipient = ?,"
            " rcpt_hash = ? WHERE identity = ?",
            (
                row.line,
                self.run,
                str(state),
                text,
                recipient,
                _recipient_hash(recipient),
                row.identity,
            ),
        )
        return RowRecord(
            identity=record.identity,
            line=row.line,
            state=state,
            recipient=recipient,
            message_id=record.message_id,
            attempts=record.attempts,
            code=record.code,
            enhanced=record.enhanced,
            text=text,
            queue_id=record.queue_id,
            latency_ms=record.latency_ms,
        )

    def _insert(self, row: Row, recipient: str, allow_duplicates: bool, domain: str) -> RowRecord:
        recipient = _bounded(recipient, RECIPIENT_LIMIT) or ""
        digest = _recipient_hash(recipient)
        state, text = RowState.PENDING, None
        if recipient and not allow_duplicates:
            other = self._db.execute(
                "SELECT line, seen_run FROM rows WHERE rcpt_hash = ?"
                " AND (seen_run = ? OR state IN (?, ?, ?)) LIMIT 1",
                (digest, self.run, *map(str, MAYBE_DELIVERED)),
            ).fetchone()
            if other is not None:
                state = RowState.DUPLICATE
                text = (
                    f"same recipient as line {other[0]}"
                    if other[1] == self.run
                    else "this recipient was already sent to by an earlier run"
                )
        message_id = self._message_id(row.identity, domain)
        self._db.execute(
            _INSERT,
            (
                row.identity,
                row.line,
                recipient,
                digest,
                str(state),
                text,
                message_id,
                self.run,
                self.run,
                time.time(),
            ),
        )
        return RowRecord(
            identity=row.identity,
            line=row.line,
            state=state,
            recipient=recipient,
            message_id=message_id,
            attempts=0,
            code=None,
            enhanced=None,
            text=text,
            queue_id=None,
            latency_ms=None,
        )

    def _message_id(self, identity: str, domain: str) -> str:
        """RFC 5322 3.6.4 msg-id, the same for a row whatever happens to the process: a
        keyed hash of its identity (the key is the journal's own random salt)."""
        if self._domain[0] != domain:
            self._domain = (domain, _msgid_domain(domain))
        token = hashlib.sha256(self._salt + identity.encode("utf-8")).hexdigest()[:32]
        return f"<{token}@{self._domain[1]}>"

    def _apply_pending(self) -> None:
        """Make buffered finishes visible to this connection's reads (not yet durable)."""
        if self._finished:
            with mapped(self.path):
                self._begin()
                self._apply_finished()

    def _apply_finished(self) -> None:
        finished = self._finished
        if not finished:
            return
        # A sent row is final: a late or repeated finish never turns it into anything else.
        if _UPDATE_FROM and len({item[-1] for item in finished}) == len(finished):
            # One statement for many rows (SQLite 3.33 UPDATE FROM): executemany steps once a
            # row, and the journal's worker thread waits for the GIL after every step.
            for start in range(0, len(finished), FINISH_CHUNK):
                chunk = finished[start : start + FINISH_CHUNK]
                values = ",".join(["(?,?,?,?,?,?,?,?,?)"] * len(chunk))
                statement = _FINISH_MANY.format(values=values)  # only "?" marks go in
                self._db.execute(statement, [value for item in chunk for value in item])
        else:  # a row finished twice in one batch: in order, each on what the last left
            self._db.executemany(
                "UPDATE rows SET state = ?, attempts = attempts + ?, code = ?, enhanced = ?,"
                " text = ?, queue_id = ?, latency_ms = ?, updated = ?"
                " WHERE identity = ? AND state != 'sent'",
                finished,
            )
        finished.clear()

    # SQLite's own view of the transaction, not a flag of ours: after an error (disk full)
    # SQLite may have rolled it back by itself, and the next write must begin a new one.
    def _begin(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        if self._db.in_transaction:
            started = time.perf_counter()
            self._db.execute("COMMIT")  # synchronous=FULL: the WAL is fsync'ed before return
            if self._db.total_changes != self._changes:  # it wrote: it had to reach the disk
                self._changes = self._db.total_changes
                self._commit_costs.append(time.perf_counter() - started)
        self._adds = 0

    def commit_cost(self) -> float:
        """Seconds the recent commits that wrote something took (the median of the last
        COMMIT_SAMPLES); infinite until there are that many."""
        costs = self._commit_costs
        if len(costs) < COMMIT_SAMPLES:
            return math.inf
        return sorted(costs)[len(costs) // 2]

    def _meta(self, key: str) -> str:
        found = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(found[0]) if found else ""


def _record(found: Sequence[Any]) -> RowRecord:
    return RowRecord(
        identity=found[0],
        line=found[1],
        state=RowState(found[2]),
        recipient=found[3],
        message_id=found[4],
        attempts=found[5],
        code=found[6],
        enhanced=found[7],
        text=found[8],
        queue_id=found[9],
        latency_ms=found[10],
    )


def _bounded(value: str | None, limit: int) -> str | None:
    if value is None or len(value) <= limit:
        return value
    return value[: limit - 1] + "…"


def _recipient_hash(recipient: str) -> bytes:
    """16 bytes naming a recipient, case-insensitively (one mailbox, spelled two ways, is
    treated as one: for duplicates, erring towards not sending twice)."""
    return hashlib.sha256(recipient.strip().casefold().encode("utf-8", "replace")).digest()[:16]


def _msgid_domain(domain: str) -> str:
    try:
        ascii_domain = to_ascii_domain(domain.strip().rstrip("."))
    except UnicodeError:
        ascii_domain = ""
    if not _DOMAIN.fullmatch(ascii_domain):
        raise InputDataError(
            f"cannot make a Message-ID with the domain {quote(domain)}",
            hint="the sender's address needs a valid domain",
        )
    return ascii_domain
