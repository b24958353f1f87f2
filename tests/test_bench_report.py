"""`mailctl bench` reports what happened: sent means stored, failures set status and exit code.

Each test runs bench through the CLI against a real server on 127.0.0.1 (mailctl's sink with
faults in a child process, or a hostile asyncio server written here) and compares what bench
reported with what the server stored or saw.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from servers.threaded import Handler, ThreadedServer
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.errors import ExitCode

runner = CliRunner()
MODES = ["new", "reuse", "pipeline"]


# -- servers -------------------------------------------------------------------------------


class Sink:
    """`mailctl sink --maildir` in a child process (faults from the command line)."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.maildir = folder / "box"
        ready = folder / "ready.json"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailctl", "sink", "--listen", "127.0.0.1:0",
             "--ready-file", str(ready), "--quiet", "--maildir", str(self.maildir), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("the sink did not start")
            time.sleep(0.02)
        self.port = int(json.loads(ready.read_text())["port"])

    @property
    def stored(self) -> int:
        return len(list((self.maildir / "new").iterdir()))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.communicate()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Callable[..., Sink]]:
    started: list[Sink] = []

    def start(*args: str) -> Sink:
        folder = tmp_path / f"sink{len(started)}"
        folder.mkdir()
        found = Sink(folder, *args)
        started.append(found)
        return found

    yield start
    for found in started:
        found.stop()


class Hostile(ThreadedServer):
    """A scripted server for one test (tests/servers/threaded.py), at most 60 s alive."""


@pytest.fixture
def hostile() -> Iterator[Callable[[Handler], Hostile]]:
    started: list[Hostile] = []

    def start(handler: Handler) -> Hostile:
        server = Hostile(handler)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


async def tarpit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept and never say anything (bounded: until the client or the server goes)."""
    await reader.read()


async def greets_then_stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greet and answer EHLO, then never answer anything else."""
    writer.write(b"220 stall.test ESMTP\r\n")
    while line := await reader.readline():
        if line[:4].upper() in (b"EHLO", b"HELO"):
            writer.write(b"250-stall.test\r\n250 PIPELINING\r\n")


# -- helpers -------------------------------------------------------------------------------


def bench(port: int, *args: str) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    result = runner.invoke(
        app, ["bench", "--server", f"127.0.0.1:{port}", "--no-tls", "--json", *args]
    )
    elapsed = time.monotonic() - started
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout), elapsed


def the_run(data: dict[str, Any]) -> dict[str, Any]:
    runs = data["data"]["runs"]
    assert len(runs) == 1
    run: dict[str, Any] = runs[0]
    return run


def texts(run: dict[str, Any]) -> dict[str, int]:
    return {entry["text"]: entry["count"] for entry in run["failure_groups"]}


# -- 5a: a message is sent when its final reply was read ------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_disconnect_after_the_dot_is_never_counted_as_sent(
    sink: Callable[..., Sink], mode: str
) -> None:
    server = sink("--disconnect-rate", "1", "--disconnect-on", "eod")
    code, data, _ = bench(server.port, "--mode", mode, "-n", "10", "-c", "1")
    run = the_run(data)
    assert server.stored == 0
    assert run["sent"] == 0
    assert run["unknown"] >= 5  # every cut after the dot; pipeline: chained ones were not sent
    assert run["sent"] + run["failed"] + run["unknown"] == 10
    assert run["failures_by_reason"].get("outcome_unknown") == run["unknown"]
    assert (data["status"], data["exit_code"], code) == ("error", 75, 75)


@pytest.mark.parametrize("mode", MODES)
def test_sent_equals_stored_under_random_faults(sink: Callable[..., Sink], mode: str) -> None:
    server = sink(
        "--disconnect-rate", "0.3", "--disconnect-on", "eod", "--seed", "7",
    )  # fmt: skip
    code, data, _ = bench(server.port, "--mode", mode, "-n", "40", "-c", "2")
    run = the_run(data)
    assert run["sent"] == server.stored
    assert 0 < run["sent"] < 40
    assert run["sent"] + run["failed"] + run["unknown"] == 40
    assert (data["status"], code) == ("partial", 75)


