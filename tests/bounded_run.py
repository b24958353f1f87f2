"""Run mailctl (or python code) as a child with a memory cap and a deadline; report its peak RSS.

Hostile-input tests feed gigabytes (sparse files, /dev/zero, endless pipes). A child process
keeps a failure from exhausting the test runner: RLIMIT_AS turns runaway growth into a quick
MemoryError, the deadline turns a hang into a test failure, and os.wait4 gives the peak
resident size of exactly that child, so a test can assert that memory stayed bounded.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
GIB = 1024 * MIB
# Enough for the interpreter and its imports plus ~50 MiB of input handled several times;
# far below the inputs the tests feed.
ADDRESS_SPACE = GIB


@dataclass(frozen=True)
class Run:
    code: int
    stdout: bytes
    stderr: str
    peak_rss: int  # bytes
    seconds: float

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def stream_bytes(
    total: int, *, head: bytes = b"", line: bytes = b"x" * 76 + b"\n"
) -> Iterable[bytes]:
    """`head` then lines of `line` until about `total` bytes: a big stdin without a big buffer."""
    yield head
    chunk = line * (MIB // len(line))
    sent = len(head)
    while sent < total:
        yield chunk
        sent += len(chunk)


def _limit_memory(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def run_mailctl(args: Sequence[str], **kwargs: Any) -> Run:
    """Run `python -m mailctl ARGS` (see run_python for the keywords)."""
    return run_python(["-m", "mailctl", *args], **kwargs)


def run_python(
    args: Sequence[str],
    *,
    stdin: Path | Iterable[bytes] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    address_space: int = ADDRESS_SPACE,
    keep_stdout: bool = False,
) -> Run:
    """Run the test interpreter with `args`; stdin from a file, from a writer thread, or empty.

    Fails the test (AssertionError) if the child is still running after `timeout` seconds;
    the child is killed first. stdout goes to /dev/null unless `keep_stdout`.
    """
    full_env = {
        **os.environ,
        "NO_COLOR": "1",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",  # never a real keyring
        **(env or {}),
    }
    with contextlib.ExitStack() as stack:
        err_file = stack.enter_context(tempfile.TemporaryFile())
        out_file = stack.enter_context(tempfile.TemporaryFile()) if keep_stdout else None
        if isinstance(stdin, Path):
            stdin_arg: object = stack.enter_context(stdin.open("rb"))
        elif stdin is None:
            stdin_arg = subprocess.DEVNULL
        else:
            stdin_arg = subprocess.PIPE
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, *args],
            stdin=stdin_arg,  # type: ignore[arg-type]
            stdout=out_file if out_file is not None else subprocess.DEVNULL,
            stderr=err_file,
            env=full_env,
            preexec_fn=_limit_memory(address_space),
        )
        writer = None
        if process.stdin is not None and stdin is not None and not isinstance(stdin, Path):
            writer = threading.Thread(target=_feed, args=(process.stdin, stdin), daemon=True)
            writer.start()
        code, rss, timed_out = _wait(process, timeout)
        seconds = time.monotonic() - started
        if writer is not None:
            writer.join(10)
        err_file.seek(0)
        stderr = err_file.read().decode("utf-8", errors="replace")
        stdout = b""
        if out_file is not None:
            out_file.seek(0)
            stdout = out_file.read()
    assert not timed_out, f"python {' '.join(args)} still ran after {timeout} s: {stderr[-500:]}"
    return Run(code=code, stdout=stdout, stderr=stderr, peak_rss=rss, seconds=seconds)


def _feed(pipe: object, chunks: Iterable[bytes]) -> None:
    with contextlib.suppress(OSError, ValueError):  # the child stopped reading: that is the point
        for chunk in chunks:
            pipe.write(chunk)  # type: ignore[attr-defined]
    with contextlib.suppress(OSError, ValueError):
        pipe.close()  # type: ignore[attr-defined]


def _wait(process: subprocess.Popen[bytes], timeout: float) -> tuple[int, int, bool]:
    """Reap the child with wait4 (its own rusage); kill it at the deadline."""
    deadline = time.monotonic() + timeout
    timed_out = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            timed_out = True
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.02)
    code = os.waitstatus_to_exitcode(status)
    process.returncode = code  # reaped here; keeps Popen from warning that it still runs
    return code, usage.ru_maxrss * 1024, timed_out
