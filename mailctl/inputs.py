"""Bounded reads of local inputs: regular files up to a size limit, and stdin streamed with one.

Every file or stream mailctl reads on the user's behalf goes through here, so none can grow
without bound: a 5 GB --body-file, /dev/zero, a FIFO nobody writes to, or an endless pipe.
A file is opened O_NONBLOCK (a FIFO cannot block the open) and its type and size are checked
on the open descriptor, so what is checked is what is read (no TOCTOU). A size is only known
for regular files; stdin ('-') is the one stream accepted, and it is read in chunks that stop
one byte past the limit. A leaf module: stdlib and mailctl.errors only, usable by every layer.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Callable, Mapping
from typing import BinaryIO, Final

from mailctl.errors import (
    ConfigError,
    InputTooLargeError,
    NoInputError,
    NotRegularFileError,
)
from mailctl.text import quote

__all__ = [
    "BASELINE_LIMIT",
    "CONFIG_LIMIT",
    "DEFAULT_MAX_INPUT",
    "ENV_MAX_INPUT",
    "GIB",
    "KIB",
    "MAX_INPUT_HINT",
    "MIB",
    "PEM_LIMIT",
    "SECRET_LIMIT",
    "check_regular_file",
    "describe",
    "max_input_bytes",
    "open_regular",
    "read_file",
    "read_input",
    "read_line",
    "read_optional_file",
    "read_stream",
    "stdin_label",
    "too_large",
]

KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB

ENV_MAX_INPUT: Final = "MAILCTL_MAX_INPUT"
# A message's inputs: --eml, sendmail's stdin, a text or HTML body, bench --message, and the sum
# of the attachments. Generous for mail (providers cap messages at 25-50 MB) and small enough
# that the few copies the email package makes stay far from exhausting a laptop.
DEFAULT_MAX_INPUT: Final = 50 * MIB
CONFIG_LIMIT: Final = 1 * MIB  # a config file is a few KiB
BASELINE_LIMIT: Final = 1 * MIB  # a `bench --json` result is a few KiB
PEM_LIMIT: Final = 16 * MIB  # a CA bundle (Mozilla's is ~220 KiB), a certificate, a key
# A password or an OAuth2 access token is one line; large JWTs stay under 4 KiB.
SECRET_LIMIT: Final = 8 * KIB
MAX_INPUT_HINT: Final = f"set {ENV_MAX_INPUT} (e.g. {ENV_MAX_INPUT}=100M) to allow more"

_CHUNK: Final = 1 * MIB
_SIZE = re.compile(r"\s*([0-9]{1,15})\s*(?:([kmg])(?:i?b)?)?\s*", re.IGNORECASE)
_UNITS: Final = {None: 1, "k": KIB, "m": MIB, "g": GIB}
_KINDS: Final = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def max_input_bytes(env: Mapping[str, str] = os.environ) -> int:
    """The limit for message-sized inputs: $MAILCTL_MAX_INPUT, else DEFAULT_MAX_INPUT.

    The value is a whole number of bytes with an optional K, M or G suffix (powers of 1024;
    "KiB"/"KB" spellings accepted). Raises ConfigError naming the variable for anything else.
    """
    raw = env.get(ENV_MAX_INPUT, "")
    if not raw:
        return DEFAULT_MAX_INPUT
    match = _SIZE.fullmatch(raw)
    value = int(match.group(1)) * _UNITS[(match.group(2) or "").lower() or None] if match else 0
    if value < 1:
        raise ConfigError(
            f"{ENV_MAX_INPUT}={quote(raw[:40])} is not a size",
            hint="write a whole number of bytes, or with K, M or G, e.g. 100M",
        )
    return value


def describe(size: int) -> str:
    """'50 MiB', '8 KiB', '1000 bytes': a limit as people write it."""
    for unit, name in ((GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} bytes"


def _approx(size: int) -> str:
    for unit, name in ((GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size >= unit:
            return f"{size / unit:.1f} {name}"
    return f"{size} bytes"


def too_large(
    label: str, limit: int, *, size: int | None = None, hint: str | None = None
) -> InputTooLargeError:
    """The one error for an input over its limit, with its size when known."""
    actual = f"is {_approx(size)}," if size is not None else "is"
    return InputTooLargeError(
        f"{label} {actual} over the {describe(limit)} limit",
        hint=hint,
        details={"input": label, "limit": limit},
    )


def _limit(limit: int | None) -> tuple[int, str | None]:
    """An explicit limit, or (None) the configurable message limit and how to raise it."""
    if limit is not None:
        return limit, None
    return max_input_bytes(), MAX_INPUT_HINT


def read_file(
    path: str | os.PathLike[str],
    *,
    what: str,
    limit: int | None = None,
    hint: str | None = None,
    check: Callable[[os.stat_result], None] | None = None,
) -> bytes:
    """Read a whole regular file of at most `limit` bytes (None: the message limit).

    `what` names the input in errors ("--body-file", "attachment"); `hint` is the fix shown
    when a fixed limit is passed; `check` sees the open file's stat before anything is read
    (the config's ownership rules). Raises NoInputError (66: missing, unreadable),
    NotRegularFileError (65: directory, FIFO, device, socket), InputTooLargeError (65: over
    the limit, judged by its size before reading), ConfigError (78: a bad MAILCTL_MAX_INPUT).
    """
    data = _read_file(path, what=what, limit=limit, hint=hint, check=check, missing_ok=False)
    assert data is not None
    return data


def read_optional_file(
    path: str | os.PathLike[str],
    *,
    what: str,
    limit: int | None = None,
    hint: str | None = None,
    check: Callable[[os.stat_result], None] | None = None,
) -> bytes | None:
    """read_file, but None when the file does not exist (a missing config is an empty one)."""
    return _read_file(path, what=what, limit=limit, hint=hint, check=check, missing_ok=True)


def read_input(
    source: str | os.PathLike[str],
    *,
    what: str,
    limit: int | None = None,
    stdin: BinaryIO | None = None,
) -> bytes:
    """read_file, except that '-' streams standard input (or `stdin`) with the same limit."""
    if str(source) == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        return read_stream(stream, what=what, limit=limit)
    return read_file(source, what=what, limit=limit)


def stdin_label(what: str) -> str:
    """How errors name stdin read for `what`: "--eml (stdin)", or plain "stdin"."""
    return what if what == "stdin" else f"{what} (stdin)"


def read_stream(stream: BinaryIO, *, what: str, limit: int | None = None) -> bytes:
    """Read a stream to its end, refusing it as soon as it passes the limit (None: messages').

    A regular file redirected to stdin (`< big.eml`) is judged by its size before reading.
    Raises InputTooLargeError naming `what` as stdin, ConfigError for a bad MAILCTL_MAX_INPUT.
    """
    label = stdin_label(what)
    limit, hint = _limit(limit)
    remaining = _regular_remaining(stream)
    if remaining is not None and remaining > limit:
        raise too_large(label, limit, size=remaining, hint=hint)
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise too_large(label, limit, hint=hint)


def read_line(stream: BinaryIO, *, what: str, limit: int) -> bytes:
    """The first line of a stream without its line end, at most `limit` bytes; the rest unread.

    Raises InputTooLargeError when no line end comes within `limit` bytes.
    """
    raw = stream.readline(limit + 2)  # room for the CRLF of a line of exactly `limit` bytes
    line = raw.removesuffix(b"\n").removesuffix(b"\r")
    if len(line) > limit:
        raise InputTooLargeError(
            f"{what}: the first line of stdin is longer than {describe(limit)}",
            hint="a password is one short line",
            details={"input": what, "limit": limit},
        )
    return line


def check_regular_file(path: str | os.PathLike[str], *, what: str, limit: int) -> None:
    """For files another library opens by name (OpenSSL): refuse what read_file would refuse.

    It cannot rule out a swap between this check and the library's open; it keeps a FIFO
    from hanging the program and /dev/zero or a huge file from being parsed.
    """
    label = f"{what} {quote(path)}"
    try:
        info = os.stat(path)
    except OSError as err:
        raise _open_error(label, err) from err
    _require_regular(label, info)
    if info.st_size > limit:
        raise too_large(label, limit, size=info.st_size)


def open_regular(path: str | os.PathLike[str], *, what: str) -> BinaryIO:
    """Open a regular file for streaming (a CSV read row by row): no size limit, the caller
    bounds what it keeps. Checked on the open descriptor like read_file.

    Raises NoInputError (66: missing, unreadable), NotRegularFileError (65: directory, FIFO,
    device, socket).
    """
    label = f"{what} {quote(path)}"
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise NotRegularFileError(f"{label} is not a regular file (a directory)") from None
    except OSError as err:
        raise _open_error(label, err) from err
    try:
        _require_regular(label, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return open(fd, "rb")


def _read_file(
    path: str | os.PathLike[str],
    *,
    what: str,
    limit: int | None,
    hint: str | None,
    check: Callable[[os.stat_result], None] | None,
    missing_ok: bool,
) -> bytes | None:
    label = f"{what} {quote(path)}"
    limit, limit_hint = _limit(limit)
    hint = hint or limit_hint
    # O_NONBLOCK: opening a FIFO with no writer must not block; regular files ignore it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as err:
        if missing_ok:
            return None
        raise _open_error(label, err) from err
    except IsADirectoryError:  # where open(2) refuses directories outright
        raise NotRegularFileError(f"{label} is not a regular file (a directory)") from None
    except OSError as err:
        raise _open_error(label, err) from err
    try:
        info = os.fstat(fd)
        _require_regular(label, info)
        if check is not None:
            check(info)
        if info.st_size > limit:
            raise too_large(label, limit, size=info.st_size, hint=hint)
        with open(fd, "rb", closefd=False) as handle:
            data = _read_bounded(handle, limit, expected=info.st_size)
    except OSError as err:
        raise NoInputError(f"{label} cannot be read: {err.strerror or type(err).__name__}") from err
    finally:
        os.close(fd)
    if data is None:  # it grew past the limit while being read
        raise too_large(label, limit, hint=hint)
    return data


def _read_bounded(handle: BinaryIO, limit: int, *, expected: int) -> bytes | None:
    """The whole file, or None past `limit` bytes.

    One read of the expected size plus a byte (to notice a file that grew), then chunks.
    """
    first = handle.read(min(expected, limit) + 1)
    if len(first) <= expected:
        return first
    chunks = [first]
    total = len(first)
    while total <= limit:
        chunk = handle.read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
    return None


def _require_regular(label: str, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
        raise NotRegularFileError(
            f"{label} is not a regular file ({kind})",
            hint="give a regular file",
        )


def _open_error(label: str, err: OSError) -> NoInputError:
    if isinstance(err, (FileNotFoundError, NotADirectoryError)):
        return NoInputError(f"{label} does not exist", hint="check the path")
    if isinstance(err, PermissionError):
        return NoInputError(f"{label} is not readable", hint="check its permissions")
    return NoInputError(f"{label} cannot be opened: {err.strerror or type(err).__name__}")


def _regular_remaining(stream: BinaryIO) -> int | None:
    """Bytes left in a stream backed by a regular file, or None (pipe, terminal, in-memory)."""
    try:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        return max(info.st_size - stream.tell(), 0)
    except (OSError, ValueError):
        return None
