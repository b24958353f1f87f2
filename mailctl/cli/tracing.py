"""Render a protocol transcript on stderr the way swaks users read it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from mailctl.cli.output import Output
from mailctl.text import clean

if TYPE_CHECKING:
    from mailctl.models import TranscriptLine

# swaks' arrows: "->" sent, "<-" received; "~>" and "<~" inside TLS; "===" for events.
_ARROWS = {
    ("sent", False): "->",
    ("sent", True): "~>",
    ("received", False): "<-",
    ("received", True): "<~",
}


def format_line(line: TranscriptLine) -> str:
    arrow = _ARROWS.get((line.direction.value, line.tls), "===")
    return f"{line.elapsed * 1000:9.1f}ms {arrow} {clean(line.text)}"


def transcript_printer(output: Output) -> Callable[[TranscriptLine], None]:
    """Print each line as it happens, so a hang shows where it hangs."""

    def on_line(line: TranscriptLine) -> None:
        style = {"sent": "cyan", "received": "green"}.get(line.direction.value, "yellow")
        output.note(format_line(line), style=style)

    return on_line
