"""`mailctl bench` against real servers: modes, TLS and AUTH, JSON, baseline, safety, Ctrl-C."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from postfix_tools import SinkFactory, smtp_sink_factory_fixture  # noqa: F401
from servers.smtp_server import TEST_PASSWORD, SmtpServerFactory, SmtpTestServer
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.core.bench import (
    BenchMode,
    BenchRequest,
    Target,
    Workload,
    build_message,
    run_bench,
)
from mailctl.errors import ExitCode
from mailctl.models import Security, ServerSettings

HAS_SINK = importlib.util.find_spec("mailctl.sink") is not None
needs_sink = pytest.mark.skipif(not HAS_SINK, reason="mailctl.sink is not there yet")
runner = CliRunner()


def advertise_pipelining(server: SmtpTestServer) -> None:
    original = server.handler.handle_EHLO

    async def handle_ehlo(
        server_: object, session: object, envelope: object, hostname: str, responses: list[str]
    ) -> list[str]:
        found: list[str] = await original(server_, session, envelope, hostname, responses)
        return [found[0], "250-PIPELINING", *found[1:]]

    server.handler.handle_EHLO = handle_ehlo  # type: ignore[method-assign]


def envelope(result: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_build_message_has_the_requested_size() -> None:
    for size in (1, 200, 2000, 2001, 2002, 2003, 10_000):
        message = build_message(size)
        assert len(message) == max(size, len(build_message(1)))
        assert message.endswith(b"\r\n")
        assert b"\n" not in message.replace(b"\r\n", b"")


def test_every_mode_against_smtp_sink(smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory()
    settings = ServerSettings("127.0.0.1", sink.port, Security.NONE)
    request = BenchRequest(
        target=Target(settings=settings),
        workload=Workload(message=build_message(500), messages=60, concurrency=3, warmup=6),
        modes=(BenchMode.NEW, BenchMode.REUSE, BenchMode.PIPELINE),
    )
    result = run_bench(request)
    new, reuse, pipeline = result.runs
    for run in result.runs:
        assert (run.sent, run.failed, run.unknown) == (60, 0, 0)
        assert run.latency is not None and run.latency.count == 60
        assert run.qps > 0
        assert run.histogram is not None and run.histogram.total == 60
        assert len(run.samples) == 60
    assert new.connections_opened == 66  # one per message, warmup included
    assert reuse.connections_opened == pipeline.connections_opened == 3
    assert {"connect", "banner", "ehlo", "mail_rcpt", "data", "quit"} <= set(new.phases)
    # Issue 8: pipelined MAIL/RCPT/DATA have no time of their own; only end_of_data is measured.
    assert "end_of_data" in pipeline.phases
    assert not {"mail_rcpt", "data"} & set(pipeline.phases)
    assert result.speedup(new) == 1.0


def test_open_loop_and_duration(smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory()
    settings = ServerSettings("127.0.0.1", sink.port, Security.NONE)
    work = Workload(
        message=build_message(300), messages=None, duration=0.4, concurrency=2, rate=100
    )
    started = time.perf_counter()
    result = run_bench(BenchRequest(target=Target(settings=settings), workload=work))
    assert time.perf_counter() - started < 5
    run = result.runs[0]
    assert run.loop == "open" and result.workload.loop == "open"
    # 100/s for 0.4 s: about 40, never far more (the schedule is fixed, not as-fast-as-possible).
    assert 20 <= run.sent <= 45


@pytest.mark.parametrize("mode", ["new", "reuse", "pipeline"])
def test_cli_starttls_and_auth(
    smtp_server_factory: SmtpServerFactory,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    server = smtp_server_factory(security=Security.STARTTLS, auth=True)
    advertise_pipelining(server)
    monkeypatch.setenv("MAILCTL_PASSWORD", TEST_PASSWORD)
    result = runner.invoke(
        app,
        [
            "bench", "--server", f"127.0.0.1:{server.port}", "--starttls", "--user", "alice",
            "--ca-file", str(server.ca_file), "--mode", mode, "-n", "12", "-c", "2", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = envelope(result)
    assert data["mailctl_result_version"] == "2"
    assert data["command"] == ["bench"]
    assert (data["status"], data["exit_code"], data["errors"]) == ("ok", 0, [])
    run = data["data"]["runs"][0]
    assert (run["mode"], run["sent"], run["failed"]) == (mode, 12, 0)
    assert {"p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms"} <= set(run["latency"])
    assert "starttls" in run["phases"] and "auth" in run["phases"]
    assert data["data"]["target"] == {
        "embedded_sink": False,
        "host": "127.0.0.1",
        "port": server.port,
        "security": "starttls",
        "auth": True,
    }
    assert len(server.messages) == 12
    assert all(m.tls and m.authenticated_as == "alice" for m in server.messages)
    # The password was looked up once, used on every connection, and never printed.
    assert TEST_PASSWORD not in result.output


def test_pipeline_mode_refuses_a_server_without_pipelining(
    smtp_server_factory: SmtpServerFactory,
) -> None:
    server = smtp_server_factory(security=Security.NONE, auth=False)
    result = runner.invoke(
        app, ["bench", "--server", f"127.0.0.1:{server.port}", "--no-tls", "-n", "5", "--json"]
    )
    assert result.exit_code == ExitCode.PROTOCOL
    assert "PIPELINING" in envelope(result)["errors"][0]["message"]


def test_unsendable_address_is_refused_before_any_transaction(
    smtp_sink_factory: SinkFactory,
) -> None:
    sink = smtp_sink_factory()
    result = runner.invoke(
        app,
        ["bench", "--server", f"127.0.0.1:{sink.port}", "--no-tls", "-n", "10", "-c", "2",
         "--to", "a b@example.org", "--json"],
    )  # fmt: skip
    # An address that cannot be sent is refused before any transaction.
    assert result.exit_code == ExitCode.DATAERR


def test_baseline_regression_exit_code(smtp_sink_factory: SinkFactory, tmp_path: Path) -> None:
    sink = smtp_sink_factory()
    base = ["bench", "--server", f"127.0.0.1:{sink.port}", "--no-tls", "-n", "40", "-c", "2"]
    saved = runner.invoke(app, [*base, "--json"])
    assert saved.exit_code == 0, saved.output
    baseline = tmp_path / "baseline.json"
    data = envelope(saved)
    baseline.write_text(json.dumps(data))
    # Same server, 1000% allowed: passes.
    ok = runner.invoke(
        app, [*base, "--json", "--baseline", str(baseline), "--max-regression", "1000%"]
    )
    assert ok.exit_code == 0, ok.output
    assert envelope(ok)["data"]["regression"]["regressed"] is False
    # A baseline 100x faster than anything here: a regression, exit 79.
    data["data"]["runs"][0]["qps"] *= 100
    baseline.write_text(json.dumps(data))
    bad = runner.invoke(app, [*base, "--json", "--baseline", str(baseline)])
    assert bad.exit_code == ExitCode.REGRESSION == 79
    found = envelope(bad)
    assert found["status"] == "error"
    assert found["errors"][0]["code"] == "performance_regression"
    checks = found["data"]["regression"]["checks"]
    assert any(c["metric"] == "qps" and c["regressed"] for c in checks)
    # A file that is not a bench result.
    baseline.write_text("{}")
    broken = runner.invoke(app, [*base, "--baseline", str(baseline)])
    assert broken.exit_code == ExitCode.DATAERR


def test_csv_and_profile(smtp_sink_factory: SinkFactory, tmp_path: Path) -> None:
    sink = smtp_sink_factory()
    csv_file, profile = tmp_path / "samples.csv", tmp_path / "client.prof"
    result = runner.invoke(
        app,
        ["bench", "--server", f"127.0.0.1:{sink.port}", "--no-tls", "-n", "20", "-c", "2",
         "--csv", str(csv_file), "--profile", str(profile)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "msg/s" in result.stdout and "p99" in result.stdout and "histogram" in result.stdout
    lines = csv_file.read_text().splitlines()
    assert lines[0].startswith("mode,index,start_s,latency_ms,status")
    assert len(lines) == 21 and all(",sent," in line for line in lines[1:])
    import pstats

    assert pstats.Stats(str(profile)).total_calls > 0  # type: ignore[attr-defined]


def test_non_loopback_is_refused_before_any_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    import mailctl.protocols.smtp.session as smtp

    async def no_connect(*args: object, **kwargs: object) -> None:
        raise AssertionError("a socket was opened")

    monkeypatch.setattr(smtp, "_open_socket", no_connect)
    started = time.perf_counter()
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): nothing there, and nothing is sent there.
    result = runner.invoke(app, ["bench", "--server", "192.0.2.1:25", "--no-tls", "--json"])
    assert time.perf_counter() - started < 2.0
    assert result.exit_code == ExitCode.USAGE
    error = envelope(result)["errors"][0]
    assert "loopback" in error["message"] and "--i-own-this-server" in error["hint"]


def test_usage_errors() -> None:
    for args in (
        ["--mode", "fast"],
        ["-n", "0", "--server", "127.0.0.1:1", "--no-tls"],
        ["--size", "10", "--message", "x.eml"],
        ["--max-regression", "lots"],
        ["-c", "0", "--server", "127.0.0.1:1", "--no-tls"],
    ):
        result = runner.invoke(app, ["bench", *args])
        assert result.exit_code == ExitCode.USAGE, (args, result.output)


def test_unreachable_server_fails_with_connect_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = runner.invoke(app, ["bench", "--server", f"127.0.0.1:{port}", "--no-tls", "-n", "5"])
    assert result.exit_code == ExitCode.IOERR


# -- the embedded sink (mailctl sink in a child process) --------------------------------


@needs_sink
@pytest.mark.parametrize(
    "flags", [[], ["--starttls", "--auth", "plain"], ["--tls", "--auth", "login"]]
)
def test_default_target_is_the_embedded_sink(flags: list[str]) -> None:
    result = runner.invoke(app, ["bench", "-n", "30", "-c", "2", "--compare", "--json", *flags])
    assert result.exit_code == 0, result.output
    data = envelope(result)["data"]
    assert data["target"]["embedded_sink"] is True
    assert [run["mode"] for run in data["runs"]] == ["new", "reuse", "pipeline"]
    assert all(run["sent"] == 30 and run["failed"] == 0 for run in data["runs"])
    assert data["runs"][0]["speedup_vs_new"] == 1.0
    if flags:
        assert data["target"]["auth"] is True
        assert data["target"]["security"] == flags[0].lstrip("-")


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@needs_sink
def test_ctrl_c_prints_a_partial_report_and_stops_the_sink() -> None:
    env = {**os.environ, "NO_COLOR": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mailctl", "bench", "--duration", "30", "-c", "2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        sinks: list[int] = []
        while time.monotonic() < deadline and not sinks:
            sinks = _children(process.pid)
            time.sleep(0.1)
        assert sinks, "the sink never started"
        time.sleep(1.0)  # let it send for a moment
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == ExitCode.INTERRUPTED, stderr.decode()
    data = json.loads(stdout)
    assert data["status"] == "partial"
    assert data["data"]["interrupted"] is True
    assert data["data"]["runs"][0]["sent"] > 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(pid) for pid in sinks):
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in sinks)
