"""Maildir delivery: write into tmp/, fsync, rename into new/ (the qmail/Dovecot protocol)."""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
import time
from pathlib import Path

from mailctl.errors import CantCreateError
from mailctl.store.files import file_kind

_SUBDIRS = ("tmp", "new", "cur")


class Maildir:
    """A Maildir folder that messages are delivered into, one file each.

    File names are "SECONDS.M<usec>P<pid>Q<n>.<host>" (the maildir(5) unique-name scheme):
    nothing in them comes from the message, so no message can steer where it is written.
    Writes are atomic: a reader of new/ sees a whole file or nothing.
    """

    def __init__(self, path: Path) -> None:
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

    def deliver(self, data: bytes) -> Path:
        """Write one message; return its path in new/. Raise CantCreateError, leaving no file."""
        now = time.time()
        seconds = int(now)
        micros = int((now - seconds) * 1_000_000)
        name = f"{seconds}.M{micros}P{self._pid}Q{next(self._counter)}.{self._host}"
        temp = self.path / "tmp" / name
        final = self.path / "new" / name
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as err:
            raise CantCreateError(f"cannot write {temp}: {err.strerror or err}") from err
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, final)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise CantCreateError(
                f"cannot deliver into {self.path}: {err.strerror or err}",
                hint="check free space and permissions",
            ) from err
        _fsync_dir(self.path / "new")
        return final


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


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable: the directory entry lives in new/ (POSIX)."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
