"""`mailctl sink --maildir --json` in a child process, for tests that count what arrived.

Shared by the session-pool and bulk-send tests: start one per call of the `sinks` factory,
read the Message-IDs its Maildir holds, and get its JSON counters when it stops (SIGTERM).
Bounded: 15 s to start, 10 s to stop (then SIGKILL).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_MESSAGE_ID = re.compile(rb"(?im)^Message-ID:\s*(<[^>]+>)")


class SinkProcess:
    """`mailctl sink --maildir --json` in a child process; its counters come at SIGTERM."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.maildir = folder / "box"
        ready = folder / "ready.json"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailctl", "sink", "--listen", "127.0.0.1:0",
             "--ready-file", str(ready), "--quiet", "--json", "--maildir", str(self.maildir),
             *args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while not ready.exists() or not ready.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("the sink did not start")
            time.sleep(0.02)
        self.port = int(json.loads(ready.read_text())["port"])
        self.stats: dict[str, Any] = {}

    def stored(self) -> Counter[str]:
        """Message-ID (as written, `<...>`) -> how many times the sink stored it."""
        found: Counter[str] = Counter()
        new = self.maildir / "new"
        if not new.exists():
            return found
        for path in new.iterdir():
            match = _MESSAGE_ID.search(path.read_bytes())
            assert match is not None
            found[match.group(1).decode()] += 1
        return found

    def stop(self) -> dict[str, Any]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        if out:
            self.stats = json.loads(out)["data"]
        return self.stats


def sinks(
    tmp_path: Path, kind: type[SinkProcess] = SinkProcess
) -> Iterator[Callable[..., SinkProcess]]:
    """A fixture body: yields a starter (`start(*sink_args)`); every sink stops afterwards."""
    started: list[SinkProcess] = []

    def start(*args: str) -> SinkProcess:
        folder = tmp_path / f"sink{len(started)}"
        folder.mkdir()
        found = kind(folder, *args)
        started.append(found)
        return found

    yield start
    for found in started:
        found.stop()
