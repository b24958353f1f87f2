"""Transaction checks shared with the pipeline: envelope paths, SIZE, line length, queue ids."""

from __future__ import annotations

import re

from mailctl.errors import AddressError, InputDataError
from mailctl.mime.header_safety import non_utf8

__all__ = [
    "MAX_LINE_OCTETS",
    "envelope_path",
    "parse_queue_id",
    "require_short_lines",
    "size_limit",
]

# RFC 5321 4.5.3.1.6: a text line is at most 998 octets plus CRLF.
MAX_LINE_OCTETS = 998
# "Ok: queued as 4BvX2k1Qz" (Postfix), "queued as <id>" (many), "OK id=1rXyZ-000abc-Q1" (Exim).
_QUEUE_ID = re.compile(
    r"(?:\bqueued as|\bid=)\s*<?([A-Za-z0-9][A-Za-z0-9._@+=:/-]*)", re.IGNORECASE
)
_QUOTED_LOCAL_PART = re.compile(r'^"(?:[^"\\\r\n]|\\.)*"')
_ADDRESS_FORBIDDEN = re.compile(r'[\s<>"\x00-\x1f\x7f]')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_queue_id(text: str) -> str | None:
    """Best-effort queue id from the final 250 text ("queued as X", "id=X"); None if absent."""
    match = _QUEUE_ID.search(text)
    if match is None:
        return None
    found = match.group(1).rstrip(".,;:>)")
    return found or None


def envelope_path(role: str, address: str, *, smtputf8: bool, allow_empty: bool) -> bytes:
    """Return `<address>` as bytes for MAIL FROM / RCPT TO, refusing unsafe input.

    Raises AddressError for an address no SMTP command can carry (not UTF-8, spaces, <>,
    controls), InputDataError for a non-ASCII one without SMTPUTF8.
    """
    if address == "" and allow_empty:
        return b"<>"  # RFC 5321 4.5.5: the null reverse-path for bounces
    if (
        address
        and address.isascii()
        and address.isprintable()
        and " " not in address
        and "<" not in address
        and ">" not in address
        and '"' not in address
    ):
        # The common case, each message of a bulk run twice: printable ASCII has no control,
        # no surrogate and no blank but " ", and nothing the checks below refuse remains.
        return b"<" + address.encode("ascii") + b">"
    return _checked_path(role, address, smtputf8=smtputf8)


def _checked_path(role: str, address: str, *, smtputf8: bool) -> bytes:
    what = non_utf8(address)
    if what:
        # PEP 383 escapes of bytes that are not UTF-8: no encoding, SMTPUTF8 included
        # (RFC 6531 3.3: UTF-8 only), can send them.
        raise AddressError(
            f"envelope {role} is not valid UTF-8 text ({what})",
            hint="give the address as UTF-8 (iconv -t UTF-8 converts it)",
        )
    unquoted = _QUOTED_LOCAL_PART.sub("", address, count=1)
    if not address or _ADDRESS_FORBIDDEN.search(unquoted) or _CONTROL.search(address):
        raise AddressError(
            f"envelope {role} {address!r} cannot be sent in an SMTP command",
            hint="an envelope address is a bare addr-spec without spaces, quotes or <>",
        )
    try:
        encoded = address.encode("utf-8" if smtputf8 else "ascii")
    except UnicodeEncodeError as err:
        raise InputDataError(
            f"envelope {role} {address!r} is not ASCII and needs SMTPUTF8 (RFC 6531)",
            hint="send with SMTPUTF8 enabled, or use an ASCII (IDNA-encoded) address",
        ) from err
    return b"<" + encoded + b">"


def size_limit(parameter: str) -> int | None:
    """RFC 1870: "SIZE n" is the server's fixed maximum; no number or 0 means no limit."""
    try:
        limit = int(parameter.split(maxsplit=1)[0])
    except (ValueError, IndexError):
        return None
    return limit or None


def require_short_lines(wire: bytes) -> None:
    """Refuse, before any I/O, a CRLF message with a line over 998 octets (RFC 5321 4.5.3.1.6)."""
    if len(wire) <= MAX_LINE_OCTETS or max(map(len, wire.split(b"\r\n"))) <= MAX_LINE_OCTETS:
        return  # (the loop below, in Python, only to name the line)
    for number, line in enumerate(wire.split(b"\r\n"), start=1):
        if len(line) > MAX_LINE_OCTETS:
            raise InputDataError(
                f"message line {number} is {len(line)} octets; SMTP allows at most "
                f"{MAX_LINE_OCTETS} (RFC 5321 4.5.3.1.6)",
                hint="encode long lines with quoted-printable or base64",
            )
