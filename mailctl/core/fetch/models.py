"""The requests and results of `mailctl fetch` and `mailctl folders`, and one message's record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mailctl.errors import ExitCode, MailctlError, worst_exit_code
from mailctl.models import ResolvedServer, TranscriptCallback
from mailctl.protocols.imap.search import SearchCriteria
from mailctl.protocols.imap.types import FolderStatus
from mailctl.serialize import SKIP, meta


@dataclass(frozen=True)
class Destinations:
    """Where fetched messages go; none at all: a listing (envelopes only)."""

    maildir: Path | None = None
    mbox: Path | None = None
    eml_dir: Path | None = None
    attachments: Path | None = None
    manifest: Path | None = None

    @property
    def writes(self) -> bool:
        """True when a message is kept somewhere (state and server changes need it)."""
        return any(p is not None for p in (self.maildir, self.mbox, self.eml_dir))

    def key(self) -> str:
        """The destination as the state file names it: the places that keep messages, as
        absolute paths (--attachments and --manifest come along with them and do not make
        another destination)."""
        parts = [
            f"{name}={path.resolve()}"
            for name, path in (
                ("maildir", self.maildir),
                ("mbox", self.mbox),
                ("eml-dir", self.eml_dir),
            )
            if path is not None
        ]
        return ";".join(parts) or "listing"


@dataclass(frozen=True)
class FetchRequest:
    """One fetch: from which server and folder, what to select, where to put it, and what
    to change on the server once every message is durable here.

    `protocol` is "imap" or "pop3". `limit`: at most this many messages, the newest.
    `watch`: after the first pass, wait in IDLE for new mail this many seconds in all
    (IMAP only); `idle_seconds` is one IDLE's longest wait (RFC 2177 asks for a new IDLE
    within 29 minutes). `envelopes=False` skips reading each message's headers, most of
    fetch's own work per message, when nothing would show them (--manifest still does).
    """

    server: ResolvedServer
    protocol: Literal["imap", "pop3"] = "imap"
    folder: str = "INBOX"
    criteria: SearchCriteria = field(default_factory=SearchCriteria)
    limit: int | None = None
    uidls: tuple[str, ...] = ()  # POP3: only the messages with these unique-ids (RFC 1939 7)
    new: bool = False
    mark_seen: bool = False
    delete: bool = False
    move_to: str | None = None
    destinations: Destinations = field(default_factory=Destinations)
    full: bool = False
    envelopes: bool = True
    watch: float | None = None
    idle_seconds: float = 25 * 60.0
    batch: int = 500
    state_dir: Path | None = None  # None: config.paths.state_dir()
    on_transcript: TranscriptCallback | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SavedAttachment:
    name: str  # the file name written (sanitised), inside the attachments folder
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class FetchedMessage:
    """One message of a fetch: where it came from, its envelope, where it went.

    IMAP: `uid` and `uidvalidity`; POP3: `number` and `uidl`. `problem`: why the envelope
    is incomplete (a message the parser could not read whole), the message is still kept.
    """

    uid: int | None
    uidvalidity: int | None
    number: int | None
    uidl: str | None
    message_id: str | None
    date_iso: str | None
    from_: str | None = field(metadata=meta(key="from"))
    to: str | None
    subject: str | None
    size: int
    flags: tuple[str, ...]
    attachment_count: int | None
    attachments: tuple[SavedAttachment, ...] = ()
    path: Path | None = None  # the Maildir or .eml file written
    problem: str | None = None
    parsed: object = None  # --full: the parsed message (mailctl.serialize writes it)


@dataclass(frozen=True)
class MessageError:
    """A message that was not fetched (too large, gone, unreadable): left on the server."""

    uid: int | None
    number: int | None
    code: str
    message: str


OnMessage = Callable[[FetchedMessage], None]


@dataclass
class FetchResult:
    """What a fetch did. `messages`: the envelopes (in JSON mode; empty when streamed)."""

    protocol: str
    server: str
    folder: str | None
    uidvalidity: int | None = None
    selected: int = 0  # messages that matched the selection (before --new and --limit)
    fetched: int = 0
    already_fetched: int = 0  # skipped by --new (state, or Message-ID after re-keying)
    rekeyed: bool = False  # UIDVALIDITY changed since the last run: matched by Message-ID
    deleted: int = 0
    moved: int = 0
    watched: float | None = field(default=None, metadata=meta(seconds=True))
    state_file: Path | None = None
    messages: list[FetchedMessage] = field(default_factory=list)
    # The envelope's `errors` carries these (with uid/number): not repeated in `data`.
    failed: list[MessageError] = field(default_factory=list, metadata=SKIP)
    interrupted: bool = False

    @property
    def status(self) -> Literal["ok", "partial", "error"]:
        if not self.failed and not self.interrupted:
            return "ok"
        return "partial" if self.fetched else "error"

    @property
    def exit_code(self) -> ExitCode:
        """0, else 130 when interrupted, else 69 for messages left on the server."""
        codes = [ExitCode.INTERRUPTED] if self.interrupted else []
        codes += [_CODES.get(item.code, ExitCode.TEMPFAIL) for item in self.failed]
        return worst_exit_code(codes)


_CODES = {"message_not_fetched": ExitCode.UNAVAILABLE}


@dataclass(frozen=True)
class FoldersRequest:
    server: ResolvedServer
    on_transcript: TranscriptCallback | None = field(default=None, repr=False)


@dataclass(frozen=True)
class FoldersResult:
    server: str
    folders: tuple[FolderStatus, ...]


def error_entry(error: MailctlError, *, uid: int | None, number: int | None) -> MessageError:
    return MessageError(uid=uid, number=number, code=error.code, message=error.one_line())
