"""Reading the common header fields of a parsed message: addresses, date, message ids."""

from __future__ import annotations

import re
from datetime import datetime
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from typing import Final

from mailctl.errors import InputDataError
from mailctl.mime.addresses import parse_address_header
from mailctl.mime.parse.decode import header_text, raw_headers
from mailctl.mime.parse.model import AddressInfo

__all__ = ["addresses", "date_of", "first", "iso_date", "message_ids"]

# RFC 5322 3.6.4: msg-id is "<" id-left "@" id-right ">"; read leniently (no '@' needed).
_NAME_ADDR: Final = re.compile(r"([^<>,]*)<([^<>\s,]+@[^<>\s,]+)>")
_MSG_ID: Final = re.compile(r"<[^<>\s]{1,998}>")


def first(headers: list[tuple[str, str]], name: str) -> str | None:
    """The first raw value of header `name` (case-insensitive), or None."""
    wanted = name.lower()
    return next((value for key, value in headers if key.lower() == wanted), None)


def every(headers: list[tuple[str, str]], name: str) -> list[str]:
    """Every raw value of header `name`, in order."""
    wanted = name.lower()
    return [value for key, value in headers if key.lower() == wanted]


def addresses(
    headers: list[tuple[str, str]], name: str, problems: list[str]
) -> tuple[AddressInfo, ...]:
    """The mailboxes of every `name` header: strictly parsed, else leniently with a problem."""
    out: list[AddressInfo] = []
    for raw in every(headers, name):
        text = header_text(raw) if "=?" not in raw else raw
        try:
            # Encoded words stay encoded for the parser (a decoded ',' must not split a name).
            boxes = parse_address_header(f"header {name}", _utf8(text))
        except InputDataError as err:  # AddressError, or a NUL (HeaderInjectionError)
            problems.append(err.message)
            out.extend(_lenient(text))
            continue
        out.extend(AddressInfo(header_text(box.display_name), box.addr_spec) for box in boxes)
    return tuple(out)


def _utf8(value: str) -> str:
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _lenient(value: str) -> list[AddressInfo]:
    """What the legacy parser finds that looks like an address; else the text as a name."""
    text = _utf8(value)
    single = _NAME_ADDR.fullmatch(text.strip())
    if single is not None:  # `Name <a@b>` with something the strict parsers refuse in Name
        return [AddressInfo(header_text(single.group(1).strip().strip('"')), single.group(2))]
    try:
        pairs = getaddresses([text])
    except Exception:  # the legacy parser has its own odd failures
        pairs = []
    found = [AddressInfo(header_text(name), addr) for name, addr in pairs if "@" in addr]
    return found or ([AddressInfo(header_text(text), "")] if text.strip() else [])


def date_of(headers: list[tuple[str, str]]) -> tuple[str | None, str | None]:
    """(the Date header as given, its ISO 8601 form or None when it does not parse)."""
    raw = first(headers, "Date")
    if raw is None:
        return None, None
    text = header_text(raw)
    return text, iso_date(text)


def iso_date(text: str) -> str | None:
    """An RFC 5322 3.3 date-time as ISO 8601; None when it is not one."""
    parsed = parse_date(text)
    return parsed.isoformat() if parsed is not None else None


def parse_date(text: str) -> datetime | None:
    """An RFC 5322 3.3 date-time; None when it is not one (never raises)."""
    if len(text) > 200:
        return None
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def message_ids(value: str | None) -> tuple[str, ...]:
    """The msg-ids in a Message-ID, In-Reply-To or References value, in order."""
    if value is None:
        return ()
    return tuple(_MSG_ID.findall(header_text(value)))


def headers_of(part: Message) -> list[tuple[str, str]]:
    """The part's raw header fields (see decode.raw_headers)."""
    return raw_headers(part)
