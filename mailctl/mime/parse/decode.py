"""Text out of untrusted bytes: header values (RFC 2047, RFC 6532 UTF-8) and part contents
(transfer encoding, then charset), always with replacement, never an exception."""

from __future__ import annotations

import binascii
import re
from email.message import Message
from typing import Final

__all__ = ["charset_text", "header_text", "part_bytes", "part_text", "raw_headers"]

# RFC 5322 2.2.3: unfolding removes each CRLF that is followed by whitespace.
_UNFOLD: Final = re.compile(r"\r\n(?=[ \t])|\n(?=[ \t])|\r(?=[ \t])")
_FALLBACK: Final = "utf-8"


def charset_text(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Decode `data` in `charset` with replacement; (text, problem or None).

    An unknown charset, one that is not a text encoding (`base64`, `rot13`), or one whose
    codec fails (`idna` cannot replace) is read as UTF-8 with replacement; the problem says so.
    """
    name = (charset or "").strip().strip('"').lower()
    if not name or name in ("us-ascii", "ascii"):
        # RFC 2045 5.2 says US-ASCII, but unlabelled 8-bit text is UTF-8 far more often.
        return data.decode(_FALLBACK, "replace"), None
    try:
        return data.decode(name, "replace"), None
    except (LookupError, ValueError, TypeError, UnicodeError):
        # bytes.decode raises LookupError for unknown names and for codecs that are not
        # text encodings; some codecs do not support "replace" (idna) and raise instead.
        problem = f"charset {name[:40]!r} is unknown or cannot decode, read as UTF-8"
        return data.decode(_FALLBACK, "replace"), problem


def _raw_value_text(value: str) -> str:
    """A raw header value from the bytes parser: 8-bit octets arrive as surrogate escapes."""
    if not value.isascii():
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def header_text(value: str) -> str:
    """The decoded text of one raw header value: unfolded, encoded words decoded.

    RFC 2047 words in an unknown charset are read as UTF-8 with replacement; raw 8-bit
    octets (RFC 6532) as UTF-8 with replacement. Linear in the value's length.
    """
    value = _raw_value_text(_UNFOLD.sub("", str(value)))
    if "=?" not in value:
        return value.strip()
    out: list[str] = []
    position = 0
    previous_word_end = -1
    for match in _WORD.finditer(value):
        between = value[position : match.start()]
        # RFC 2047 6.2: whitespace between two adjacent encoded words is not displayed.
        if not (match.start() > 0 and previous_word_end == position and not between.strip()):
            out.append(between)
        out.append(_word_text(match.group(1), match.group(2), match.group(3)))
        position = previous_word_end = match.end()
    out.append(value[position:])
    return "".join(out).strip()


# RFC 2047 2: =?charset?encoding?encoded-text?= (RFC 2231 5 adds *language to the charset).
_WORD: Final = re.compile(r"=\?([^?\s]{1,75})\?([bBqQ])\?([^?\s]*)\?=")
_Q_ESCAPE: Final = re.compile(rb"=([0-9A-Fa-f]{2})")
_NOT_BASE64: Final = re.compile(rb"[^A-Za-z0-9+/]")


def _word_text(charset: str, encoding: str, payload: str) -> str:
    raw = payload.encode("ascii", "replace")
    if encoding in "qQ":
        # RFC 2047 4.2: '_' is a space, =XX an octet.
        data = _Q_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw.replace(b"_", b" "))
    else:
        clean = _NOT_BASE64.sub(b"", raw)
        clean = clean[: len(clean) - len(clean) % 4] if len(clean) % 4 == 1 else clean
        data = binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
    return charset_text(data, charset.partition("*")[0])[0]


def raw_headers(part: Message) -> list[tuple[str, str]]:
    """The part's header fields in order, names as given, values unfolded but not decoded."""
    return [(name, _UNFOLD.sub("", str(value))) for name, value in part.raw_items()]


def part_bytes(part: Message) -> bytes:
    """The part's content with its transfer encoding undone (base64, quoted-printable, uu).

    Broken encodings are decoded as far as they go (the email package records a defect).
    """
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def part_text(part: Message, data: bytes) -> tuple[str, str | None]:
    """A text part's decoded content in its declared charset; (text, problem or None)."""
    try:
        charset = part.get_content_charset()
    except Exception:  # a Content-Type the header parser cannot read
        charset = None
    return charset_text(data, charset)
