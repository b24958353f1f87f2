"""Saving attachments whose names a stranger chose: only inside the folder, never over a file.

A name from a message is hostile until shown otherwise (`../../.bashrc`, `/etc/passwd`,
`..\\x`, a NUL, `CON`, 300 characters, a right-to-left override that turns `exe.pdf` around).
`safe_name` keeps its last path component, drops control and bidi characters, avoids
reserved and hidden names and caps the length in bytes (NAME_MAX is 255 octets on Linux).
`AttachmentFolder.save` then creates the file with O_CREAT|O_EXCL|O_NOFOLLOW relative to
a descriptor of the folder (openat(2)): a symlink planted under that name is never followed,
an existing file is never overwritten (the name gets " (1)", " (2)" ... instead), and a
rename of the folder's path while saving cannot redirect the write. Each file is fsynced,
and the folder too, before save returns: a caller may record it as done then.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import unicodedata
from pathlib import Path
from types import TracebackType
from typing import Final

from mailctl.errors import CantCreateError
from mailctl.store.files import write_all_and_sync
from mailctl.text import quote

__all__ = ["MAX_NAME_BYTES", "AttachmentFolder", "safe_name"]

# NAME_MAX is 255 octets; room is left for " (9999)" and for a temp suffix of other tools.
MAX_NAME_BYTES: Final = 200
_MAX_EXTENSION: Final = 16  # ".tar.gz", ".docx": longer "extensions" are part of the stem
_MAX_TRIES: Final = 10_000
# C0, DEL, C1, and the Unicode bidi controls (CVE-2021-42574: `\u202egpj.exe` shows as
# `exe.jpg`), plus the characters Windows forbids in names (the folder may be shared).
_UNSAFE: Final = re.compile(
    '[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069<>:"|?*\ud800-\udfff]'
)
_BLANKS: Final = re.compile(r"\s+")
# Windows device names, with any extension (`con.txt` opens the console there).
_RESERVED: Final = re.compile(r"(?:con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)", re.I)


def safe_name(name: str | None, *, fallback: str = "attachment") -> str:
    """A file name that stays in its folder and means the same on every system.

    The last component of `name` (split at '/' and '\\'), NFC-normalised, without control,
    bidi or Windows-forbidden characters, blanks collapsed, leading dots and trailing dots or
    blanks removed, reserved device names prefixed with '_', at most MAX_NAME_BYTES of
    UTF-8 (the extension kept). Empty after all that: `fallback` (made safe the same way).
    """
    text = unicodedata.normalize("NFC", name or "")
    text = re.split(r"[/\\]", text)[-1]
    text = _BLANKS.sub(" ", _UNSAFE.sub("", text))
    text = text.lstrip(". ").rstrip(". ")
    if not text:
        return "attachment" if name == fallback else safe_name(fallback, fallback="attachment")
    stem, dot, extension = text.rpartition(".")
    if not dot or not stem or len(extension) > _MAX_EXTENSION or " " in extension:
        stem, extension = text, ""
    if _RESERVED.fullmatch(stem.partition(".")[0]):
        stem = "_" + stem
    suffix = f".{extension}" if extension else ""
    return _cut(stem, MAX_NAME_BYTES - len(suffix.encode())) + suffix


def _cut(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 octets at a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore").rstrip(". ") or "attachment"


def _numbered(name: str, number: int) -> str:
    """`name (N).ext`: the N-th alternative to a taken name."""
    if number == 0:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem:
        stem, extension = name, ""
    suffix = f" ({number})" + (f".{extension}" if extension else "")
    return _cut(stem, MAX_NAME_BYTES - len(suffix.encode())) + suffix


class AttachmentFolder:
    """A folder attachments are saved into (created 0700 when missing); close it when done."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the folder. Raises CantCreateError naming it."""
        self.path = Path(path)
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
            self._fd: int | None = os.open(self.path, flags)
        except OSError as err:
            raise CantCreateError(
                f"attachment folder {quote(self.path)} cannot be used: "
                f"{err.strerror or type(err).__name__}",
                hint="name a folder you can write to",
                details={"file": str(self.path)},
            ) from err

    def __enter__(self) -> AttachmentFolder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the folder's descriptor (saves fail after this); closing twice is fine."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        # A caller that forgot close() must not leak a descriptor per folder in a long run.
        with contextlib.suppress(AttributeError, OSError):
            self.close()

    def save(self, name: str | None, payload: bytes, *, fallback: str = "attachment") -> Path:
        """Write `payload` under the safe form of `name`, or a numbered variant; fsynced.

        Raises CantCreateError (73) when no file can be created (disk full, permissions,
        10,000 names taken); a partly written file is removed.
        """
        if self._fd is None:
            raise ValueError("the attachment folder is closed")
        base = safe_name(name, fallback=fallback)
        flags = (
            os.O_WRONLY
            | os.O_CREAT
            | os.O_EXCL  # never an existing file, nor (POSIX) through a symlink
            | getattr(os, "O_NOFOLLOW", 0)
            | getattr(os, "O_CLOEXEC", 0)
            | getattr(os, "O_NOCTTY", 0)
        )
        for number in range(_MAX_TRIES):
            candidate = _numbered(base, number)
            try:
                fd = os.open(candidate, flags, 0o600, dir_fd=self._fd)
            except FileExistsError:
                continue
            except OSError as err:
                if err.errno == errno.ELOOP:  # a symlink under that name: leave it, skip it
                    continue
                raise self._error(candidate, err) from err
            self._write(fd, candidate, payload)
            return self.path / candidate
        raise CantCreateError(
            f"attachment {quote(base)}: {_MAX_TRIES} names are taken in {quote(self.path)}",
            hint="save into an empty folder",
            details={"file": str(self.path / base)},
        )

    def _write(self, fd: int, name: str, payload: bytes) -> None:
        try:
            try:
                write_all_and_sync(fd, payload)
            finally:
                os.close(fd)
            assert self._fd is not None
            os.fsync(self._fd)  # the new directory entry is durable too
        except OSError as err:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=self._fd)
            raise self._error(name, err) from err

    def _error(self, name: str, err: OSError) -> CantCreateError:
        return CantCreateError(
            f"attachment {quote(self.path / name)} cannot be written: "
            f"{err.strerror or type(err).__name__}",
            hint="check the folder's free space and permissions",
            details={"file": str(self.path / name)},
        )
