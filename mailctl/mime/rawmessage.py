"""Edits to a raw message's header block that leave every other byte as it was (sendmail mode)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

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
    """The first header `name` (unfolded, decoded as UTF-8 with replacement), or None."""
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
    return b" ".join(part.strip() for part in current).decode("utf-8", errors="replace")


def add_missing_headers(data: bytes, *, sender: Mailbox, full_name: str | None = None) -> bytes:
    """Add From, Date and Message-ID when absent, as msmtp does for cron and scripts.

    -F NAME only sets the display name of a From header that mailctl adds itself.
    """
    import email.utils

    from mailctl.mime.headers import require_clean

    headers, rest = split_header_block(data)
    newline = b"\r\n" if b"\r\n" in data[:2000] else b"\n"
    added: list[str] = []
    if header_value(data, "From") is None:
        name = require_clean("-F", full_name) if full_name else sender.display_name
        # formataddr RFC 2047-encodes a non-ASCII display name, as a raw header needs.
        added.append(f"From: {email.utils.formataddr((name, sender.addr_spec), charset='utf-8')}")
    if header_value(data, "Date") is None:
        added.append(f"Date: {email.utils.formatdate(localtime=True)}")
    if header_value(data, "Message-ID") is None:
        domain = sender.addr_spec.rpartition("@")[2] or None
        added.append(f"Message-ID: {email.utils.make_msgid(domain=domain)}")
    if not added:
        return data
    block = newline.join(line.encode("utf-8") for line in added) + newline
    if not headers:
        # No header block at all: the input is the body; RFC 5322 needs the blank line between.
        return block + newline + rest
    return block + headers + rest
