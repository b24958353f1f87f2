"""What IMAP operations hand back (`SelectedFolder`, `FolderStatus`, `ImapMessage`).

Plain frozen values, shared by the session's simple operations and the bulk body reader,
so `core.fetch` depends on one shape whichever path produced it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SelectedFolder:
    """A folder once SELECTed or EXAMINEd (RFC 3501 6.3.1, 7.3.1, 7.1)."""

    name: str
    uidvalidity: int
    uidnext: int | None
    exists: int


@dataclass(frozen=True)
class FolderStatus:
    """One folder of LIST with its STATUS counts (RFC 3501 6.3.8, 6.3.10); a count the
    server did not give (a \\Noselect folder, STATUS refused) is None."""

    name: str
    delimiter: str | None
    flags: tuple[str, ...]
    messages: int | None
    unseen: int | None
    size: int | None  # RFC 8438 STATUS=SIZE, when offered


@dataclass(frozen=True)
class ImapMessage:
    """One message as a UID FETCH answered: the raw bytes exactly as the server sent them."""

    uid: int
    flags: tuple[str, ...]
    size: int  # RFC822.SIZE, or len(data) when the server did not send it
    internal_date: str | None  # INTERNALDATE as sent, e.g. "17-Jul-1996 02:44:25 -0700"
    data: bytes
