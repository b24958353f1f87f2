"""The last check on wire bytes: their header blocks read back as exactly what was composed.

Input checks refuse what is known to be dangerous; this guard catches what the email package
does to a value on the way out (decoding, re-folding) that nobody predicted. It runs on the
bytes that are sent, saved or printed, so whatever it passed is what leaves.
"""

from __future__ import annotations

import re
from email import policy as email_policy
from email.headerregistry import AddressHeader, ParameterizedMIMEHeader
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from typing import Any, Final

from mailctl.errors import HeaderInjectionError
from mailctl.hosts import to_ascii_domain

__all__ = ["check_wire_headers", "header_field_names"]

# RFC 5322 2.2: field-name = 1*ftext, then ':'.
_FIELD: Final = re.compile(rb"([\x21-\x39\x3b-\x7e]+):")


def header_field_names(block: bytes) -> list[str]:
    """The field names of a header block (lines ending in CRLF or LF), lower-case, in order.

    Raises HeaderInjectionError for a line that is neither a field nor a continuation, for
    a continuation holding only blanks (some readers end the header block there), and for a
    bare CR: each means a value escaped its header line.
    """
    lines = block.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    names: list[str] = []
    for index, raw_line in enumerate(lines):
        line = raw_line.removesuffix(b"\r")
        if b"\r" in line:
            raise _differs("a header line", "holds a bare CR")
        if index and line[:1] in (b" ", b"\t"):
            if not line.strip(b" \t"):
                raise _differs("a header line", "is blank")
            continue
        match = _FIELD.match(line)
        if match is None:
            raise _differs("a header line", "is not a header field")
        names.append(match.group(1).decode("ascii").lower())
    return names


def check_wire_headers(message: EmailMessage, data: bytes, *, utf8: bool) -> None:
    """Require that `data`, read back, holds the header fields of `message` in every part.

    Same field names in the same order (so nothing was added, lost or pushed into a body),
    the same MIME parts, and the same meaning for each value: mailboxes (display name up to
    blanks, which CPython's reader adds between encoded words), parameters, and text up to
    runs of blanks. Raises HeaderInjectionError naming the first difference.
    """
    head, separator, _ = data.partition(b"\r\n\r\n")
    if not separator:
        raise _differs("the header block", "has no end")
    composed = [name.lower() for name in message.keys()]  # noqa: SIM118 - a list, in order
    if header_field_names(head + b"\r\n") != composed:
        raise _differs("the header block", "holds other fields than were composed")
    parsed = _parse(data, utf8=utf8)
    ours, theirs = list(message.walk()), list(parsed.walk())
    if len(ours) != len(theirs):
        raise _differs("the MIME structure", "changed")
    for number, (mine, read) in enumerate(zip(ours, theirs, strict=True)):
        where = "the header block" if number == 0 else f"the headers of MIME part {number}"
        if [n.lower() for n in mine.keys()] != [n.lower() for n in read.keys()]:  # noqa: SIM118
            raise _differs(where, "holds other fields than were composed")
        for (name, value), (_, back) in zip(mine.items(), read.items(), strict=True):
            if _meaning(value) != _meaning(back):
                raise _differs(f"header {name}", "would read back differently")


def _parse(data: bytes, *, utf8: bool) -> EmailMessage:
    policy = email_policy.default
    if utf8:  # RFC 6532 headers; composed bodies are 7-bit, so the whole message is UTF-8
        text = data.decode("utf-8", "surrogateescape")
        message: Any = Parser(policy=policy).parsestr(text)
    else:
        message = BytesParser(policy=policy).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def _meaning(value: Any) -> object:
    if isinstance(value, AddressHeader):
        return tuple(
            (
                None if group.display_name is None else "".join(group.display_name.split()),
                tuple(
                    ("".join(a.display_name.split()), a.username, _domain(a.domain))
                    for a in group.addresses
                ),
            )
            for group in value.groups
        )
    if isinstance(value, ParameterizedMIMEHeader):
        kind = str(value).partition(";")[0].strip().lower()
        return kind, tuple(sorted((k.lower(), str(v)) for k, v in value.params.items()))
    return " ".join(str(value).split())


def _domain(domain: str) -> str:
    try:
        return to_ascii_domain(domain).lower()
    except UnicodeError:  # pragma: no cover - composed domains were validated
        return domain.lower()


def _differs(what: str, how: str) -> HeaderInjectionError:
    return HeaderInjectionError(
        f"{what} {how} after serialisation",
        hint="mailctl refuses to send what the email package would change; please report it",
    )
