"""A redacted, timestamped record of every protocol line sent and received."""

from __future__ import annotations

import time

# The line type is a model (models.py), so that a caller above core (cli's --trace printer)
# can take lines through core's callback without importing this package.
from mailctl.models import Direction, TranscriptCallback, TranscriptLine

__all__ = ["Direction", "Transcript", "TranscriptLine"]


class Transcript:
    """Collects lines in order and optionally streams each one to `on_line` as it happens.

    The transcript never sees a secret: protocol code records AUTH payloads through
    `redacted_sent`, which stores only a description of what was sent. That keeps the
    guarantee in one obvious place instead of relying on pattern-based scrubbing later.
    """

    def __init__(self, on_line: TranscriptCallback | None = None) -> None:
        self._start = time.perf_counter()
        self._on_line = on_line
        self.lines: list[TranscriptLine] = []

    def _add(self, direction: Direction, text: str, tls: bool) -> None:
        line = TranscriptLine(
            elapsed=time.perf_counter() - self._start, direction=direction, tls=tls, text=text
        )
        self.lines.append(line)
        if self._on_line is not None:
            self._on_line(line)

    def sent(self, text: str, *, tls: bool) -> None:
        """Record a line mailctl wrote to the server (without its CRLF)."""
        self._add(Direction.SENT, text, tls)

    def received(self, text: str, *, tls: bool) -> None:
        """Record a line the server sent (without its CRLF)."""
        self._add(Direction.RECEIVED, text, tls)

    def info(self, text: str) -> None:
        """Record a note from mailctl itself (connecting, TLS established, ...)."""
        self._add(Direction.INFO, text, False)

    def redacted_sent(self, what: str, *, tls: bool) -> None:
        """Record that a secret-bearing line was sent, naming only what it was."""
        self._add(Direction.SENT, f"<redacted: {what}>", tls)
