"""What the fetch benchmarks share: a seeded Dovecot, timed child runs, medians.

The Dovecot is tests/servers/dovecot.py's, started with TMPDIR=/dev/shm so its Maildirs
(and indexes) are on tmpfs like the destinations: the benchmark measures the programs,
not ext4's file creation (~0.75 ms a file here, FACTS.md). Every program under test runs
as a child process and is timed by wall clock from spawn to exit (interpreter or binary
start-up included), its peak RSS from wait4.

`python benchmarks/fetchbench.py engine ...` is the mailctl side of a round (and the
library baselines): one child per run, printing a JSON line with what it did.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
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

WORDS = (
    "mail delivery message folder server client batch fetch quarterly report meeting notes "
    "invoice attached please review the draft before friday thanks regards team update "
    "project schedule budget approval customer support ticket release"
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
    inner_seconds: float | None = None  # what a mailctl child timed itself (no start-up)
    count: int | None = None


def run_child(argv: Sequence[str], *, timeout: float = 600.0) -> Run:
    """Run `argv`; wall time and its own peak RSS (wait4). Exits the benchmark on failure."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
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
        raise SystemExit(f"{argv[0]} failed ({process.returncode}):\n{stdout[-2000:]}\n{stderr[-2000:]}")
    run = Run(seconds=seconds, max_rss_mib=usage.ru_maxrss / 1024)
    lines = stdout.strip().splitlines()
    if lines and lines[-1].startswith("{"):
        facts = json.loads(lines[-1])
        run.inner_seconds = facts.get("seconds")
        run.count = facts.get("count")
    return run


def fresh_dir(name: str) -> Path:
    path = SHM / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def count_files(maildir: Path) -> int:
    return sum(len(os.listdir(maildir / sub)) for sub in ("new", "cur") if (maildir / sub).is_dir())


def engine_argv(variant: str, protocol: str, port: int, ca: Path, box: Mailbox, dest: Path) -> list[str]:
    return [
        sys.executable, __file__, "engine", "--variant", variant, "--protocol", protocol,
        "--port", str(port), "--ca", str(ca), "--user", box.user, "--password", box.password,
        "--dest", str(dest),
    ]  # fmt: skip


def report(title: str, rates: dict[str, list[float]], peer: str, count: int) -> None:
    """Medians per program over the rounds, and each one's ratio to `peer`."""
    print(f"\n{title}: {count} messages, msg/s per round (wall clock, start-up included)")
    peer_median = statistics.median(rates[peer])
    for name, values in rates.items():
        median = statistics.median(values)
        shown = " ".join(f"{value:7.0f}" for value in values)
        ratio = "" if name == peer else f"  ratio vs {peer}: {median / peer_median:.2f}"
        print(f"  {name:22s} median {median:7.0f}  [{shown}]{ratio}")


def load() -> str:
    one, five, _fifteen = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


# -- the child side: one fetch run --------------------------------------------------------


def _engine(args: argparse.Namespace) -> None:
    from mailctl.store.maildir import Maildir

    maildir = Maildir(Path(args.dest))
    started = time.perf_counter()
    run: Callable[[argparse.Namespace, Maildir], int] = ENGINES[(args.protocol, args.variant)]
    count = run(args, maildir)
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"count": count, "seconds": seconds, "max_rss_mib": rss}))


def _limits() -> object:
    """Read limits sized for a big folder: the UID SEARCH line and LIST/UIDL lines grow
    with it (what `mailctl fetch` sizes from EXISTS/STAT)."""
    from mailctl.protocols.limits import MIB, ReadLimits

    return ReadLimits(max_line=4 * MIB, max_response=64 * MIB, max_response_lines=1_000_000)


def _settings(args: argparse.Namespace) -> object:
    from mailctl.models import Security, ServerSettings

    return ServerSettings(
        host="127.0.0.1",
        port=args.port,
        security=Security.TLS,
        username=args.user,
        ca_file=Path(args.ca),
    )


def _context(args: argparse.Namespace) -> object:
    import ssl

    return ssl.create_default_context(cafile=args.ca)


