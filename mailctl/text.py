"""Showing text mailctl did not write: one function per job, so every caller does it the same way.

- `clean`: text for the terminal (a banner, a subject, a table cell). Control characters go,
  line breaks and tabs stay; undecodable bytes show as `\\xNN`.
- `quote`: a value someone gave (an address, a path, a config value) inside a one-line message.
  Quoted and escaped like Python's repr, so a trailing space or a CR is visible; capped.
- `inert`: text a message or server chose (a subject, a file name, a body) for a terminal, in
  a table cell (one line) or as a block of lines: every control, bidi control and line
  separator is shown as an escape (\\x1b, \\u202e) instead of acting; print it with rich
  markup off (cli/output.make_console, or rich.text.Text) so `[red]` stays text.
- `excerpt`: someone else's prose (a server reply) inside a one-line message. Whitespace runs
  become one space, anything else unprintable is escaped, a secret is masked, capped; no quotes,
  so callers can still match the server's words in it.

A leaf: stdlib only, importable from every layer.
"""

from __future__ import annotations

import os
import re
from typing import Final

__all__ = ["clean", "excerpt", "inert", "quote"]

# C0 and C1 controls except tab and newline (they move the cursor, ring, change colours), and
# the Unicode bidirectional controls, which reorder what is shown (CVE-2021-42574).
_TERMINAL_UNSAFE: Final = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
# PEP 383 surrogate escapes: bytes of a path, argument or reply that are not UTF-8.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
QUOTE_LIMIT: Final = 120
EXCERPT_LIMIT: Final = 200
_ELLIPSIS: Final = "..."


def clean(text: str) -> str:
    """Return `text` safe to write to a terminal: controls stripped (tab and newline kept).

    Undecodable bytes (a non-UTF-8 file name) are shown as \\xNN, so writing the result to a
    strict UTF-8 stream cannot fail.
    """
    return _SURROGATE.sub(_escape_match, _TERMINAL_UNSAFE.sub("", text))


# What `inert` escapes: controls and bidi controls as above, CR, the Unicode line and paragraph
# separators and lone surrogates; tab and LF only on one line.
_ACTIVE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]"
)
_ACTIVE_IN_BLOCK: Final = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]"
)


def inert(text: str, *, lines: bool = False) -> str:
    """Return `text` with everything a terminal would act on shown as an escape instead.

    ESC (ANSI sequences), the other C0/C1 controls, CR, bidi controls and line separators
    become `\\x1b`, `\\u202e` ...; with `lines`, LF and tab stay (a body), else they are
    escaped too (a table cell, one line). Rich markup is not touched here: print the result
    with markup off.
    """
    pattern = _ACTIVE_IN_BLOCK if lines else _ACTIVE
    return pattern.sub(_escape_match, text)


def quote(value: object, *, limit: int = QUOTE_LIMIT) -> str:
    """Return `value` quoted for a one-line message, at most `limit` + 3 characters long.

    Strings and paths are written as Python's repr writes them: quoted, with every character
    that is not printable (CR, LF, NUL, escape, bidi controls, lone surrogates) escaped. A
    longer rendering is cut at a character boundary and ends in "...".
    """
    if isinstance(value, os.PathLike):
        value = os.fsdecode(value)
    if not isinstance(value, str):
        return _cut(repr(value), limit)
    rendered = repr(value)
    if len(rendered) <= limit:
        return rendered
    # The longest prefix whose repr fits: escapes make the repr up to 10 times longer.
    low, high = 0, min(len(value), limit)
    while low < high:
        middle = (low + high + 1) // 2
        if len(repr(value[:middle])) <= limit:
            low = middle
        else:
            high = middle - 1
    return repr(value[:low]) + _ELLIPSIS


def excerpt(text: str | bytes, *, limit: int = EXCERPT_LIMIT, secret: str | None = None) -> str:
    """Return someone else's text on one line, at most `limit` characters long.

    Bytes are read as UTF-8 (bad sequences become U+FFFD). `secret` is masked first, should a
    server (or library) ever echo it. Whitespace runs, line breaks included, become one space;
    other characters that are not printable are escaped (\\x1b, \\u202e), so nothing in the
    result can move a cursor or break a log line.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if secret:
        text = text.replace(secret, "<redacted>")
    pieces: list[str] = []
    used = 0
    for char in " ".join(text.split()):
        piece = char if char.isprintable() else _escape(char)
        if used + len(piece) > limit:
            while pieces and used + len(_ELLIPSIS) > limit:
                used -= len(pieces.pop())
            return "".join(pieces) + _ELLIPSIS[: max(limit - used, 0)]
        pieces.append(piece)
        used += len(piece)
    return "".join(pieces)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + _ELLIPSIS


def _escape_match(match: re.Match[str]) -> str:
    return _escape(match.group())


def _escape(char: str) -> str:
    """\\xNN for a byte (a surrogate escape shows the byte it stands for), else \\uNNNN."""
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
