"""Atomic file writes: a reader sees the old file or the whole new one, never half of it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from mailctl.errors import CantCreateError


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write via a temp file in the same folder, fsync, then rename over the target.

    Raises CantCreateError naming the path when any step fails; the target is untouched then.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise CantCreateError(
            f"cannot write {path}: {err.strerror or err}",
            hint="check that the folder exists and is writable",
        ) from err
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise CantCreateError(
            f"cannot write {path}: {err.strerror or err}",
            hint="check free space and permissions",
        ) from err
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
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