def imap_mailctl(args: argparse.Namespace, maildir: object) -> int:
    from mailctl.protocols.imap import ImapSession

    count = 0
    with ImapSession.open(
        _settings(args),  # type: ignore[arg-type]
        secret=lambda: args.password,
        limits=_limits(),  # type: ignore[arg-type]
    ) as session:
        session.select("INBOX")
        for message in session.fetch_bodies(session.uids()):
            maildir.deliver(message.data)  # type: ignore[attr-defined]
            count += 1
    return count


def imap_imapclient(args: argparse.Namespace, maildir: object) -> int:
    """The plain imapclient loop the issue quotes (~2,600 msg/s): batch FETCH of 500."""
    from imapclient import IMAPClient

    count = 0
    with IMAPClient("127.0.0.1", port=args.port, ssl=True, ssl_context=_context(args)) as client:
        client.login(args.user, args.password)
        client.select_folder("INBOX", readonly=True)
        uids = client.search("ALL")
        for start in range(0, len(uids), 500):
            answer = client.fetch(uids[start : start + 500], [b"BODY.PEEK[]"])
            for item in answer.values():
                maildir.deliver(item[b"BODY[]"])  # type: ignore[attr-defined]
                count += 1
    return count


def imap_imaplib(args: argparse.Namespace, maildir: object) -> int:
    """Raw imaplib (~4,600 msg/s in the issue): UID FETCH per batch of 500."""
    import imaplib

    count = 0
    client = imaplib.IMAP4_SSL("127.0.0.1", args.port, ssl_context=_context(args))  # type: ignore[arg-type]
    client.login(args.user, args.password)
    client.select("INBOX", readonly=True)
    _status, data = client.uid("SEARCH", "ALL")
    uids = data[0].split()
    for start in range(0, len(uids), 500):
        batch = b",".join(uids[start : start + 500]).decode()
        _status, items = client.uid("FETCH", batch, "(BODY.PEEK[])")
        for item in items:
            if isinstance(item, tuple):
                maildir.deliver(item[1])  # type: ignore[attr-defined]
                count += 1
    client.logout()
    return count


def pop3_mailctl(args: argparse.Namespace, maildir: object) -> int:
    from mailctl.protocols.pop3 import Pop3Session

    count = 0
    with Pop3Session.open(
        _settings(args),  # type: ignore[arg-type]
        secret=lambda: args.password,
        limits=_limits(),  # type: ignore[arg-type]
    ) as session:
        total, _size = session.stat()
        for message in session.retrieve(range(1, total + 1)):
            maildir.deliver(message.data)  # type: ignore[attr-defined]
            count += 1
    return count


def pop3_poplib(args: argparse.Namespace, maildir: object) -> int:
    """The plain poplib RETR loop the issue quotes (~1,600 msg/s)."""
    import poplib

    client = poplib.POP3_SSL("127.0.0.1", args.port, context=_context(args))  # type: ignore[arg-type]
    client.user(args.user)
    client.pass_(args.password)
    total, _size = client.stat()
    for number in range(1, total + 1):
        _response, lines, _octets = client.retr(number)
        maildir.deliver(b"\r\n".join(lines) + b"\r\n")  # type: ignore[attr-defined]
    client.quit()
    return total


ENGINES: dict[tuple[str, str], Callable[[argparse.Namespace, object], int]] = {
    ("imap", "mailctl"): imap_mailctl,
    ("imap", "imapclient"): imap_imapclient,
    ("imap", "imaplib"): imap_imaplib,
    ("pop3", "mailctl"): pop3_mailctl,
    ("pop3", "poplib"): pop3_poplib,
}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    engine = sub.add_parser("engine")
    engine.add_argument("--variant", required=True)
    engine.add_argument("--protocol", choices=["imap", "pop3"], required=True)
    for name in ("--port", "--ca", "--user", "--password", "--dest"):
        engine.add_argument(name, required=True)
    parsed = parser.parse_args()
    parsed.port = int(parsed.port)
    _engine(parsed)
