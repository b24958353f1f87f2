"""The sink's rates: the live line shows the current rate (a sliding window), the final report
the busy-time rate beside the lifetime one. Window and busy-time math as pure functions
(table and property tests); a real sink driven burst, idle, burst by a real client."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import threading
import time
from pathlib import Path

import aiosmtplib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from terminal import run_on_terminal

from mailctl.sink.rates import BusyClock, RateWindow, eta, window_rate

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: x\r\n\r\nbody\r\n"

# -- the window ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("readings", "now", "expected"),
    [
        ([], 0.0, 0.0),
        ([(0.0, 0)], 0.0, 0.0),  # one reading covers no time
        ([(0.0, 0), (0.5, 500), (1.0, 1000)], 1.0, 1000.0),  # steady 1000/s
        # 10,000 in the first second, nothing since: the last second says 0, not 5,000/s
        ([(0.0, 0), (1.0, 10_000), (1.5, 10_000), (2.0, 10_000)], 2.0, 0.0),
        # idle, then 3,000 in the last half second: 6,000/s over the window's second
        ([(0.0, 0), (1.0, 0), (1.5, 0), (2.0, 3000)], 2.0, 3000.0),
        # readings older than the window are ignored (the one at its start anchors it)
        ([(0.0, 0), (5.0, 100), (5.5, 100), (6.0, 600)], 6.0, 500.0),
        # the window opens at the latest reading at or before now - span
        ([(0.0, 0), (0.8, 80), (1.6, 160), (2.0, 1160)], 2.0, 1080 / 1.2),
        # fewer than span seconds of readings: the rate over what there is
        ([(0.0, 0), (0.25, 100)], 0.25, 400.0),
    ],
)
def test_window_rate(readings: list[tuple[float, int]], now: float, expected: float) -> None:
    assert window_rate(readings, now, 1.0) == pytest.approx(expected)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.01, 2.0), st.integers(0, 50_000)), min_size=1, max_size=60),
    st.floats(0.2, 3.0),
)
def test_window_matches_the_definition(steps: list[tuple[float, int]], span: float) -> None:
    """RateWindow (which forgets old readings) gives what window_rate gives over all of them,
    and a steady flow reads as its own rate."""
    window = RateWindow(span=span)
    everything: list[tuple[float, int]] = []
    now, count = 0.0, 0
    for seconds, added in steps:
        now += seconds
        count += added
        everything.append((now, count))
        got = window.add(now, count)
        assert got == pytest.approx(window_rate(everything, now, span))
        assert got >= 0
        assert len(window.readings) <= len(everything)
    assert window.readings[0][0] <= max(now - span, everything[0][0])


@given(st.floats(100, 100_000), st.floats(0.05, 0.5), st.integers(3, 40))
def test_a_steady_flow_reads_as_its_rate(rate: float, tick: float, ticks: int) -> None:
    window = RateWindow(span=1.0)
    got = 0.0
    for i in range(ticks + 1):
        got = window.add(i * tick, round(rate * i * tick))
    assert got == pytest.approx(rate, rel=0.02, abs=1 / tick)


# -- busy time -------------------------------------------------------------------------------


def arrivals(*bursts: tuple[float, int, float]) -> BusyClock:
    """(start, count, interval) bursts of message arrival times into a BusyClock."""
    clock = BusyClock(gap=1.0)
    for start, count, interval in bursts:
        for i in range(count):
            clock.arrived(start + i * interval)
    return clock


@pytest.mark.parametrize(
    ("bursts", "busy", "rate", "count"),
    [
        ([], 0.0, 0.0, 0),
        ([(0.0, 1, 0.001)], 0.0, 0.0, 1),  # one message: no interval, no rate yet
        ([(0.0, 1001, 0.001)], 1.0, 1000.0, 1),  # 1000/s for a second
        # burst, 5 s idle, burst: the idle time is not busy time; the rate is the bursts'
        ([(0.0, 1001, 0.001), (6.0, 2001, 0.0005)], 2.0, 1500.0, 2),
        # pauses up to the gap are part of a burst (a slow client is still busy)
        ([(0.0, 11, 0.9)], 9.0, 10 / 9.0, 1),
        ([(0.0, 3, 1.5)], 0.0, 0.0, 3),  # pauses over the gap: three bursts, no busy time
    ],
)
def test_busy_clock(
    bursts: list[tuple[float, int, float]], busy: float, rate: float, count: int
) -> None:
    clock = arrivals(*bursts)
    assert clock.busy == pytest.approx(busy)
    assert clock.busy_rate == pytest.approx(rate)
    assert clock.bursts == count


@given(st.lists(st.floats(0.0, 3.0), max_size=200))
def test_busy_time_is_within_the_lifetime(gaps: list[float]) -> None:
    clock = BusyClock(gap=1.0)
    now, times = 0.0, []
    for gap in gaps:
        now += gap
        times.append(now)
        clock.arrived(now)
    assert 0.0 <= clock.busy <= now + 1e-9
    assert clock.intervals + clock.bursts == len(gaps)
    steps = [b - a for a, b in itertools.pairwise(times)]
    assert clock.busy == pytest.approx(sum(step for step in steps if step <= 1.0))


@pytest.mark.parametrize(
    ("remaining", "rate", "expected"),
    [(0, 0.0, 0.0), (100, 50.0, 2.0), (100, 0.0, None), (-5, 10.0, 0.0)],
)
def test_eta(remaining: int, rate: float, expected: float | None) -> None:
    assert eta(remaining, rate) == expected


# -- a real sink, burst, idle, burst ----------------------------------------------------------

BURST = 300
IDLE = 2.5  # seconds: longer than the window and the burst gap


def _send(port: int, count: int) -> None:
    async def go() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=10)
        await smtp.connect()
        for _ in range(count):
            await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
        # --max-messages reached: the sink says 421 and stops
        with contextlib.suppress(
            aiosmtplib.SMTPResponseException, aiosmtplib.SMTPServerDisconnected
        ):
            await smtp.quit()

    asyncio.run(go())


def _drive(ready: Path, done: threading.Event, errors: list[BaseException]) -> None:
    """Burst, idle, burst against the sink named in `ready` (bounded waits)."""
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() or not ready.read_text().strip():
            if time.monotonic() > deadline:
                raise TimeoutError("the sink never got ready")
            time.sleep(0.02)
        port = json.loads(ready.read_text())["port"]
        _send(port, BURST)
        time.sleep(IDLE)
        _send(port, BURST)
    except BaseException as err:  # reported by the test
        errors.append(err)
    finally:
        done.set()


def test_burst_idle_burst_on_a_terminal(tmp_path: Path) -> None:
    """The live line falls to 0 msg/s while idle; the final report gives the busy rate (idle
    left out) and the overall one, labelled, and they agree with --json's figures."""
    ready = tmp_path / "ready.json"
    done, errors = threading.Event(), []
    driver = threading.Thread(target=_drive, args=(ready, done, errors), daemon=True)
    driver.start()
    run = run_on_terminal(
        ["sink", "--listen", "127.0.0.1:0", "--ready-file", str(ready),
         "--max-messages", str(2 * BURST)],
        columns=80, stdout_on_terminal=False,
    )  # fmt: skip
    driver.join(timeout=30)
    assert not errors, errors
    assert run.code == 0, run.screen
    screen = run.screen
    frames = [f for f in re.split(r"[\r\n]+", screen) if "msg/s now" in f]
    assert frames, screen
    # During the pause, the live line said 0 msg/s with the first burst counted.
    idle = [f for f in frames if f.startswith(f"{BURST:,} messages") and " 0 msg/s now" in f]
    assert idle, frames
    assert all(len(frame) <= 80 for frame in frames), frames
    summary = screen[screen.index("mailctl sink: stopped") :]
    busy = re.search(r"busy rate +([\d,]+) msg/s", summary)
    overall = re.search(r"overall +([\d,]+) msg/s", summary)
    assert busy and overall, summary
    busy_rate, overall_rate = (float(m.group(1).replace(",", "")) for m in (busy, overall))
    # Over 2.5 s of idle between two short bursts: the lifetime figure is far below.
    assert busy_rate > 3 * overall_rate, summary
    assert f"{2 * BURST:,} messages" in summary
    for line in summary.splitlines():
        assert len(line) <= 80, line


