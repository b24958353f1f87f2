"""`mailctl fetch`: options -> a FetchRequest -> core.fetch.fetch -> render the FetchResult.

No `from __future__ import annotations` (see cli/send.py): `command` reads the signature
with eval_str=True; names only needed for typing are quoted.
"""

import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mailctl.cli.context import AppContext, command
from mailctl.cli.options import FetchDataTimeoutOpt
from mailctl.cli.output import CommandResult, Output
from mailctl.cli.serverflags import ServerFlags
from mailctl.errors import UsageError
from mailctl.text import clean

if TYPE_CHECKING:
    from collections.abc import Callable

    from mailctl.core.fetch import FetchedMessage, FetchResult

SELECT = "Selection"
WRITE = "Destinations"
CHANGE = "Server changes"


@command("fetch")
def fetch_command(
    app: AppContext,
    server: ServerFlags,
    folder: Annotated[
        str, typer.Option("--folder", help="IMAP folder to fetch from.", rich_help_panel=SELECT)
    ] = "INBOX",
    pop3: Annotated[
        bool,
        typer.Option("--pop3", help="Fetch over POP3 (the account's pop3 block)."),
    ] = False,
    unseen: Annotated[
        bool, typer.Option("--unseen", help="Only messages without \\Seen.", rich_help_panel=SELECT)
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Received on or after DATE (YYYY-MM-DD).", rich_help_panel=SELECT
        ),
    ] = None,
    before: Annotated[
        str | None,
        typer.Option("--before", help="Received before DATE (YYYY-MM-DD).", rich_help_panel=SELECT),
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option("--from", help="From contains TEXT.", rich_help_panel=SELECT),
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="To contains TEXT.", rich_help_panel=SELECT)
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option("--subject", help="Subject contains TEXT.", rich_help_panel=SELECT),
    ] = None,
    text: Annotated[
        str | None,
        typer.Option("--text", help="Headers or body contain TEXT.", rich_help_panel=SELECT),
    ] = None,
    larger: Annotated[
        int | None,
        typer.Option("--larger", help="Larger than N octets.", rich_help_panel=SELECT),
    ] = None,
    smaller: Annotated[
        int | None,
        typer.Option("--smaller", help="Smaller than N octets.", rich_help_panel=SELECT),
    ] = None,
    uid: Annotated[
        str | None,
        typer.Option(
            "--uid",
            help="UID set: N, N:M, N:* or a comma list (POP3: message numbers).",
            rich_help_panel=SELECT,
        ),
    ] = None,
    uidl: Annotated[
        list[str] | None,
        typer.Option(
            "--uidl",
            metavar="ID",
            help="POP3: only the message with this unique-id (UIDL); repeat for more.",
            rich_help_panel=SELECT,
        ),
    ] = None,
    search: Annotated[
        str | None,
        typer.Option(
            "--search", help="A raw IMAP SEARCH expression (ANDed).", rich_help_panel=SELECT
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            help="At most N messages: the newest, or with --new the oldest not yet fetched.",
            rich_help_panel=SELECT,
        ),
    ] = None,
    new: Annotated[
        bool,
        typer.Option(
            "--new",
            help="Only what earlier runs into the same destination did not fetch.",
            rich_help_panel=SELECT,
        ),
    ] = False,
    maildir: Annotated[
        Path | None,
        typer.Option("--maildir", help="Deliver into this Maildir.", rich_help_panel=WRITE),
    ] = None,
    mbox: Annotated[
        Path | None,
        typer.Option("--mbox", help="Append to this mbox (mboxrd).", rich_help_panel=WRITE),
    ] = None,
    eml_dir: Annotated[
        Path | None,
        typer.Option("--eml-dir", help="Write one .eml file each here.", rich_help_panel=WRITE),
    ] = None,
    attachments: Annotated[
        Path | None,
        typer.Option("--attachments", help="Save attachments here.", rich_help_panel=WRITE),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest", help="Append one JSON line per message kept.", rich_help_panel=WRITE
        ),
    ] = None,
    mark_seen: Annotated[
        bool,
        typer.Option("--mark-seen", help="Set \\Seen on what is fetched.", rich_help_panel=CHANGE),
    ] = False,
    delete: Annotated[
        bool,
        typer.Option(
            "--delete",
            help="Delete from the server once kept here (IMAP needs UIDPLUS).",
            rich_help_panel=CHANGE,
        ),
    ] = False,
    move: Annotated[
        str | None,
        typer.Option(
            "--move", help="Move to FOLDER on the server once kept here.", rich_help_panel=CHANGE
        ),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="With --json/--jsonl: the parsed messages too.")
    ] = False,
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="One JSON object per message on stdout.")
    ] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Then wait for new mail (IMAP IDLE).")
    ] = False,
    watch_for: Annotated[
        float | None,
        typer.Option("--watch-for", help="With --watch: stop after SECONDS (default: Ctrl-C)."),
    ] = None,
    data_timeout: FetchDataTimeoutOpt = None,
    trace: Annotated[
        bool, typer.Option("--trace", help="Print the IMAP/POP3 transcript on stderr.")
    ] = False,
) -> CommandResult:
    """Fetch mail over IMAP or POP3: list envelopes or keep messages (Maildir, mbox, .eml).

    Nothing changes on the server unless asked (--mark-seen, --delete, --move), and then
    only after the local copy is on disk.
    """
    from mailctl.core.fetch import Destinations, FetchRequest, SearchCriteria, fetch
    from mailctl.models import Protocol

    if jsonl and app.options.json_mode:
        raise UsageError("--json and --jsonl exclude each other", hint="pick one")
    if watch_for is not None and (not watch or watch_for <= 0):
        raise UsageError("--watch-for takes positive seconds, with --watch", hint="add --watch")
    criteria = SearchCriteria(
        unseen=unseen,
        since=_date("--since", since),
        before=_date("--before", before),
        from_=from_,
        to=to,
        subject=subject,
        text=text,
        larger=larger,
        smaller=smaller,
        uid_range=uid,
        raw=search,
    )
    protocol = Protocol.POP3 if pop3 else Protocol.IMAP
    on_transcript = None
    if trace:
        from mailctl.cli.tracing import transcript_printer

        on_transcript = transcript_printer(app.output)
    destinations = Destinations(
        maildir=maildir, mbox=mbox, eml_dir=eml_dir, attachments=attachments, manifest=manifest
    )
    request = FetchRequest(
        server=app.resolve_server(server, protocol),
        protocol="pop3" if pop3 else "imap",
        folder=folder,
        criteria=criteria,
        limit=limit,
        uidls=tuple(uidl or ()),
        new=new,
        mark_seen=mark_seen,
        delete=delete,
        move_to=move,
        destinations=destinations,
        full=full,
        # A quiet run into a destination shows no envelope: its headers need not be read.
        envelopes=app.options.json_mode or jsonl or not app.output.quiet,
        watch=(watch_for if watch_for is not None else float("inf")) if watch else None,
        on_transcript=on_transcript,
    )
    on_message: Callable[[FetchedMessage], None] | None = None
    if jsonl:
        on_message = _jsonl_line
    elif not app.options.json_mode and (destinations.writes or watch):
        on_message = _progress_line(app.output)
    result = fetch(request, on_message)
    return _result(result, streamed=on_message is not None)


