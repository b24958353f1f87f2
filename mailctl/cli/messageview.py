"""A parsed message for people: header summary, hops, verdicts, attachments, then the text.

Every string here came from the message, so each goes through mailctl.text.inert (escapes
instead of terminal controls) and is printed without rich markup (Output.print writes plain
lines). HTML is never printed as is: a text view of it is, when there is no text body.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from mailctl.text import inert

if TYPE_CHECKING:
    from mailctl.mime.parse import AddressInfo, AttachmentInfo, ParsedMessage

__all__ = ["message_lines"]

HTML_VIEW_LIMIT: Final = 256 * 1024  # characters of HTML turned into text for the terminal


def _addresses(boxes: Sequence[AddressInfo]) -> str:
    return ", ".join(f"{box.name} <{box.address}>" if box.name else box.address for box in boxes)


def _size(size: int) -> str:
    for unit, name in ((1024 * 1024, "MiB"), (1024, "KiB")):
        if size >= unit:
            return f"{size / unit:.1f} {name}"
    return f"{size} bytes"


def _attachment(index: int, info: AttachmentInfo, saved: Path | None) -> Iterator[str]:
    name = inert(info.name) if info.name is not None else "(no name)"
    inline = ", inline" if info.inline else ""
    yield f"  {index}. {name}  {inert(info.content_type)}, {_size(info.size)}{inline}"
    yield f"     sha256 {info.sha256}"
    if saved is not None:
        yield f"     saved as {inert(str(saved))}"


def message_lines(message: ParsedMessage, saved: Sequence[Path | None] = ()) -> Iterator[str]:
    """The lines that show `message`; `saved[i]` is where attachment i was written, if it was."""
    yield from _header_lines(message)
    for section in (
        _hop_lines(message),
        _verdict_lines(message),
        _unsubscribe_lines(message),
        _dsn_lines(message),
        _attachment_lines(message, saved),
        _problem_lines(message),
    ):
        lines = list(section)
        if lines:
            yield ""
            yield from lines
    yield ""
    yield from _body(message)


def _header_lines(message: ParsedMessage) -> Iterator[str]:
    fields = [
        ("From", _addresses(message.from_)),
        ("To", _addresses(message.to)),
        ("Cc", _addresses(message.cc)),
        ("Reply-To", _addresses(message.reply_to)),
        ("Date", message.date or ""),
        ("Subject", message.subject or ""),
        ("Message-ID", message.message_id or ""),
        ("In-Reply-To", message.in_reply_to or ""),
    ]
    for label, value in fields:
        if value or label in ("From", "Subject", "Date"):
            yield f"{label + ':':<12} {inert(value)}".rstrip()
    yield f"{'Size:':<12} {_size(message.size)}"


def _hop_lines(message: ParsedMessage) -> Iterator[str]:
    if message.received:
        yield "Received (oldest first):"
    for hop in message.received:
        delay = f"  +{hop.delay:.1f} s" if hop.delay is not None else ""
        route = f"{inert(hop.from_ or '?')} -> {inert(hop.by or '?')}"
        with_ = f"  with {inert(hop.with_)}" if hop.with_ else ""
        yield f"  {hop.timestamp or '(no date)'}  {route}{with_}{delay}"


def _verdict_lines(message: ParsedMessage) -> Iterator[str]:
    if message.authentication:
        yield "Authentication-Results (trust only your own server's):"
    for verdict in message.authentication:
        method, result = inert(verdict.method), inert(verdict.result)
        yield f"  {method}={result}  by {inert(verdict.authserv_id)}"


def _unsubscribe_lines(message: ParsedMessage) -> Iterator[str]:
    if message.list_unsubscribe:
        one_click = " (one-click, RFC 8058)" if message.list_unsubscribe_one_click else ""
        yield f"List-Unsubscribe{one_click}:"
        yield from (f"  {inert(uri)}" for uri in message.list_unsubscribe)


def _dsn_lines(message: ParsedMessage) -> Iterator[str]:
    if message.dsn is None:
        return
    yield f"Delivery status notification from {inert(message.dsn.reporting_mta or '?')}:"
    for rcpt in message.dsn.recipients:
        who = inert(rcpt.original_recipient or rcpt.final_recipient or "?")
        yield f"  {who}: {inert(rcpt.action or '?')} {inert(rcpt.status or '')}".rstrip()
        if rcpt.diagnostic_code:
            yield f"    {inert(rcpt.diagnostic_code)}"


def _attachment_lines(message: ParsedMessage, saved: Sequence[Path | None]) -> Iterator[str]:
    if message.attachments:
        yield "Attachments:"
    for index, info in enumerate(message.attachments, start=1):
        where = saved[index - 1] if index - 1 < len(saved) else None
        yield from _attachment(index, info, where)


def _problem_lines(message: ParsedMessage) -> Iterator[str]:
    if message.problems:
        yield "Read leniently:"
    yield from (f"  {inert(problem)}" for problem in message.problems)


def _body(message: ParsedMessage) -> Iterator[str]:
    if message.text is not None:
        yield inert(message.text.rstrip("\n"), lines=True)
    elif message.html is not None:
        from mailctl.mime.parse import html_text

        cut = len(message.html) > HTML_VIEW_LIMIT
        yield "(HTML body shown as text; --json has the HTML)"
        yield ""
        yield inert(html_text(message.html[:HTML_VIEW_LIMIT]), lines=True)
        if cut:
            yield f"(cut at {HTML_VIEW_LIMIT // 1024} KiB of HTML)"
    else:
        yield "(no text body)"
