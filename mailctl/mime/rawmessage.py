"""Edits to a raw message's header block that leave every other byte as it was (sendmail mode)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mailctl.errors import HeaderInjectionError
from mailctl.text import quote

if TYPE_CHECKING:
    from mailctl.mime.headers import Mailbox

_FIELD = re.compile(rb"^[\x21-\x39\x3b-\x7e]+:")


def split_header_block(data: bytes) -> tuple[bytes, bytes]:
    """Return (headers, rest) where rest starts with the blank separator line, if any.

    A message whose first line is not a header field has no header block (`echo hi | sendmail`).
    """
    first_line = data.split(b"\n", 1)[0]
    if not _FIELD.match(first_line):
        return b"", data
    found = [(i, sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := data.find(sep)) >= 0]
    if not found:
        return data, b""
    index, sep = min(found)
    cut = index + len(sep) // 2  # keep the newline that ends the last header line
    return data[:cut], data[cut:]


def header_value(data: bytes, name: str) -> str | None:
    """The first header `name` (unfolded, decoded as UTF-8), or None.

    Bytes that are not UTF-8 become surrogate escapes (PEP 383), never U+FFFD: a value used as
    an address must be refused by the address parser (require_utf8), not sent mangled.
    """
    headers, _ = split_header_block(data)
    wanted = name.lower().encode("ascii")
    current: list[bytes] | None = None
    for line in headers.splitlines():
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current.append(line)
            continue
        if current is not None:
            break
        field, sep, value = line.partition(b":")
        if sep and field.strip().lower() == wanted:
            current = [value]
    if current is None:
        return None
    return b" ".join(part.strip() for part in current).decode("utf-8", "surrogateescape")


def add_missing_headers(data: bytes, *, sender: Mailbox, full_name: str | None = None) -> bytes:
    """Add From, Date and Message-ID when absent, as msmtp does for cron and scripts.

    -F NAME only sets the display name of a From header that mailctl adds itself; like any
    display name, its RFC 2047 encoded words mean their decoded text. The added From is
    folded by the wire policy and read back as exactly this one mailbox, and the added lines
    must be exactly the added fields; the input's own lines follow unchanged.
    Raises HeaderInjectionError for a -F that holds (or decodes to) a control character,
    InputDataError for one that is not UTF-8.
    """
    import email.utils

    from mailctl.hosts import to_ascii_domain

    headers, rest = split_header_block(data)
    newline = b"\r\n" if b"\r\n" in data[:2000] else b"\n"
    added: dict[str, bytes] = {}
    if header_value(data, "From") is None:
        added["from"] = _from_field(sender, full_name)
    if header_value(data, "Date") is None:
        added["date"] = f"Date: {email.utils.formatdate(localtime=True)}\r\n".encode("ascii")
    if header_value(data, "Message-ID") is None:
        domain = sender.addr_spec.rpartition("@")[2]
        # RFC 5322 3.6.4: a msg-id is ASCII; an IDN sender domain gives its A-label.
        msgid = email.utils.make_msgid(domain=to_ascii_domain(domain) if domain else None)
        added["message-id"] = f"Message-ID: {msgid}\r\n".encode("ascii")
    if not added:
        return data
    block = b"".join(added.values()).replace(b"\r\n", newline)
    _check_added(block, list(added))
    # The input's own header lines follow unchanged; without any, the input is the body and
    # RFC 5322 needs the blank line between.
    return block + headers + rest if headers else block + newline + rest


def _from_field(sender: Mailbox, full_name: str | None) -> bytes:
    """The From field for `sender`, display name -F if given, folded for the wire."""
    from email.policy import default

    from mailctl.mime.headers import Mailbox, parse_address_header, require_clean
    from mailctl.mime.wire_policy import wire_policy

    box = sender
    if full_name:
        require_clean("-F", full_name)
        # Decode encoded words as a reader would, so -F means what --from's name means.
        box = Mailbox(str(default.header_factory("X-Full-Name", full_name)), sender.addr_spec)
    utf8 = box.needs_smtputf8
    policy = wire_policy(utf8=utf8)
    field = policy.fold("From", policy.header_factory("From", [box.address()]))
    value = field.partition(":")[2].replace("\r\n", "")
    found = parse_address_header("-F", value)
    # Without SMTPUTF8 the domain is written as its A-label: compare envelope forms.
    same = len(found) == 1 and (
        found[0].envelope_address(smtputf8=utf8) == box.envelope_address(smtputf8=utf8)
        and _squash(found[0]) == _squash(box)
    )
    if not same:
        raise HeaderInjectionError(
            f"-F {quote(full_name or box.display_name)} would not read back as one mailbox",
            hint="mailctl refuses to send what it cannot write faithfully; please report it",
        )
    return field.encode("utf-8")


def _squash(box: Mailbox) -> str:
    # CPython's reader adds a blank between adjacent encoded words (RFC 2047 6.2 drops it).
    return "".join(box.display_name.split())


def _check_added(block: bytes, names: list[str]) -> None:
    """The added lines are exactly the fields `names`: no value split, ended or emptied a line."""
    from mailctl.mime.wire_check import header_field_names

    if header_field_names(block) != names:
        raise HeaderInjectionError(
            "the added From, Date or Message-ID would not be one header field each",
            hint="mailctl refuses to send what it cannot write faithfully; please report it",
        )
