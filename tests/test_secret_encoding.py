"""Secrets, user names and envelope addresses that are not UTF-8: named, never echoed, never 70.

A password that is not UTF-8 (MAILCTL_PASSWORD set from Latin-1 bytes, a password_command
printing binary, a keyring entry, a prompt answer typed on a Latin-1 terminal) cannot go into
AUTH PLAIN/LOGIN (RFC 4616: UTF-8) or CRAM-MD5. It used to be reported as "the user name ...
contains characters that cannot be sent" (exit 65): wrong field, wrong fix. It is now a
credentials error (exit 78, like every other broken secret source) naming the source, and no
part of the secret reaches any output. A non-ASCII password in UTF-8 is legitimate and works.

Envelope addresses that are not UTF-8 were reported as "needs SMTPUTF8", which SMTPUTF8 cannot
fix: they are refused as not valid UTF-8 (65), naming the option or header, before any
connection. Python turns non-UTF-8 argv and environment bytes into surrogate escapes
(PEP 383), which CliRunner cannot pass, so most tests run `python -m mailctl` as a process.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from keyring_backend import InMemoryKeyring
from servers.smtp_server import TEST_PASSWORD, TEST_USER, SmtpTestServer, write_account_config
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.credentials import SERVICE
from mailctl.errors import AddressError, ExitCode
from mailctl.models import Protocol, Security
from mailctl.protocols.smtp.envelope import envelope_path

# Distinctive pieces, none of which may show up in any output, whole or escaped.
BAD_SECRET = b"Sekr\xe9t-pa55-Zq9"
SECRET_PIECES = (b"Sekr", b"pa55", b"Zq9", b"\\xe9", b"udce9")
UTF8_SECRET = "pässwörd-€-Zq9"


def run(
    args: Sequence[bytes | str],
    tmp_path: Path,
    *,
    env: dict[bytes, bytes] | None = None,
    stdin: bytes = b"",
) -> subprocess.CompletedProcess[bytes]:
    """`python -m mailctl ARGS` with a bytes environment (os.environb), no config, no keyring."""
    full_env = dict(os.environb)
    full_env.pop(b"MAILCTL_PASSWORD", None)
    full_env.update(
        {
            b"MAILCTL_CONFIG": os.fsencode(tmp_path / "no-config.toml"),
            b"NO_COLOR": b"1",
            b"PYTHON_KEYRING_BACKEND": b"keyring.backends.null.Keyring",
        }
    )
    full_env.update(env or {})
    return subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"mailctl", *(os.fsencode(a) for a in args)],
        input=stdin,
        capture_output=True,
        env=full_env,
        timeout=60,
    )


def one_error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    text = proc.stderr.decode("utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text and "internal error" not in text, text
    return lines[0]


def assert_no_secret(*outputs: bytes) -> None:
    for output in outputs:
        for piece in SECRET_PIECES:
            assert piece not in output, f"a piece of the secret ({piece!r}) reached the output"


def server_args(server: SmtpTestServer) -> list[str]:
    return [
        f"--server=127.0.0.1:{server.port}",
        "--starttls",
        "--ca-file",
        str(server.ca_file),
        "--user",
        TEST_USER,
    ]


SEND = ["send", "--from", "a@example.org", "--to", "b@example.org", "--subject", "s"]


def write_config(path: Path, server: SmtpTestServer, *, sender: bool = True) -> Path:
    return write_account_config(path, server, from_value="main@example.org" if sender else None)


# --------------------------------------------------------------------------- the secret


@pytest.mark.parametrize("command", ["send", "account-test", "bench"])
def test_env_password_not_utf8_is_named_and_never_shown(
    smtp_server: SmtpTestServer, tmp_path: Path, command: str
) -> None:
    config = write_config(tmp_path / "c.toml", smtp_server)
    args: list[str] = {
        "send": [*SEND, "--body", "x", *server_args(smtp_server)],
        "account-test": ["account", "test", "main"],
        "bench": ["bench", "-n", "1", "-c", "1", *server_args(smtp_server)],
    }[command]
    env = {b"MAILCTL_PASSWORD": BAD_SECRET, b"MAILCTL_CONFIG": os.fsencode(config)}
    proc = run(args, tmp_path, env=env)
    assert_no_secret(proc.stdout, proc.stderr)
    assert proc.returncode == ExitCode.CONFIG, proc.stderr
    text = (proc.stdout + proc.stderr).decode("utf-8")
    assert "MAILCTL_PASSWORD" in text and "UTF-8" in text, text
    assert "user name" not in text
    assert smtp_server.auth_attempts == [] and smtp_server.messages == []
    if command == "send":
        assert "MAILCTL_PASSWORD is not valid UTF-8" in one_error_line(proc)


def test_env_password_not_utf8_in_json(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    proc = run(
        [*SEND, "--body", "x", *server_args(smtp_server), "--json"],
        tmp_path,
        env={b"MAILCTL_PASSWORD": BAD_SECRET},
    )
    assert_no_secret(proc.stdout, proc.stderr)
    assert proc.returncode == ExitCode.CONFIG
    assert b'"credentials_unavailable"' in proc.stdout


def test_password_command_output_not_utf8(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.bin"
    secret_file.write_bytes(BAD_SECRET + b"\n")
    proc = run(
        [*SEND, "--body", "x", *server_args(smtp_server), "--password-command",
         f"cat {secret_file}"],
        tmp_path,
    )  # fmt: skip
    assert_no_secret(proc.stdout, proc.stderr)
    assert proc.returncode == ExitCode.CONFIG, proc.stderr
    line = one_error_line(proc)
    assert "password_command" in line and "UTF-8" in line, line
    assert smtp_server.auth_attempts == []


def test_password_command_only_its_first_line_must_be_utf8(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    """`pass show` prints the password, then notes; the notes may be in any encoding."""
    secret_file = tmp_path / "entry"
    secret_file.write_bytes(TEST_PASSWORD.encode() + b"\nnotes: caf\xe9 \xff\xfe\n")
    proc = run(
        [*SEND, "--body", "x", *server_args(smtp_server), "--password-command",
         f"cat {secret_file}"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [a.success for a in smtp_server.auth_attempts] == [True]
    assert len(smtp_server.messages) == 1


def test_keyring_value_not_utf8(
    smtp_server: SmtpTestServer, tmp_path: Path, memory_keyring: InMemoryKeyring
) -> None:
    """A keyring backend can hand back any str; one with surrogate escapes is named as such."""
    config = write_config(tmp_path / "c.toml", smtp_server)
    memory_keyring.set_password(SERVICE, "main:smtp", BAD_SECRET.decode("utf-8", "surrogateescape"))
    result = CliRunner().invoke(
        app,
        [*SEND, "--body", "x"],
        env={"MAILCTL_CONFIG": str(config), "NO_COLOR": "1", "MAILCTL_PASSWORD": ""},
    )
    output = (result.stdout + result.stderr).encode("utf-8", "backslashreplace")
    assert_no_secret(output)
    assert result.exit_code == ExitCode.CONFIG, result.stderr
    assert "keyring" in result.stderr and "UTF-8" in result.stderr, result.stderr
    assert smtp_server.auth_attempts == []


def run_in_pty(
    args: Sequence[str], env: dict[str, str], answers: Sequence[tuple[bytes, bytes]]
) -> tuple[int, bytes]:
    """Run `python -m mailctl ARGS` on a pseudo-terminal; answer each prompt as it appears.

    `answers` pairs a prompt's text with the bytes typed after it. Returns the exit code and
    everything the terminal showed. Bounded: the child is killed after 60 s.
    """
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        os.execve(sys.executable, [sys.executable, "-m", "mailctl", *args], env)
    output = b""
    pending = list(answers)
    seen = 0  # where to look for the next prompt
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if pending and pending[0][0] in output[seen:]:
                seen = output.index(pending[0][0], seen) + len(pending[0][0])
                os.write(fd, pending.pop(0)[1])
        else:
            os.kill(pid, 9)
            pytest.fail(f"mailctl still ran after 60 s: {output[-500:]!r}")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert not pending, f"never asked {pending[0][0]!r}: {output!r}"
    return os.waitstatus_to_exitcode(status), output


def pty_env(tmp_path: Path, config: Path | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "MAILCTL_PASSWORD"}
    env.update(
        MAILCTL_CONFIG=str(config or tmp_path / "none.toml"),
        NO_COLOR="1",
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
    )
    return env


def test_prompt_answer_not_utf8(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    """A password typed on a Latin-1 terminal: exit 78 naming the prompt, not a traceback."""
    code, output = run_in_pty(
        [*SEND, "--body", "x", *server_args(smtp_server)],
        pty_env(tmp_path),
        [(b"Password", BAD_SECRET + b"\n")],
    )
    after_prompt = output.split(b"Password", 1)[1]
    assert_no_secret(after_prompt)
    assert code == ExitCode.CONFIG, output
    assert b"UTF-8" in after_prompt and b"Traceback" not in after_prompt, output
    assert smtp_server.auth_attempts == []


@pytest.mark.parametrize("errors", ["surrogateescape", "strict"])
def test_account_add_answer_not_utf8(tmp_path: Path, errors: str) -> None:
    """`account add` asks on a terminal; a Latin-1 answer is 65 naming the question.

    Python reads a terminal with surrogateescape in the C locales and strictly elsewhere
    (PEP 538/540): both ways end the same.
    """
    config = tmp_path / "cfg" / "config.toml"
    env = pty_env(tmp_path, config)
    env["PYTHONIOENCODING"] = f"utf-8:{errors}"
    code, output = run_in_pty(
        ["account", "add", "work"], env, [(b"From address", b"J\xfcrgen <j@example.org>\n")]
    )
    assert code == ExitCode.DATAERR, output
    assert b"From address" in output and b"not valid UTF-8" in output, output
    assert b"Traceback" not in output and not config.exists()


@pytest.mark.parametrize("mechanism", ["plain", "login", "cram-md5"])
def test_non_ascii_utf8_password_works(
    smtp_server_factory: object, tmp_path: Path, mechanism: str
) -> None:
    """RFC 4616 (PLAIN) and RFC 4954's LOGIN carry UTF-8; CRAM-MD5 keys its HMAC with it."""
    server: SmtpTestServer = smtp_server_factory(  # type: ignore[operator]
        mechanisms=("PLAIN", "LOGIN", "CRAM-MD5"), password=UTF8_SECRET
    )
    proc = run(
        [*SEND, "--body", "x", *server_args(server), "--auth", mechanism],
        tmp_path,
        env={b"MAILCTL_PASSWORD": UTF8_SECRET.encode()},
    )
    assert proc.returncode == 0, proc.stderr
    assert UTF8_SECRET.encode() not in proc.stdout + proc.stderr
    [attempt] = server.auth_attempts
    assert attempt.mechanism == mechanism.upper() and attempt.success
    assert len(server.messages) == 1 and server.messages[0].authenticated_as == TEST_USER