def test_burst_idle_burst_json(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    done, errors = threading.Event(), []
    driver = threading.Thread(target=_drive, args=(ready, done, errors), daemon=True)
    driver.start()
    import subprocess
    import sys

    process = subprocess.run(
        [sys.executable, "-m", "mailctl", "sink", "--listen", "127.0.0.1:0", "--ready-file",
         str(ready), "--max-messages", str(2 * BURST), "--json"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    driver.join(timeout=30)
    assert not errors, errors
    assert process.returncode == 0, process.stderr
    data = json.loads(process.stdout)["data"]
    assert data["messages"] == 2 * BURST
    assert data["elapsed_ms"] >= IDLE * 1000
    assert 0 < data["busy_ms"] < data["elapsed_ms"] - IDLE * 1000 * 0.9
    assert data["busy_qps"] > 3 * data["qps"]


def test_a_background_sink_draws_no_live_line(tmp_path: Path) -> None:
    """`mailctl sink ... &` (the README's walk-through) shares the terminal with the shell: it
    must not redraw a line over the prompt, but still print its listening line and its final
    statistics. The foreground case is the test above."""
    import os
    import pty
    import select
    import shlex
    import sys

    from terminal import child_env, strip_escapes

    ready = tmp_path / "ready.json"
    done, errors = threading.Event(), []
    driver = threading.Thread(target=_drive, args=(ready, done, errors), daemon=True)
    driver.start()
    sink = shlex.join(
        [sys.executable, "-m", "mailctl", "sink", "--listen", "127.0.0.1:0",
         "--ready-file", str(ready), "--max-messages", str(2 * BURST)]
    )  # fmt: skip
    # `set -m`: job control, so `&` gives the sink its own process group in the background.
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execve("/bin/bash", ["bash", "-c", f"set -m; {sink} & wait $!"], child_env())
        finally:
            os._exit(127)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            readable, _, _ = select.select([fd], [], [], 0.2)
            if readable:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the terminal closed with the last process on it
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif os.waitpid(pid, os.WNOHANG) != (0, 0):
                pid = 0
                break
    finally:
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
    driver.join(timeout=30)
    assert not errors, errors
    screen = strip_escapes(b"".join(chunks))
    assert "mailctl sink: listening on" in screen, screen
    assert "mailctl sink: stopped" in screen, screen
    assert "msg/s now" not in screen, screen
