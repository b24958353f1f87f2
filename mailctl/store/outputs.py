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
from pathlib import Path
from typing import Final

from mailctl.errors import CantCreateError
from mailctl.store.files import file_kind, write_atomic
from mailctl.text import quote

__all__ = ["check_output", "file_kind", "own_descriptor", "write_output"]

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
    number = own_descriptor(path)
    if number is not None:
        _write_descriptor(number, data, path=path, what=what)
        return
    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    try:
        info = os.stat(target)
    except FileNotFoundError:
        write_atomic(target, data, mode=mode, shown=path, what=what)
        return
    except OSError as err:
        raise _cant(path, what, err) from err
    if stat.S_ISREG(info.st_mode):
        write_atomic(target, data, mode=mode, shown=path, what=what)
        return
    _require_writable_kind(path, info.st_mode, what=what)
    _write_in_place(target, data, path=path, what=what)


def _require_writable_kind(path: Path, mode: int, *, what: str) -> None:
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return
    raise CantCreateError(
        f"{quote(path)}: cannot write the {what} there: it is {file_kind(mode)}",
        hint="name a regular file (or a FIFO, or a device such as /dev/null)",
        details={"file": os.fsdecode(path)},
    )


def _write_in_place(target: Path, data: bytes, *, path: Path, what: str) -> None:
    """Write into an existing FIFO or character device; never create, truncate or replace."""
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
        if stat.S_ISREG(mode):  # replaced by a regular file since we looked: write that
            os.close(fd)
            fd = -1
            write_atomic(target, data, mode=0o600, shown=path, what=what)
            return
        _require_writable_kind(path, mode, what=what)
        os.set_blocking(fd, True)  # from here on the reader sets the pace, like any pipe
        _write_all(fd, data)
    except OSError as err:
        raise _cant(path, what, err) from err
    finally:
        if fd >= 0:
            os.close(fd)


def _write_descriptor(number: int, data: bytes, *, path: Path, what: str) -> None:
    """Write to our own descriptor `number`, where a shell redirection or pipe put it."""
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
    try:
        _write_all(number, data)
    except OSError as err:
        raise _cant(path, what, err) from err


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
