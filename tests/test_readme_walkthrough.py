"""The README's offline walk-through, run as written: from a fresh folder, twice in a row.

The block is taken from README.md as is; only its port (2525) is swapped for a free one, so
the test never collides with a sink someone left running. HOME and the XDG directories point
into the test's temp dir and the keyring is the "fail" backend: nothing of the user's is used.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRST_LINE = 'cd "$(mktemp -d)"'
RUN_TIMEOUT = 60.0  # seconds for the whole block; it takes ~3 s here


def walkthrough_block() -> str:
    """The ```sh block of README.md that starts with `cd "$(mktemp -d)"`."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```sh\n(.*?)^```$", readme, flags=re.MULTILINE | re.DOTALL)
    found = [block for block in blocks if block.startswith(FIRST_LINE)]
    assert len(found) == 1, "README.md must hold exactly one walk-through block"
    return found[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(tmp_path: Path) -> dict[str, str]:
    shims = tmp_path / "bin"
    shims.mkdir()
    mailctl = shims / "mailctl"
    mailctl.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mailctl "$@"\n')
    mailctl.chmod(0o755)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MAILCTL_", "XDG_")) and key not in ("COLUMNS", "NO_COLOR")
    }
    home = tmp_path / "home"
    for name in ("home", "tmp"):
        (tmp_path / name).mkdir()
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        TMPDIR=str(tmp_path / "tmp"),
        PATH=f"{shims}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        PYTHONPATH=str(ROOT),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
    )
    return env


def _run(script: str, *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the sink runs in the background: kill the group at the end
    )
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"the walk-through took over {RUN_TIMEOUT} s:\n{out}\n{err}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_the_readme_walkthrough_runs_from_a_fresh_folder_twice(tmp_path: Path) -> None:
    block = walkthrough_block()
    assert "2525" in block and "--attach README.md" not in block
    script = block.replace("2525", str(_free_port()))
    env = _environment(tmp_path)
    checkout = tmp_path / "checkout"  # where the user happens to be: must stay untouched
    checkout.mkdir()
    for run in (1, 2):
        result = _run(script, cwd=checkout, env=env)
        assert result.returncode == 0, f"run {run}:\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
        assert "mailctl sink:" in result.stderr  # its statistics, printed as it stopped
    assert list(checkout.iterdir()) == []
    inboxes = sorted((tmp_path / "tmp").glob("*/inbox/new"))
    assert len(inboxes) == 2  # one scratch folder per run
    for inbox in inboxes:
        messages = sorted(path.read_bytes() for path in inbox.iterdir())
        assert len(messages) == 4
        # bulk-send: one message per CSV row (the dry run sent none)
        for name in (b"Ann", b"Bob"):
            assert sum(b"Subject: Hi " + name + b"\r\n" in m for m in messages) == 1
        report = next(m for m in messages if b"Subject: Report" in m)
        assert b"report.txt" in report and b"X-Mailctl-Rcpt: <you@example.org>" in report
        note = next(m for m in messages if b"Subject: hi" in m)
        assert b"X-Mailctl-Rcpt: <audit@example.org>" in note and b"Bcc:" not in note
    # The account trusts the kept certificate, which outlives every sink.
    config = (tmp_path / "home" / ".config" / "mailctl" / "config.toml").read_text()
    assert "/home/.local/state/mailctl/sink/cert.pem" in config
