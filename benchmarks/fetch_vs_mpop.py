"""mailctl's POP3 retrieval against mpop, same Dovecot, same mailbox, same run.

Run: python benchmarks/fetch_vs_mpop.py [--rounds 5] [--messages 5000] [--baselines]
     [--cli] [--rss]

Seeds `--messages` messages of ~10 KB (6-14 KB, some dot-led lines) into the Dovecot
fixture (tests/servers/dovecot.py, its Maildirs on /dev/shm), then per round, in
alternating order, into a fresh Maildir on /dev/shm:
- mpop: POP3S, `keep on`, `only_new off`, a new UIDL file each round, delivery to the
  Maildir (mpop writes each file and syncs it before the rename);
- mailctl: by default the engine loop (Pop3Session.open over POP3S, STAT, retrieve ->
  store.maildir.Maildir.deliver, which fsyncs each file and new/) in a child process;
  with `--cli`, `python -m mailctl fetch --pop3 ... --maildir DIR` (once it exists);
- with `--baselines`, the plain poplib RETR loop (the issue measured ~1,600 msg/s).
Every Maildir is checked to hold `--messages` files. Prints msg/s per round (wall clock
from spawn to exit), medians, CPU per message and the ratio to mpop (target >= 0.5);
with `--rss` mailctl's peak RSS for the mailbox and a 4x mailbox (it must stay flat).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from fetchbench import (
    SHM,
    Mailbox,
    count_files,
    engine_argv,
    fresh_dir,
    load,
    report,
    run_child,
    seed,
    start_server,
    stop_server,
)


def mpop_config(folder: Path, port: int, ca: Path, box: Mailbox, dest: Path) -> Path:
    config = folder / "mpoprc"
    config.write_text(
        f"""defaults
tls on
tls_starttls off
tls_trust_file {ca}
pipelining auto

account bench
host localhost
port {port}
user {box.user}
password {box.password}
auth user
delivery maildir {dest}
keep on
only_new off
uidls_file {folder}/uidls
"""
    )
    config.chmod(0o600)
    return config


def cli_argv(port: int, ca: Path, box: Mailbox, dest: Path) -> list[str]:
    return [
        sys.executable, "-m", "mailctl", "-q", "fetch", "--pop3", "--server",
        f"127.0.0.1:{port}", "--tls", "--ca-file", str(ca), "--user", box.user,
        "--password-command", f"printf %s '{box.password}'", "--maildir", str(dest),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--baselines", action="store_true", help="also a plain poplib loop")
    parser.add_argument("--cli", action="store_true", help="time `mailctl fetch`, not the engine")
    parser.add_argument("--rss", action="store_true", help="peak RSS at 1x and 4x the mailbox")
    args = parser.parse_args()
    print(f"before: {load()}")
    server = start_server()
    try:
        port = server.pop3s_port  # type: ignore[attr-defined]
        ca = server.ca_pem  # type: ignore[attr-defined]
        box = seed(server, args.messages)
        print(f"seeded {box.count} messages, {box.octets / box.count / 1024:.1f} KiB average")
        work = fresh_dir("mailctl-bench-pop3")
        cpu: dict[str, list[float]] = {"mpop": [], "mailctl": [], "poplib loop": []}
        inner: dict[str, list[float]] = {"mailctl": []}

        def mpop() -> float:
            dest = fresh_dir("mailctl-bench-pop3/mpop")
            for sub in ("tmp", "new", "cur"):
                (dest / sub).mkdir()
            (work / "uidls").unlink(missing_ok=True)
            config = mpop_config(work, port, ca, box, dest)
            run = run_child(["mpop", "-q", "-C", str(config), "bench"])
            got = count_files(dest)
            assert got == box.count, f"mpop wrote {got} of {box.count} messages"
            cpu["mpop"].append(run.cpu_seconds)
            return box.count / run.seconds

        def ours(variant: str, name: str) -> float:
            dest = fresh_dir(f"mailctl-bench-pop3/{variant}")
            argv = (
                cli_argv(port, ca, box, dest)
                if variant == "mailctl" and args.cli
                else engine_argv(variant, "pop3", port, ca, box, dest)
            )
            run = run_child(argv)
            got = count_files(dest)
            assert got == box.count, f"{variant} wrote {got} of {box.count} messages"
            cpu[name].append(run.cpu_seconds)
            if run.inner_seconds and name == "mailctl" and not args.cli:
                inner[name].append(box.count / run.inner_seconds)
            return box.count / run.seconds

        programs = {"mpop": mpop, "mailctl": lambda: ours("mailctl", "mailctl")}
        if args.baselines:
            programs["poplib loop"] = lambda: ours("poplib", "poplib loop")
        mpop()  # warm-up: Dovecot builds its index
        for values in [*cpu.values(), *inner.values()]:
            values.clear()
        rates: dict[str, list[float]] = {name: [] for name in programs}
        for round_number in range(args.rounds):
            order = list(programs)
            if round_number % 2:
                order.reverse()
            for name in order:
                rates[name].append(programs[name]())
        mode = "mailctl fetch --pop3 (CLI)" if args.cli else "mailctl engine"
        title = f"POP3S -> Maildir on /dev/shm, fsync on ({mode})"
        report(title, rates, "mpop", box.count, cpu, inner)
        if args.rss:
            big = seed(server, 4 * args.messages, seed_value=11)
            peaks = []
            for mailbox in (box, big):
                dest = fresh_dir("mailctl-bench-pop3/rss")
                peaks.append(run_child(engine_argv("mailctl", "pop3", port, ca, mailbox, dest)))
            print(
                f"\npeak RSS of mailctl: {peaks[0].max_rss_mib:.1f} MiB for {box.count} messages, "
                f"{peaks[1].max_rss_mib:.1f} MiB for {big.count} "
                f"(ratio {peaks[1].max_rss_mib / peaks[0].max_rss_mib:.2f})"
            )
    finally:
        stop_server(server)
        shutil.rmtree(SHM / "mailctl-bench-pop3", ignore_errors=True)
        print(f"after: {load()}")


if __name__ == "__main__":
    main()