def _date(flag: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not a date", hint="write YYYY-MM-DD") from None


def _jsonl_line(message: "FetchedMessage") -> None:
    """--jsonl: the message's object, one line, flushed (a reader acts on it at once)."""
    import json

    from mailctl.serialize import to_data

    line = json.dumps(to_data(message), ensure_ascii=False, allow_nan=False)
    sys.stdout.write(line.encode("utf-8", "backslashreplace").decode("utf-8") + "\n")
    sys.stdout.flush()


def _progress_line(output: Output) -> "Callable[[FetchedMessage], None]":
    def on_message(message: "FetchedMessage") -> None:
        if output.quiet:
            return
        output.print(f"{_which(message)}  {_row(message)[1]}  {_cell(message.subject)}")

    return on_message


def _which(message: "FetchedMessage") -> str:
    if message.uid is not None:
        return f"UID {message.uid}"
    return f"#{message.number}"


def _cell(value: str | None) -> str:
    """A value from a message for one table cell: controls gone, one line."""
    return " ".join(clean(value or "").split()) or "-"


def _row(message: "FetchedMessage") -> list[str]:
    return [
        str(message.uid if message.uid is not None else message.number),
        (message.date_iso or "-")[:16].replace("T", " "),
        _cell(message.from_)[:40],
        _cell(message.subject)[:60],
        str(message.size),
        " ".join(message.flags) or "-",
        "-" if message.attachment_count is None else str(message.attachment_count),
    ]


def _result(result: "FetchResult", *, streamed: bool) -> CommandResult:
    def render(output: Output) -> None:
        if not streamed and result.messages:
            _table(output, result)
        parts = [f"{result.fetched} message(s) from {result.server}"]
        if result.folder:
            parts[0] += f" {_cell(result.folder)}"
        if result.already_fetched:
            parts.append(f"{result.already_fetched} fetched before")
        if result.rekeyed:
            parts.append("UIDVALIDITY changed: matched by Message-ID")
        if result.deleted:
            parts.append(f"{result.deleted} deleted")
        if result.moved:
            parts.append(f"{result.moved} moved")
        output.note(", ".join(parts))

    return CommandResult(
        data=result,
        status=result.status,
        exit_code=result.exit_code,
        errors=[
            {"code": item.code, "message": item.message, "uid": item.uid, "number": item.number}
            for item in result.failed
        ],
        render=render,
    )


def _table(output: Output, result: "FetchResult") -> None:
    from rich.table import Table
    from rich.text import Text

    from mailctl.cli.layout import fits

    first = "UID" if result.protocol == "imap" else "#"
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in (first, "DATE", "FROM", "SUBJECT", "SIZE", "FLAGS", "ATT"):
        table.add_column(column, no_wrap=True)
    for message in result.messages:
        table.add_row(*(Text(cell) for cell in _row(message)))
    if fits(output.out, table):
        output.out.print(table, soft_wrap=False)
        return
    for message in result.messages:
        row = _row(message)
        output.print(f"{row[0]}  {row[1]}  {row[2]}")
        output.print(f"  {row[3]}  ({row[4]} octets, {row[6]} attachment(s))")
