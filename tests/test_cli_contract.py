"""The process-level contract: sysexits codes, the JSON envelope, no tracebacks, clean text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mailctl.text import clean


def run(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mailctl", *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )


def test_unknown_option_is_ex_usage() -> None:
    proc = run("send", "--bogus")
    assert proc.returncode == 64
    assert "--bogus" in proc.stderr


def test_unknown_option_with_json_still_gives_the_envelope() -> None:
    proc = run("send", "--bogus", "--json")
    assert proc.returncode == 64
    envelope = json.loads(proc.stdout)
    assert envelope["status"] == "error" and envelope["exit_code"] == 64
    assert envelope["errors"][0]["code"] == "usage"


def test_unknown_command() -> None:
    assert run("frobnicate").returncode == 64


def test_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("mailctl ")


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    proc = run(
        "send", "--from", "a@example.org", "--to", "b@example.org", "--body", "x",
        "--attach", str(tmp_path / "missing.pdf"), "--dry-run",
    )  # fmt: skip
    assert proc.returncode == 66
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("mailctl: ")


def test_config_error_in_json_mode(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[accounts.work]\nfrom = 'a@example.org'\nbogus_key = 1\n")
    proc = run("--config", str(config), "send", "--to", "b@example.org", "--body", "x", "--json")
    assert proc.returncode == 78
    envelope = json.loads(proc.stdout)
    assert envelope["exit_code"] == 78 and "bogus_key" in envelope["errors"][0]["message"]


def test_control_characters_are_stripped() -> None:
    assert clean("ok\x1b[31mred\x07\x9b") == "ok[31mred"
    assert clean("tab\tand\nnewline") == "tab\tand\nnewline"