# -- 5c: status and exit code follow what failed ---------------------------------------------


@pytest.mark.parametrize(
    ("faults", "exit_code", "text"),
    [
        (["--reject-code", "550", "--reject-on", "rcpt"], 69, "550 5.3.0 Injected failure"),
        (["--reject-code", "451", "--reject-on", "mail"], 75, "451 4.3.0 Injected failure"),
        (["--reject-code", "554", "--reject-on", "eod"], 69, "554 5.3.0 Injected failure"),
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_every_message_refused_is_an_error(
    sink: Callable[..., Sink], mode: str, faults: list[str], exit_code: int, text: str
) -> None:
    server = sink("--reject-rate", "1", *faults)
    code, data, _ = bench(server.port, "--mode", mode, "-n", "6", "-c", "2")
    run = the_run(data)
    assert server.stored == 0
    assert (run["sent"], run["failed"]) == (0, 6)
    assert (data["status"], data["exit_code"], code) == ("error", exit_code, exit_code)
    # Errors by reply code and text, in JSON...
    found = texts(run)
    assert sum(found.values()) == 6
    assert any(key.startswith(text) for key in found), found
    assert data["errors"] and data["errors"][0]["message"]
    # ...and for people.
    human = runner.invoke(
        app, ["bench", "--server", f"127.0.0.1:{server.port}", "--no-tls", "--mode", mode,
              "-n", "3", "-c", "1"],
    )  # fmt: skip
    assert human.exit_code == exit_code
    assert text in human.stdout


@pytest.mark.parametrize("mode", MODES)
def test_some_refused_is_partial_with_the_worst_class(sink: Callable[..., Sink], mode: str) -> None:
    # Permanent refusals (550 at RCPT) and cuts after the dot (unknown): 69 is the worst.
    server = sink(
        "--reject-rate", "0.3", "--reject-code", "550", "--reject-on", "rcpt",
        "--disconnect-rate", "0.3", "--disconnect-on", "eod", "--seed", "3",
    )  # fmt: skip
    code, data, _ = bench(server.port, "--mode", mode, "-n", "40", "-c", "2")
    run = the_run(data)
    assert run["sent"] == server.stored > 0
    assert run["permanent"] > 0 and run["unknown"] > 0
    assert run["failed"] == run["permanent"] + run["transient"]
    assert (data["status"], data["exit_code"], code) == ("partial", 69, 69)


def test_failures_win_over_a_baseline_regression(sink: Callable[..., Sink], tmp_path: Path) -> None:
    clean = sink()
    _, saved, _ = bench(clean.port, "-n", "20", "-c", "2")
    saved["data"]["runs"][0]["qps"] *= 1000  # a regression against anything
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(saved))
    faulty = sink("--reject-rate", "0.5", "--reject-code", "451", "--seed", "1")
    code, data, _ = bench(faulty.port, "-n", "20", "-c", "2", "--baseline", str(baseline))
    assert (data["status"], code) == ("partial", 75)
    assert data["data"]["regression"]["regressed"] is True
    assert {e["code"] for e in data["errors"]} >= {"performance_regression"}


# -- 5d: connections attempted, opened and failed; errors by code and text -----------------


def test_connections_refused_at_the_greeting_are_counted(sink: Callable[..., Sink]) -> None:
    # One connection slot, and every session lasts 0.2 s: concurrent connects get 421.
    server = sink("--max-connections", "1", "--latency", "200", "--latency-on", "eod")
    code, data, _ = bench(server.port, "--mode", "new", "-n", "20", "-c", "3")
    run = the_run(data)
    assert run["connections_attempted"] == 20
    assert run["connections_opened"] + run["connections_failed"] == 20
    assert run["connections_failed"] > 0
    assert run["sent"] == server.stored == run["connections_opened"]
    assert (
        texts(run)["421 4.4.5 Error: too many connections; try again later"]
        == (run["connections_failed"])
    )
    assert (data["status"], code) == ("partial", 75)


@pytest.mark.parametrize("mode", ["reuse", "pipeline"])
def test_421_after_n_messages_is_reported_by_code_and_text(
    sink: Callable[..., Sink], mode: str
) -> None:
    server = sink("--421-after", "3")
    code, data, _ = bench(server.port, "--mode", mode, "-n", "20", "-c", "1")
    run = the_run(data)
    assert run["sent"] == server.stored == 15  # 3 per connection, the 4th MAIL gets 421
    assert texts(run) == {"421 4.7.0 Error: too many messages on this connection": 5}
    assert run["failures_by_reason"] == {"421": 5}
    assert run["connections_attempted"] == run["connections_opened"] >= 5
    assert (data["status"], code) == ("partial", 75)


# -- 5b: every wait is bounded, and a silent server stops the run ---------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_server_that_never_greets_stops_the_run(
    hostile: Callable[[Handler], Hostile], mode: str
) -> None:
    server = hostile(tarpit)
    code, data, elapsed = bench(server.port, "--mode", mode, "-n", "4", "-c", "2", "--timeout", "2")
    assert elapsed < 6, elapsed  # one greeting wait (in parallel), not one per message
    assert code == data["exit_code"] == ExitCode.TEMPFAIL
    assert data["status"] == "error"
    assert "greeting" in data["errors"][0]["message"]
    assert server.accepted <= 2


