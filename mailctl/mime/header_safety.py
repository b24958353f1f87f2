"""Refusal of CR, LF, NUL and other controls in header values and commands; safe error text."""

from __future__ import annotations

import re
from typing import Final

from mailctl.errors import HeaderInjectionError

__all__ = ["require_clean", "shown"]

# Characters that end a line for someone: CR and LF for SMTP and RFC 5322, and the extra
# separators str.splitlines() honours, which the email package itself splits on
# (policy.header_store_parse), so letting them through would silently change a header.
_OTHER_CONTROLS: Final = re.compile("[\x01-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_SHOWN_LIMIT: Final = 120


def shown(value: str) -> str:
    """Render user data for a one-line error message: quoted, control characters escaped.

    `repr` escapes CR, LF, NUL and every other non-printable character, so the message can
    never break a terminal line or a log record; long values are cut.
    """
    if len(value) > _SHOWN_LIMIT:
        value = value[:_SHOWN_LIMIT] + "..."
    return repr(value)


def require_clean(field: str, value: str) -> str:
    """Return `value` unchanged if it can go into one header line or protocol command.

    Raises HeaderInjectionError naming `field` for CR, LF (a new header or SMTP command would
    start there), NUL, and other control or line-separator characters.
    """
    if "\r" in value or "\n" in value:
        raise HeaderInjectionError(
            f"{field} contains a line break", hint="header values must be a single line"
        )
    if "\x00" in value:
        raise HeaderInjectionError(f"{field} contains a NUL character")
    found = _OTHER_CONTROLS.search(value)
    if found:
        raise HeaderInjectionError(
            f"{field} contains the control character U+{ord(found.group()):04X}"
        )
    return value
