"""Throughput of `mailctl sink` against aiosmtpd and Postfix's smtp-sink, loaded by smtp-source.

Issue 3's target: `smtp-source -d -s 10 -m 20000 -l 2000` reaches at least 5x the rate against
`mailctl sink` that it reaches against an aiosmtpd sink, and at least half the rate it reaches
against Postfix's `smtp-sink`. Every server runs in its own process on 127.0.0.1; the time is
the wall clock of smtp-source; each row is the median of --runs runs, interleaved so that
machine noise hits every row alike. Client and server share the machine's cores.

    python benchmarks/sink_throughput.py                 # the issue's workload, 3 runs
    python benchmarks/sink_throughput.py -m 5000 --runs 1   # a quick look
    python benchmarks/sink_throughput.py --loops auto,asyncio  # mailctl with and without uvloop
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"

AIOSMTPD_SERVER = textwrap.dedent(
    """
    import sys, threading
    from aiosmtpd.controller import Controller

    class Discard:
        async def handle_DATA(self, server, session, envelope):
            return "250 2.0.0 Ok: discarded"

    controller = Controller(Discard(), hostname="127.0.0.1", port=int(sys.argv[1]))
    controller.start()
    threading.Event().wait()
    """
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def mailctl_sink(loop: str) -> Iterator[int]:
    folder = Path(tempfile.mkdtemp(prefix="sink-bench-"))
    ready = folder / "ready.json"
    command = [sys.executable, "-m", "mailctl", "sink", "--listen", "127.0.0.1:0"]
    command += ["--ready-file", str(ready), "--quiet", "--loop", loop]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mailctl sink did not start (--loop {loop})")
            time.sleep(0.02)
        yield int(json.loads(ready.read_text())["port"])
    finally:
        stop(process)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def aiosmtpd_sink() -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", AIOSMTPD_SERVER, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, process)
        yield port
    finally:
        stop(process)


@contextlib.contextmanager
def postfix_sink() -> Iterator[int]:
    port = free_port()
    command = [SMTP_SINK]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]  # smtp-sink refuses to run as root
    command += [f"127.0.0.1:{port}", "1000"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, process)
        yield port
    finally:
        stop(process)


def load(port: int, messages: int, sessions: int, size: int) -> float:
    """Run smtp-source once; return messages per second (its wall clock)."""
    command = [SMTP_SOURCE, "-d", "-s", str(sessions), "-m", str(messages), "-l", str(size)]
    command.append(f"127.0.0.1:{port}")
    started = time.perf_counter()
    # smtp-source prints a counter per message: never let it reach a terminal.
    done = subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"smtp-source failed with status {done.returncode}")
    return messages / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--messages", type=int, default=20000)
    parser.add_argument("-s", "--sessions", type=int, default=10)
    parser.add_argument("-l", "--size", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--loops", default="auto", help="mailctl sink --loop values, comma separated"
    )
    args = parser.parse_args()

    if not Path(SMTP_SOURCE).exists():
        print("smtp-source is not installed (Postfix): nothing can generate the load; see")
        print("FACTS.md for installing Postfix's tools without configuring Postfix.")
        return 2
    makers: dict[str, Callable[[], contextlib.AbstractContextManager[int]]] = {}
    for loop in args.loops.split(","):
        makers[f"mailctl sink (--loop {loop})"] = functools.partial(mailctl_sink, loop)
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        print("skipping aiosmtpd: not installed (pip install aiosmtpd)")
    else:
        makers["aiosmtpd (discarding handler)"] = aiosmtpd_sink
    if Path(SMTP_SINK).exists():
        makers["postfix smtp-sink"] = postfix_sink
    else:
        print("skipping Postfix smtp-sink: not installed")

    workload = f"smtp-source -d -s {args.sessions} -m {args.messages} -l {args.size}"
    print(f"workload: {workload} 127.0.0.1:PORT, median of {args.runs} run(s), loopback")
    rates: dict[str, list[float]] = {name: [] for name in makers}
    for run in range(args.runs):
        for name, make in makers.items():
            with make() as port:
                rate = load(port, args.messages, args.sessions, args.size)
            rates[name].append(rate)
            print(f"  run {run + 1}: {name:32s} {rate:10,.0f} msg/s", flush=True)

    medians = {name: statistics.median(values) for name, values in rates.items()}
    print()
    print(f"{'server':34s} {'msg/s (median)':>15s}")
    for name, value in medians.items():
        print(f"{name:34s} {value:15,.0f}")
    print()
    peers = {"aiosmtpd (discarding handler)": 5.0, "postfix smtp-sink": 0.5}
    for ours in (name for name in medians if name.startswith("mailctl")):
        for peer, target in peers.items():
            if peer in medians:
                ratio = medians[ours] / medians[peer]
                verdict = "meets" if ratio >= target else "MISSES"
                print(
                    f"{ours} / {peer}: {ratio:.2f}x (target >= {target:g}x: {verdict})",
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
