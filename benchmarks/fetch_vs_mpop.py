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

import sys
from pathlib import Path

from fetchbench import Bench, Mailbox, Run, compare, count_files, run_child


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
"--maildir", str(dest),
    ]  # fmt: skip


def run_mpop(bench: Bench) -> Run:
    dest = bench.dest("mpop")
    for sub in ("tmp", "new", "cur"):
        (dest / sub).mkdir()
    (bench.work / "uidls").unlink(missing_ok=True)
    config = mpop_config(bench.work, bench.port, bench.ca, bench.box, dest)
    run = run_child(["mpop", "-q", "-C", str(config), "bench"])
    got = count_files(dest)
    assert got == bench.box.count, f"mpop wrote {got} of {bench.box.count} messages"
    return run


def main() -> None:
    compare(
        protocol="pop3",
        peer="mpop",
        run_peer=run_mpop,
        cli_argv=cli_argv,
        baselines={"poplib loop": "poplib"},
        baselines_help="also a plain poplib loop",
        title="POP3S -> Maildir on /dev/shm, fsync on",
        cli_mode="mailctl fetch --pop3 (CLI)",
    )


if __name__ == "__main__":
    main()
