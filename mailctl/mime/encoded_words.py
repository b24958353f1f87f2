"""What RFC 2047 encoded words in a value decode to, read as leniently as any reader would."""

from __future__ import annotations

import binascii
import re
from typing import Final

__all__ = ["decoded_texts", "looks_encoded", "undecodable_charsets"]

# `=?charset?encoding?` (RFC 2047 2; RFC 2231 5 adds `*language` to the charset). The text
# runs to the next `?=`: where CPython first finds `?=` at `?q?=0D`, it reads on to the next
# one when two hex digits follow, which is the same place.
_HEAD: Final = re.compile(r"=\?([^?]*)\?([bBqQ])\?")
_Q_ESCAPE: Final = re.compile(rb"=([0-9A-Fa-f]{2})")
_NOT_BASE64: Final = re.compile(rb"[^A-Za-z0-9+/]")
_MAX_DEPTH: Final = 3  # an encoded word whose text is again an encoded word, and so on


def looks_encoded(value: str) -> bool:
    """True if some reader may decode part of `value` as an encoded word (see decoded_texts)."""
    start = value.find("=?")
    while start >= 0:
        head = _HEAD.match(value, start)
        if head is not None and value.find("?=", head.end()) >= 0:
            return True
        start = value.find("=?", start + 2)
    return False


def decoded_texts(value: str) -> list[str]:
    """The text of every span of `value` that a reader may decode as an encoded word.

    A superset of what the email package decodes on any supported Python: words glued to
    other text, whitespace inside a word (CPython accepts it with a defect), `?q?=0D` (a Q
    escape right after the marker), bad base64 padding, unknown charsets (read as ASCII, as
    CPython does), the CR, LF and NUL bytes of any charset, and encoded words inside decoded
    text, to a depth of three. Used to refuse values whose meaning holds a line break, so
    over-reading is safe as long as clean text in a real charset is not refused.
    """
    found: dict[str, None] = {}  # insertion-ordered set
    pending = [(value, 0)]
    while pending:
        text, depth = pending.pop()
        if depth >= _MAX_DEPTH or "=?" not in text:
            continue
        for decoded in _decode_spans(text):
            if decoded not in found:
                found[decoded] = None
                pending.append((decoded, depth + 1))
    return list(found)


def undecodable_charsets(value: str) -> list[str]:
    """The charsets of the encoded words in `value` whose bytes are not text in them.

    Bytes invalid in a known charset, or 8-bit bytes under a charset Python does not know
    (`unknown-8bit`), have no one meaning: readers show replacement characters or guess,
    and the email package keeps them as surrogates that it cannot write again. Only the
    words of `value` itself are read (decoded_texts goes deeper, for line breaks).
    """
    bad: dict[str, None] = {}
    start = value.find("=?")
    while start >= 0:
        head = _HEAD.match(value, start)
        if head is not None:
            end = value.find("?=", head.end())
            if end >= 0:
                charset, encoding = head.group(1), head.group(2).lower()
                if not _is_text(charset, _word_bytes(encoding, value[head.end() : end])):
                    bad[charset] = None
        start = value.find("=?", start + 2)
    return list(bad)


def _is_text(charset: str, data: bytes) -> bool:
    try:
        data.decode(charset.partition("*")[0])
    except (LookupError, ValueError):  # UnicodeDecodeError is a ValueError
        return data.isascii()  # CPython reads an unknown charset as ASCII
    return True


def _word_bytes(encoding: str, payload: str) -> bytes:
    raw = payload.encode("utf-8", "surrogateescape")
    if encoding == "q":
        # RFC 2047 4.2: '_' is a space, =XX an octet (either case of hex digits).
        return _Q_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw.replace(b"_", b" "))
    return _base64(raw)


def _decode_spans(text: str) -> list[str]:
    out: list[str] = []
    start = text.find("=?")
    while start >= 0:
        head = _HEAD.match(text, start)
        if head is not None:
            charset, encoding = head.group(1), head.group(2).lower()
            end = text.find("?=", head.end())
            if end >= 0:
                out.extend(_decode_word(charset, encoding, text[head.end() : end]))
        start = text.find("=?", start + 2)
    return out


def _decode_word(charset: str, encoding: str, payload: str) -> list[str]:
    """What readers may see of one word: its text, and line breaks its bytes hold."""
    data = _word_bytes(encoding, payload)
    try:
        text = data.decode(charset.partition("*")[0], "replace")
    except (LookupError, ValueError):
        # A charset Python does not know as text: CPython reads the bytes as ASCII.
        return [data.decode("ascii", "replace")]
    # A reader that does not know the charset shows the bytes, so CR, LF and NUL among them
    # (UTF-16, EBCDIC) count too. Other control bytes do not: ISO-2022-JP is made of ESC
    # sequences whose text holds no control character.
    breaks = bytes(byte for byte in data if byte in b"\r\n\x00").decode("ascii")
    return [text, breaks] if breaks else [text]


def _base64(raw: bytes) -> bytes:
    """Decode base64 the way lenient readers do: foreign characters dropped, padding fixed."""
    clean = _NOT_BASE64.sub(b"", raw)
    clean = clean[: len(clean) - len(clean) % 4] if len(clean) % 4 == 1 else clean
    try:
        return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
    except binascii.Error:  # pragma: no cover - the input was made valid above
        return b""
