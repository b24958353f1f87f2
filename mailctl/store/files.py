"""Atomic file writes: a reader sees the old file or the whole new one, never half of it."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

from mailctl.errors import CantCreateError

_KINDS: Final = (
    (stat.S_ISREG, "a regular file"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


def file_kind(mode: int) -> str:
    """Name the kind of file a stat mode describes ("a FIFO"), for one-line errors."""
    return next((name for test, name in _KINDS if test(mode)), "not a file")


def write_atomic(
    path: Path, data: bytes, *, mode: int = 0o600, shown: Path | None = None, what: str = "file"
) -> None:
    """Write via a temp file in the same folder, fsync, then rename over the target.

    mkstemp creates the temp file O_EXCL in the target's folder, so the rename stays on one
    file system and is atomic (POSIX rename(2)). `shown`/`what` name the file in errors.
    Only a regular file (or nothing) is ever replaced: rename(2) would put a regular file in
    place of a FIFO, a device (as root, /dev/null) or a symlink, so those are refused here;
    `outputs.write_output` decides how to write to them. Raises CantCreateError naming the
    path when any step fails or the target is not a regular file; it is untouched then.
    """
    with atomic_file(path, mode=mode, shown=shown, what=what) as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_file(
    path: Path, *, mode: int = 0o600, shown: Path | None = None, what: str = "file"
) -> Iterator[BinaryIO]:
    """Stream into a temp file beside `path`; on a clean exit fsync and rename it over `path`.

    `write_atomic` for output made piece by piece (a report of a million rows is never held
    whole): the target keeps its old content until the block ends without an exception, and
    the temp file is removed whatever happens. An OSError while writing (ENOSPC) becomes
    CantCreateError naming the path; any other exception from the block goes through as is.
    """
    path = Path(path)
    try:
        existing = os.lstat(path).st_mode
    except OSError:
        existing = None  # missing (created now), or the steps below fail and say why
    if existing is not None and not stat.S_ISREG(existing):
        raise CantCreateError(
            f"{shown or path}: will not replace {file_kind(existing)} with the {what}",
            hint="name a regular file, or a path that does not exist yet",
            details={"file": str(shown or path)},
        )
    folder = path.parent if str(path.parent) else Path(".")
    temp_name: str | None = None
    try:
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
        temp_name = None
    except OSError as err:
        raise CantCreateError(
            f"{shown or path}: cannot write the {what}: {err.strerror or type(err).__name__}",
            hint="check the permissions and free space of its folder; the old file is unchanged",
            details={"file": str(shown or path)},
        ) from err
    finally:
        if temp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
    fsync_dir(folder)


def write_all_and_sync(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` (os.write may write less than asked) and fsync it."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def publish_new(fd: int, temp: str, final: str, data: bytes, *, replace: bool = True) -> None:
    """Write `data` into `fd`, a new file just created at `temp`, fsync and close it, then
    rename `temp` to `final` (Maildir and .eml delivery: a reader sees all or nothing).

    `replace=False` refuses an existing `final` (FileExistsError) rather than renaming over
    it. Raises OSError with `temp` removed; fsyncing the folder is the caller's job (one
    kept directory descriptor on the hot path, not an open per message).
    """
    try:
        try:
            write_all_and_sync(fd, data)
        finally:
            os.close(fd)
        if not replace and os.path.lexists(final):
            raise FileExistsError(17, "File exists", final)
        os.rename(temp, final)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX: the directory entry lives in the folder)."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
