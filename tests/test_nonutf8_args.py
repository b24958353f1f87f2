"""Arguments that are not UTF-8: refused with exit 65 naming the argument, never exit 70.

Python turns undecodable argv bytes into surrogate escapes (PEP 383), which CliRunner cannot
pass, so these tests run `python -m mailctl` as a real process with bytes arguments. File
names are the exception: a path is bytes to the kernel, so a non-UTF-8 path is opened as is.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers.smtp_server import TEST_PASSWORD, SmtpTestServer, write_account_config

BASE = [b"send", b"-n", b"--from", b"a@example.org", b"--to", b"b@example.org"]


def run(
    args: list[bytes], tmp_path: Path, *, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    full_env = {
        **os.environ,
        "MAILCTL_CONFIG": str(tmp_path / "none.toml"),
        "NO_COLOR": "1",
        **(env or {}),
    }
    return subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"mailctl", *args],
        input=stdin,
        capture_output=True,
        env=full_env,
        timeout=60,
    )


def one_error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    text = proc.stderr.decode("utf-8")  # the error itself is valid UTF-8
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text and "internal error" not in text
    return lines[0]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ([b"--body", b"caf\xff"], "--body"),
        ([b"--body", b"x", b"--subject", b"caf\xe9"], "--subject"),
        ([b"--body", b"x", b"--html", b"<p>caf\xff</p>"], "--html"),
        ([b"--body", b"x", b"--header", b"X-Note: caf\xff"], "--header"),
        ([b"--body", b"x", b"--in-reply-to", b"<caf\xff@example.org>"], "--in-reply-to"),
        ([b"--body", b"x", b"--references", b"<caf\xff@example.org>"], "--references"),
        ([b"--body", b"x", b"--cc", b"J\xfcrgen <j@example.org>"], "--cc"),
        ([b"--body", b"x", b"--bcc", b"j\xfc@example.org"], "--bcc"),
        ([b"--body", b"x", b"--reply-to", b"r\xff@example.org"], "--reply-to"),
    ],
)
def test_non_utf8_text_arguments_are_refused(tmp_path: Path, args: list[bytes], named: str) -> None:
    proc = run([*BASE, *args], tmp_path)
    assert proc.returncode == 65, proc.stderr
    line = one_error_line(proc)
    assert named in line and "UTF-8" in line, line
    assert proc.stdout == b""


def test_non_utf8_from_is_refused(tmp_path: Path) -> None:
    proc = run(
        [b"send", b"-n", b"--from", b"J\xfcrg <a@example.org>", b"--to", b"b@example.org",
         b"--body", b"x"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 65
    line = one_error_line(proc)
    assert "--from" in line and "UTF-8" in line


def test_non_utf8_attach_name_is_refused(tmp_path: Path) -> None:
    attachment = tmp_path / "a.txt"
    attachment.write_text("hello\n")
    proc = run(
        [*BASE, b"--body", b"x", b"--attach", os.fsencode(attachment), b"--attach-name",
         b"caf\xff.txt"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 65
    line = one_error_line(proc)
    assert "--attach-name" in line and "UTF-8" in line


def test_non_utf8_file_name_is_read_but_needs_a_name(tmp_path: Path) -> None:
    """The file opens by its bytes; its name cannot go into the message without --attach-name."""
    path = os.fsencode(tmp_path) + b"/caf\xff.txt"
    with open(path, "wb") as handle:
        handle.write(b"file content\n")
    proc = run([*BASE, b"--body", b"x", b"--attach", path], tmp_path)
    assert proc.returncode == 65
    line = one_error_line(proc)
    assert "UTF-8" in line and "--attach-name" in line, line

    named = run(
        [*BASE, b"--body", b"x", b"--attach", path, b"--attach-name", b"cafe.txt"], tmp_path
    )
    assert named.returncode == 0, named.stderr
    message = email.message_from_bytes(named.stdout, policy=email.policy.default)
    (part,) = list(message.iter_attachments())  # type: ignore[attr-defined]
    assert part.get_filename() == "cafe.txt"
    assert part.get_payload(decode=True) == b"file content\n"


def test_non_utf8_body_file_and_save_paths_work(tmp_path: Path) -> None:
    body = os.fsencode(tmp_path) + b"/b\xf6dy.txt"
    with open(body, "wb") as handle:
        handle.write("Grüße\n".encode())
    saved = os.fsencode(tmp_path) + b"/s\xe4ved.eml"
    proc = run([*BASE, b"--body-file", body, b"--save", saved, b"--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    envelope = json.loads(proc.stdout.decode("utf-8"))  # valid UTF-8 JSON even so
    assert envelope["status"] == "ok"
    with open(saved, "rb") as handle:
        assert "Grüße".encode() in email.message_from_bytes(handle.read()).get_payload(decode=True)


def test_non_utf8_save_path_in_human_output(tmp_path: Path) -> None:
    """Even with a strict UTF-8 stdout, printing the path is not an internal error."""
    saved = os.fsencode(tmp_path) + b"/s\xe4ved.eml"
    proc = run(
        [*BASE, b"--body", b"x", b"--save", saved], tmp_path, env={"PYTHONIOENCODING": "utf-8"}
    )
    assert proc.returncode == 0, proc.stderr
    proc = run(
        [*BASE, b"--body", b"x", b"--save", saved, b"--json"],
        tmp_path,
        env={"PYTHONIOENCODING": "utf-8"},
    )
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout.decode("utf-8"))


# --------------------------------------------------------------------------- sendmail


def _config(path: Path, server: SmtpTestServer) -> Path:
    return write_account_config(path, server)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ([b"-F", b"J\xfcrgen", b"x@example.org"], "-F"),
        ([b"-f", b"j\xfc@example.org", b"x@example.org"], "-f"),
        ([b"x\xff@example.org"], "recipient"),
    ],
)
def test_sendmail_non_utf8_arguments_are_refused(
    smtp_server: SmtpTestServer, tmp_path: Path, args: list[bytes], named: str
) -> None:
    config = _config(tmp_path / "c.toml", smtp_server)
    proc = run(
        [b"sendmail", b"-i", *args],
        tmp_path,
        stdin=b"Subject: s\n\nbody\n",
        env={"MAILCTL_CONFIG": str(config), "MAILCTL_PASSWORD": TEST_PASSWORD},
    )
    assert proc.returncode == 65, proc.stderr
    line = one_error_line(proc)
    assert named in line and "UTF-8" in line, line
    assert smtp_server.messages == []
