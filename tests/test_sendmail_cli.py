"""`mailctl sendmail` as a real process, driven the way git send-email, cron and mutt drive it."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers.smtp_server import TEST_PASSWORD, TEST_USER, SmtpTestServer, write_account_config


def write_config(path: Path, server: SmtpTestServer, *, extra_account: bool = False) -> Path:
    other = (
        "[accounts.other]",
        'from = "other@example.net"',
        "[accounts.other.smtp]",
        'host = "127.0.0.1"',
        f"port = {server.port}",
        'security = "starttls"',
        f'username = "{TEST_USER}"',
        f'ca_file = "{server.ca_file}"',
    )
    return write_account_config(
        path,
        server,
        from_value="Main User <main@example.org>",
        extra_lines=other if extra_account else (),
    )


def sendmail(
    args: list[str], message: bytes, config: Path, *, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    full_env = {
        **os.environ,
        "MAILCTL_CONFIG": str(config),
        "MAILCTL_PASSWORD": TEST_PASSWORD,
        "NO_COLOR": "1",
        **(env or {}),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "mailctl", "sendmail", *args],
        input=message,
        capture_output=True,
        env=full_env,
        timeout=60,
    )
    assert TEST_PASSWORD.encode() not in proc.stdout + proc.stderr
    return proc


def test_dash_t_strips_bcc_and_uses_header_recipients(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", smtp_server)
    message = (
        b"From: Main User <main@example.org>\nTo: a@example.org\nCc: b@example.org\n"
        b"Bcc: hidden@example.org\nSubject: mutt\n\nhello\n.\nstill body with -i\n"
    )
    proc = sendmail(["-oi", "-oem", "-t"], message, config)
    assert proc.returncode == 0, proc.stderr
    got = smtp_server.messages[0]
    assert sorted(got.rcpt_tos) == ["a@example.org", "b@example.org", "hidden@example.org"]
    assert b"hidden@example.org" not in got.data
    assert got.data.endswith(b"hello\r\n.\r\nstill body with -i\r\n")
    assert got.mail_from == "main@example.org"


def test_git_send_email_style(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", smtp_server)
    patch = (
        b"From: Dev <dev@example.org>\nTo: list@example.org\nSubject: [PATCH] fix\n"
        b"Message-ID: <patch-1@example.org>\nDate: Fri, 27 Nov 2026 10:00:00 +0000\n\n"
        b"---\n.gitignore | 1 +\n.\n"
    )
    proc = sendmail(["-i", "-f", "dev@example.org", "--", "list@example.org"], patch, config)
    assert proc.returncode == 0, proc.stderr
    got = smtp_server.messages[0]
    assert got.mail_from == "dev@example.org" and got.rcpt_tos == ["list@example.org"]
    assert got.data == patch.replace(b"\n", b"\r\n")  # as is, lone dot kept with -i


def test_cron_style_body_only(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", smtp_server)
    proc = sendmail(
        ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root@example.org"],
        b"Subject: Cron <root@host> backup\nContent-Type: text/plain; charset=UTF-8\n\nbackup ok\n",
        config,
    )
    assert proc.returncode == 0, proc.stderr
    message = email.message_from_bytes(smtp_server.messages[0].data, policy=email.policy.default)
    assert message["From"].addresses[0].display_name == "CronDaemon"
    assert message["From"].addresses[0].addr_spec == "main@example.org"
    assert message["Date"] and message["Message-ID"]
    assert message.get_content().strip() == "backup ok"


def test_without_dash_i_a_lone_dot_ends_the_message(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", smtp_server)
    proc = sendmail(["x@example.org"], b"Subject: s\n\nkept\n.\ndropped\n", config)
    assert proc.returncode == 0, proc.stderr
    assert smtp_server.messages[0].data.endswith(b"\r\nkept\r\n")


def test_account_chosen_by_from_and_by_dash_a(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", smtp_server, extra_account=True)
    by_from = sendmail(["-t"], b"From: other@example.net\nTo: x@example.org\n\nb\n", config)
    assert by_from.returncode == 0, by_from.stderr
    assert smtp_server.messages[0].mail_from == "other@example.net"
    by_flag = sendmail(["-a", "other", "x@example.org"], b"Subject: s\n\nb\n", config)
    assert by_flag.returncode == 0, by_flag.stderr
    assert smtp_server.messages[1].mail_from == "other@example.net"


@pytest.mark.parametrize(
    ("args", "stdin", "code"),
    [
        ([], b"Subject: s\n\nno recipients\n", 64),
        (["-bp"], b"", 64),
        (["x@example.org"], b"", 65),
        (["-a", "nope", "x@example.org"], b"Subject: s\n\nb\n", 78),
        (["bad address"], b"Subject: s\n\nb\n", 65),
    ],
)
def test_sysexits(
    smtp_server: SmtpTestServer, tmp_path: Path, args: list[str], stdin: bytes, code: int
) -> None:
    config = write_config(tmp_path / "c.toml", smtp_server)
    proc = sendmail(args, stdin, config)
    assert proc.returncode == code, proc.stderr
    assert len(proc.stderr.decode().strip().splitlines()) == 1
    assert smtp_server.messages == []


def test_refused_recipient_exit_code_for_the_caller(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", smtp_server)
    smtp_server.reject("later@example.org", code=451)
    proc = sendmail(["later@example.org"], b"Subject: s\n\nb\n", config)
    assert proc.returncode == 75  # EX_TEMPFAIL: cron/git know to try again
    assert smtp_server.messages == []


def test_sendmail_symlink(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", smtp_server)
    link = tmp_path / "sendmail"
    link.write_text(f"#!{sys.executable}\nfrom mailctl.__main__ import main\nmain()\n")
    link.chmod(0o755)
    env = {**os.environ, "MAILCTL_CONFIG": str(config), "MAILCTL_PASSWORD": TEST_PASSWORD}
    proc = subprocess.run(
        [str(link), "-t"],
        input=b"To: z@example.org\n\nbody\n",
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert smtp_server.messages[0].rcpt_tos == ["z@example.org"]
