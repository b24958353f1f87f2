"""Output files named by the user: never a FIFO or device replaced, never a hang, one clear 73.

Every file mailctl writes because the user named it (`send --save`, `bench --csv`, `bench
--profile`, `sink --ready-file`, `sink --mbox`, `sink --maildir`, the config file) follows one
rule (README "Output files"):

- missing, or a regular file (also through a symlink, which is kept): written atomically;
- mailctl's own descriptor named as a path (/dev/stdout, /dev/fd/N, /proc/self/fd/N): written
  to that descriptor, so a shell redirection or pipe behind it keeps working;
- a character device (/dev/null, a terminal) or a FIFO: written in place, never replaced; a
  FIFO nobody reads is refused at once (73) instead of blocking forever;
- a directory, block device or socket (and, for --mbox and --maildir, anything but a regular
  file or a directory respectively): 73 `cant_create`, one line, nothing changed.

The write used to be temp file + rename whatever the target was: as root, `--save /dev/null`
replaced /dev/null with a regular file. These tests never touch the real /dev: a character
device is a copy of /dev/null made with mknod in tmp_path, and /dev/stdout is imitated by a
symlink to /proc/self/fd/1 there (what /dev/stdout is).
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import select
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

SEND = ["send", "-n", "--from", "a@example.org", "--to", "b@example.org", "--subject", "saved"]
BODY = "body of the saved message"
BENCH = ["bench", "-n", "3", "-c", "1"]
# A run that hangs is a failure, not a stuck suite; generous for a busy 2-core machine.
RUN_TIMEOUT = 60.0


def run(
    args: Sequence[str],
    tmp_path: Path,
    *,
    stdout: object = subprocess.PIPE,
    timeout: float = RUN_TIMEOUT,
) -> subprocess.CompletedProcess[bytes]:
    env = {
        **os.environ,
        "MAILCTL_CONFIG": str(tmp_path / "no-config.toml"),
        "NO_COLOR": "1",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
    }
    env.pop("MAILCTL_PASSWORD", None)
    return subprocess.run(
        [sys.executable, "-m", "mailctl", *args],
        stdin=subprocess.DEVNULL,
        stdout=stdout,  # type: ignore[arg-type]
        stderr=subprocess.PIPE,
        env=env,
        timeout=timeout,
    )


def error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    text = proc.stderr.decode("utf-8")
    assert "Traceback" not in text and "internal error" not in text, text
    lines = [line for line in text.splitlines() if line.startswith("mailctl: ")]
    assert len(lines) == 1, text
    return lines[0]


def null_device(tmp_path: Path) -> Path:
    """A character device that behaves as /dev/null (1, 3), made in tmp_path (needs root)."""
    path = tmp_path / "null"
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        with open(path, "wb") as handle:  # a nodev mount refuses to open it
            handle.write(b"x")
    except (PermissionError, OSError) as err:
        pytest.skip(f"cannot make a character device here: {err}")
    return path


def assert_char_device(path: Path) -> None:
    info = os.lstat(path)
    assert stat.S_ISCHR(info.st_mode), f"{path} was replaced (mode {info.st_mode:o})"
    assert info.st_rdev == os.makedev(1, 3)


def assert_fifo(path: Path) -> None:
    mode = os.lstat(path).st_mode
    assert stat.S_ISFIFO(mode), f"{path} was replaced (mode {mode:o})"


class FifoReader:
    """Reads a FIFO in a thread until its writer closes it, within a deadline.

    Opened O_NONBLOCK so that the open never waits, and polled: if nobody ever writes (a
    version that replaced the FIFO instead), the thread still ends at the deadline.
    """

    def __init__(self, path: Path, seconds: float = RUN_TIMEOUT) -> None:
        os.mkfifo(path)
        self.path = path
        self.data = b""
        self.closed_by_writer = False
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._deadline = time.monotonic() + seconds
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while time.monotonic() < self._deadline:
                ready, _, _ = select.select([self._fd], [], [], 0.1)
                if not ready:
                    continue
                try:
                    chunk = os.read(self._fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:  # the writer opened, wrote and closed
                    self.closed_by_writer = True
                    return
                self.data += chunk
        finally:
            os.close(self._fd)

    def result(self) -> bytes:
        self._thread.join(RUN_TIMEOUT)
        return self.data


@pytest.fixture
def fifo_without_reader(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


# --------------------------------------------------------------------------- send --save


def test_save_to_a_character_device_writes_through_it(tmp_path: Path) -> None:
    device = null_device(tmp_path)
    proc = run([*SEND, "--body", BODY, "--save", str(device)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_char_device(device)
    assert list(tmp_path.glob(".null.*")) == []  # no temp file left behind


def test_save_to_a_fifo_with_a_reader(tmp_path: Path) -> None:
    reader = FifoReader(tmp_path / "fifo")
    proc = run([*SEND, "--body", BODY, "--save", str(reader.path)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = reader.result()
    assert reader.closed_by_writer and BODY.encode() in data and b"Subject: saved" in data
    assert_fifo(reader.path)


def test_save_to_a_fifo_nobody_reads_fails_at_once(
    tmp_path: Path, fifo_without_reader: Path
) -> None:
    started = time.monotonic()
    proc = run([*SEND, "--body", BODY, "--save", str(fifo_without_reader)], tmp_path)
    assert time.monotonic() - started < 20
    assert proc.returncode == 73, proc.stderr
    line = error_line(proc)
    assert str(fifo_without_reader) in line and "FIFO" in line and "read" in line, line
    assert_fifo(fifo_without_reader)
    assert proc.stdout == b""  # refused before the dry run printed anything


def test_save_to_a_directory_or_socket_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    proc = run([*SEND, "--body", BODY, "--save", str(folder)], tmp_path)
    assert proc.returncode == 73, proc.stderr
    assert "directory" in error_line(proc)
    assert folder.is_dir() and list(folder.iterdir()) == []

    sock_path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(sock_path))
        proc = run([*SEND, "--body", BODY, "--save", str(sock_path)], tmp_path)
    assert proc.returncode == 73, proc.stderr
    assert "socket" in error_line(proc)
    assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)


def test_save_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    target = tmp_path / "real" / "saved.eml"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "saved.eml"
    link.symlink_to(target)
    proc = run([*SEND, "--body", BODY, "--save", str(link)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert BODY.encode() in target.read_bytes()


def test_save_to_own_stdout_path_appends_to_the_redirection(tmp_path: Path) -> None:
    """`--save /dev/stdout >> log`: the message goes where stdout goes, the file is kept.

    `stdout` here is what /dev/stdout is (a symlink to /proc/self/fd/1), made in tmp_path so
    that a version replacing the link cannot harm the real one.
    """
    own_stdout = tmp_path / "stdout"
    own_stdout.symlink_to("/proc/self/fd/1")
    log = tmp_path / "log"
    log.write_bytes(b"earlier line\n")
    inode = log.stat().st_ino
    with log.open("ab") as out:
        proc = run(
            [*SEND, "--body", BODY, "--save", str(own_stdout), "--json"], tmp_path, stdout=out
        )
    assert proc.returncode == 0, proc.stderr
    assert own_stdout.is_symlink() and os.readlink(own_stdout) == "/proc/self/fd/1"
    assert log.stat().st_ino == inode
    data = log.read_bytes()
    saved, _, envelope = data.removeprefix(b"earlier line\n").partition(b"{\n")
    assert data.startswith(b"earlier line\n") and b"Subject: saved" in saved
    assert BODY.encode() in saved and json.loads(b"{\n" + envelope)["status"] == "ok"


@pytest.mark.parametrize("path", ["/dev/fd/1", "/proc/self/fd/1"])
def test_save_to_a_descriptor_path_goes_to_that_descriptor(tmp_path: Path, path: str) -> None:
    proc = run([*SEND, "--body", BODY, "--save", path, "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    # The saved copy arrives on our stdout pipe, before the JSON envelope.
    head, _, envelope = proc.stdout.partition(b"{\n")
    assert b"Subject: saved" in head and BODY.encode() in head
    assert json.loads(b"{\n" + envelope)["status"] == "ok"


# --------------------------------------------------------------------------- bench


def test_bench_csv_to_a_fifo_with_a_reader(tmp_path: Path) -> None:
    reader = FifoReader(tmp_path / "fifo")
    proc = run([*BENCH, "--csv", str(reader.path)], tmp_path, stdout=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    lines = reader.result().decode().splitlines()
    assert lines[0].startswith("mode,index,") and len(lines) == 4, lines
    assert_fifo(reader.path)


def test_bench_csv_to_a_fifo_nobody_reads(tmp_path: Path, fifo_without_reader: Path) -> None:
    proc = run([*BENCH, "--csv", str(fifo_without_reader)], tmp_path)
    assert proc.returncode == 73, proc.stderr
    assert "FIFO" in error_line(proc)
    assert_fifo(fifo_without_reader)


def test_bench_csv_and_profile_to_a_character_device(tmp_path: Path) -> None:
    device = null_device(tmp_path)
    proc = run(
        [*BENCH, "--csv", str(device), "--profile", str(device)],
        tmp_path,
        stdout=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert_char_device(device)


def test_bench_profile_to_a_fifo_nobody_reads_does_not_hang(
    tmp_path: Path, fifo_without_reader: Path
) -> None:
    started = time.monotonic()
    proc = run([*BENCH, "--profile", str(fifo_without_reader)], tmp_path, timeout=30)
    assert time.monotonic() - started < 30
    assert proc.returncode == 73, proc.stderr
    assert "FIFO" in error_line(proc)
    assert_fifo(fifo_without_reader)


def test_bench_profile_to_a_fifo_with_a_reader_is_a_pstats_file(tmp_path: Path) -> None:
    reader = FifoReader(tmp_path / "fifo")
    proc = run([*BENCH, "--profile", str(reader.path)], tmp_path, stdout=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    stats = marshal.loads(reader.result())  # what pstats.Stats(FILE) reads
    assert isinstance(stats, dict) and stats


def test_bench_csv_to_a_directory(tmp_path: Path) -> None:
    proc = run([*BENCH, "--csv", str(tmp_path)], tmp_path)
    assert proc.returncode == 73, proc.stderr
    assert "directory" in error_line(proc)


def test_bench_outputs_are_checked_before_the_run(tmp_path: Path) -> None:
    """A long benchmark must not end in a write that was bound to fail."""
    for flag in ("--csv", "--profile"):
        proc = run([*BENCH, flag, str(tmp_path / "missing" / "out")], tmp_path)
        assert proc.returncode == 73, proc.stderr
        assert "does not exist" in error_line(proc)
        assert proc.stdout == b""  # no table: nothing ran


# --------------------------------------------------------------------------- sink


@contextlib.contextmanager
def sink(tmp_path: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "mailctl", "sink", "--listen", "127.0.0.1:0", "-q", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1", "MAILCTL_CONFIG": str(tmp_path / "none.toml")},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=RUN_TIMEOUT)


def finished(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    _, err = process.communicate(timeout=RUN_TIMEOUT)
    return process.returncode, err.decode()


def test_sink_ready_file_fifo_with_a_reader(tmp_path: Path) -> None:
    reader = FifoReader(tmp_path / "ready")
    with sink(tmp_path, "--ready-file", str(reader.path), "--duration", "1") as process:
        code, err = finished(process)
    assert code == 0, err
    ready = json.loads(reader.result())
    assert ready["host"] == "127.0.0.1" and ready["port"] > 0
    assert_fifo(reader.path)


def test_sink_ready_file_fifo_nobody_reads(tmp_path: Path, fifo_without_reader: Path) -> None:
    with sink(tmp_path, "--ready-file", str(fifo_without_reader), "--duration", "5") as process:
        code, err = finished(process)
    assert code == 73, err
    assert "FIFO" in err and err.count("mailctl: ") == 1, err
    assert_fifo(fifo_without_reader)


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_sink_mbox_must_be_a_regular_file(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        target = tmp_path / "box"
        os.mkfifo(target)
    elif kind == "device":
        target = null_device(tmp_path)
    else:
        target = tmp_path / "box"
        target.mkdir()
    with sink(tmp_path, "--mbox", str(target), "--duration", "5") as process:
        code, err = finished(process)
    assert code == 73, err
    assert str(target) in err and "regular file" in err and err.count("mailctl: ") == 1, err
    mode = os.lstat(target).st_mode
    assert not stat.S_ISREG(mode)


@pytest.mark.parametrize("where", ["itself", "new"])
def test_sink_maildir_must_be_a_directory(tmp_path: Path, where: str) -> None:
    maildir = tmp_path / "md"
    if where == "itself":
        os.mkfifo(maildir)
        blocker = maildir
    else:
        (maildir / "tmp").mkdir(parents=True)
        (maildir / "cur").mkdir()
        blocker = maildir / "new"
        blocker.write_text("not a folder\n")
    with sink(tmp_path, "--maildir", str(maildir), "--duration", "5") as process:
        code, err = finished(process)
    assert code == 73, err
    assert str(blocker) in err and "not a directory" in err and err.count("mailctl: ") == 1, err


# --------------------------------------------------------------------------- config file


def test_account_add_keeps_a_symlinked_config(tmp_path: Path) -> None:
    """A config kept in a dotfiles repository and linked into place stays linked."""
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir(mode=0o700)
    target = dotfiles / "mailctl.toml"
    target.write_text("")
    target.chmod(0o600)
    folder = tmp_path / "cfg"
    folder.mkdir(mode=0o700)
    link = folder / "config.toml"
    link.symlink_to(target)
    env = {**os.environ, "MAILCTL_CONFIG": str(link), "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mailctl", "account", "add", "w", "--smtp-host", "smtp.example.org"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert "smtp.example.org" in target.read_text()


# --------------------------------------------------------------------------- the atomic writer


def test_write_atomic_never_replaces_anything_but_a_regular_file(tmp_path: Path) -> None:
    """The low-level writer (config saves use it directly) refuses what rename would replace."""
    from mailctl.errors import CantCreateError
    from mailctl.store.files import write_atomic

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    for target, kind in ((fifo, "FIFO"), (link, "symbolic link"), (tmp_path, "directory")):
        with pytest.raises(CantCreateError, match=kind):
            write_atomic(target, b"data", what="test file")
    assert_fifo(fifo)
    assert link.is_symlink() and not (tmp_path / "elsewhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link"]
    regular = tmp_path / "regular"
    write_atomic(regular, b"one")
    write_atomic(regular, b"two")
    assert regular.read_bytes() == b"two"
