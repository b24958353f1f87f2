"""A folder of raw messages, one `.eml` file each (`fetch --eml-dir`): temp dot-file,
fsync, rename, fsync the folder, like a Maildir delivery but into one flat folder."""

from __future__ import annotations

import itertools
import os
import secrets
import stat
import time
from pathlib import Path

from mailctl.errors import CantCreateError
from mailctl.store.files import file_kind, fsync_dir, publish_new

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class EmlFolder:
    """A folder of raw messages, one `.eml` file each, named by time, process and a random
    part (nothing from the message), written to a dot-file, fsynced, then renamed. The
    folder is fsynced after each write, or with `sync_each=False` by `sync()` (as Maildir)."""

    def __init__(self, path: Path, *, sync_each: bool = True) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise CantCreateError(
                f"cannot create the .eml folder {self.path}: {err.strerror or err}",
                hint="name a folder you can write to",
            ) from err
        mode = os.stat(self.path).st_mode
        if not stat.S_ISDIR(mode):
            raise CantCreateError(
                f"{self.path} is not a folder (it is {file_kind(mode)})", hint="name a folder"
            )
        self._counter = itertools.count(1)
        self._sync_each = sync_each
        self._unsynced = False

    def write(self, data: bytes) -> Path:
        """Write one message; return its path. Raise CantCreateError, leaving no file."""
        name = f"{int(time.time())}-{os.getpid()}-{next(self._counter)}-{secrets.token_hex(4)}"
        temp = os.path.join(self.path, f".{name}.tmp")
        final = self.path / f"{name}.eml"
        try:
            fd = os.open(temp, _FLAGS, 0o600)
            # never over another file (a 1-in-2^32 clash)
            publish_new(fd, temp, str(final), data, replace=False)
        except OSError as err:
            raise CantCreateError(
                f"cannot write into {self.path}: {err.strerror or err}",
                hint="check free space and permissions",
            ) from err
        if self._sync_each:
            fsync_dir(self.path)
        else:
            self._unsynced = True
        return final

    def sync(self) -> None:
        """Make every write so far durable (with `sync_each=False`)."""
        if self._unsynced:
            fsync_dir(self.path)
            self._unsynced = False
