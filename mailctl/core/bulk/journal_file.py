"""The journal's file: one run at a time (the lock), refusing what is not a journal, SQLite in
WAL mode with synchronous=FULL, the schema and its version, the runs and their templates."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from mailctl.errors import (
    JournalBusyError,
    JournalError,
    NotAJournalError,
    NotRegularFileError,
    TemplateChangedError,
)
from mailctl.text import quote

__all__ = ["check_file", "connect", "lock", "mapped", "start_run", "unlock"]

SCHEMA_VERSION: Final = 1
APPLICATION_ID: Final = 0x6D6A726E  # "mjrn": PRAGMA application_id, so `file` and we know it
SQLITE_MAGIC: Final = b"SQLite format 3\x00"
SCHEMA: Final = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE runs (id INTEGER PRIMARY KEY, started REAL NOT NULL, ended REAL,"
    " pid INTEGER NOT NULL, template_digest TEXT NOT NULL, template_changed INTEGER NOT NULL)",
    # Rows by rowid, in the order first added (the CSV's): the rows of one batch share a few
    # pages, so a commit writes (and fsyncs) a few pages rather than one per row, as keying
    # the table by the identity's hash would.
    "CREATE TABLE rows ("
    " id INTEGER PRIMARY KEY,"
    " identity TEXT NOT NULL UNIQUE,"
    " line INTEGER NOT NULL,"
    " recipient TEXT NOT NULL,"
    " rcpt_hash BLOB NOT NULL,"  # 16 bytes of sha256: duplicates found by index, not a set
    " state TEXT NOT NULL CHECK (state IN"
    " ('pending','in_flight','sent','failed','deferred','unknown','duplicate')),"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " code INTEGER, enhanced TEXT, text TEXT, queue_id TEXT, latency_ms REAL,"
    " message_id TEXT NOT NULL,"
    " first_run INTEGER NOT NULL,"
    " seen_run INTEGER NOT NULL,"
    " updated REAL NOT NULL"
    ")",
    "CREATE INDEX rows_rcpt ON rows (rcpt_hash)",
    "CREATE INDEX rows_state ON rows (state)",
    "CREATE INDEX rows_line ON rows (line)",
)


@contextlib.contextmanager
def mapped(path: Path) -> Iterator[None]:
    """SQLite's exceptions as mailctl errors naming the journal."""
    try:
        yield
    except sqlite3.DatabaseError as err:
        if "not a database" in str(err) or "malformed" in str(err):
            raise NotAJournalError(
                f"journal {quote(str(path))} is damaged or not a journal: {err}",
                hint="give --journal a new file (the rows' states in this one are lost)",
            ) from err
        raise JournalError(
            f"journal {quote(str(path))} cannot be written: {err}",
            hint="check the disk space and permissions of its folder",
        ) from err


def lock(path: Path) -> int:
    """Hold an exclusive flock on "<journal>.lock", writing our pid in it; the kernel drops it
    when the process ends, however it ends. The file stays: removing it would let two runs lock
    two different files."""
    lock_path = path.with_name(path.name + ".lock")
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(lock_path, flags, 0o600)
    except OSError as err:
        raise JournalError(
            f"journal lock {quote(str(lock_path))} cannot be created: {err.strerror}",
            hint="check that the journal's folder exists and is writable",
        ) from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise JournalBusyError(
            f"journal {quote(str(path))} is in use by another bulk-send run{who}",
            hint="wait for that run to end, or give this one another --journal",
            details={"journal": str(path), "pid": int(holder) if holder.isdigit() else None},
        ) from None
    except OSError as err:
        os.close(fd)
        raise JournalError(
            f"journal lock {quote(str(lock_path))} cannot be taken: {err.strerror}",
            hint="put the journal on a local file system",
        ) from err
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def check_file(path: Path) -> None:
    """Refuse what is not a journal before SQLite touches it (it would turn a CSV given as
    journal into garbage); create a new one with mode 0600, which the WAL files inherit."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        except OSError as err:
            raise JournalError(
                f"journal {quote(str(path))} cannot be created: {err.strerror}",
                hint="check that its folder exists and is writable",
            ) from err
        return
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFileError(
            f"journal {quote(str(path))} is not a regular file",
            hint="give --journal a file name",
        )
    if info.st_size == 0:
        return
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(SQLITE_MAGIC))
    except OSError as err:
        raise JournalError(
            f"journal {quote(str(path))} cannot be read: {err.strerror}",
            hint="check its permissions",
        ) from err
    if magic != SQLITE_MAGIC:
        raise NotAJournalError(
            f"{quote(str(path))} is not a bulk-send journal",
            hint="give --journal a new file name, or this CSV's journal",
        )


def connect(path: Path) -> sqlite3.Connection:
    with mapped(path):
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(
                    f"journal {quote(str(path))} cannot use SQLite's WAL mode",
                    hint="put the journal on a local file system",
                )
            db.execute("PRAGMA synchronous=FULL")  # a commit is on disk when COMMIT returns
            create_schema(db, path)
        except BaseException:
            db.close()
            raise
    return db


def create_schema(db: sqlite3.Connection, path: Path) -> None:
    """Create the tables in a new journal; refuse another program's SQLite file or a journal
    of a newer schema."""
    app = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    tables = db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
    if app == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise NotAJournalError(
                f"journal {quote(str(path))} was written by a newer mailctl"
                f" (schema {version}, this one reads {SCHEMA_VERSION})",
                hint="use that mailctl version, or give --journal a new file",
            )
        return
    if app != 0 or tables:
        raise NotAJournalError(
            f"{quote(str(path))} is an SQLite file but not a bulk-send journal",
            hint="give --journal a new file name, or this CSV's journal",
        )
    db.execute("BEGIN IMMEDIATE")
    for statement in SCHEMA:
        db.execute(statement)
    db.execute("INSERT INTO meta VALUES ('salt', ?)", (secrets.token_hex(16),))
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.execute("COMMIT")


def start_run(db: sqlite3.Connection, path: Path, digest: str, changed: bool) -> tuple[int, bool]:
    """Check the template against the last run's; record this run. Returns its number and
    whether the template differs from the last run's.

    A different template is refused (TemplateChangedError) unless `changed` says it is meant,
    but only once a message may have gone out with the old one (a row sent, in flight or
    unknown): before that, nothing sent can disagree with what will be.
    """
    with mapped(path):
        last = db.execute("SELECT template_digest FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        differs = last is not None and last[0] != digest
        if differs and not changed:
            out = db.execute(
                "SELECT COUNT(*) FROM rows WHERE state IN ('sent', 'in_flight', 'unknown')"
            ).fetchone()[0]
            if out:
                raise TemplateChangedError(
                    f"the template changed since the last run on journal {quote(str(path))}"
                    f" ({out} row{'s' if out != 1 else ''} already sent, or maybe sent,"
                    " with the old one)",
                    hint="pass --template-changed to send the rest with the new template"
                    " (rows already sent are never sent again)",
                    details={"journal": str(path), "sent": out},
                )
        cursor = db.execute(
            "INSERT INTO runs (started, pid, template_digest, template_changed)"
            " VALUES (?, ?, ?, ?)",
            (time.time(), os.getpid(), digest, int(differs)),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid, differs
