"""What POP3 retrieval hands back (`Pop3Message`): one shape for the plain RETR loop and
the pipelined reader, so `core.fetch` depends on one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pop3Message:
    """One message of RETR (RFC 1939 7): `data` un-dot-stuffed, CRLF line ends as sent."""

    number: int
    uid: str | None  # from UIDL (RFC 1939 7), None when the server has no UIDL
    size: int  # the LIST size when known, else len(data)
    data: bytes
