"""mbox delivery (mboxrd flavour): append under an fcntl lock, fsync, undo a partial write."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import time
from pathlib import Path
from types import TracebackType

from mailctl.errors import CantCreateError
from mailctl.store.files import file_kind, write_all_and_sync

# mboxrd: any line that is "From " after zero or more ">" gets one more ">", so reading
# back removes exactly one and the body round-trips (unlike mboxo).
_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)
_CRLF = re.compile(rb"\r\n")


def mboxrd_quote(body: bytes) -> bytes:
    """Quote "From " lines the mboxrd way (a ">" before any line matching ^>*From )."""
    return _FROM_LINE.sub(rb">\1", body)


class Mbox:
    """An mbox file that messages are appended to; open once, deliver many, close.

    RFC 4155: messages are stored in the local line-ending convention (LF), each after a
    "From SENDER DATE" line and followed by an empty line. Appends take an exclusive
    fcntl (POSIX) lock, which is what mutt, procmail and Dovecot's fcntl locking honour;
    a failed append is truncated away so the file never ends in half a message.
    """

    def __init__(self, path: Path) -> None:
        """Open (create 0600) the file for appending; raise CantCreateError.

        The mbox must be a regular file (or not exist yet): appending under a lock, seeking
        back over the last byte and truncating a failed write mean nothing on a FIFO or a
        device, where every delivery would fail later (the sink answered 451 to each).
        """
        self.path = Path(path)
        self._fd = -1
        with contextlib.suppress(OSError):  # refuse before open(): a FIFO's open has effects
            self._require_regular(os.stat(self.path).st_mode)
        try:
            # O_NONBLOCK: should a FIFO appear after the check, open() must not wait for it.
            flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
            fd = os.open(self.path, flags, 0o600)
        except OSError as err:
            raise CantCreateError(
                f"cannot open mbox {self.path}: {err.strerror or err}",
                hint="check that the folder exists and is writable",
            ) from err
        try:
            self._require_regular(os.fstat(fd).st_mode)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _require_regular(self, mode: int) -> None:
        if not stat.S_ISREG(mode):
            raise CantCreateError(
                f"mbox {self.path} is not a regular file (it is {file_kind(mode)})",
                hint="name a regular file or a new path; without --mbox/--maildir the sink "
                "discards messages",
            )

    def deliver(self, data: bytes, *, sender: str) -> None:
        """Append one message (CRLF or LF lines) from envelope `sender`; raise CantCreateError."""
        if " " in sender or "\t" in sender or not sender:
            sender = "MAILER-DAEMON"  # RFC 4155: the From line holds one word; <> has none
        body = _CRLF.sub(b"\n", data) if b"\r\n" in data else data
        body = mboxrd_quote(body)
        if body and not body.endswith(b"\n"):
            body += b"\n"
        stamp = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime())
        record = f"From {sender} {stamp}\n".encode() + body + b"\n"
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
        except OSError as err:
            raise CantCreateError(f"cannot lock {self.path}: {err.strerror or err}") from err
        try:
            start = os.lseek(self._fd, 0, os.SEEK_END)
            try:
                if start:
                    # A previous writer may have left no blank line: keep messages apart.
                    os.lseek(self._fd, start - 1, os.SEEK_SET)
                    if os.read(self._fd, 1) != b"\n":
                        record = b"\n\n" + record
                write_all_and_sync(self._fd, record)
            except OSError as err:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)
                raise CantCreateError(
                    f"cannot append to {self.path}: {err.strerror or err}",
                    hint="check free space and permissions",
                ) from err
        finally:
            with contextlib.suppress(OSError):
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Mbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
