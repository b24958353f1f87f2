"""Run `python -m mailctl ...` as a person would see it: on a pseudo-terminal of a given size,
or as a child process with COLUMNS set; optionally press Ctrl-C (a real ^C on the terminal).

Bounded: every child is killed after `timeout` seconds and the test fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

# CSI sequences (cursor moves, erase, colours) and the other escapes rich's live display uses.
_ESCAPE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


def strip_escapes(raw: bytes) -> str:
    return _ESCAPE.sub(b"", raw).decode("utf-8", "replace")


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update(NO_COLOR="1", **extra)
    return env


@dataclass
class TerminalRun:
    code: int
    terminal: bytes  # everything the terminal showed
    stdout: bytes  # stdout when it was a pipe
    stderr: bytes  # stderr when it was a pipe

    @property
    def screen(self) -> str:
        return strip_escapes(self.terminal)


def run_on_terminal(
    args: Sequence[str],
    *,
    columns: int,
    env: dict[str, str] | None = None,
    stdout_on_terminal: bool = True,
    stderr_on_terminal: bool = True,
    ctrl_c_when: Callable[[bytes], bool] | None = None,
    timeout: float = 60.0,
) -> TerminalRun:
    """`python -m mailctl ARGS` with a pseudo-terminal of `columns` x 50 as its controlling
    terminal (stdin always; stdout/stderr as asked, else pipes). With `ctrl_c_when`, type ^C
    once the terminal output satisfies it: the kernel sends SIGINT to the foreground process
    group, exactly as a key press does."""
    import pty

    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
            if not stdout_on_terminal:
                os.dup2(out_write, 1)
            if not stderr_on_terminal:
                os.dup2(err_write, 2)
            for extra in (out_read, out_write, err_read, err_write):
                os.close(extra)
            os.execve(sys.executable, [sys.executable, "-m", "mailctl", *args], env or child_env())
        finally:
            os._exit(127)
    os.close(out_write)
    os.close(err_write)
    terminal, piped, piped_err = b"", b"", b""
    open_fds = [fd, out_read, err_read]
    pressed = ctrl_c_when is None
    deadline = time.monotonic() + timeout
    try:
        while open_fds:
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                pytest.fail(f"mailctl still ran after {timeout:g} s: {terminal[-800:]!r}")
            ready, _, _ = select.select(open_fds, [], [], 0.1)
            for each in ready:
                try:
                    chunk = os.read(each, 65536)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    open_fds.remove(each)
                elif each == fd:
                    terminal += chunk
                elif each == out_read:
                    piped += chunk
                else:
                    piped_err += chunk
            if not pressed and ctrl_c_when is not None and ctrl_c_when(terminal):
                os.write(fd, b"\x03")
                pressed = True
    finally:
        _, status = os.waitpid(pid, 0)
        for each in (fd, out_read, err_read):
            with contextlib.suppress(OSError):
                os.close(each)
    return TerminalRun(os.waitstatus_to_exitcode(status), terminal, piped, piped_err)


def run_with_columns(
    args: Sequence[str], *, columns: int, timeout: float = 90.0
) -> subprocess.CompletedProcess[str]:
    """`python -m mailctl ARGS` with pipes and COLUMNS=`columns` (no terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "mailctl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(COLUMNS=str(columns)),
        check=False,
    )
