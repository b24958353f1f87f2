"""`mailctl fetch` and `mailctl folders` (this is their API).

`run.py` (the use cases and the durability order: message, state, server), `models.py`
(requests, results, one message's record), `state.py` (what earlier runs into a
destination took, in the XDG state dir; Message-ID keys for UIDVALIDITY changes),
`destinations.py` (Maildir, mbox, .eml folder, attachments, manifest), `summary.py` (what
fetch reads of a message: the envelope from the header block; attachments and --full
through mime.parse).
"""

from mailctl.core.fetch.models import (
    Destinations,
    FetchedMessage,
    FetchRequest,
    FetchResult,
    FoldersRequest,
    FoldersResult,
    MessageError,
    SavedAttachment,
)
from mailctl.core.fetch.run import fetch, folders
from mailctl.protocols.imap.search import SearchCriteria

__all__ = [
    "Destinations",
    "FetchRequest",
    "FetchResult",
    "FetchedMessage",
    "FoldersRequest",
    "FoldersResult",
    "MessageError",
    "SavedAttachment",
    "SearchCriteria",
    "fetch",
    "folders",
]
