"""Output files the user names: what the path is decides how it is written; nothing is replaced.

A regular file (or a missing one) is written atomically by `files.write_atomic`: temp file,
fsync, rename. A rename replaces whatever the name pointed to, so it must never be aimed at a
FIFO or a device: as root, `--save /dev/null` used to leave a regular file where /dev/null
was. Streams are written in place instead, and a FIFO is opened without waiting (POSIX
open(2): O_WRONLY|O_NONBLOCK fails with ENXIO when no process has it open for reading), so a
FIFO nobody reads is a clear error at once rather than a hang. The rule, as the README states
it under "Output files":

- missing, or a regular file: atomic; through a symlink, the file it points to is replaced
  and the link kept (dotfile managers);
- one of our own descriptors named as a path (/dev/stdout, /dev/stderr, /dev/fd/N,
  /proc/self/fd/N): written to that descriptor, as gawk does, so `--csv /dev/stdout >> log`
  appends to the log instead of reopening (and truncating, or replacing) it;
- a character device (/dev/null, a terminal) or a FIFO: written in place, at the reader's pace;
- a directory, a block device or a socket: refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Protocol

from mailctl.errors import CantCreateError
from mailctl.store.files import atomic_file, file_kind
from mailctl.text import quote

__all__ = [
    "OutputStream",
    "check_output",
    "file_kind",
    "open_output",
    "own_descriptor",
    "write_output",
]

# Paths that name a descriptor of the process that opens them (Linux /proc, and the /dev
# links to it that every Unix shell user knows). /proc/PID/fd counts only for our own PID.
_OWN_DESCRIPTOR: Final = re.compile(
    r"/dev/(?P<std>stdin|stdout|stderr)|/dev/fd/(?P<dev>\d+)"
    r"|/proc/(?P<pid>self|thread-self|\d+)(?:/task/\d+)?/fd/(?P<proc>\d+)"
)
_STANDARD: Final = {"stdin": 0, "stdout": 1, "stderr": 2}
_MAX_LINKS: Final = 16  # hops followed looking for a descriptor path (the kernel allows 40)


def own_descriptor(path: str | os.PathLike[str]) -> int | None:
    """The descriptor number `path` names in this process (/dev/stdout -> 1), or None.

    Follows symlinks one hop at a time, resolving each parent folder, so a link to /dev/stdout
    or a path through /dev/fd counts; /proc/PID/fd/N only for our own PID.
    """
    current = os.path.abspath(os.fsdecode(path))
    for _ in range(_MAX_LINKS):
        folder, name = os.path.split(current)
        with contextlib.suppress(OSError):
            folder = os.path.realpath(folder)
        current = os.path.join(folder, name)
        match = _OWN_DESCRIPTOR.fullmatch(current)
        if match:
            pid = match.group("pid")
            if pid is not None and pid not in ("self", "thread-self", str(os.getpid())):
                return None
            if match.group("std"):
                return _STANDARD[match.group("std")]
            return int(match.group("dev") or match.group("proc"))
        try:
            target = os.readlink(current)
        except OSError:  # not a link (or gone): an ordinary path
            return None
        current = os.path.join(folder, target)
    return None


def check_output(path: Path, *, what: str) -> None:
    """Refuse, before any work, a path that can never take the output (CantCreateError).

    A directory, block device, socket or a missing folder is refused now, so a long benchmark
    does not end in a write that was bound to fail; a FIFO's reader is only needed when
    writing.
    """
    if own_descriptor(path) is not None:
        return
    try:
        info = os.stat(path)
    except FileNotFoundError:
        folder = os.path.dirname(os.path.realpath(path)) or "."
        if not os.path.isdir(folder):
            raise CantCreateError(
                f"{quote(path)}: cannot write the {what}: its folder {quote(folder)} "
                "does not exist",
                hint="create the folder first, or name another path",
                details={"file": os.fsdecode(path)},
            ) from None
        return
    except OSError:
        return  # unreachable: the write says why, naming the path
    _require_writable_kind(path, info.st_mode, what=what)


def write_output(path: Path, data: bytes, *, mode: int = 0o600, what: str = "file") -> None:
    """Write `data` to a user-named output path by the module's rule.

    `mode` applies to files mailctl creates or replaces (not to FIFOs and devices). Raises
    CantCreateError (73) naming the path: a directory, block device or socket; a FIFO nobody
    is reading; a descriptor that is not open; or any failed write.
    """
    with open_output(path, mode=mode, what=what) as out:
        out.write(data)


class OutputStream(Protocol):
    """Where `open_output` lets its caller write, piece by piece."""

    def write(self, data: bytes, /) -> object: ...


@contextlib.contextmanager
def open_output(path: Path, *, mode: int = 0o600, what: str = "file") -> Iterator[OutputStream]:
    """Stream output to a user-named path by the module's rule (`write_output`, piece by piece).

    A regular or missing file is written to a temp file and renamed over the target only when
    the block ends cleanly (`files.atomic_file`), so a report cut short by an error leaves the
    old file as it was; a descriptor, FIFO or character device is written as the block goes.
    Raises CantCreateError (73) as `write_output` does; other exceptions pass through.
    """
    number = own_descriptor(path)
    if number is not None:
        _check_descriptor(number, path=path, what=what)
        yield _DescriptorStream(number, path=path, what=what)
        return
    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    except OSError as err:
        raise _cant(path, what, err) from err
    if info is None or stat.S_ISREG(info.st_mode):
        with atomic_file(target, mode=mode, shown=path, what=what) as handle:
            yield handle
        return
    _require_writable_kind(path, info.st_mode, what=what)
    fd = _open_in_place(target, path=path, what=what)
    if fd is None:  # replaced by a regular file since we looked: write that
        with atomic_file(target, mode=0o600, shown=path, what=what) as handle:
            yield handle
        return
    try:
        yield _DescriptorStream(fd, path=path, what=what)
    finally:
        os.close(fd)


class _DescriptorStream:
    """Writes go straight to a descriptor (ours, a FIFO's, a device's), errors named."""

    def __init__(self, fd: int, *, path: Path, what: str) -> None:
        self._fd = fd
        self._path = path
        self._what = what

    def write(self, data: bytes, /) -> int:
        try:
            _write_all(self._fd, data)
        except OSError as err:
            raise _cant(self._path, self._what, err) from err
        return len(data)


def _require_writable_kind(path: Path, mode: int, *, what: str) -> None:
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return
    raise CantCreateError(
        f"{quote(path)}: cannot write the {what} there: it is {file_kind(mode)}",
        hint="name a regular file (or a FIFO, or a device such as /dev/null)",
        details={"file": os.fsdecode(path)},
    )


def _open_in_place(target: Path, *, path: Path, what: str) -> int | None:
    """Open an existing FIFO or character device for writing, never creating, truncating or
    replacing it; None when a regular file stands there by the time it is open."""
    # O_NONBLOCK only for the open: a FIFO without a reader fails with ENXIO instead of
    # blocking forever. O_NOCTTY: a terminal named here must not become our controlling one.
    flags = os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags)
    except OSError as err:
        if err.errno == errno.ENXIO:
            raise CantCreateError(
                f"{quote(path)}: nobody is reading this FIFO, so the {what} cannot be written",
                hint="start its reader first (e.g. cat FIFO), or name a regular file",
                details={"file": os.fsdecode(path)},
            ) from err
        raise _cant(path, what, err) from err
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            os.close(fd)
            return None
        _require_writable_kind(path, mode, what=what)
        os.set_blocking(fd, True)  # from here on the reader sets the pace, like any pipe
    except OSError as err:
        os.close(fd)
        raise _cant(path, what, err) from err
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_descriptor(number: int, *, path: Path, what: str) -> None:
    """Our own descriptor `number` is open; what was printed before it is flushed first."""
    for stream in (sys.stdout, sys.stderr):  # keep order with what was printed before
        with contextlib.suppress(Exception):
            if stream is not None and stream.fileno() == number:
                stream.flush()
    try:  # any open kind will do: a pipe, a terminal, a redirected file, journald's socket
        os.fstat(number)
    except OSError as err:
        raise CantCreateError(
            f"{quote(path)}: descriptor {number} is not open, so the {what} cannot be written",
            details={"file": os.fsdecode(path)},
        ) from err


def _write_all(fd: int, data: bytes) -> None:
    """os.write until done; a descriptor someone else made non-blocking is waited on."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


def _cant(path: Path, what: str, err: OSError) -> CantCreateError:
    reason = err.strerror or type(err).__name__
    if err.errno == errno.EPIPE:
        reason = "its reader closed it"
    return CantCreateError(
        f"{quote(path)}: cannot write the {what}: {reason}",
        hint="check the path and its permissions",
        details={"file": os.fsdecode(path)},
    )