# --------------------------------------------------------------------------- user names


@pytest.mark.parametrize("command", ["send", "bench"])
def test_user_not_utf8_is_refused_before_connecting(
    smtp_server: SmtpTestServer, tmp_path: Path, command: str
) -> None:
    server = [f"--server=127.0.0.1:{smtp_server.port}", "--starttls", "--ca-file",
              str(smtp_server.ca_file)]  # fmt: skip
    head = [*SEND, "--body", "x"] if command == "send" else ["bench", "-n", "1", "-c", "1"]
    proc = run(
        [*head, *server, b"--user", b"al\xefce"],
        tmp_path,
        env={b"MAILCTL_PASSWORD": TEST_PASSWORD.encode()},
    )
    assert proc.returncode == ExitCode.DATAERR, proc.stderr
    line = one_error_line(proc)
    assert "--user" in line and "UTF-8" in line, line
    assert smtp_server.connections == 0


@pytest.mark.parametrize(
    "flag",
    ["--smtp-user", "--smtp-host", "--from", "--ehlo", "--smtp-password-command", "--imap-user"],
)
def test_account_add_refuses_values_that_are_not_utf8(tmp_path: Path, flag: str) -> None:
    """The config file is UTF-8 TOML: such a value could never be written (it was exit 70)."""
    config = tmp_path / "cfg" / "config.toml"
    values = {"--smtp-host": "smtp.example.org", "--imap-host": "imap.example.org"}
    args: list[bytes | str] = ["account", "add", "work"]
    for name, value in values.items():
        if name != flag:
            args += [name, value]
    args += [flag, b"caf\xe9@example.org" if flag == "--from" else b"caf\xe9"]
    proc = run(args, tmp_path, env={b"MAILCTL_CONFIG": os.fsencode(config)})
    assert proc.returncode == ExitCode.DATAERR, proc.stderr
    line = one_error_line(proc)
    assert flag in line and "UTF-8" in line, line
    assert not config.exists()


