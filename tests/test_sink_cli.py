"""`mailctl sink` through the real CLI: the ready-file contract, signals, JSON stats, refusals."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.cli.output import Output
from mailctl.cli.sink import build_config
from mailctl.errors import UsageError
from mailctl.sink.config import parse_listen

MESSAGE = b"Subject: cli\r\n\r\nhello\r\n"


def _start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    ready = tmp_path / "ready.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailctl",
            "sink",
            "--listen",
            "127.0.0.1:0",
            "--ready-file",
            str(ready),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 15
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _out, err = process.communicate()
            pytest.fail(f"sink did not start: {err.decode()}")
        time.sleep(0.02)
    return process, json.loads(ready.read_text())


def _send(info: dict[str, Any], count: int = 1) -> None:
    async def go() -> None:
        smtp = aiosmtplib.SMTP(
            hostname=info["host"],
            port=info["port"],
            start_tls=info["security"] == "starttls",
            cert_bundle=info["cert_file"],
            timeout=5,
        )
        await smtp.connect()
        if info["auth"]:
            await smtp.auth_plain(info["auth"]["username"], info["auth"]["password"])
        for _ in range(count):
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        try:
            await smtp.quit()
        except aiosmtplib.SMTPResponseException as err:  # --max-messages: already stopping
            assert err.code == 421
        except aiosmtplib.SMTPServerDisconnected:
            pass

    asyncio.run(go())


def test_ready_file_sigterm_and_json_stats(tmp_path: Path) -> None:
    process, info = _start(tmp_path, "--starttls", "--auth", "--json")
    try:
        assert info["host"] == "127.0.0.1" and info["port"] > 0
        assert info["pid"] == process.pid and info["security"] == "starttls"
        assert info["auth"] == {"username": "mailctl", "password": "mailctl"}
        cert = Path(info["cert_file"])
        assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        _send(info, count=3)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err.decode()
    envelope = json.loads(out)
    assert envelope["command"] == ["sink"] and envelope["status"] == "ok"
    data = envelope["data"]
    assert data["messages"] == 3 and data["bytes"] == 3 * len(MESSAGE)
    assert data["connections"] == 1 and data["rejected"] == 0 and data["disconnected"] == 0
    assert data["error_replies"] == {} and data["elapsed_ms"] > 0 and data["qps"] > 0
    assert data["stopped_by"] == "SIGTERM"
    assert cert.exists()  # kept for the next run (issue 8: accounts trust it as their CA file)


def test_max_messages_stops_with_a_human_summary(tmp_path: Path) -> None:
    process, info = _start(tmp_path, "--max-messages", "2", "--maildir", str(tmp_path / "box"))
    try:
        _send(info, count=2)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert out == b""  # people get the summary on stderr
    assert b"2 messages" in err and b"stopped by max-messages" in err
    assert len(list((tmp_path / "box" / "new").iterdir())) == 2


@pytest.mark.parametrize(
    "listen", [":2525", "*:2525", "example.com:2525", "[::1", "127.0.0.1:99999", "::1:25"]
)
def test_bad_listen_is_refused_before_any_bind(
    listen: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_bind(*args: object, **kwargs: object) -> None:
        raise AssertionError("bound a socket")

    monkeypatch.setattr(socket.socket, "bind", no_bind)
    ready = tmp_path / "ready.json"
    result = CliRunner().invoke(
        app, ["sink", "--listen", listen, "--ready-file", str(ready), "--json"]
    )
    assert result.exit_code == 64, result.output
    assert json.loads(result.stdout)["errors"][0]["code"] == "usage"
    assert not ready.exists()


def test_listen_rules() -> None:
    assert parse_listen("2600").host == "127.0.0.1"
    assert parse_listen("localhost:0").loopback
    assert parse_listen("[::1]:25").host == "::1"
    lan = parse_listen("192.0.2.7:25")
    assert not lan.loopback and not lan.wildcard
    assert parse_listen("0.0.0.0:25").wildcard and parse_listen("[::]:25").wildcard
    with pytest.raises(UsageError):
        parse_listen("mail.example.com:25")


def test_wildcard_is_warned_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    flags = {
        "listen": "0.0.0.0:2525", "auth": True, "use_tls": False, "use_starttls": False,
        "maildir": None, "mbox": None, "latency": 0.0, "latency_on": None, "reject_rate": 0.0,
        "reject_code": None, "reject_on": None, "disconnect_rate": 0.0, "disconnect_on": None,
        "close_after": None, "seed": None, "max_size": None, "cert": None, "key": None,
        "max_connections": None, "max_messages": None, "duration": None,
    }  # fmt: skip
    config = build_config(flags, Output(["sink"]))
    assert config.host == "0.0.0.0"
    err = capsys.readouterr().err
    assert "EVERY interface" in err and "mailctl/mailctl" in err


@pytest.mark.parametrize(
    "args",
    [
        ["--tls", "--starttls"],
        ["--maildir", "a", "--mbox", "b"],
        ["--reject-code", "550"],
        ["--reject-rate", "1", "--reject-code", "250"],
        ["--reject-rate", "1", "--reject-on", "ehlo"],
        ["--disconnect-on", "eod"],
        ["--latency-on", "rcpt"],
        ["--latency", "5", "--latency-on", "nowhere"],
        ["--421-after", "0"],
        ["--cert", "c.pem"],
        ["--cert", "c.pem", "--key", "k.pem"],
        ["--loop", "tornado"],
        ["--duration", "0"],
    ],
)
def test_bad_flags_exit_64(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["sink", "--listen", "127.0.0.1:0", *args])
    assert result.exit_code == 64, result.output


def test_port_in_use_exits_74() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["sink", "--listen", f"127.0.0.1:{port}", "--json"])
    assert result.exit_code == 74, result.output
    assert json.loads(result.stdout)["errors"][0]["code"] == "listen_failed"
