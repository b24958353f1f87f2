"""mailctl's IMAP body fetch against mbsync (isync), same Dovecot, same mailbox, same run.

Run: python benchmarks/fetch_vs_mbsync.py [--rounds 5] [--messages 5000] [--baselines]
     [--cli] [--rss]

Seeds `--messages` messages of ~10 KB (6-14 KB) into the Dovecot fixture
(tests/servers/dovecot.py, its Maildirs on /dev/shm), then per round, in alternating
order, into a fresh Maildir on /dev/shm each time:
- mbsync: IMAPS, `Sync Pull`, `FSync yes` (its default), a new sync state each round;
- mailctl: by default the engine loop (ImapSession.open over IMAPS, select, UID SEARCH,
  fetch_bodies -> store.maildir.Maildir.deliver, which fsyncs each file and new/), in a
  child process, so Python start-up counts as mbsync's does; with `--cli`,
  `python -m mailctl fetch ... --maildir DIR` instead (once `mailctl fetch` exists);
- with `--baselines`, the plain imapclient batch-FETCH loop and raw imaplib (what the
  issue measured: ~2,600 and ~4,600 msg/s) into the same kind of Maildir.
Every Maildir is checked to hold `--messages` files. Prints each program's msg/s per round
(wall clock from spawn to exit), the medians and the ratio to mbsync (target >= 1), and
with `--rss` mailctl's peak RSS for the mailbox and a 4x mailbox (it must stay flat).
Everything shares this machine's 2 cores with Dovecot: the load average is printed.
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


def mbsync_config(folder: Path, port: int, ca: Path, box: Mailbox, dest: Path) -> Path:
    config = folder / "mbsyncrc"
    config.write_text(
        f"""FSync yes

IMAPAccount bench
Host localhost
Port {port}
User {box.user}
Pass "{box.password}"
SSLType IMAPS
CertificateFile {ca}

IMAPStore remote
Account bench

MaildirStore local
Path {dest}/
Inbox {dest}/INBOX

Channel bench
Far :remote:
Near :local:
Patterns INBOX
Sync Pull
Create Near
Expunge None
SyncState *
"""
    )
    config.chmod(0o600)
    return config


def cli_argv(port: int, ca: Path, box: Mailbox, dest: Path) -> list[str]:
    return [
        sys.executable, "-m", "mailctl", "-q", "fetch", "--server", f"127.0.0.1:{port}",
        "--tls", "--ca-file", str(ca), "--user", box.user,
        "--password-command", f"printf %s '{box.password}'", "--maildir", str(dest),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--baselines", action="store_true", help="also imapclient and imaplib")
    parser.add_argument("--cli", action="store_true", help="time `mailctl fetch`, not the engine")
    parser.add_argument("--rss", action="store_true", help="peak RSS at 1x and 4x the mailbox")
    args = parser.parse_args()
    print(f"before: {load()}")
    server = start_server()
    try:
        port = server.imaps_port  # type: ignore[attr-defined]
        ca = server.ca_pem  # type: ignore[attr-defined]
        box = seed(server, args.messages)
        print(f"seeded {box.count} messages, {box.octets / box.count / 1024:.1f} KiB average")
        work = fresh_dir("mailctl-bench-imap")

        def mbsync() -> float:
            dest = fresh_dir("mailctl-bench-imap/mbsync")
            config = mbsync_config(work, port, ca, box, dest)
            run = run_child(["mbsync", "-q", "-c", str(config), "bench"])
            assert count_files(dest / "INBOX") == box.count, "mbsync fetched the wrong count"
            cpu["mbsync"].append(run.cpu_seconds)
            return box.count / run.seconds

        def ours(variant: str) -> float:
            dest = fresh_dir(f"mailctl-bench-imap/{variant}")
            argv = (
                cli_argv(port, ca, box, dest)
                if variant == "mailctl" and args.cli
                else engine_argv(variant, "imap", port, ca, box, dest)
            )
            run = run_child(argv)
            got = count_files(dest)
            assert got == box.count, f"{variant} wrote {got} of {box.count} messages"
            cpu[names[variant]].append(run.cpu_seconds)
            if run.inner_seconds and variant == "mailctl" and not args.cli:
                inner["mailctl"].append(box.count / run.inner_seconds)
            return box.count / run.seconds

        names = {"mailctl": "mailctl", "imapclient": "imapclient loop", "imaplib": "raw imaplib"}
        cpu: dict[str, list[float]] = {name: [] for name in ["mbsync", *names.values()]}
        inner: dict[str, list[float]] = {"mailctl": []}
        programs = {"mbsync": mbsync, "mailctl": lambda: ours("mailctl")}
        if args.baselines:
            programs["imapclient loop"] = lambda: ours("imapclient")
            programs["raw imaplib"] = lambda: ours("imaplib")
        mbsync()  # warm-up: Dovecot builds its index, moves new/ to cur/
        for values in [*cpu.values(), *inner.values()]:
            values.clear()
        rates: dict[str, list[float]] = {name: [] for name in programs}
        for round_number in range(args.rounds):
            order = list(programs)
            if round_number % 2:
                order.reverse()
            for name in order:
                rates[name].append(programs[name]())
        mode = "mailctl fetch (CLI)" if args.cli else "mailctl engine"
        title = f"IMAPS -> Maildir on /dev/shm, fsync on ({mode})"
        report(title, rates, "mbsync", box.count, cpu, inner)
        if args.rss:
            big = seed(server, 4 * args.messages, seed_value=11)
            peaks = []
            for mailbox in (box, big):
                dest = fresh_dir("mailctl-bench-imap/rss")
                peaks.append(run_child(engine_argv("mailctl", "imap", port, ca, mailbox, dest)))
            print(
                f"\npeak RSS of mailctl: {peaks[0].max_rss_mib:.1f} MiB for {box.count} messages, "
                f"{peaks[1].max_rss_mib:.1f} MiB for {big.count} "
                f"(ratio {peaks[1].max_rss_mib / peaks[0].max_rss_mib:.2f})"
            )
    finally:
        stop_server(server)
        shutil.rmtree(SHM / "mailctl-bench-imap", ignore_errors=True)
        print(f"after: {load()}")


if __name__ == "__main__":
    main()
