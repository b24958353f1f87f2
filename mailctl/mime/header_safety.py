"""Refusal of CR, LF, NUL and other controls in header values and commands."""

from __future__ import annotations

import re
from typing import Final

from mailctl.errors import HeaderInjectionError, InputDataError
from mailctl.text import quote

__all__ = ["line_problem", "non_utf8", "require_clean", "require_utf8"]

# Characters that end a line for someone: CR and LF for SMTP and RFC 5322, and the extra
# separators str.splitlines() honours, which the email package itself splits on
# (policy.header_store_parse), so letting them through would silently change a header.
_OTHER_CONTROLS: Final = re.compile("[\x01-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# PEP 383: undecodable bytes of argv, file names and environment arrive as lone surrogates.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def require_utf8(field: str, value: str, *, hint: str | None = None) -> str:
    """Return `value` unchanged if it is text that UTF-8 can carry.

    Raises InputDataError naming `field` for the surrogate escapes Python makes of bytes that
    are not UTF-8 (an argument typed in Latin-1, a file name from an old disk).
    """
    what = non_utf8(value)
    if what:
        raise InputDataError(
            f"{field} is not valid UTF-8 text ({what})",
            hint=hint or "give it as UTF-8 (iconv -t UTF-8 converts it)",
        )
    return value


def non_utf8(value: str) -> str | None:
    """Name the first byte of `value` that was not UTF-8 ("byte 0xFF at position 3"), or None.

    PEP 383 turns such bytes into lone surrogates; naming the byte, not the surrogate, is
    what the user can find in their input.
    """
    found = _SURROGATE.search(value)
    if found is None:
        return None
    code = ord(found.group())
    what = f"byte 0x{code - 0xDC00:02X}" if code >= 0xDC80 else f"U+{code:04X}"
    return f"{what} at position {found.start()}"


def line_problem(value: str) -> str | None:
    """Name what in `value` could end a header line ("a line break", ...), or None."""
    if value.isprintable():  # see _clean: none of the characters below is printable
        return None
    if "\r" in value or "\n" in value:
        return "a line break"
    if "\x00" in value:
        return "a NUL character"
    found = _OTHER_CONTROLS.search(value)
    if found:
        return f"the control character U+{ord(found.group()):04X}"
    return None


def _clean(value: str) -> bool:
    """The common case in one C pass (bulk-send checks several values a row): str.isprintable()
    is False for every character require_clean refuses (C0 and C1 controls, DEL, lone
    surrogates, U+2028 and U+2029: categories Cc, Cs, Zl, Zp), so printable text with no
    encoded word in it is clean. Anything else (a tab, a no-break space) takes the full check."""
    return value.isprintable() and "=?" not in value


def require_clean(field: str, value: str) -> str:
    """Return `value` unchanged if it can go into one header line or protocol command.

    Raises HeaderInjectionError naming `field` for CR, LF (a new header or SMTP command would
    start there), NUL, and other control or line-separator characters, in the value itself
    or in the text of an RFC 2047 encoded word in it: the email package and mail readers
    decode those, so `=?UTF-8?Q?a=0D=0ABcc:_x?=` means a line break as much as CRLF does.
    Raises InputDataError for text that is not UTF-8 (see require_utf8), and for an encoded
    word whose bytes are not text in its charset (it has no one meaning to check).
    """
    if _clean(value):
        return value
    require_utf8(field, value)
    problem = line_problem(value)
    if problem == "a line break":
        raise HeaderInjectionError(
            f"{field} contains a line break", hint="header values must be a single line"
        )
    if problem is not None:
        raise HeaderInjectionError(f"{field} contains {problem}")
    if "=?" in value:
        from mailctl.mime.encoded_words import decoded_texts, undecodable_charsets

        for charset in undecodable_charsets(value):
            raise InputDataError(
                f"{field} contains an RFC 2047 encoded word whose bytes are not text in its "
                f"charset ({quote(charset)})",
                hint="write the text itself; mailctl encodes it",
            )
        for text in decoded_texts(value):
            problem = line_problem(text)
            if problem is not None:
                raise HeaderInjectionError(
                    f"{field} contains an RFC 2047 encoded word that decodes to {problem}",
                    hint="an encoded word means its decoded text, which must be one line",
                )
    return value