def test_connect_timeout_bounds_the_greeting(hostile: Callable[[Handler], Hostile]) -> None:
    server = hostile(tarpit)
    code, _, elapsed = bench(
        server.port, "-n", "4", "-c", "1", "--timeout", "30", "--connect-timeout", "1"
    )
    assert code == ExitCode.TEMPFAIL
    assert elapsed < 4, elapsed


@pytest.mark.parametrize("mode", MODES)
def test_a_server_that_stalls_after_ehlo_is_bounded(
    hostile: Callable[[Handler], Hostile], mode: str
) -> None:
    server = hostile(greets_then_stalls)
    code, data, elapsed = bench(
        server.port, "--mode", mode, "-n", "20", "-c", "2", "--timeout", "1"
    )
    # Each wait ends after --timeout; the circuit breaker ends the run after a few of them.
    assert elapsed < 8, elapsed
    assert code == ExitCode.TEMPFAIL
    assert data["status"] == "error"


# -- 5e: the descriptor limit is checked before anything starts ------------------------------


def _limited(soft: int, hard: int) -> Callable[[], None]:
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def test_too_few_descriptors_is_one_clear_line() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "mailctl", "bench", "-c", "1000", "-n", "2000"],
        capture_output=True, timeout=60, preexec_fn=_limited(256, 256),
    )  # fmt: skip
    stderr = process.stderr.decode()
    assert process.returncode == ExitCode.USAGE, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "256" in lines[0] and "ulimit -n" in lines[0]
    assert process.stdout == b""


def test_too_few_descriptors_in_json() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "mailctl", "bench", "-c", "1000", "-n", "2000", "--json"],
        capture_output=True, timeout=60, preexec_fn=_limited(256, 256),
    )  # fmt: skip
    assert process.returncode == ExitCode.USAGE
    data = json.loads(process.stdout)
    assert data["status"] == "error" and data["errors"][0]["code"] == "usage"


def test_the_soft_descriptor_limit_is_raised_when_the_hard_one_allows() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "mailctl", "bench", "-c", "300", "-n", "600", "--json"],
        capture_output=True, timeout=120, preexec_fn=_limited(256, 4096),
    )  # fmt: skip
    assert process.returncode == 0, process.stderr.decode()
    run = json.loads(process.stdout)["data"]["runs"][0]
    assert run["sent"] == 600 and run["connections_opened"] == 300


