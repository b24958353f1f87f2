"""Committed completion scripts equal what `mailctl completion SHELL` prints, and they work."""

from __future__ import annotations

import os
import shlex
import shutil
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


# ---------------------------------------------------------------------------------------------
# What TAB offers, through the real mechanism: the program run the way the committed bash script
# runs it (COMP_WORDS/COMP_CWORD/_MAILCTL_COMPLETE), with a config holding two accounts.

CONFIG = """\
default_account = "work"

[accounts.work]
from = "me@work.example"
[accounts.work.smtp]
host = "smtp.work.example"
port = 587
username = "me"

[accounts.home.smtp]
host = "smtp.home.example"
port = 465
"""
ACCOUNTS = ["home", "work"]
# Imported by nothing a completion needs; the keyring above all (it may block or prompt).
HEAVY = ("keyring", "rich", "asyncio", "ssl", "email", "aiosmtplib", "imapclient", "jinja2")
_PROBE = f"""
import atexit, os, sys
def _record():
    loaded = [name for name in {HEAVY!r} if name in sys.modules]
    with open(os.environ["COMPLETION_PROBE_OUT"], "w") as out:
        out.write(" ".join(loaded))
atexit.register(_record)
sys.argv = ["mailctl"]
from mailctl.__main__ import main
main()
"""


