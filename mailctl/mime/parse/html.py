"""A readable text view of an HTML body, for terminals: tags, scripts and styles dropped."""

from __future__ import annotations

import contextlib
import re
from html.parser import HTMLParser
from typing import Final

__all__ = ["html_text"]

_BLOCKS: Final = frozenset(
    {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote",
     "pre", "hr", "ul", "ol", "section", "article", "header", "footer", "title"}
)  # fmt: skip
_HIDDEN: Final = frozenset({"script", "style", "head", "template", "noscript"})
_SPACES: Final = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES: Final = re.compile(r"\n\s*\n\s*(?:\n\s*)+")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag in _BLOCKS:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(self.hidden - 1, 0)
        elif tag in _BLOCKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.out.append(_SPACES.sub(" ", data.replace("\n", " ")))


def html_text(html: str) -> str:
    """The text of `html` with block elements as line breaks; never raises."""
    parser = _Text()
    # html.parser is lenient; should it still fail, what was read so far is shown.
    with contextlib.suppress(Exception):
        parser.feed(html)
        parser.close()
    lines = "".join(parser.out).split("\n")
    text = "\n".join(line.strip() for line in lines)
    return _BLANK_LINES.sub("\n\n", text).strip()
