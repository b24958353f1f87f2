"""A redacted, timestamped record of every protocol line sent and received."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from mailctl.serialize import SECONDS


class Direction(StrEnum):
    """Who produced a transcript line; INFO lines are mailctl's own notes."""

    SENT = "sent"
    RECEIVED = "received"
    INFO = "info"


@dataclass(frozen=True)
class TranscriptLine:
    """One line of a session; `tls` says whether it travelled inside TLS."""

    # seconds since the Transcript was created (time.perf_counter)
    elapsed: float = field(metadata=SECONDS)
    direction: Direction
    tls: bool
    text: str


class Transcript:
    """Collects lines in order and optionally streams each one to `on_line` as it happens.

    The transcript never sees a secret: protocol code records AUTH payloads through
    `redacted_sent`, which stores only a description of what was sent. That keeps the
    guarantee in one obvious place instead of relying on pattern-based scrubbing later.
    """

    def __init__(self, on_line: Callable[[TranscriptLine], None] | None = None) -> None:
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
