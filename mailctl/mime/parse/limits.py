"""The limits one untrusted message is parsed within, and the one error when one trips."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

from mailctl.errors import MessageParseError
from mailctl.inputs import DEFAULT_MAX_INPUT, KIB

__all__ = ["ParseLimits", "limit_error"]

# What the email package costs (measured here, Python 3.11): ~0.5 ms per MIME part, ~60 bytes
# per line held until its part ends, and a header parser with slow paths on long values
# (CVE-2025-1795 and friends). Each default is far above real mail and far below harm.
_MAX_DEPTH: Final = 50  # multipart and message/rfc822 levels; real mail nests under 10
_MAX_PARTS: Final = 1000  # MIME parts; 1000 * 0.5 ms keeps a bad message under a second
# A 50 MiB message of 78-octet base64 lines has ~670,000 lines; a million short lines cost
# ~60 MB of line objects, the most a message may make the parser hold besides its bytes.
_MAX_LINES: Final = 1_000_000
# RFC 5322 2.1.1 caps lines at 998 octets; unfolded References and long To lists from
# careless software reach a few KiB, so 64 KiB is generous and keeps the header parser fast.
_MAX_HEADER_LINE: Final = 64 * KIB
_MAX_HEADERS_BYTES: Final = 512 * KIB  # one header block (a part's, or the message's)


@dataclass(frozen=True)
class ParseLimits:
    """Per-message bounds; past any of them parsing stops with MessageParseError.

    Sizes are in octets. `max_part_bytes` bounds one part's decoded content;
    `max_message_bytes` the whole message (the default is mailctl's input limit, 50 MiB).
    """

    max_depth: int = _MAX_DEPTH
    max_parts: int = _MAX_PARTS
    max_lines: int = _MAX_LINES
    max_header_line: int = _MAX_HEADER_LINE
    max_headers_bytes: int = _MAX_HEADERS_BYTES
    max_part_bytes: int = DEFAULT_MAX_INPUT
    max_message_bytes: int = DEFAULT_MAX_INPUT

    def __post_init__(self) -> None:
        for field in fields(self):
            if getattr(self, field.name) < 1:
                raise ValueError(f"ParseLimits.{field.name} must be at least 1")


def limit_error(what: str, name: str, limit: int) -> MessageParseError:
    """The one-line error for a tripped limit: what went over, and the limit's name."""
    return MessageParseError(
        f"the message {what} (ParseLimits.{name})",
        hint="a message this far from real mail is refused rather than parsed",
        details={"limit": name, "value": limit},
    )
