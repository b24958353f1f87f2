"""Reading an .eml to send it as is: the bounded parse, and the envelope its headers name."""

from __future__ import annotations

import re
from email.message import EmailMessage
from typing import Final

from mailctl.errors import AddressError, InputDataError, MessageTooLargeError
from mailctl.inputs import MAX_INPUT_HINT, describe, max_input_bytes
from mailctl.mime.addresses import mailbox_key
from mailctl.mime.headers import Mailbox, parse_address_header
from mailctl.mime.parse.limits import ParseLimits
from mailctl.mime.parse.tree import parse_email

__all__ = ["envelope_sender", "header_recipients", "read_eml"]


def read_eml(data: bytes) -> EmailMessage:
    """Parse untrusted message bytes with policy.default, within ParseLimits.

    MessageTooLargeError above the input limit ($MAILCTL_MAX_INPUT, default 50 MiB);
    MessageParseError (an InputDataError) past another ParseLimits bound (parts, depth,
    header lines); InputDataError when there is no header block at all.
    """
    limit = max_input_bytes()
    if len(data) > limit:
        raise MessageTooLargeError(
            f"the message is {len(data)} bytes, over the {describe(limit)} limit",
            hint=MAX_INPUT_HINT,
        )
    message = parse_email(data, ParseLimits(max_message_bytes=limit, max_part_bytes=limit))
    if not message.keys():
        raise InputDataError(
            "the input has no header block", hint="a message starts with headers like From:"
        )
    return message


_UNFOLD: Final = re.compile(r"\r\n(?=[ \t])|\n(?=[ \t])|\r(?=[ \t])")


def _header_values(message: EmailMessage, name: str) -> list[str]:
    """The values of every `name` header, unfolded (RFC 5322 2.2.3) and decoded as UTF-8."""
    out: list[str] = []
    for key, value in message.raw_items():
        if key.lower() != name.lower():
            continue
        if hasattr(value, "name"):  # a header object (a message built by compose)
            out.append(str(value))
            continue
        text = _UNFOLD.sub("", str(value))
        try:  # RFC 6532: raw UTF-8 arrives from the bytes parser as surrogate escapes
            text = text.encode("utf-8", "surrogateescape").decode("utf-8")
        except UnicodeDecodeError as err:
            raise AddressError(f"header {name} is not valid UTF-8") from err
        out.append(text)
    return out


def envelope_sender(message: EmailMessage) -> Mailbox | None:
    """The mailbox in Sender, else in From (RFC 5322 3.6.2); None if neither has one.

    Raises AddressError for invalid or ambiguous values, a repeated header, or a From with
    several mailboxes and no Sender.
    """
    for name in ("Sender", "From"):
        values = _header_values(message, name)
        if not values:
            continue
        if len(values) > 1:
            raise AddressError(f"the message has {len(values)} {name} headers")
        boxes = parse_address_header(f"header {name}", values[0])
        if len(boxes) == 1:
            return boxes[0]
        if boxes or name == "Sender":
            raise AddressError(
                f"header {name} has {len(boxes)} addresses; one is needed",
                hint="RFC 5322 3.6.2: with several From addresses, Sender names the one sender",
            )
    return None


def header_recipients(message: EmailMessage) -> tuple[Mailbox, ...]:
    """Every mailbox in To, Cc and Bcc (all occurrences, groups opened), each once.

    Raises AddressError for invalid or ambiguous values.
    """
    out: list[Mailbox] = []
    seen: set[str] = set()
    for name in ("To", "Cc", "Bcc"):
        for value in _header_values(message, name):
            for box in parse_address_header(f"header {name}", value):
                key = mailbox_key(box.addr_spec)
                if key not in seen:
                    seen.add(key)
                    out.append(box)
    return tuple(out)