@pytest.fixture
def two_accounts(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    config.chmod(0o600)
    return config


def _complete(line: str, config: Path, tmp_path: Path) -> list[str]:
    """Ask for the completions of the last word of `line` (ending in a space: a new word)."""
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    out = tmp_path / "modules"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_MAILCTL", "MAILCTL_"))}
    env.update(
        {
            "_MAILCTL_COMPLETE": "complete_bash",
            "COMP_WORDS": line,
            "COMP_CWORD": str(cword),
            "MAILCTL_CONFIG": str(config),
            "COMPLETION_PROBE_OUT": str(out),
            # A keyring that cannot be imported: completion must not even try.
            "PYTHON_KEYRING_BACKEND": "no.such.backend.Keyring",
        }
    )
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=env,
        stdin=subprocess.DEVNULL,  # a prompt would read EOF and fail loudly
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    loaded = set(out.read_text().split())
    assert loaded == set(), f"completing {line!r} imported {sorted(loaded)}"
    return sorted(proc.stdout.split())


@pytest.mark.parametrize(
    "line",
    [
        "mailctl send --account ",
        "mailctl send -A ",
        "mailctl --account ",
        "mailctl -A ",
        "mailctl bench --account ",
        "mailctl account test ",
        "mailctl account show ",
        "mailctl account remove ",
        "mailctl account set-password ",
        "mailctl account --account ",
        "mailctl sendmail -a ",
        "mailctl sendmail -t -a ",
    ],
)
def test_account_names_complete(line: str, two_accounts: Path, tmp_path: Path) -> None:
    assert _complete(line, two_accounts, tmp_path) == ACCOUNTS


def test_account_names_complete_by_prefix(two_accounts: Path, tmp_path: Path) -> None:
    assert _complete("mailctl account test w", two_accounts, tmp_path) == ["work"]
    assert _complete("mailctl send --account h", two_accounts, tmp_path) == ["home"]


def test_account_names_come_from_the_config_named_on_the_line(
    two_accounts: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.toml"
    other.write_text("[accounts.lab.smtp]\nhost = 'lab.example'\n", encoding="utf-8")
    other.chmod(0o600)
    assert _complete(f"mailctl --config {other} account test ", two_accounts, tmp_path) == ["lab"]
    assert _complete(f"mailctl send --config {other} -A ", two_accounts, tmp_path) == ["lab"]


def test_a_broken_config_completes_nothing_and_says_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[accounts.x\n", encoding="utf-8")
    broken.chmod(0o600)
    assert _complete("mailctl account test ", broken, tmp_path) == []
    assert _complete("mailctl account test ", tmp_path / "missing.toml", tmp_path) == []


def test_account_add_does_not_complete_existing_names(two_accounts: Path, tmp_path: Path) -> None:
    assert _complete("mailctl account add ", two_accounts, tmp_path) == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("mailctl bench --mode ", ["new", "pipeline", "reuse"]),
        ("mailctl bench --mode p", ["pipeline"]),
        ("mailctl bench --auth ", ["cram-md5", "login", "plain", "xoauth2"]),
        ("mailctl send --auth ", ["cram-md5", "login", "plain", "xoauth2"]),
        ("mailctl sink --reject-on ", ["data", "eod", "mail", "rcpt"]),
        ("mailctl sink --disconnect-on ", ["data", "eod", "mail", "rcpt"]),
        ("mailctl sink --latency-on ", ["banner", "data", "ehlo", "eod", "mail", "rcpt"]),
        ("mailctl sink --loop ", ["asyncio", "auto", "uvloop"]),
        ("mailctl account add x --smtp-security ", ["none", "starttls", "tls"]),
        ("mailctl account add x --imap-security ", ["none", "starttls", "tls"]),
        ("mailctl account add x --pop3-security s", ["starttls"]),
        ("mailctl account add x --smtp-auth ", ["cram-md5", "login", "plain", "xoauth2"]),
        ("mailctl account add x --imap-auth c", ["cram-md5"]),
        ("mailctl account add x --pop3-auth ", ["cram-md5", "login", "plain", "xoauth2"]),
        ("mailctl account test --protocol ", ["all", "imap", "pop3", "smtp"]),
        ("mailctl account set-password work -p ", ["all", "imap", "pop3", "smtp"]),
        ("mailctl completion ", ["bash", "fish", "zsh"]),
    ],
)
def test_closed_sets_complete(
    line: str, expected: list[str], two_accounts: Path, tmp_path: Path
) -> None:
    assert _complete(line, two_accounts, tmp_path) == expected


def test_the_completion_table_matches_the_enums_that_validate() -> None:
    """A value added to an enum (or removed) shows up in TAB: the table is checked against it."""
    from mailctl.cli.choices import CHOICES
    from mailctl.core.bench.models import BenchMode
    from mailctl.models import AuthMechanism, Protocol, Security
    from mailctl.sink.config import COMMAND_PHASES, Phase
    from mailctl.sink.run import LoopKind

    values = {option: list(choices) for option, choices in CHOICES.items()}
    assert values["--mode"] == [m.value for m in BenchMode]
    assert values["--auth"] == [m.value for m in AuthMechanism]
    assert values["--smtp-security"] == [s.value for s in Security]
    assert values["--protocol"] == [*(p.value for p in Protocol), "all"]
    assert values["--latency-on"] == [p.value for p in Phase]
    assert values["--reject-on"] == [p.value for p in COMMAND_PHASES]
    assert values["--loop"] == [k.value for k in LoopKind]


def test_bash_itself_completes_through_the_committed_script(
    two_accounts: Path, tmp_path: Path
) -> None:
    """The committed script, sourced by a real bash, filled COMPREPLY for `send --account`."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash here")
    shim = tmp_path / "bin" / "mailctl"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m mailctl "$@"\n')
    shim.chmod(0o755)
    root = Path(__file__).resolve().parent.parent
    script = f"""
source {shlex.quote(str(COMPLETIONS / "mailctl.bash"))}
COMP_WORDS=(mailctl send --account "")
COMP_CWORD=3
_mailctl_completion mailctl
printf '%s\\n' "${{COMPREPLY[@]}}"
COMP_WORDS=(mailctl bench --mode "")
_mailctl_completion mailctl
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_MAILCTL", "MAILCTL_"))}
    env.update(
        {
            "PATH": f"{shim.parent}:{env.get('PATH', '')}",
            "PYTHONPATH": str(root),
            "MAILCTL_CONFIG": str(two_accounts),
        }
    )
    proc = subprocess.run(
        [bash, "--noprofile", "--norc", "-c", script],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["home", "work", "new", "reuse", "pipeline"], proc.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_end_with_a_newline(shell: str) -> None:
    assert (COMPLETIONS / f"mailctl.{shell}").read_text().endswith("\n")
    result = CliRunner().invoke(app, ["completion", shell])
    assert result.stdout.endswith("\n")
