"""`mailctl folders`: the IMAP folders with their flags and counts (LIST + STATUS).

No `from __future__ import annotations` (see cli/send.py).
"""

from typing import TYPE_CHECKING, Annotated

import typer

from mailctl.cli.context import AppContext, command
from mailctl.cli.output import CommandResult, Output
from mailctl.cli.serverflags import ServerFlags
from mailctl.text import clean

if TYPE_CHECKING:
    from mailctl.core.fetch import FoldersResult


@command("folders")
def folders_command(
    app: AppContext,
    server: ServerFlags,
    trace: Annotated[
        bool, typer.Option("--trace", help="Print the IMAP transcript on stderr.")
    ] = False,
) -> CommandResult:
    """List IMAP folders with their flags and counts (messages, unseen, size)."""
    from mailctl.core.fetch import FoldersRequest, folders
    from mailctl.models import Protocol

    on_transcript = None
    if trace:
        from mailctl.cli.tracing import transcript_printer

        on_transcript = transcript_printer(app.output)
    result = folders(
        FoldersRequest(
            server=app.resolve_server(server, Protocol.IMAP), on_transcript=on_transcript
        )
    )
    return CommandResult(data=result, render=lambda output: _render(output, result))


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _render(output: Output, result: "FoldersResult") -> None:
    from rich.table import Table
    from rich.text import Text

    from mailctl.cli.layout import fits

    rows = [
        [
            " ".join(clean(folder.name).split()),
            _count(folder.messages),
            _count(folder.unseen),
            _count(folder.size),
            " ".join(folder.flags) or "-",
        ]
        for folder in result.folders
    ]
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("FOLDER", "MESSAGES", "UNSEEN", "SIZE", "FLAGS"):
        table.add_column(column, no_wrap=True, justify="left")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    if fits(output.out, table):
        output.out.print(table, soft_wrap=False)
        return
    for row in rows:
        output.print(row[0])
        output.print(f"  {row[1]} messages, {row[2]} unseen, size {row[3]}, flags {row[4]}")
