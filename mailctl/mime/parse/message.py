"""Bytes -> ParsedMessage, MessageSummary or attachment parts: the one message parser."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from email.message import Message
from typing import Final

from mailctl.errors import MailctlError
from mailctl.mime.parse.authresults import auth_verdicts
from mailctl.mime.parse.decode import header_text, part_text, raw_headers
from mailctl.mime.parse.dsn import dsn_of
from mailctl.mime.parse.fields import addresses, date_of, every, first, message_ids
from mailctl.mime.parse.limits import ParseLimits
from mailctl.mime.parse.model import (
    AttachmentInfo,
    AttachmentPart,
    HeaderField,
    MessageSummary,
    ParsedMessage,
)
from mailctl.mime.parse.parts import Leaf, leaves
from mailctl.mime.parse.received import received_hops
from mailctl.mime.parse.tree import parse_tree, walk

__all__ = ["attachment_parts", "parse_message", "parse_with_parts", "summarize"]

_DEFAULT: Final = ParseLimits()
_UNSUBSCRIBE: Final = re.compile(r"<([^<>\s]{1,2000})>")
_MAX_PROBLEMS: Final = 50


def parse_message(data: bytes, *, limits: ParseLimits = _DEFAULT) -> ParsedMessage:
    """Parse untrusted message bytes into data.

    Headers are decoded (RFC 2047, RFC 2231, RFC 6532), bodies charset-decoded with
    replacement, attachments hashed; what was read leniently is listed in `problems`.
    Raises MessageParseError (65) naming the ParseLimits bound that tripped.
    """
    return parse_with_parts(data, limits=limits)[0]


def parse_with_parts(
    data: bytes, *, limits: ParseLimits = _DEFAULT
) -> tuple[ParsedMessage, tuple[AttachmentPart, ...]]:
    """parse_message and attachment_parts from one parse (to save what is described).

    Raises MessageParseError (65) as parse_message does.
    """
    tree = parse_tree(data, limits)
    headers = raw_headers(tree)
    problems: list[str] = []
    text: list[str] = []
    html: list[str] = []
    attachments: list[AttachmentInfo] = []
    parts: list[AttachmentPart] = []
    for leaf in leaves(tree, limits):
        if leaf.is_body:
            decoded, problem = part_text(leaf.part, leaf.payload)
            if problem:
                problems.append(problem)
            (html if leaf.content_type == "text/html" else text).append(decoded)
        else:
            attachments.append(_info(leaf))
            parts.append(_part(leaf))
    date, date_iso = date_of(headers)
    unsubscribe = first(headers, "List-Unsubscribe")
    one_click = first(headers, "List-Unsubscribe-Post")
    problems.extend(_defects(tree))
    parsed = ParsedMessage(
        size=len(data),
        subject=_decoded(first(headers, "Subject")),
        from_=addresses(headers, "From", problems),
        to=addresses(headers, "To", problems),
        cc=addresses(headers, "Cc", problems),
        reply_to=addresses(headers, "Reply-To", problems),
        date=date,
        date_iso=date_iso,
        message_id=next(iter(message_ids(first(headers, "Message-ID"))), None),
        in_reply_to=next(iter(message_ids(first(headers, "In-Reply-To"))), None),
        references=message_ids(first(headers, "References")),
        text="\n".join(text) if text else None,
        html="\n".join(html) if html else None,
        attachments=tuple(attachments),
        received=received_hops(every(headers, "Received")),
        authentication=auth_verdicts(every(headers, "Authentication-Results")),
        list_unsubscribe=tuple(_UNSUBSCRIBE.findall(header_text(unsubscribe or ""))),
        # RFC 8058 3.1: one-click unsubscription is offered by this exact value.
        list_unsubscribe_one_click=(
            one_click is not None and header_text(one_click) == "List-Unsubscribe=One-Click"
        ),
        dsn=dsn_of(tree),
        headers=tuple(HeaderField(name, header_text(value)) for name, value in headers),
        problems=tuple(dict.fromkeys(problems))[:_MAX_PROBLEMS],
    )
    return parsed, tuple(parts)


def _decoded(value: str | None) -> str | None:
    return header_text(value) if value is not None else None


def _info(leaf: Leaf) -> AttachmentInfo:
    return AttachmentInfo(
        name=leaf.name,
        content_type=leaf.content_type,
        size=len(leaf.payload),
        sha256=hashlib.sha256(leaf.payload).hexdigest(),
        content_id=leaf.content_id,
        inline=_inline(leaf),
    )


def _inline(leaf: Leaf) -> bool:
    # RFC 2183 2.1 inline; RFC 2387: a part of multipart/related named by its Content-ID.
    return leaf.disposition == "inline" or (
        leaf.disposition is None and leaf.content_id is not None
    )


def _defects(tree: Message) -> list[str]:
    """The email package's findings that change what is read (broken boundaries, bad base64)."""
    out: list[str] = []
    for part, _depth in walk(tree):
        for defect in part.defects:
            out.append(
                f"{type(defect).__name__}: {defect}" if str(defect) else type(defect).__name__
            )
            if len(out) >= _MAX_PROBLEMS:
                return out
    return out


