"""Fitting human output to the terminal: the width to lay out for, whether a table fits it
whole, and text wrapped at word boundaries.

A rich table wider than the console squeezes its columns and cuts cells with an ellipsis
(`36,7…`), which turns a figure into a wrong one. Callers instead build the layouts they
have, widest first, and print the first that `fits`; a figure is never cut. Lines of text
are wrapped here at spaces (a terminal wraps at the last column, mid-word).
"""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


def terminal_width() -> int:
    """The columns of plain (non-rich) output: $COLUMNS, else stdout's terminal, else 80."""
    import shutil

    return max(shutil.get_terminal_size().columns, 20)


def width_of(console: Console) -> int:
    """The columns to lay out for: the terminal's, else $COLUMNS, else 80 (rich's rule)."""
    return max(console.width, 20)


def fits(console: Console, renderable: RenderableType, width: int | None = None) -> bool:
    """True when `renderable` (a table of no-wrap columns) shows whole within `width`."""
    from rich.measure import Measurement

    room = width_of(console) if width is None else width
    # Measured with room to spare: a measurement is clamped to the width it is given.
    measured = Measurement.get(console, console.options.update_width(10 * room), renderable)
    return measured.maximum <= room


def first_fitting(console: Console, *layouts: RenderableType) -> RenderableType | None:
    """The first layout that fits the console, or None when none does."""
    return next((layout for layout in layouts if fits(console, layout)), None)


def wrapped(text: str, width: int, *, indent: str = "", hanging: str = "  ") -> str:
    """`text` wrapped at spaces to `width` columns; continuation lines indented by `hanging`
    more than the first. A word longer than a line is left whole (never cut)."""
    return textwrap.fill(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=indent + hanging,
        break_long_words=False,
        break_on_hyphens=False,
    )


def print_wrapped(
    console: Console, text: str, *, style: str | None = None, indent: str = "", hanging: str = "  "
) -> None:
    """Print `text` (no markup) wrapped at spaces to the console's width."""
    console.print(
        wrapped(text, width_of(console), indent=indent, hanging=hanging),
        style=style,
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def clock(seconds: float | None) -> str:
    """A progress bar's ETA: m:ss (h:mm:ss past an hour); -:-- when unknown."""
    if seconds is None:
        return "-:--"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
