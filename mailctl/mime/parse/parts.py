"""Which parts of a message are its bodies and which are attachments, and their content."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.message import Message
from email.utils import collapse_rfc2231_value
from io import BytesIO
from typing import Final

from mailctl.inputs import describe
from mailctl.mime.parse.decode import header_text, part_bytes
from mailctl.mime.parse.limits import ParseLimits, limit_error
from mailctl.mime.parse.tree import walk

__all__ = ["Leaf", "leaves"]

# RFC 2045 5.1: type "/" subtype, each a token (lower-cased by the email package).
_TYPE: Final = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+/[a-z0-9!#$%&'*+.^_`|~-]+")
_BODY_TYPES: Final = frozenset({"text/plain", "text/html"})
# Parts that describe the message rather than carry content of their own.
_REPORT_TYPES: Final = frozenset(
    {
        "message/delivery-status",
        "message/global-delivery-status",
        "message/disposition-notification",
        "message/feedback-report",
    }
)


@dataclass(frozen=True)
class Leaf:
    """A part with content: a body (text/plain or text/html shown inline) or an attachment."""

    content_type: str
    name: str | None
    content_id: str | None
    disposition: str | None
    is_body: bool
    payload: bytes
    part: Message


def safe(call: object, default: str | None = None) -> str | None:
    """The value of a header accessor, or `default` when the header parser fails on it."""
    try:
        value = call() if callable(call) else call
    except Exception:  # the email package's header parser raises on some malformed values
        return default
    return value if isinstance(value, str) else default


def _name(part: Message) -> str | None:
    """The part's file name as the message gives it: RFC 2231 and RFC 2047 decoded."""
    name = safe(part.get_filename)
    if name is None:
        # RFC 2046 4.5.1's older `name` parameter; RFC 2231 values arrive as a triple.
        try:
            value = part.get_param("name")
            name = collapse_rfc2231_value(value) if value is not None else None
        except Exception:  # a Content-Type the parameter parser cannot read
            name = None
    if not name:
        return None
    # RFC 2231 arrives decoded; encoded words in a quoted name (not standard, but what most
    # mailers write) are decoded here, with raw 8-bit octets read as UTF-8.
    return header_text(name)


def _content_type(part: Message) -> str:
    """The part's type; RFC 2045 5.2: an invalid one (`text/`, `;;`) means text/plain."""
    found = safe(part.get_content_type) or ""
    return found if _TYPE.fullmatch(found) else "text/plain"


def _message_bytes(part: Message) -> bytes:
    """An attached message (message/rfc822) as bytes, written back by the email package."""
    inner = part.get_payload()
    if isinstance(inner, list) and inner and isinstance(inner[0], Message):
        buffer = BytesIO()
        try:
            BytesGenerator(buffer, mangle_from_=False).flatten(inner[0])
        except Exception:  # a tree the generator cannot write: the raw part is all there is
            return b""
        return buffer.getvalue()
    return part_bytes(part)


def leaves(message: Message, limits: ParseLimits, *, payloads: bool = True) -> Iterator[Leaf]:
    """The parts with content, in document order, bodies marked.

    A text/plain or text/html part is a body unless it is an attachment (disposition
    attachment, or a file name with no inline disposition); every other leaf is an
    attachment, and so is an attached message (message/rfc822), which is not entered.
    Raises MessageParseError when a part's decoded content passes max_part_bytes. Without
    `payloads` (counting only), nothing is decoded, every payload is empty and the part size
    is not checked.
    """
    for part, _depth in walk(message):
        content_type = _content_type(part)
        maintype = content_type.partition("/")[0]
        if maintype == "multipart" and not part.is_multipart():
            # No boundary, or none found (RFC 2046 5.1.1): the email package keeps the whole
            # body as text, and so does every mail reader; it is shown, not lost.
            content_type, maintype = "text/plain", "text"
        elif maintype == "multipart" or content_type in _REPORT_TYPES:
            continue
        if part.is_multipart() and maintype != "message":
            continue
        disposition = safe(part.get_content_disposition)
        name = _name(part)
        cid = safe(lambda: part.get("Content-ID"))  # noqa: B023 - called at once
        content_id = (header_text(cid).strip("<> ") or None) if cid else None
        if not payloads:
            payload = b""
        elif maintype == "message":
            payload = _message_bytes(part)
        else:
            payload = part_bytes(part)
        if len(payload) > limits.max_part_bytes:
            limit = limits.max_part_bytes
            what = f"has a part of {len(payload)} bytes, over {describe(limit)}"
            raise limit_error(what, "max_part_bytes", limit)
        is_body = content_type in _BODY_TYPES and (
            disposition == "inline" or (disposition is None and name is None)
        )
        yield Leaf(content_type, name, content_id, disposition, is_body, payload, part)
