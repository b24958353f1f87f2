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

import sys
from pathlib import Path

from fetchbench import Bench, Mailbox, Run, compare, count_files, run_child


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
"--maildir", str(dest),
    ]  # fmt: skip


def run_mbsync(bench: Bench) -> Run:
    dest = bench.dest("mbsync")
    config = mbsync_config(bench.work, bench.port, bench.ca, bench.box, dest)
    run = run_child(["mbsync", "-q", "-c", str(config), "bench"])
    assert count_files(dest / "INBOX") == bench.box.count, "mbsync fetched the wrong count"
    return run


def main() -> None:
    compare(
        protocol="imap",
        peer="mbsync",
        run_peer=run_mbsync,
        cli_argv=cli_argv,
        baselines={"imapclient loop": "imapclient", "raw imaplib": "imaplib"},
        baselines_help="also imapclient and imaplib",
        title="IMAPS -> Maildir on /dev/shm, fsync on",
        cli_mode="mailctl fetch (CLI)",
    )


if __name__ == "__main__":
    main()
