"""Maildir delivery: write into tmp/, fsync, rename into new/ (the qmail/Dovecot protocol)."""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
import time
import weakref
from pathlib import Path

from mailctl.errors import CantCreateError
from mailctl.store.files import file_kind, publish_new

_SUBDIRS = ("tmp", "new", "cur")


class Maildir:
    """A Maildir folder that messages are delivered into, one file each.

    File names are "SECONDS.M<usec>P<pid>Q<n>.<host>" (the maildir(5) unique-name scheme):
    nothing in them comes from the message, so no message can steer where it is written.
    Writes are atomic: a reader of new/ sees a whole file or nothing. Each file is fsynced
    before its rename; the rename itself (an entry in new/) is made durable by an fsync of
    new/ after each delivery, or with `sync_each=False` by `sync()`, once for a batch (a
    fetch syncs before it records messages as taken: one directory fsync per message is
    most of a delivery's cost on a journalling disk).
    """

    def __init__(self, path: Path, *, sync_each: bool = True) -> None:
        """Create the folder and tmp/new/cur (mode 0700) when missing; raise CantCreateError."""
        self.path = Path(path)
        folders = (self.path, *(self.path / sub for sub in _SUBDIRS))
        try:
            for folder in folders:
                # mkdir(exist_ok) says only "File exists" for a FIFO or file in the way.
                _require_directory(folder)
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            for folder in folders:  # something appeared since we looked: name it
                _require_directory(folder)
            raise CantCreateError(
                f"cannot create maildir {self.path}: {err.strerror or err}",
                hint="check that the parent folder exists and is writable",
            ) from err
        # maildir(5): "/" and ":" in the host name would break the name's structure.
        host = os.uname().nodename or "localhost"
        self._host = host.replace("/", r"\057").replace(":", r"\072")
        self._pid = os.getpid()
        self._counter = itertools.count(1)
        # Plain strings: pathlib joins cost more than the write on tmpfs (bulk fetch).
        self._tmp = os.path.join(self.path, "tmp", "")
        self._new = os.path.join(self.path, "new", "")
        self._new_fd: int | None = None  # new/, opened once to fsync after each rename
        self._new_path = self.path / "new"
        self._sync_each = sync_each
        self._unsynced = False  # renames into new/ not yet made durable

    def deliver(self, data: bytes) -> Path:
        """Write one message; return its path in new/. Raise CantCreateError, leaving no file."""
        now = time.time()
        seconds = int(now)
        micros = int((now - seconds) * 1_000_000)
        name = f"{seconds}.M{micros}P{self._pid}Q{next(self._counter)}.{self._host}"
        temp = self._tmp + name
        final = self._new + name
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as err:
            raise CantCreateError(f"cannot write {temp}: {err.strerror or err}") from err
        try:
            publish_new(fd, temp, final, data)
        except OSError as err:
            raise CantCreateError(
                f"cannot deliver into {self.path}: {err.strerror or err}",
                hint="check free space and permissions",
            ) from err
        if self._sync_each:
            self._sync_new()
        else:
            self._unsynced = True
        return self._new_path / name

    def sync(self) -> None:
        """Make every delivery so far durable (with `sync_each=False`)."""
        if self._unsynced:
            self._sync_new()
            self._unsynced = False

    def _sync_new(self) -> None:
        """Make the rename durable: the directory entry lives in new/ (POSIX)."""
        with contextlib.suppress(OSError):
            if self._new_fd is None:
                self._new_fd = os.open(self._new, os.O_RDONLY | os.O_DIRECTORY)
                weakref.finalize(self, os.close, self._new_fd)
            os.fsync(self._new_fd)


def _require_directory(folder: Path) -> None:
    """Raise CantCreateError if `folder` exists (through symlinks) and is not a directory."""
    try:
        mode = os.stat(folder).st_mode
    except OSError:
        return  # missing: mkdir makes it, or says why it cannot
    if not stat.S_ISDIR(mode):
        raise CantCreateError(
            f"maildir folder {folder} is not a directory (it is {file_kind(mode)})",
            hint="a Maildir is a folder with tmp/, new/ and cur/; name a new path or a Maildir",
        )
