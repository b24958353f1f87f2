"""`mailctl parse`: FILE or stdin -> ParseRequest -> core.parse -> a readable view or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mailctl.cli.context import AppContext, command
from mailctl.cli.output import CommandResult, Output

if TYPE_CHECKING:
    from mailctl.core.parse import ParseResult


@command("parse")
def parse_command(
    app: AppContext,
    source: Annotated[
        str,
        typer.Argument(help="The message: an .eml file, or - for standard input.", metavar="FILE"),
    ],
    attachments: Annotated[
        Path | None,
        typer.Option(
            "--attachments",
            help="Save attachments into DIR (created if missing) under safe names; never "
            "overwrites a file there.",
            metavar="DIR",
        ),
    ] = None,
) -> CommandResult:
    """Read a message (.eml or stdin) as data: headers, bodies, attachments, hops, verdicts.

    Nothing from the message reaches the terminal as a control sequence or as markup; HTML
    is shown as text. With --json, the whole message as data (README "mailctl parse").
    """
    from mailctl.core.parse import ParseRequest, parse

    request = ParseRequest(
        source=None if source == "-" else Path(source), attachments_dir=attachments
    )
    result = parse(request)
    return CommandResult(data=result, render=lambda out: render(out, result))


def render(out: Output, result: ParseResult) -> None:
    from mailctl.cli.messageview import message_lines

    saved: list[Path | None] = [item.path for item in result.saved]
    for line in message_lines(result.message, saved):
        out.print(line)