# --------------------------------------------------------------------------- envelopes


@pytest.mark.parametrize("role", ["sender", "recipient"])
def test_envelope_path_names_bytes_that_are_not_utf8(role: str) -> None:
    address = b"j\xfcrgen@example.org".decode("utf-8", "surrogateescape")
    for smtputf8 in (False, True):
        with pytest.raises(AddressError) as caught:
            envelope_path(role, address, smtputf8=smtputf8, allow_empty=False)
        message = caught.value.one_line()
        assert f"envelope {role}" in message and "not valid UTF-8" in message, message
        assert "SMTPUTF8" not in message
        assert caught.value.exit_code == ExitCode.DATAERR
    # Real non-ASCII text still says what it needs.
    with pytest.raises(Exception, match="SMTPUTF8"):
        envelope_path(role, "jürgen@example.org", smtputf8=False, allow_empty=False)
    assert envelope_path(role, "jürgen@example.org", smtputf8=True, allow_empty=False) == (
        "<jürgen@example.org>".encode()
    )


@pytest.mark.parametrize("flag", ["--from", "--to"])
def test_bench_envelope_not_utf8_is_refused_before_connecting(
    smtp_server: SmtpTestServer, tmp_path: Path, flag: str
) -> None:
    proc = run(
        ["bench", "-n", "1", "-c", "1", *server_args(smtp_server), flag, b"j\xfc@example.org"],
        tmp_path,
        env={b"MAILCTL_PASSWORD": TEST_PASSWORD.encode()},
    )
    assert proc.returncode == ExitCode.DATAERR, proc.stderr
    line = one_error_line(proc)
    assert flag in line and "UTF-8" in line and "SMTPUTF8" not in line, line
    assert smtp_server.connections == 0


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        (b"From: J\xfcrg <j\xfc@example.org>\nTo: b@example.org\n", "From"),
        (b"From: a@example.org\nTo: b\xff@example.org\n", "To"),
        (b"From: a@example.org\nTo: b@example.org\nCc: c\xe9@example.org\n", "Cc"),
    ],
)
def test_send_eml_envelope_from_headers_not_utf8(
    smtp_server: SmtpTestServer, tmp_path: Path, headers: bytes, named: str
) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(headers + b"Subject: s\n\nbody\n")
    proc = run(
        ["send", "--eml", str(eml), *server_args(smtp_server)],
        tmp_path,
        env={b"MAILCTL_PASSWORD": TEST_PASSWORD.encode()},
    )
    assert proc.returncode == ExitCode.DATAERR, proc.stderr
    line = one_error_line(proc)
    assert named in line and "UTF-8" in line and "SMTPUTF8" not in line, line
    assert smtp_server.connections == 0


