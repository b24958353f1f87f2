"""One fetch run of the benchmarks (a child process): mailctl's engine loop or a library
baseline, into a Maildir; prints one JSON line (count, seconds, peak RSS).

Kept apart from fetchbench.py so that a run imports only what the program it stands for
would: start-up counts, as it does for mbsync and mpop.

Run: python benchmarks/fetch_engine.py --variant mailctl --protocol imap --port N --ca CA
     --user U --password P --dest MAILDIR
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


# What each run imports, loaded before its clock starts: "seconds" in the JSON line is
# from the session's open to the last message (the wall clock seen by the parent adds the
# interpreter start-up and these imports).
PRELOAD = {
    ("imap", "mailctl"): ("mailctl.protocols.imap", "mailctl.protocols.imap.wire",
                          "mailctl.protocols.imap.bulk"),
    ("imap", "imapclient"): ("imapclient",),
    ("imap", "imaplib"): ("imaplib",),
    ("pop3", "mailctl"): ("mailctl.protocols.pop3", "mailctl.protocols.pop3.bulk"),
    ("pop3", "poplib"): ("poplib",),
}  # fmt: skip


def _engine(args: argparse.Namespace) -> None:
    import importlib

    from mailctl.store.maildir import Maildir

    for module in PRELOAD[(args.protocol, args.variant)]:
        importlib.import_module(module)
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
    parser.add_argument("--variant", required=True)
    parser.add_argument("--protocol", choices=["imap", "pop3"], required=True)
    for name in ("--port", "--ca", "--user", "--password", "--dest"):
        parser.add_argument(name, required=True)
    parsed = parser.parse_args()
    parsed.port = int(parsed.port)
    _engine(parsed)
