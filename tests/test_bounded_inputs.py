"""Every local read is bounded: bodies, stdin, --eml, attachments, sendmail, bench, config, secrets.

Each case runs mailctl as a child process (tests/bounded_run.py) with a 1 GiB address-space cap
and a deadline, so an unbounded read fails fast instead of eating the machine, a hang fails
instead of blocking the suite, and the child's peak RSS shows what was held in memory.
Big files are sparse (truncate): they cost no disk and no RAM unless someone reads them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from bounded_run import GIB, MIB, Run, run_mailctl, stream_bytes

HUGE = 5 * GIB
LIMIT_TEXT = "50 MiB"
# Interpreter + imports are ~25 MiB here; a bounded read of a 50 MiB default holds ~100 MiB.
BOUNDED_RSS = 200 * MIB

SEND = ["send", "-n", "--from", "a@example.org", "--to", "b@example.org"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"MAILCTL_CONFIG": str(tmp_path / "no-config.toml")}


@pytest.fixture
def sparse(tmp_path: Path) -> Path:
    path = tmp_path / "huge.txt"
    with path.open("wb") as handle:
        handle.truncate(HUGE)
    return path


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    yield path


def one_line_error(run: Run, code: int, *words: str) -> str:
    assert run.code == code, (run.code, run.stderr[-2000:])
    assert len(run.lines) == 1, run.stderr[-2000:]
    line = run.lines[0]
    assert "Traceback" not in run.stderr
    for word in words:
        assert word in line, (word, line)
    return line


# --- send: bodies, --eml, attachments ------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--body-file", "--html-file"])
def test_huge_body_file_is_refused_before_reading(
    flag: str, sparse: Path, env: dict[str, str]
) -> None:
    run = run_mailctl([*SEND, flag, str(sparse)], env=env)
    one_line_error(run, 65, flag, str(sparse), LIMIT_TEXT)
    assert run.peak_rss < BOUNDED_RSS


@pytest.mark.parametrize("flag", ["--body-file", "--html-file", "--attach", "--inline"])
@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory"])
def test_non_regular_inputs_are_refused(
    flag: str, kind: str, fifo: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    source = {"fifo": fifo, "dev_zero": Path("/dev/zero"), "directory": tmp_path}[kind]
    extra = ["--body", "x"] if flag in ("--attach", "--inline") else []
    if flag == "--inline":
        extra = ["--html", "<p>x</p>"]
    run = run_mailctl([*SEND, *extra, flag, str(source)], env=env, timeout=30)
    one_line_error(run, 65, str(source), "not a regular file")


@pytest.mark.parametrize("flag", ["--attach", "--inline"])
def test_huge_attachment_is_refused_before_reading(
    flag: str, tmp_path: Path, env: dict[str, str]
) -> None:
    image = tmp_path / "huge.png"
    with image.open("wb") as handle:
        handle.truncate(HUGE)
    run = run_mailctl([*SEND, "--html", "<p>x</p>", flag, str(image)], env=env)
    one_line_error(run, 65, str(image), LIMIT_TEXT)
    assert run.peak_rss < BOUNDED_RSS


def test_missing_body_file_is_no_input(tmp_path: Path, env: dict[str, str]) -> None:
    missing = tmp_path / "missing.txt"
    run = run_mailctl([*SEND, "--body-file", str(missing)], env=env)
    one_line_error(run, 66, "--body-file", str(missing))


def test_stdin_body_is_streamed_with_the_limit(env: dict[str, str]) -> None:
    run = run_mailctl(SEND, stdin=stream_bytes(300 * MIB), env=env)
    one_line_error(run, 65, "stdin", LIMIT_TEXT)
    assert run.peak_rss < BOUNDED_RSS


def test_body_file_dash_is_stdin_with_the_limit(env: dict[str, str]) -> None:
    run = run_mailctl([*SEND, "--body-file", "-"], stdin=stream_bytes(300 * MIB), env=env)
    one_line_error(run, 65, "--body-file", "stdin", LIMIT_TEXT)
    assert run.peak_rss < BOUNDED_RSS


def test_huge_eml_file_is_refused_before_reading(sparse: Path, env: dict[str, str]) -> None:
    run = run_mailctl(["send", "-n", "--eml", str(sparse)], env=env)
    one_line_error(run, 65, "--eml", str(sparse), LIMIT_TEXT)
    assert run.peak_rss < BOUNDED_RSS


def test_eml_stdin_stops_at_the_limit(env: dict[str, str]) -> None:
    """`--eml -` used to read everything and only then compare with the limit."""
    message = stream_bytes(300 * MIB, head=b"From: a@example.org\nTo: b@example.org\n\n")
    run = run_mailctl(["send", "-n", "--eml", "-"], stdin=message, env=env)
    one_line_error(run, 65, "--eml", "stdin", LIMIT_TEXT)
    assert run.peak_rss < BOUNDED_RSS


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_eml_non_regular_file_is_refused(kind: str, fifo: Path, env: dict[str, str]) -> None:
    source = fifo if kind == "fifo" else Path("/dev/zero")
    run = run_mailctl(["send", "-n", "--eml", str(source)], env=env, timeout=30)
    one_line_error(run, 65, "--eml", str(source), "not a regular file")


def test_regular_stdin_file_is_checked_by_size_first(sparse: Path, env: dict[str, str]) -> None:
    """`mailctl send < huge` gives a regular file on stdin: its size is known without reading."""
    run = run_mailctl(SEND, stdin=sparse, env=env)
    one_line_error(run, 65, "stdin", LIMIT_TEXT)
    assert run.peak_rss < BOUNDED_RSS
    assert run.seconds < 20


def test_limit_is_configurable(tmp_path: Path, env: dict[str, str]) -> None:
    body = tmp_path / "body.txt"
    body.write_text("x" * 2000 + "\n")
    small = run_mailctl([*SEND, "--body-file", str(body)], env={**env, "MAILCTL_MAX_INPUT": "1K"})
    one_line_error(small, 65, "--body-file", "1 KiB", "MAILCTL_MAX_INPUT")
    fine = run_mailctl([*SEND, "--body-file", str(body)], env={**env, "MAILCTL_MAX_INPUT": "4K"})
    assert fine.code == 0, fine.stderr


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1.5M", "99999999999999999999999P"])
def test_bad_limit_setting_is_a_config_error(
    value: str, tmp_path: Path, env: dict[str, str]
) -> None:
    body = tmp_path / "body.txt"
    body.write_text("x\n")
    run = run_mailctl([*SEND, "--body-file", str(body)], env={**env, "MAILCTL_MAX_INPUT": value})
    one_line_error(run, 78, "MAILCTL_MAX_INPUT")


# --- sendmail ------------------------------------------------------------------------------------


def sendmail_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        'default_account = "main"\n[accounts.main]\nfrom = "main@example.org"\n'
        '[accounts.main.smtp]\nhost = "127.0.0.1"\nport = 1\nsecurity = "none"\n'
    )
    path.chmod(0o600)
    return path


def test_sendmail_stdin_is_streamed_with_the_limit(tmp_path: Path) -> None:
    """1.5 GB piped into `sendmail -t` ended in MemoryError (exit 70)."""
    config = sendmail_config(tmp_path)
    head = b"From: a@example.org\nTo: b@example.org\nSubject: big\n\n"
    run = run_mailctl(
        ["sendmail", "-t", "-i"],
        stdin=stream_bytes(1536 * MIB, head=head),
        env={"MAILCTL_CONFIG": str(config)},
    )
    one_line_error(run, 65, "stdin", LIMIT_TEXT)
    assert run.peak_rss < BOUNDED_RSS


def test_sendmail_stops_reading_at_the_lone_dot(tmp_path: Path) -> None:
    """Without -i a line holding only '.' ends the message: what follows is not read at all."""
    config = sendmail_config(tmp_path)
    head = b"From: a@example.org\nTo: b@example.org\nSubject: dot\n\nhi\n.\n"
    run = run_mailctl(
        ["sendmail", "-t"],
        stdin=stream_bytes(300 * MIB, head=head),
        env={"MAILCTL_CONFIG": str(config)},
    )
    # The message ended at the dot; delivery then fails on the closed port (74), not on size.
    one_line_error(run, 74)
    assert run.peak_rss < BOUNDED_RSS


# --- bench ---------------------------------------------------------------------------------------

BENCH = ["bench", "--server", "127.0.0.1:1", "--no-tls", "-n", "1"]


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory", "huge"])
def test_bench_message_follows_the_send_file_rules(
    kind: str, fifo: Path, sparse: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    source = {"fifo": fifo, "dev_zero": Path("/dev/zero"), "directory": tmp_path, "huge": sparse}
    run = run_mailctl([*BENCH, "--message", str(source[kind])], env=env, timeout=30)
    words = [LIMIT_TEXT] if kind == "huge" else ["not a regular file"]
    one_line_error(run, 65, "--message", str(source[kind]), *words)
    assert run.peak_rss < BOUNDED_RSS


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "huge"])
def test_bench_baseline_is_bounded(
    kind: str, fifo: Path, sparse: Path, env: dict[str, str]
) -> None:
    source = {"fifo": fifo, "dev_zero": Path("/dev/zero"), "huge": sparse}[kind]
    run = run_mailctl([*BENCH, "--baseline", str(source)], env=env, timeout=30)
    words = ["1 MiB"] if kind == "huge" else ["not a regular file"]
    one_line_error(run, 65, "--baseline", str(source), *words)
    assert run.peak_rss < BOUNDED_RSS


# --- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory", "huge"])
def test_config_file_is_bounded(kind: str, fifo: Path, sparse: Path, tmp_path: Path) -> None:
    source = {"fifo": fifo, "dev_zero": Path("/dev/zero"), "directory": tmp_path, "huge": sparse}
    run = run_mailctl(["--config", str(source[kind]), "account", "list"], timeout=30)
    words = ["1 MiB"] if kind == "huge" else ["not a regular file"]
    one_line_error(run, 78, str(source[kind]), *words)
    assert run.peak_rss < BOUNDED_RSS


def test_sendmail_config_option_is_bounded(sparse: Path) -> None:
    run = run_mailctl(["sendmail", "-C", str(sparse), "b@example.org"], timeout=30)
    one_line_error(run, 78, str(sparse), "1 MiB")


# --- secrets on stdin ----------------------------------------------------------------------------

# The keyring is checked before stdin is read (issue 8): a working in-memory one lets the read
# itself be tested. tests/ on the path makes keyring_backend importable in the child.
WORKING_KEYRING = {
    "PYTHON_KEYRING_BACKEND": "keyring_backend.InMemoryKeyring",
    "PYTHONPATH": os.pathsep.join(
        filter(None, [str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")])
    ),
}


def test_set_password_stdin_line_is_bounded(tmp_path: Path) -> None:
    config = sendmail_config(tmp_path)
    run = run_mailctl(
        ["--config", str(config), "account", "set-password", "main", "--stdin"],
        stdin=stream_bytes(100 * MIB, line=b"y" * 1024),  # one endless line
        env=WORKING_KEYRING,
        timeout=30,
    )
    one_line_error(run, 65, "--stdin", "8 KiB")
    assert run.peak_rss < BOUNDED_RSS


def test_account_add_password_stdin_line_is_bounded(tmp_path: Path) -> None:
    config = tmp_path / "new.toml"
    run = run_mailctl(
        [
            "--config",
            str(config),
            "account",
            "add",
            "work",
            "--from",
            "w@example.org",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-user",
            "w",
            "--password-stdin",
        ],
        stdin=stream_bytes(100 * MIB, line=b"y" * 1024),
        env=WORKING_KEYRING,
        timeout=30,
    )
    one_line_error(run, 65, "--password-stdin", "8 KiB")
    assert run.peak_rss < BOUNDED_RSS


def test_dev_null_config_is_an_empty_config() -> None:
    """`--config /dev/null` means no config, as `ssh -F /dev/null` does (a device, not read)."""
    run = run_mailctl(["--config", "/dev/null", "account", "list"], timeout=30)
    assert run.code == 0, run.stderr


# --- other members of the class: files OpenSSL opens by name, nested documents -----------------


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "huge"])
def test_ca_file_is_checked_before_openssl_reads_it(
    kind: str, fifo: Path, sparse: Path, env: dict[str, str]
) -> None:
    """--ca-file FIFO hung before any connection (the TLS context is built first)."""
    source = {"fifo": fifo, "dev_zero": Path("/dev/zero"), "huge": sparse}[kind]
    run = run_mailctl(
        [
            *SEND[:1],
            "--server",
            "127.0.0.1:1",
            "--starttls",
            "--ca-file",
            str(source),
            *SEND[2:],
            "--body",
            "x",
        ],
        env=env,
        timeout=30,
    )
    words = ["16 MiB"] if kind == "huge" else ["not a regular file"]
    one_line_error(run, 65, "CA file", str(source), *words)


def test_sink_certificate_fifo_does_not_hang(fifo: Path) -> None:
    """OpenSSL blocked opening a FIFO given as --cert, and even SIGTERM could not stop it."""
    run = run_mailctl(
        ["sink", "--starttls", "--listen", "127.0.0.1:0", "--cert", str(fifo), "--key", str(fifo)],
        timeout=30,
    )
    one_line_error(run, 65, "--cert", str(fifo), "not a regular file")


def test_deeply_nested_config_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "deep.toml"
    config.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    config.chmod(0o600)
    run = run_mailctl(["--config", str(config), "account", "list"], timeout=30)
    one_line_error(run, 78, str(config))


def test_deeply_nested_baseline_is_a_data_error(tmp_path: Path, env: dict[str, str]) -> None:
    baseline = tmp_path / "deep.json"
    baseline.write_text("[" * 300_000 + "]" * 300_000)
    run = run_mailctl([*BENCH, "--baseline", str(baseline)], env=env, timeout=30)
    one_line_error(run, 65, str(baseline))