@pytest.mark.parametrize(
    ("args", "message", "named"),
    [
        ([b"-f", b"j\xfc@example.org", b"x@example.org"], b"Subject: s\n\nbody\n", "-f"),
        ([b"x\xff@example.org"], b"Subject: s\n\nbody\n", "recipient"),
        ([b"x@example.org"], b"From: J\xfcrg <j\xfc@example.org>\nSubject: s\n\nbody\n", "From"),
        ([b"-t"], b"From: a@example.org\nTo: b\xff@example.org\nSubject: s\n\nbody\n", "To"),
    ],
)
def test_sendmail_envelope_not_utf8(
    smtp_server: SmtpTestServer, tmp_path: Path, args: list[bytes], message: bytes, named: str
) -> None:
    config = write_config(tmp_path / "c.toml", smtp_server, sender=False)
    proc = run(
        ["sendmail", "-i", *args],
        tmp_path,
        stdin=message,
        env={b"MAILCTL_CONFIG": os.fsencode(config), b"MAILCTL_PASSWORD": TEST_PASSWORD.encode()},
    )
    assert proc.returncode == ExitCode.DATAERR, proc.stderr
    line = one_error_line(proc)
    assert named in line and "UTF-8" in line and "SMTPUTF8" not in line, line
    assert smtp_server.connections == 0