def attachment_parts(data: bytes, *, limits: ParseLimits = _DEFAULT) -> Iterator[AttachmentPart]:
    """The attachments and inline parts of a message with their decoded content, for saving.

    Names are as the message gives them (decoded, untrusted): store.attachments makes them
    safe. Raises MessageParseError (65) as parse_message does, before the first part.
    """
    tree = parse_tree(data, limits)
    found = [_part(leaf) for leaf in leaves(tree, limits) if not leaf.is_body]
    yield from found


def _part(leaf: Leaf) -> AttachmentPart:
    return AttachmentPart(
        name=leaf.name,
        content_type=leaf.content_type,
        content_id=leaf.content_id,
        inline=_inline(leaf),
        payload=leaf.payload,
    )


def summarize(data: bytes, *, limits: ParseLimits = _DEFAULT) -> MessageSummary:
    """The envelope view of a message; never raises: `problem` says what failed.

    With only a header block (IMAP BODY.PEEK[HEADER]) the attachment count is 0.
    """
    try:
        tree = parse_tree(data, limits)
    except MailctlError as err:
        return _header_summary(data, limits, err.message)
    headers = raw_headers(tree)
    count = 0
    problem: str | None = None
    try:
        count = sum(1 for leaf in leaves(tree, limits, payloads=False) if not leaf.is_body)
    except MailctlError as err:
        problem = err.message
    return _summary(headers, len(data), count, problem)


def _header_summary(data: bytes, limits: ParseLimits, problem: str) -> MessageSummary:
    """What the header block alone says, for a message whose body broke a limit."""
    end = _header_end(data, limits.max_headers_bytes)
    try:
        tree = parse_tree(data[:end], limits)
        headers = raw_headers(tree)
    except MailctlError:
        headers = []
    return _summary(headers, len(data), 0, problem)


def _summary(
    headers: list[tuple[str, str]], size: int, count: int, problem: str | None
) -> MessageSummary:
    # The address headers as decoded text: a listing shows them, and the strict address
    # parsers (~0.2 ms a header) are parse_message's job.
    return MessageSummary(
        message_id=next(iter(message_ids(first(headers, "Message-ID"))), None),
        date_iso=date_of(headers)[1],
        from_=_decoded(first(headers, "From")),
        to=_decoded(first(headers, "To")),
        subject=_decoded(first(headers, "Subject")),
        size=size,
        attachment_count=count,
        problem=problem,
    )


def _header_end(data: bytes, cap: int) -> int:
    """Where the top header block ends (its blank line), within `cap` bytes."""
    window = data[:cap]
    ends = [i for i in (window.find(b"\n\n"), window.find(b"\r\n\r\n")) if i >= 0]
    return min(ends) if ends else min(len(data), cap)
