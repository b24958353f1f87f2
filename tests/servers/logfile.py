"""A server's log file read from a mark, and waited on: the one way tests read a daemon's log.

Daemons (Dovecot's log process, Postfix's postlogd) write a session's lines a moment after the
client saw the answer, so a test that reads the log at once races them; it takes a mark
before acting and waits for the lines it needs after that mark.
"""

from __future__ import annotations

import re
import time
from pathlib import Path


class LogFile:
    """`path`, a log that only grows, named `server` in assertion messages."""

    def __init__(self, path: Path, server: str) -> None:
        self.path = path
        self.server = server

    def mark(self) -> int:
        """The current end of the log: pass it to `since`/`wait` as `since`."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def since(self, mark: int) -> str:
        """Log text written after `mark`."""
        try:
            with self.path.open("rb") as log:
                log.seek(mark)
                return log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait(self, pattern: str, *, since: int, count: int, timeout: float) -> str:
        """The text after `since` once `pattern` (a regex) matched `count` times in it.

        Raises AssertionError with that text on timeout.
        """
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.since(since)
            if len(compiled.findall(text)) >= count:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{count} x {pattern!r} not in the {self.server} log after {timeout} s:\n{text}"
                )
            time.sleep(0.05)
