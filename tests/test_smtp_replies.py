"""`send` reads what the server said: replies pending at a disconnect, QUIT, waits, Ctrl-C.

Against the scripted server (tests/servers/scripted_smtp.py), which does what aiosmtpd
will not: two replies in one segment, an unsolicited 421, a reply held after the dot.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from servers.scripted_smtp import Reply, ScriptedFactory, ScriptedSmtpServer, standard_reply
from typer.testing import CliRunner, Result

from mailctl.cli.app import app
from mailctl.errors import SmtpTransientError
from mailctl.models import Envelope, Security, ServerSettings, Timeouts
from mailctl.protocols.smtp import SessionOptions, SmtpSession

runner = CliRunner()
PASSWORD = "scripted-Sekr3t"
MESSAGE = ["--from", "a@example.org", "--subject", "s", "--body", "hello"]
CLOSING = b"421 4.7.0 scripted.test Error: too many errors\r\n"
ROOT = Path(__file__).resolve().parent.parent


def invoke(args: Sequence[str], tmp_path: Path) -> Result:
    env = {
        "MAILCTL_CONFIG": str(tmp_path / "no-config.toml"),
        "NO_COLOR": "1",
        "MAILCTL_PASSWORD": PASSWORD,
    }
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def plain(server: ScriptedSmtpServer) -> list[str]:
    return [f"--server=127.0.0.1:{server.port}", "--no-tls"]


def envelope_json(result: Result) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


# -- 6b: a reply that came with the disconnect is read, not dropped ------------------------


def _closing_after(verb: str, reply: bytes) -> Any:
    """Answer `verb` with `reply` and a 421 in the same write (Postfix at its hard limit)."""

    def respond(line: str) -> Reply:
        if line.upper().startswith(verb):
            return reply + CLOSING
        return standard_reply(line)

    return respond


@pytest.mark.parametrize(
    ("verb", "reply", "lost_at"),
    [
        ("EHLO", b"250-scripted.test\r\n250 8BITMIME\r\n", "MAIL"),
        ("MAIL", b"250 2.1.0 Ok\r\n", "RCPT"),
        ("RCPT TO:<B@", b"550 5.1.1 no such user\r\n", "RCPT"),
        ("RCPT TO:<D@", b"250 2.1.5 Ok\r\n", "DATA"),
    ],
)
def test_421_in_the_same_segment_is_reported_with_its_text(
    scripted_smtp: ScriptedFactory, tmp_path: Path, verb: str, reply: bytes, lost_at: str
) -> None:
    server = scripted_smtp(_closing_after(verb, reply))
    result = invoke(
        [
            "send", *MESSAGE, "--to", "b@example.org", "--to", "c@example.org",
            "--to", "d@example.org", *plain(server), "--allow-partial", "--json",
        ],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 75, result.stdout
    [error] = envelope_json(result)["errors"]
    assert error["code"] == "smtp_transient", error
    assert "421 4.7.0 scripted.test Error: too many errors" in error["message"]
    assert lost_at in error["message"]


def test_421_during_starttls_is_reported_with_its_text(
    scripted_smtp: ScriptedFactory, tmp_path: Path
) -> None:
    server = scripted_smtp(_closing_after("EHLO", b"250-scripted.test\r\n250 STARTTLS\r\n"))
    result = invoke(
        ["send", *MESSAGE, "--to", "b@example.org", f"--server=127.0.0.1:{server.port}",
         "--starttls", "--json"],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 75, result.stdout
    [error] = envelope_json(result)["errors"]
    assert error["code"] == "smtp_transient"
    assert "421 4.7.0 scripted.test Error: too many errors" in error["message"]


def test_421_after_refusals_is_named_with_them(
    scripted_smtp: ScriptedFactory, tmp_path: Path
) -> None:
    """Every recipient refused, the last refusal followed by 421: both are reported."""

    def respond(line: str) -> Reply:
        if line.startswith("RCPT TO:<c@"):
            return b"550 5.1.1 no such user\r\n" + CLOSING
        if line.startswith("RCPT"):
            return b"550 5.1.1 no such user\r\n"
        return standard_reply(line)

    server = scripted_smtp(respond)
    result = invoke(
        ["send", *MESSAGE, "--to", "b@example.org", "--to", "c@example.org", *plain(server),
         "--json"],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 69, result.stdout
    [error] = envelope_json(result)["errors"]
    assert error["code"] == "smtp_permanent"
    assert "b@example.org: 550 5.1.1" in error["message"]
    assert "421 4.7.0 scripted.test Error: too many errors" in error["message"]


async def test_unsolicited_421_on_an_idle_session_is_reported(
    scripted_smtp: ScriptedFactory,
) -> None:
    """A 421 that came while no command waited (idle timeout) explains the next failure."""

    def respond(line: str) -> Reply:
        if line.startswith("EHLO"):
            return (b"250 scripted.test\r\n", 0.2, b"421 4.4.2 scripted.test idle timeout\r\n")
        return standard_reply(line)

    server = scripted_smtp(respond)
    settings = ServerSettings(
        "127.0.0.1", server.port, security=Security.NONE, timeouts=Timeouts(5, 5, 5)
    )
    session = await SmtpSession.open(SessionOptions(settings=settings))
    try:
        deadline = time.monotonic() + 5
        while session.connected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        with pytest.raises(SmtpTransientError, match=r"421 4\.4\.2 scripted\.test idle timeout"):
            await session.send(Envelope("a@example.org", ("b@example.org",)), b"Subject: x\r\n\r\n")
    finally:
        await session.close()


# -- 6c: QUIT after every orderly failure, never after a 421 or a dead connection ----------


def _auth_server(code: bytes) -> Any:
    def respond(line: str) -> Reply:
        if line.startswith("EHLO"):
            return b"250-scripted.test\r\n250 AUTH PLAIN LOGIN\r\n"
        if line.startswith("AUTH"):
            return code
        return standard_reply(line)

    return respond


@pytest.mark.parametrize(
    ("respond", "extra", "exit_code"),
    [
        pytest.param(_auth_server(b"535 5.7.8 bad credentials\r\n"), [], 77, id="535"),
        pytest.param(_auth_server(b"454 4.7.0 try later\r\n"), [], 75, id="454"),
        pytest.param(_auth_server(b"535 5.7.8 no\r\n"), ["--auth", "cram-md5"], 77, id="no-mech"),
        pytest.param(standard_reply, ["--auth", "plain"], 77, id="no-auth-offered"),
    ],
)
def test_quit_after_an_orderly_failure_at_login(
    scripted_smtp: ScriptedFactory,
    tmp_path: Path,
    respond: Any,
    extra: list[str],
    exit_code: int,
) -> None:
    server = scripted_smtp(respond)
    result = invoke(
        ["send", *MESSAGE, "--to", "b@example.org", *plain(server), "--user", "u",
         "--allow-plaintext-auth", *extra],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == exit_code, result.stderr
    assert server.events["QUIT"].wait(5), server.lines
    assert server.lines[-1] == "QUIT"


def test_quit_when_starttls_is_not_offered(scripted_smtp: ScriptedFactory, tmp_path: Path) -> None:
    server = scripted_smtp()
    result = invoke(
        ["send", *MESSAGE, "--to", "b@example.org", f"--server=127.0.0.1:{server.port}",
         "--starttls"],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 76, result.stderr
    assert server.events["QUIT"].wait(5), server.lines
    assert "STARTTLS" not in server.lines


def test_quit_when_ehlo_is_refused(scripted_smtp: ScriptedFactory, tmp_path: Path) -> None:
    def respond(line: str) -> Reply:
        if line.startswith("EHLO"):
            return b"550 5.7.1 go away\r\n"
        return standard_reply(line)

    server = scripted_smtp(respond)
    result = invoke(["send", *MESSAGE, "--to", "b@example.org", *plain(server)], tmp_path)
    assert result.exit_code == 69, result.stderr
    assert server.events["QUIT"].wait(5), server.lines


@pytest.mark.parametrize("where", ["RCPT", "DATA", "."])
def test_no_quit_after_a_421(scripted_smtp: ScriptedFactory, tmp_path: Path, where: str) -> None:
    def respond(line: str) -> Reply:
        if line.startswith(where) or line == where:
            return b"421 4.3.2 scripted.test shutting down\r\n"
        return standard_reply(line)

    server = scripted_smtp(respond, linger_after_421=True)
    result = invoke(["send", *MESSAGE, "--to", "b@example.org", *plain(server)], tmp_path)
    assert result.exit_code == 75, result.stderr
    assert "421 4.3.2" in result.stderr
    time.sleep(0.2)
    assert "QUIT" not in server.lines and "RSET" not in server.lines[1:], server.lines


def test_no_quit_after_a_timeout(scripted_smtp: ScriptedFactory, tmp_path: Path) -> None:
    def respond(line: str) -> Reply:
        return b"" if line.startswith("RCPT") else standard_reply(line)

    server = scripted_smtp(respond)
    result = invoke(
        ["send", *MESSAGE, "--to", "b@example.org", *plain(server), "--timeout", "0.5"], tmp_path
    )
    assert result.exit_code == 75, result.stderr
    time.sleep(0.2)
    assert "QUIT" not in server.lines, server.lines


# -- 7b: --timeout is the ceiling of the wait after the final dot --------------------------


def _run(
    args: Sequence[str], tmp_path: Path, *, timeout: float, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    full_env = {
        **os.environ,
        "MAILCTL_CONFIG": str(tmp_path / "no-config.toml"),
        "NO_COLOR": "1",
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mailctl", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"mailctl was still waiting after {timeout} s: {err.stderr!r}")
    return done, time.monotonic() - started


def _silent_after_the_dot(line: str) -> Reply:
    return b"" if line == "." else standard_reply(line)


def test_timeout_bounds_the_wait_after_the_final_dot(
    scripted_smtp: ScriptedFactory, tmp_path: Path
) -> None:
    server = scripted_smtp(_silent_after_the_dot)
    done, elapsed = _run(
        ["send", *MESSAGE, "--to", "b@example.org", *plain(server), "--timeout", "1", "--json"],
        tmp_path,
        timeout=20,
    )
    assert done.returncode == 75, done.stderr
    [error] = json.loads(done.stdout)["errors"]
    assert error["code"] == "outcome_unknown"
    assert "within 1s" in error["message"]
    assert elapsed < 10


def test_data_timeout_by_name_may_be_longer(scripted_smtp: ScriptedFactory, tmp_path: Path) -> None:
    server = scripted_smtp(_silent_after_the_dot)
    done, elapsed = _run(
        ["send", *MESSAGE, "--to", "b@example.org", *plain(server), "--timeout", "0.5",
         "--data-timeout", "2", "--json"],
        tmp_path,
        timeout=20,
    )  # fmt: skip
    assert done.returncode == 75, done.stderr
    [error] = json.loads(done.stdout)["errors"]
    assert error["code"] == "outcome_unknown" and "within 2s" in error["message"]
    assert elapsed >= 2


def test_data_timeout_from_the_account_wins_over_timeout(
    scripted_smtp: ScriptedFactory, tmp_path: Path
) -> None:
    server = scripted_smtp(_silent_after_the_dot)
    config = tmp_path / "config.toml"
    config.write_text(
        "[accounts.a]\nfrom = 'a@example.org'\n"
        f"[accounts.a.smtp]\nhost = '127.0.0.1'\nport = {server.port}\nsecurity = 'none'\n"
        "data_timeout = 2\n",
        encoding="utf-8",
    )
    config.chmod(0o600)
    done, elapsed = _run(
        ["send", "--to", "b@example.org", "--body", "x", "--timeout", "0.5", "--json"],
        tmp_path,
        timeout=20,
        env={"MAILCTL_CONFIG": str(config)},
    )
    assert done.returncode == 75, done.stderr
    [error] = json.loads(done.stdout)["errors"]
    assert error["code"] == "outcome_unknown" and "within 2s" in error["message"]
    assert elapsed >= 2


# -- 7c: Ctrl-C after the final dot says the message may have been delivered --------------


def _interrupt_when(
    server: ScriptedSmtpServer, event: str, args: Sequence[str], tmp_path: Path
) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "MAILCTL_CONFIG": str(tmp_path / "no-config.toml"),
        "NO_COLOR": "1",
        "PYTHONPATH": str(ROOT),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "mailctl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.events[event].wait(20), f"the server never saw {event}: {server.lines}"
        time.sleep(0.1)  # mailctl is now waiting for the reply
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stdout, stderr


def test_ctrl_c_after_the_final_dot_says_it_may_have_been_delivered(
    scripted_smtp: ScriptedFactory, tmp_path: Path
) -> None:
    server = scripted_smtp(_silent_after_the_dot)
    args = ["send", *MESSAGE, "--to", "b@example.org", *plain(server)]
    code, _, stderr = _interrupt_when(server, ".", args, tmp_path)
    assert code == 130, stderr
    assert "interrupted" in stderr and "may or may not have been delivered" in stderr

    server = scripted_smtp(_silent_after_the_dot)
    args = ["send", *MESSAGE, "--to", "b@example.org", *plain(server), "--json"]
    code, stdout, stderr = _interrupt_when(server, ".", args, tmp_path)
    assert code == 130, stderr
    envelope = json.loads(stdout)
    [error] = envelope["errors"]
    assert error["code"] == "interrupted"
    assert "may or may not have been delivered" in error["message"]
    assert error["details"]["outcome"] == "unknown"


def test_ctrl_c_before_the_final_dot_says_nothing_was_sent(
    scripted_smtp: ScriptedFactory, tmp_path: Path
) -> None:
    def respond(line: str) -> Reply:
        return b"" if line.startswith("RCPT") else standard_reply(line)

    server = scripted_smtp(respond)
    args = ["send", *MESSAGE, "--to", "b@example.org", *plain(server), "--json"]
    code, stdout, stderr = _interrupt_when(server, "RCPT", args, tmp_path)
    assert code == 130, stderr
    [error] = json.loads(stdout)["errors"]
    assert error["code"] == "interrupted" and "nothing was sent" in error["message"]


def test_ctrl_c_after_the_server_accepted_says_it_was_accepted(
    scripted_smtp: ScriptedFactory, tmp_path: Path
) -> None:
    def respond(line: str) -> Reply:
        return b"" if line == "QUIT" else standard_reply(line)  # no answer to QUIT

    server = scripted_smtp(respond)
    args = ["send", *MESSAGE, "--to", "b@example.org", *plain(server), "--json"]
    code, stdout, stderr = _interrupt_when(server, "QUIT", args, tmp_path)
    assert code == 130, stderr
    [error] = json.loads(stdout)["errors"]
    assert error["code"] == "interrupted"
    assert "accepted" in error["message"] and "SCRIPTED1" in error["message"]
    assert error["details"]["outcome"] == "sent"


# -- a reply nobody asked for is never read as the answer to the next command ---------------

FAKE = b"250 2.0.0 Ok: queued as FAKE\r\n"


def _extra_after(verb: str, reply: bytes, extra: bytes) -> Any:
    """Answer `verb` with `reply` and one reply too many in the same write."""

    def respond(line: str) -> Reply:
        if line.upper().startswith(verb):
            return reply + extra
        if line == ".":
            return b"554 5.7.1 the real answer: rejected\r\n"
        return standard_reply(line)

    return respond


@pytest.mark.parametrize(
    ("verb", "reply", "never_sent"),
    [
        ("DATA", b"354 go ahead\r\n", "."),  # the fake would pass for the final reply
        ("RCPT", b"250 2.1.5 Ok\r\n", "DATA"),  # DATA would read the fake
        ("MAIL", b"250 2.1.0 Ok\r\n", "RCPT TO:<b@example.org>"),
        ("EHLO", b"250-scripted.test\r\n250 8BITMIME\r\n", "MAIL FROM:<a@example.org>"),
    ],
)
def test_a_reply_too_many_is_a_protocol_error(
    scripted_smtp: ScriptedFactory, tmp_path: Path, verb: str, reply: bytes, never_sent: str
) -> None:
    """No reply may be waiting when a command (or the body, after 354) is written: each
    later reply would be taken for the one before it, up to a fake 250 for the final dot."""
    server = scripted_smtp(_extra_after(verb, reply, FAKE))
    result = invoke(["send", *MESSAGE, "--to", "b@example.org", *plain(server), "--json"], tmp_path)
    assert result.exit_code == 76, result.stdout
    envelope = envelope_json(result)
    [error] = envelope["errors"]
    assert error["code"] == "protocol_error", error
    assert "250 2.0.0 Ok: queued as FAKE" in error["message"]
    assert "FAKE" not in json.dumps(envelope["data"])
    time.sleep(0.2)
    assert not any(line.startswith(never_sent) for line in server.lines), server.lines


def test_extra_lines_after_the_banner_are_a_protocol_error(
    scripted_smtp: ScriptedFactory, tmp_path: Path
) -> None:
    server = scripted_smtp(banner=b"220 scripted.test ESMTP\r\n" + FAKE)
    result = invoke(["send", *MESSAGE, "--to", "b@example.org", *plain(server), "--json"], tmp_path)
    assert result.exit_code == 76, result.stdout
    [error] = envelope_json(result)["errors"]
    assert error["code"] == "protocol_error"
    assert "250 2.0.0 Ok: queued as FAKE" in error["message"]
    time.sleep(0.2)
    assert server.lines == [], server.lines  # not even EHLO: it would read the extra reply


@pytest.mark.parametrize("verb", ["BANNER", "DATA"])
def test_a_pending_421_is_the_server_closing(
    scripted_smtp: ScriptedFactory, tmp_path: Path, verb: str
) -> None:
    closing = b"421 4.3.2 scripted.test shutting down\r\n"
    if verb == "BANNER":
        server = scripted_smtp(banner=b"220 scripted.test ESMTP\r\n" + closing)
    else:
        server = scripted_smtp(_extra_after(verb, b"354 go ahead\r\n", closing))
    result = invoke(["send", *MESSAGE, "--to", "b@example.org", *plain(server), "--json"], tmp_path)
    assert result.exit_code == 75, result.stdout
    [error] = envelope_json(result)["errors"]
    assert error["code"] == "smtp_transient", error
    assert "421 4.3.2 scripted.test shutting down" in error["message"]
    assert "." not in server.lines, server.lines


def test_plain_text_injected_after_starttls_is_refused(
    scripted_smtp: ScriptedFactory, tmp_path: Path, smtp_certificates: Any, smtp_ca_file: Path
) -> None:
    """RFC 3207 4.2: whatever came in clear text after the 220 is never believed.

    The injection offers AUTH PLAIN; the server's real post-TLS EHLO answer does not, so a
    client that believed the injected lines would try AUTH (and send the password).
    """

    def respond(line: str) -> Reply:
        if line.startswith("EHLO"):
            return b"250-scripted.test\r\n250 STARTTLS\r\n"
        if line == "STARTTLS":
            return b"220 2.0.0 go ahead\r\n250-injected.test\r\n250 AUTH PLAIN\r\n"
        return standard_reply(line)

    from servers.smtp_server import CertKind

    server = scripted_smtp(respond, tls=smtp_certificates.server_context(CertKind.TRUSTED))
    result = invoke(
        ["send", *MESSAGE, "--to", "b@example.org", f"--server=127.0.0.1:{server.port}",
         "--starttls", "--ca-file", str(smtp_ca_file), "--user", "u", "--json"],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 76, result.stdout
    [error] = envelope_json(result)["errors"]
    assert error["code"] == "protocol_error", error
    assert "STARTTLS" in error["message"]
    time.sleep(0.2)
    assert not any(line.startswith("AUTH") for line in server.lines), server.lines


@pytest.mark.parametrize("mode", ["new", "reuse", "pipeline"])
def test_bench_refuses_a_session_with_a_reply_too_many(
    scripted_smtp: ScriptedFactory, tmp_path: Path, mode: str
) -> None:
    """Surplus after the last set-up reply: aiosmtplib keeps it in its buffer, where the
    next command (or, after the pipeline lends the connection back, QUIT) would read it."""

    def respond(line: str) -> Reply:
        if line.startswith("EHLO"):
            return b"250-scripted.test\r\n250 PIPELINING\r\n" + FAKE
        return standard_reply(line)

    server = scripted_smtp(respond)
    result = invoke(
        ["bench", *plain(server), "--mode", mode, "-n", "2", "-c", "1", "--timeout", "2",
         "--json"],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 76, result.stdout
    assert envelope_json(result)["status"] == "error"
    time.sleep(0.2)
    assert [line for line in server.lines if not line.startswith("EHLO")] == [], server.lines
