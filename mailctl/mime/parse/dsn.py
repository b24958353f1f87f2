"""Delivery status notifications (RFC 3464): what a bounce says about each recipient."""

from __future__ import annotations

import binascii
import quopri
import re
from email.message import Message
from typing import Final

from mailctl.mime.parse.decode import charset_text, header_text, part_bytes
from mailctl.mime.parse.model import DsnInfo, DsnRecipient
from mailctl.mime.parse.tree import walk

__all__ = ["dsn_of"]

MAX_RECIPIENTS: Final = 1000
_BLANK_LINE: Final = re.compile(r"\r?\n[ \t]*\r?\n")
_FOLD: Final = re.compile(r"\r?\n(?=[ \t])")
Block = dict[str, str]


def dsn_of(message: Message) -> DsnInfo | None:
    """The DSN of a multipart/report bounce, or None when the message is not one."""
    for part, _depth in walk(message):
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            blocks = _blocks(part)
            if not blocks:
                return None
            per_message, recipients = blocks[0], blocks[1 : MAX_RECIPIENTS + 1]
            return DsnInfo(
                reporting_mta=_typed(per_message.get("reporting-mta")),
                recipients=tuple(_recipient(block) for block in recipients),
            )
    return None


def _blocks(part: Message) -> list[Block]:
    """The field groups of a delivery-status body (RFC 3464 2.1), lower-cased names."""
    payload = part.get_payload()
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    blocks = (
        [block for block in payload if isinstance(block, Message)]
        if isinstance(payload, list)
        else []
    )
    if blocks and encoding not in ("base64", "quoted-printable"):
        # The email package parsed each group as a header block (RFC 3464 2.1).
        return [
            {name.lower(): header_text(str(value)) for name, value in block.raw_items()}
            for block in blocks
        ]
    if blocks:  # encoded: the groups it made hold the encoded lines; put them back together
        raw = "".join(_block_source(block) for block in blocks).encode("ascii", "replace")
        data = _decode(raw, encoding)
    else:
        data = part_bytes(part)
    text, _problem = charset_text(data, "utf-8")
    out: list[Block] = []
    for group in _BLANK_LINE.split(text):
        block: Block = {}
        for line in _FOLD.sub("", group).splitlines():
            name, colon, value = line.partition(":")
            if colon and name.strip():
                block.setdefault(name.strip().lower(), header_text(value))
        if block:
            out.append(block)
    return out


def _block_source(block: Message) -> str:
    head = "".join(f"{name}:{value}\n" for name, value in block.raw_items())
    body = block.get_payload()
    return head + (body if isinstance(body, str) else "")


def _decode(raw: bytes, encoding: str) -> bytes:
    if encoding == "quoted-printable":
        return quopri.decodestring(raw)
    clean = re.sub(rb"[^A-Za-z0-9+/]", b"", raw)
    clean = clean[: len(clean) - len(clean) % 4]
    try:
        return binascii.a2b_base64(clean)
    except binascii.Error:
        return b""


def _typed(value: str | None) -> str | None:
    """`rfc822; user@example.org` -> `user@example.org` (RFC 3464 2.1.2 address-type)."""
    if value is None:
        return None
    kind, semicolon, rest = value.partition(";")
    return (rest if semicolon else kind).strip() or None


def _recipient(block: Block) -> DsnRecipient:
    status = block.get("status")
    return DsnRecipient(
        original_recipient=_typed(block.get("original-recipient")),
        final_recipient=_typed(block.get("final-recipient")),
        action=(block.get("action") or "").strip().lower() or None,
        status=status.split()[0] if status and status.split() else None,
        diagnostic_code=_typed(block.get("diagnostic-code")),
        remote_mta=_typed(block.get("remote-mta")),
    )
