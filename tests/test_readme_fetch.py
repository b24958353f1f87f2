"""The README's "Fetching mail" walk-through, run as written against the Dovecot it starts.

The ```bash block is taken from README.md as is; `mailctl` and `python` are this checkout's
(a shell function and the test's interpreter). It lists folders, fetches unseen mail into a
Maildir with attachments, gets nothing new the second time, and the same over POP3.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from servers.dovecot import find_dovecot

ROOT = Path(__file__).resolve().parents[1]


def walkthrough() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Fetching mail", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"^```bash\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    return block


def test_the_fetch_walkthrough_runs(tmp_path: Path) -> None:
    if find_dovecot() is None:
        if os.environ.get("MAILCTL_REQUIRE_DOVECOT") == "1":
            pytest.fail("dovecot binary not found", pytrace=False)
        pytest.skip("dovecot binary not found")
    # `python` and `mailctl` on PATH (exec: `kill %1` then reaches the interpreter itself).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, line in (("python", f'exec "{sys.executable}" "$@"'),
                       ("mailctl", f'exec "{sys.executable}" -m mailctl "$@"')):  # fmt: skip
        (bin_dir / name).write_text(f"#!/bin/sh\n{line}\n")
        (bin_dir / name).chmod(0o755)
    # A failure must not leave the Dovecot running.
    prelude = "set -eu\ntrap 'kill %1 2>/dev/null || true' EXIT\n"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "NO_COLOR": "1",
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "MAILCTL_CONFIG": str(tmp_path / "none.toml"),
    }
    done = subprocess.run(
        ["bash", "-c", prelude + walkthrough()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out, err = done.stdout, done.stderr
    assert "INBOX" in out and "MESSAGES" in out  # folders
    assert "Lunch?" in out and "Résumé attached" in out  # the listing
    assert "cv.pdf" in out  # ls of the attachments folder
    summaries = [line for line in err.splitlines() if "message(s) from" in line]
    assert [s.split()[0] for s in summaries] == ["3", "3", "0", "4", "0"], err
    jsonl = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(jsonl) == 4 and all(item["uidl"] for item in jsonl)