# -- the pipeline reader never takes an unsolicited reply for the final one -----------------


class Chatty:
    """Speaks SMTP with PIPELINING but sends one reply too many after 354; counts final dots."""

    def __init__(self) -> None:
        self.dots = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 chatty.test ESMTP\r\n")
        in_data = False
        while line := await reader.readline():
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    self.dots += 1
                    writer.write(b"250 2.0.0 Ok: queued\r\n")
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-chatty.test\r\n250 PIPELINING\r\n")
            elif verb == b"DATA":
                in_data = True
                writer.write(b"354 go ahead\r\n250 2.0.0 nobody asked for this\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                return
            else:
                writer.write(b"250 2.1.0 Ok\r\n")


def test_an_unsolicited_reply_is_not_taken_for_the_final_one(
    hostile: Callable[[Handler], Hostile],
) -> None:
    chatty = Chatty()
    server = hostile(chatty)
    code, data, _ = bench(server.port, "--mode", "pipeline", "-n", "3", "-c", "1", "--timeout", "2")
    # The reply after 354 came before the body was written: the server is out of step, so
    # the message is not sent (nothing was written after 354), never counted as sent.
    assert chatty.dots == 0
    if data["data"]:
        assert the_run(data)["sent"] == 0
    assert data["status"] == "error" and code in (ExitCode.TEMPFAIL, ExitCode.PROTOCOL)


async def refuses_at_greeting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"421 4.3.2 busy.test Service not available, closing\r\n")
    await writer.drain()


@pytest.mark.parametrize("mode", MODES)
def test_connections_refused_in_a_row_trip_the_breaker(
    hostile: Callable[[Handler], Hostile], mode: str
) -> None:
    server = hostile(refuses_at_greeting)
    result = runner.invoke(
        app, ["bench", "--server", f"127.0.0.1:{server.port}", "--no-tls", "--mode", mode,
              "-n", "1000", "-c", "10"],
    )  # fmt: skip
    assert result.exit_code == ExitCode.TEMPFAIL
    assert "Traceback" not in result.output
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "in a row" in line and "421 4.3.2" in line
    assert 50 <= server.accepted < 100  # not one attempt per message


@pytest.mark.parametrize("mode", ["new", "reuse"])
def test_a_reply_after_354_is_not_taken_for_the_final_one_in_lock_step(
    hostile: Callable[[Handler], Hostile], mode: str
) -> None:
    """The aiosmtplib path (one reply per command) must refuse the same server: the reply
    waiting after the 354 would otherwise pass for the final reply to a body it never read."""
    chatty = Chatty()
    server = hostile(chatty)
    code, data, _ = bench(server.port, "--mode", mode, "-n", "3", "-c", "1", "--timeout", "2")
    assert chatty.dots == 0
    run = the_run(data)
    assert run["sent"] == 0
    assert data["status"] == "error" and code == ExitCode.PROTOCOL, data
    assert any("nobody asked for" in text for text in texts(run)), run["failure_groups"]


def test_open_loop_pipeline_loses_no_message_to_a_cut(sink: Callable[..., Sink]) -> None:
    """Open loop, the next message is fetched while the current one waits for its reply;
    a cut after the dot must not make that one vanish (neither sent, failed nor unknown
    while the run was never stopped): it is sent on the next connection."""
    server = sink("--disconnect-rate", "0.4", "--disconnect-on", "eod", "--seed", "3")
    code, data, _ = bench(server.port, "--mode", "pipeline", "--rate", "300", "-n", "30", "-c", "1")
    run = the_run(data)
    assert run["stopped_by"] is None
    assert run["not_tried"] == 0
    assert run["sent"] + run["failed"] + run["unknown"] == 30
    assert run["sent"] == server.stored and run["unknown"] > 0
    assert code == 75