# --------------------------------------------------------------------------- IMAP and POP3


def _imap_pop3_config(path: Path, dovecot: Any, user: str, pop3_auth: str) -> Path:
    imaps = dovecot.settings(Protocol.IMAP, Security.TLS)
    pop3 = dovecot.settings(Protocol.POP3, Security.STARTTLS)
    path.write_text(
        "\n".join(
            [
                "[accounts.d.imap]",
                f'host = "{imaps.host}"',
                f"port = {imaps.port}",
                'security = "tls"',
                f'username = "{user}"',
                f'ca_file = "{dovecot.ca_pem}"',
                "[accounts.d.pop3]",
                f'host = "{pop3.host}"',
                f"port = {pop3.port}",
                'security = "starttls"',
                f'username = "{user}"',
                f'auth = "{pop3_auth}"',
                f'ca_file = "{dovecot.ca_pem}"',
            ]
        )
        + "\n"
    )
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("pop3_auth", ["plain", "login"])
def test_imap_pop3_non_ascii_password_and_one_not_utf8(
    dovecot: Any, tmp_path: Path, pop3_auth: str
) -> None:
    """`account test` logs in with a UTF-8 password (IMAP AUTHENTICATE PLAIN; POP3 AUTH PLAIN
    and USER/PASS); MAILCTL_PASSWORD holding other bytes is refused for both, never shown."""
    user = f"utf8-{pop3_auth}"
    dovecot.add_user(user, UTF8_SECRET)
    config = _imap_pop3_config(tmp_path / "c.toml", dovecot, user, pop3_auth)
    env = {b"MAILCTL_CONFIG": os.fsencode(config), b"MAILCTL_PASSWORD": UTF8_SECRET.encode()}
    good = run(["account", "test", "d", "--json"], tmp_path, env=env)
    assert UTF8_SECRET.encode() not in good.stdout + good.stderr
    assert good.returncode == 0, good.stdout
    assert good.stdout.count(b'"authenticated": true') == 2

    env[b"MAILCTL_PASSWORD"] = BAD_SECRET
    bad = run(["account", "test", "d", "--json"], tmp_path, env=env)
    assert_no_secret(bad.stdout, bad.stderr)
    assert bad.returncode == ExitCode.CONFIG, bad.stdout
    assert bad.stdout.count(b"MAILCTL_PASSWORD is not valid UTF-8 text") >= 2, bad.stdout
