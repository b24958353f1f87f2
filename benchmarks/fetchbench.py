"""What the fetch benchmarks share: a seeded Dovecot, timed child runs, medians.

The Dovecot is tests/servers/dovecot.py's, started with TMPDIR=/dev/shm so its Maildirs
(and indexes) are on tmpfs like the destinations: the benchmark measures the programs,
not ext4's file creation (~0.75 ms a file here, FACTS.md). Every program under test runs
as a child process and is timed by wall clock from spawn to exit (interpreter or binary
start-up included), its peak RSS from wait4.

benchmarks/fetch_engine.py is the mailctl side of a round (and the library baselines):
one child per run, printing a JSON line with what it did.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHM = Path("/dev/shm")
sys.path.insert(0, str(ROOT / "tests"))  # servers.dovecot
sys.path.insert(0, str(ROOT))

WORDS = (  # noqa: SIM905  (one readable line of words)
    "mail delivery message folder server client batch fetch quarterly report meeting "
    "notes invoice attached please review the draft before friday thanks regards team "
    "update project schedule budget approval customer support ticket release"
).split()


def make_message(index: int, rng: random.Random, *, average: int = 10_000) -> bytes:
    """A plain-text message of about `average` octets (uniform 0.6x..1.4x), CRLF lines."""
    target = int(average * rng.uniform(0.6, 1.4))
    head = (
        f"Return-Path: <sender{index % 97}@example.org>\r\n"
        f"From: Sender {index % 97} <sender{index % 97}@example.org>\r\n"
        f"To: Alice <alice@example.net>\r\n"
        f"Subject: benchmark message {index}: {' '.join(rng.choices(WORDS, k=5))}\r\n"
        f"Date: Fri, 27 Nov 2026 12:{index % 60:02d}:00 +0000\r\n"
        f"Message-ID: <bench-{index}@example.org>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode()
    lines = [head]
    size = len(head)
    while size < target:
        line = (" ".join(rng.choices(WORDS, k=11)) + "\r\n").encode()
        if rng.random() < 0.02:
            line = b"." + line  # POP3 must stuff these
        lines.append(line)
        size += len(line)
    return b"".join(lines)


@dataclass
class Mailbox:
    user: str
    password: str
    count: int
    octets: int


def start_server() -> object:
    """A TLS Dovecot with its temp dir on tmpfs."""
    os.environ["TMPDIR"] = str(SHM)
    from servers.dovecot import start_dovecot

    return start_dovecot(tls=True)


def stop_server(server: object) -> None:
    from servers.dovecot import stop_dovecot

    stop_dovecot(server)  # type: ignore[arg-type]


def seed(server: object, count: int, *, seed_value: int = 10) -> Mailbox:
    """A new user with `count` messages of ~10 KB in INBOX (written straight into new/)."""
    rng = random.Random(seed_value)
    user = server.add_user()  # type: ignore[attr-defined]
    octets = 0
    for index in range(count):
        data = make_message(index, rng)
        server.seed(data, user=user.name)  # type: ignore[attr-defined]
        octets += len(data)
    return Mailbox(user.name, user.password, count, octets)


@dataclass
class Run:
    seconds: float
    max_rss_mib: float
    cpu_seconds: float = 0.0  # user + system time of the program (not the server's)
    inner_seconds: float | None = None  # what a mailctl child timed itself (no start-up)
    count: int | None = None


def run_child(argv: Sequence[str], *, timeout: float = 600.0, password: str | None = None) -> Run:
    """Run `argv`; wall time and its own peak RSS (wait4). Exits the benchmark on failure.

    `password`: given to `mailctl fetch` in $MAILCTL_PASSWORD, its headless way, as the
    peers read theirs from their config file (a password command would time a shell)."""
    env = {**os.environ, "MAILCTL_PASSWORD": password} if password is not None else None
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                raise SystemExit(f"{argv[0]} did not finish within {timeout:g} s")
            time.sleep(0.002)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if process.returncode != 0:
        raise SystemExit(
            f"{argv[0]} failed ({process.returncode}):\n{stdout[-2000:]}\n{stderr[-2000:]}"
        )
    run = Run(
        seconds=seconds,
        max_rss_mib=usage.ru_maxrss / 1024,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
    )
    lines = stdout.strip().splitlines()
    if lines and lines[-1].startswith("{"):
        facts = json.loads(lines[-1])
        run.inner_seconds = facts.get("seconds")
        run.count = facts.get("count")
    return run


def compile_mailctl() -> None:
    """Write mailctl's bytecode before timing it, as `pip install` does: from a checkout
    (or with PYTHONDONTWRITEBYTECODE set) every run would compile the changed sources
    again, ~15 ms no installed mailctl spends."""
    import compileall

    compileall.compile_dir(str(ROOT / "mailctl"), quiet=1)


def fresh_dir(name: str) -> Path:
    path = SHM / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def count_files(maildir: Path) -> int:
    return sum(len(os.listdir(maildir / sub)) for sub in ("new", "cur") if (maildir / sub).is_dir())


def engine_argv(
    variant: str, protocol: str, port: int, ca: Path, box: Mailbox, dest: Path
) -> list[str]:
    return [
        sys.executable, str(Path(__file__).with_name("fetch_engine.py")), "--variant", variant,
        "--protocol", protocol,
        "--port", str(port), "--ca", str(ca), "--user", box.user, "--password", box.password,
        "--dest", str(dest),
    ]  # fmt: skip


def report(
    title: str, rates: dict[str, list[float]], peer: str, count: int,
    cpu: dict[str, list[float]] | None = None, inner: dict[str, list[float]] | None = None,
) -> None:  # fmt: skip
    """Medians per program over the rounds, each one's ratio to `peer`, and its CPU time
    per message (user + system, the server's not included: load-independent). `inner`:
    the rates a Python child timed itself, from session open to the last message (no
    interpreter start-up or imports), printed apart: the headline is the wall clock."""
    print(f"\n{title}: {count} messages, msg/s per round (wall clock, start-up included)")
    peer_median = statistics.median(rates[peer])
    for name, values in rates.items():
        median = statistics.median(values)
        shown = " ".join(f"{value:6.0f}" for value in values)
        ratio = "" if name == peer else f"  ratio {median / peer_median:.2f}"
        used = ""
        if cpu and cpu.get(name):
            used = f"  cpu {statistics.median(cpu[name]) / count * 1e6:5.0f} us/msg"
        print(f"  {name:16s} median {median:6.0f}  [{shown}]{used}{ratio}")
    for name, values in (inner or {}).items():
        if values:
            median = statistics.median(values)
            print(
                f"  ({name} from session open to the last message, without start-up: median "
                f"{median:6.0f} msg/s, {median / peer_median:.2f} of {peer}'s wall-clock rate)"
            )


def load() -> str:
    one, five, _fifteen = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


@dataclass
class Bench:
    """One comparison's setup: what the peer's runner and mailctl's runs share."""

    args: argparse.Namespace
    protocol: str  # "imap" or "pop3", for fetch_engine.py
    port: int
    ca: Path
    box: Mailbox
    work: Path  # SHM / "mailctl-bench-<protocol>", removed at the end
    cpu: dict[str, list[float]]  # CPU seconds per run, per program
    inner: dict[str, list[float]]  # rates mailctl's engine child timed itself

    def dest(self, name: str) -> Path:
        return fresh_dir(f"{self.work.name}/{name}")


def compare(
    *,
    protocol: str,
    peer: str,
    run_peer: Callable[[Bench], Run],
    cli_argv: Callable[[int, Path, Mailbox, Path], list[str]],
    baselines: dict[str, str],
    baselines_help: str,
    title: str,
    cli_mode: str,
) -> None:
    """A benchmark's main: seed Dovecot, time `peer` (run_peer checks its own count) against
    mailctl (the engine child, or `cli_argv` with --cli) and the `baselines` (shown name ->
    fetch_engine.py variant) in alternating order per round, report, and with --rss
    mailctl's peak RSS at 1x and 4x the mailbox (it must stay flat)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--baselines", action="store_true", help=baselines_help)
    parser.add_argument("--cli", action="store_true", help="time `mailctl fetch`, not the engine")
    parser.add_argument("--rss", action="store_true", help="peak RSS at 1x and 4x the mailbox")
    args = parser.parse_args()
    print(f"before: {load()}")
    compile_mailctl()
    server = start_server()
    work = SHM / f"mailctl-bench-{protocol}"
    try:
        port = getattr(server, f"{protocol}s_port")
        ca = server.ca_pem  # type: ignore[attr-defined]
        box = seed(server, args.messages)
        print(f"seeded {box.count} messages, {box.octets / box.count / 1024:.1f} KiB average")
        names = {"mailctl": "mailctl", **baselines}
        bench = Bench(
            args, protocol, port, ca, box, fresh_dir(work.name),
            cpu={name: [] for name in [peer, *names]}, inner={"mailctl": []},
        )  # fmt: skip

        def peer_rate() -> float:
            run = run_peer(bench)
            bench.cpu[peer].append(run.cpu_seconds)
            return box.count / run.seconds

        def ours(name: str) -> float:
            variant = names[name]
            dest = bench.dest(variant)
            cli = variant == "mailctl" and args.cli
            argv = (
                cli_argv(port, ca, box, dest)
                if cli
                else engine_argv(variant, protocol, port, ca, box, dest)
            )
            run = run_child(argv, password=box.password if cli else None)
            got = count_files(dest)
            assert got == box.count, f"{variant} wrote {got} of {box.count} messages"
            bench.cpu[name].append(run.cpu_seconds)
            if run.inner_seconds and variant == "mailctl" and not args.cli:
                bench.inner["mailctl"].append(box.count / run.inner_seconds)
            return box.count / run.seconds

        programs: dict[str, Callable[[], float]] = {peer: peer_rate}
        for name in names if args.baselines else ["mailctl"]:
            programs[name] = functools.partial(ours, name)
        peer_rate()  # warm-up: Dovecot builds its index (and moves new/ to cur/ for IMAP)
        for values in [*bench.cpu.values(), *bench.inner.values()]:
            values.clear()
        rates: dict[str, list[float]] = {name: [] for name in programs}
        for round_number in range(args.rounds):
            order = list(programs)
            if round_number % 2:
                order.reverse()
            for name in order:
                rates[name].append(programs[name]())
        mode = cli_mode if args.cli else "mailctl engine"
        report(f"{title} ({mode})", rates, peer, box.count, bench.cpu, bench.inner)
        if args.rss:
            big = seed(server, 4 * args.messages, seed_value=11)
            peaks = []
            for mailbox in (box, big):
                dest = bench.dest("rss")
                argv = (
                    cli_argv(port, ca, mailbox, dest)  # what a user runs, when timing it
                    if args.cli
                    else engine_argv("mailctl", protocol, port, ca, mailbox, dest)
                )
                peaks.append(run_child(argv, password=mailbox.password if args.cli else None))
            print(
                f"\npeak RSS of {mode}: {peaks[0].max_rss_mib:.1f} MiB for {box.count} messages, "
                f"{peaks[1].max_rss_mib:.1f} MiB for {big.count} "
                f"(ratio {peaks[1].max_rss_mib / peaks[0].max_rss_mib:.2f})"
            )
    finally:
        stop_server(server)
        shutil.rmtree(work, ignore_errors=True)
        print(f"after: {load()}")
