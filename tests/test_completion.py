"""Committed completion scripts equal what `mailctl completion SHELL` prints, and they work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailctl.cli.app import app

COMPLETIONS = Path(__file__).resolve().parent.parent / "completions"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_committed_scripts_match(shell: str) -> None:
    result = CliRunner().invoke(app, ["completion", shell])
    assert result.exit_code == 0
    committed = (COMPLETIONS / f"mailctl.{shell}").read_text()
    assert result.stdout == committed, (
        f"regenerate: mailctl completion {shell} > completions/mailctl.{shell}"
    )


def test_bash_completion_answers() -> None:
    env = {
        **os.environ,
        "_MAILCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": "mailctl send --st",
        "COMP_CWORD": "2",
    }
    out = subprocess.run(
        [sys.executable, "-m", "mailctl"], env=env, capture_output=True, text=True, timeout=30
    )
    assert "--starttls" in out.stdout.split()
