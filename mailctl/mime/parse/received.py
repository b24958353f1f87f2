"""The Received chain (RFC 5321 4.4) as hops: who handed the message to whom, with what, when."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from mailctl.mime.parse.decode import header_text
from mailctl.mime.parse.fields import parse_date
from mailctl.mime.parse.model import ReceivedHop

__all__ = ["received_hops"]

MAX_HOPS: Final = 100  # RFC 5321 6.3: a loop is suspected at ~100 Received fields
# RFC 5321 4.4 Stamp: clauses are keyword + value; the date-time follows the last ';'.
# A value is one token, optionally followed by a parenthesised comment (the TCP-info).
_CLAUSE: Final = re.compile(r"\b(from|by|with|via|id|for)\s+([^\s;()]{1,255})", re.IGNORECASE)


def received_hops(values: Sequence[str]) -> tuple[ReceivedHop, ...]:
    """Hops from the Received values in header order (newest first), returned oldest first.

    `delay` is the time since the previous (older) hop, None when either stamp is missing.
    Only the newest MAX_HOPS are read: the recipient's own servers added those, so they are
    the ones to trust.
    """
    hops: list[ReceivedHop] = []
    previous = None
    for raw in reversed(list(values)[:MAX_HOPS]):
        text = header_text(raw)
        clauses, _, stamp = text.rpartition(";")
        if not clauses:
            clauses, stamp = stamp, ""
        found: dict[str, str] = {}
        for match in _CLAUSE.finditer(clauses):
            found.setdefault(match.group(1).lower(), match.group(2))
        when = parse_date(stamp.strip()) if stamp else None
        delay = None
        if when is not None and previous is not None:
            try:
                delay = (when - previous).total_seconds()
            except TypeError:  # one naive, one aware: RFC 5322 dates always carry a zone
                delay = None
        hops.append(
            ReceivedHop(
                from_=found.get("from"),
                by=found.get("by"),
                with_=found.get("with"),
                timestamp=when.isoformat() if when is not None else None,
                delay=delay,
            )
        )
        if when is not None:
            previous = when
    return tuple(hops)
