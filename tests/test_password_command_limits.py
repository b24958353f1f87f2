"""password_command: its output is bounded, and its whole process group ends when it fails.

`--password-command yes` used 20 GB within the 30 s timeout, and a shell command that timed out
left its children running (`sleep 100 | cat`). The processes a command starts are found through
an environment marker every descendant inherits (/proc/PID/environ), so the checks see sh,
sleep and cat whatever their pids and process groups.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from bounded_run import MIB, run_mailctl, run_python
from servers.smtp_server import TEST_USER, SmtpTestServer

from mailctl import credentials
from mailctl.errors import CredentialError

MARK = "MAILCTL_TEST_MARK"
BOUNDED_RSS = 200 * MIB


def marked_pids(marker: str) -> list[int]:
    """Live processes (not zombies: their environ reads empty) carrying the marker."""
    wanted = f"{MARK}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0"):
            found.append(int(entry))
    return found


def wait_gone(marker: str, seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := marked_pids(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture
def marker(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    value = uuid.uuid4().hex
    monkeypatch.setenv(MARK, value)
    yield value
    for pid in marked_pids(value):  # never leave a stray sleep behind, even when a test fails
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(credentials, "PASSWORD_COMMAND_TIMEOUT", 1.0)
    return 1.0


def test_timeout_kills_the_whole_process_group(marker: str, short_timeout: float) -> None:
    started = time.monotonic()
    with pytest.raises(CredentialError, match="did not finish") as caught:
        credentials.run_password_command("sleep 100 | cat", label="accounts.work.smtp")
    assert time.monotonic() - started < short_timeout + 5
    assert caught.value.exit_code == 78
    assert wait_gone(marker) == [], "sleep/cat survived the timeout"


def test_failure_kills_background_children(marker: str) -> None:
    with pytest.raises(CredentialError, match="status 3"):
        credentials.run_password_command("sleep 100 >/dev/null 2>&1 & exit 3")
    assert wait_gone(marker) == [], "a background child survived the failed command"


def test_long_first_line_is_refused_without_echoing_it() -> None:
    secretish = "Q" * 20_000
    with pytest.raises(CredentialError) as caught:
        credentials.run_password_command(f"printf '%s\\n' {secretish}", label="accounts.w.smtp")
    text = caught.value.one_line()
    assert "8 KiB" in text and "accounts.w.smtp" in text
    assert "QQQQ" not in text and caught.value.exit_code == 78


def test_endless_output_is_cut_and_the_group_killed(marker: str) -> None:
    """`yes | cat`: bounded memory, a clear error, and neither yes nor cat left running."""
    code = (
        "from mailctl.credentials import run_password_command\n"
        "from mailctl.errors import CredentialError\n"
        "try:\n"
        "    run_password_command('yes | cat', label='accounts.work.smtp')\n"
        "except CredentialError as err:\n"
        "    print(err.one_line())\n"
        "    raise SystemExit(78)\n"
    )
    run = run_python(["-c", code], timeout=30, keep_stdout=True)
    assert run.code == 78, run.stderr[-2000:]
    line = run.stdout.decode()
    assert "accounts.work.smtp" in line and "8 KiB" in line
    assert "y\ny" not in line
    assert run.peak_rss < BOUNDED_RSS
    assert run.seconds < 15
    assert wait_gone(marker) == []


def write_account(tmp_path: Path, server: SmtpTestServer, command: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        'default_account = "work"\n[accounts.work]\nfrom = "w@example.org"\n'
        f'[accounts.work.smtp]\nhost = "127.0.0.1"\nport = {server.port}\n'
        f'security = "starttls"\nusername = "{TEST_USER}"\nca_file = "{server.ca_file}"\n'
        f"password_command = {command!r}\n".replace("'", '"')
    )
    path.chmod(0o600)
    return path


def test_send_with_password_command_yes(
    tmp_path: Path, smtp_server: SmtpTestServer, marker: str
) -> None:
    config = write_account(tmp_path, smtp_server, "yes")
    run = run_mailctl(
        ["send", "--to", "b@example.org", "--subject", "s", "--body", "x"],
        env={"MAILCTL_CONFIG": str(config), "MAILCTL_PASSWORD": ""},
        timeout=40,
        keep_stdout=True,
    )
    assert run.code == 78, run.stderr[-2000:]
    assert len(run.lines) == 1 and "Traceback" not in run.stderr
    assert "accounts.work.smtp" in run.lines[0] and "'yes'" in run.lines[0]
    assert "y\ny" not in run.stderr and b"y\ny" not in run.stdout
    assert run.peak_rss < BOUNDED_RSS
    assert smtp_server.messages == []
    assert wait_gone(marker) == []
