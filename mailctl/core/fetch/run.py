"""`fetch(FetchRequest) -> FetchResult` and `folders(FoldersRequest) -> FoldersResult`.

The order that keeps every message safe (kill -9 at any point loses nothing): a message
is written and made durable (fsync, rename) by `Keeper.keep`; then the state records it
(written atomically, every `batch` messages and at the end); only then does the server
change (IMAP UID MOVE or STORE \\Deleted + UID EXPUNGE, POP3 DELE, which takes effect at
QUIT). A run killed before the state write fetches that message again next time (a
duplicate, never a loss); one killed before the server change leaves it on the server.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from mailctl.core.fetch.destinations import Keeper
from mailctl.core.fetch.models import (
    FetchedMessage,
    FetchRequest,
    FetchResult,
    FoldersRequest,
    FoldersResult,
    MessageError,
    OnMessage,
)
from mailctl.core.fetch.state import FetchState, message_key
from mailctl.core.fetch.summary import MessageSummary, parse_full, summarize_headers
from mailctl.errors import ServerUnsupportedError, UsageError
from mailctl.hosts import endpoint
from mailctl.protocols.imap import ImapSession
from mailctl.protocols.imap.search import SearchCriteria, in_set, require_folder_name
from mailctl.protocols.imap.types import ImapMessage, SelectedFolder
from mailctl.protocols.limits import octets
from mailctl.protocols.pop3 import Pop3Session
from mailctl.text import quote


def folders(request: FoldersRequest) -> FoldersResult:
    """List the IMAP folders with their counts. Raises the session's errors."""
    settings = request.server.settings
    with ImapSession.open(
        settings, secret=request.server.secret, on_transcript=request.on_transcript
    ) as session:
        found = session.folders()
    return FoldersResult(server=endpoint(settings.host, settings.port), folders=tuple(found))


def fetch(request: FetchRequest, on_message: OnMessage | None = None) -> FetchResult:
    """Fetch what `request` selects into its destinations (a listing without any).

    `on_message` gets each message as it is kept (--jsonl, progress); without it the
    result collects them. Per-message failures (too large, gone) are in `failed` and
    leave the message on the server. Raises UsageError (options that do not go together),
    ServerUnsupportedError, CantCreateError, ConfigError (a damaged state file), and the
    session's errors.
    """
    _check(request)
    settings = request.server.settings
    result = FetchResult(
        protocol=request.protocol,
        server=endpoint(settings.host, settings.port),
        folder=request.folder if request.protocol == "imap" else None,
    )
    with Keeper(request.destinations) as keeper:
        run = _Run(request, keeper, result, on_message)
        try:
            if request.protocol == "pop3":
                run.pop3()
            else:
                run.imap()
        except KeyboardInterrupt:
            result.interrupted = True  # what was kept is in the state (saved on the way out)
    return result


def _check(request: FetchRequest) -> None:
    """Refuse what cannot work before anything is created or connected."""
    for name in (request.folder, request.move_to):
        if name is not None:
            require_folder_name(name)
    if (request.delete or request.move_to) and not request.destinations.writes:
        raise UsageError(
            "--delete and --move need a place that keeps the messages first",
            hint="add --maildir DIR, --mbox FILE or --eml-dir DIR",
        )
    if request.delete and request.move_to:
        raise UsageError("--delete and --move exclude each other", hint="pick one")
    if request.move_to is not None and _same_folder(request.move_to, request.folder):
        raise UsageError(
            "--move names the folder being fetched", hint="name another folder, or drop --move"
        )
    if request.limit is not None and request.limit < 1:
        raise UsageError("--limit must be at least 1", hint="give a number of messages")
    if request.uidls and request.protocol != "pop3":
        raise UsageError("--uidl selects POP3 messages", hint="add --pop3, or use --uid for IMAP")
    for uidl in request.uidls:
        if not _UNIQUE_ID.fullmatch(uidl):
            raise UsageError(
                f"--uidl {quote(uidl)} is not a POP3 unique-id",
                hint="RFC 1939 7: 1 to 70 printable ASCII characters, no spaces",
            )
    if request.protocol == "pop3":
        imap_only = [
            flag
            for flag, used in (
                (
                    "selection options but --uid",
                    replace(request.criteria, uid_range=None) != SearchCriteria(),
                ),
                ("--folder", request.folder.upper() != "INBOX"),
                ("--mark-seen", request.mark_seen),
                ("--move", request.move_to is not None),
                ("--watch", request.watch is not None),
            )
            if used
        ]
        if imap_only:
            raise UsageError(
                f"{', '.join(imap_only)} work over IMAP only; POP3 has one mailbox and no search",
                hint="drop --pop3, or select with --new, --limit and --uid (message numbers)",
            )


# The envelope of a message whose headers nobody reads (FetchRequest.envelopes).
_NO_ENVELOPE = MessageSummary(
    message_id=None, date_iso=None, from_=None, to=None, subject=None, size=0,
    attachment_count=None,
)  # fmt: skip

# RFC 1939 7: a unique-id is 1 to 70 characters in the range 0x21 to 0x7E.
_UNIQUE_ID = re.compile(r"[\x21-\x7e]{1,70}")


def _same_folder(one: str, other: str) -> bool:
    """RFC 3501 5.1: INBOX is case-insensitive, every other name is not."""
    return one == other or one.upper() == other.upper() == "INBOX"


def _state_dir(request: FetchRequest) -> Path:
    if request.state_dir is not None:
        return request.state_dir
    from mailctl.config.paths import state_dir

    return state_dir() / "fetch"


class _Run:
    """One fetch in progress: the session's messages through the keeper, state, server."""

    def __init__(
        self,
        request: FetchRequest,
        keeper: Keeper,
        result: FetchResult,
        on_message: OnMessage | None,
    ) -> None:
        self.request = request
        self.keeper = keeper
        self.result = result
        self.on_message = on_message
        # State is kept when messages are kept somewhere, or a listing asks for --new.
        self.tracking = request.destinations.writes or request.new
        self.state: FetchState | None = None
        self._saved_at = time.monotonic()
        self._save_cost = 0.0  # seconds the last state write took
        self._held: list[FetchedMessage] | None = None  # a listing batch's reports

    def _load_state(self, folder: str | None) -> FetchState:
        settings = self.request.server.settings
        # The host without the port: IMAPS on 993 and STARTTLS on 143 reach one mailbox.
        identity = {
            "protocol": self.request.protocol,
            "server": settings.host.lower(),
            "user": settings.username or "",
            "folder": folder or "",
            "destination": self.request.destinations.key(),
        }
        state = FetchState.load(_state_dir(self.request), identity)
        self.result.state_file = state.path if self.tracking else None
        return state

    def _keep(
        self,
        data: bytes,
        *,
        size: int,
        flags: tuple[str, ...] = (),
        uid: int | None = None,
        uidvalidity: int | None = None,
        number: int | None = None,
        uidl: str | None = None,
    ) -> None:
        """Keep one message (durably), then report it."""
        path, attachments = self.keeper.write(data)
        request = self.request
        # Nobody reads the envelope of a quiet run: reading the headers would be most of
        # the work per message.
        wanted = request.envelopes or self.keeper.manifest
        summary = summarize_headers(data) if wanted else _NO_ENVELOPE
        record = FetchedMessage(
            uid=uid,
            uidvalidity=uidvalidity,
            number=number,
            uidl=uidl,
            message_id=summary.message_id,
            date_iso=summary.date_iso,
            from_=summary.from_,
            to=summary.to,
            subject=summary.subject,
            size=size,
            flags=flags,
            attachment_count=summary.attachment_count,
            attachments=attachments,
            path=path,
            problem=summary.problem,
            parsed=parse_full(data) if request.full else None,
        )
        self.keeper.written(record)
        self.result.fetched += 1
        if self._held is not None:
            self._held.append(record)  # reported in listing order at the batch's end
        else:
            self._report(record)

    def _report(self, kept: FetchedMessage) -> None:
        if self.on_message is not None:
            self.on_message(kept)
        else:
            self.result.messages.append(kept)

    # -- IMAP ----------------------------------------------------------------------------

    def imap(self) -> None:
        request = self.request
        changes = request.delete or request.move_to is not None
        with ImapSession.open(
            request.server.settings,
            secret=request.server.secret,
            on_transcript=request.on_transcript,
        ) as session:
            needs_uidplus = request.delete or (request.move_to and not session.supports("MOVE"))
            if needs_uidplus and not session.supports("UIDPLUS"):
                what = "--delete" if request.delete else "--move without MOVE"
                raise ServerUnsupportedError(
                    f"IMAP server {session.where} offers no UIDPLUS, which {what} needs "
                    "to remove only the messages fetched (RFC 4315)",
                    hint="fetch without it and clean up in a mail client",
                )
            if request.watch is not None and not session.supports("IDLE"):
                raise ServerUnsupportedError(
                    f"IMAP server {session.where} does not offer IDLE, which --watch needs "
                    "(RFC 2177)",
                    hint="run fetch --new from a timer instead",
                )
            readonly = not (changes or request.mark_seen)
            selected = session.select(request.folder, readonly=readonly)
            self.result.uidvalidity = selected.uidvalidity
            if self.tracking:
                self.state = self._load_state(request.folder)
            floor = self._imap_pass(session, selected, floor=None)
            if request.watch is not None:
                self._watch(session, selected, floor)

    def _watch(self, session: ImapSession, selected: SelectedFolder, floor: int) -> None:
        started = time.monotonic()
        end = started + (self.request.watch or 0.0)
        while (left := end - time.monotonic()) > 0:
            if session.idle(min(left, self.request.idle_seconds)):
                floor = self._imap_pass(session, selected, floor=floor)
        self.result.watched = time.monotonic() - started

    def _imap_pass(
        self, session: ImapSession, selected: SelectedFolder, *, floor: int | None
    ) -> int:
        """Select, fetch, keep, record, change the server; return the highest UID seen."""
        request = self.request
        state = self.state
        uids, already, seen_high = self._selection(session, selected, floor)
        if self.result.rekeyed and already:
            self._record_taken(selected, already)  # matched by Message-ID: taken already
        ascending = request.destinations.writes or request.new
        order = uids if ascending else list(reversed(uids))
        pending: list[int] = already if request.new and state is not None else []
        done: list[int] = []
        got: set[int] = set()
        # A server change is a command, which cannot go out while a UID FETCH answer is
        # still coming (two are in flight): a run that changes the server fetches a batch
        # at a time and changes between batches; any other streams, its checkpoints only
        # writing the state.
        changes = request.delete or request.move_to is not None
        size = request.batch
        groups = (
            [order[at : at + size] for at in range(0, len(order), size)] if changes else [order]
        )
        try:
            for group in groups:
                # Messages come in the server's order within a batch (a newest-first listing
                # is answered oldest first by Dovecot): what was skipped is told by set.
                for message in self._bodies(session, group, listing=not ascending):
                    got.add(message.uid)
                    self._keep(
                        message.data,
                        size=message.size,
                        flags=message.flags,
                        uid=message.uid,
                        uidvalidity=selected.uidvalidity,
                    )
                    if state is not None:
                        state.keys.add(message_key(message.data))
                    done.append(message.uid)
                    if not changes and len(done) >= size and self._checkpoint_due():
                        self._imap_checkpoint(session, selected, done, pending)
                        done, pending = [], []
                if changes and len(done) >= size and self._checkpoint_due():
                    self._imap_checkpoint(session, selected, done, pending)
                    done, pending = [], []
            for uid in order:  # UIDs the reader skipped: too large, or gone
                if uid not in got:
                    self._not_fetched(uid=uid)
        finally:
            # Also on the way out of a failed or interrupted run: what was kept is
            # recorded (without a server change: the state is what makes it safe later).
            if state is not None:
                self._record_taken(selected, done + already)
        self._imap_change(session, done + pending)
        return seen_high

    def _bodies(
        self, session: ImapSession, order: list[int], *, listing: bool
    ) -> Iterator[ImapMessage]:
        """`fetch_bodies` over `order`; for a listing (newest first), one batch at a time
        with its reports held and given in `order` at the batch's end, so a `--jsonl`
        stream is newest first too while memory holds only a batch of summaries."""
        request = self.request
        if not listing:
            yield from session.fetch_bodies(order, mark_seen=request.mark_seen, batch=request.batch)
            return
        for start in range(0, len(order), request.batch):
            chunk = order[start : start + request.batch]
            self._held = []
            try:
                yield from session.fetch_bodies(
                    chunk, mark_seen=request.mark_seen, batch=request.batch
                )
            finally:
                held, self._held = self._held, None
                position = {uid: index for index, uid in enumerate(chunk)}
                for kept in sorted(held, key=lambda item: position.get(item.uid or 0, -1)):
                    self._report(kept)

    def _selection(
        self, session: ImapSession, selected: SelectedFolder, floor: int | None
    ) -> tuple[list[int], list[int], int]:
        """(UIDs to fetch, UIDs fetched by earlier runs, the highest UID selected)."""
        request = self.request
        result = self.result
        state = self.state
        uids = session.search(request.criteria)
        if floor is not None:
            uids = [uid for uid in uids if uid > floor]
        result.selected += len(uids)
        seen_high = max(uids, default=floor or 0)
        already: list[int] = []
        if request.new and state is not None:
            if state.uidvalidity is not None and state.uidvalidity != selected.uidvalidity:
                # RFC 3501 2.3.1.1: the old UIDs mean nothing now; match by Message-ID.
                result.rekeyed = True
                keys = {
                    header.uid: message_key(header.data)
                    for header in session.fetch_headers(uids, batch=request.batch)
                }
                already = [uid for uid in uids if keys.get(uid) in state.keys]
            else:
                already = [uid for uid in uids if uid in state.uids]
            known = set(already)
            uids = [uid for uid in uids if uid not in known]
            result.already_fetched += len(already)
        if request.limit is not None:
            # --new drains oldest first (the next run goes on); a listing shows the newest.
            uids = uids[: request.limit] if request.new else uids[-request.limit :]
        return uids, already, seen_high

    def _checkpoint_due(self) -> bool:
        """A batch is in: write the state (and make the batch's server change) now, unless
        the last write was too recent for its cost. A write rewrites the whole state, which
        grows with the folder; waiting 8x its cost keeps writing under a ninth of the run
        on a folder of any size, where a write per batch would make the run quadratic."""
        return time.monotonic() - self._saved_at >= 8 * self._save_cost

    def _imap_checkpoint(
        self,
        session: ImapSession,
        selected: SelectedFolder,
        done: list[int],
        pending: list[int],
    ) -> None:
        if self.state is not None:
            self._record_taken(selected, done)
        self._imap_change(session, done + pending)

    def _record_taken(self, selected: SelectedFolder, uids: list[int]) -> None:
        """Write the state with `uids` taken (kept here) under the folder's UIDVALIDITY."""
        state = self.state
        if state is None:
            return
        if state.uidvalidity != selected.uidvalidity:
            state.uids = set()  # UIDs of another UIDVALIDITY say nothing here
        state.uids.update(uids)
        state.uidvalidity = selected.uidvalidity
        self._save(state)

    def _save(self, state: FetchState) -> None:
        """The messages kept so far are made durable, then the state that says so."""
        self.keeper.sync()
        started = time.monotonic()
        state.save()
        self._saved_at = time.monotonic()
        self._save_cost = self._saved_at - started

    def _imap_change(self, session: ImapSession, uids: Sequence[int]) -> None:
        """The server change asked for, for messages now durable here and in the state."""
        if not uids:
            return
        self.keeper.sync()
        if self.request.move_to is not None:
            session.move(uids, self.request.move_to)
            self.result.moved += len(uids)
        elif self.request.delete:
            session.delete(uids)
            self.result.deleted += len(uids)

    def _not_fetched(self, *, uid: int | None = None, number: int | None = None) -> None:
        limit = octets(50 * 1024 * 1024)
        which = f"UID {uid}" if uid is not None else f"message {number}"
        self.result.failed.append(
            MessageError(
                uid=uid,
                number=number,
                code="message_not_fetched",
                message=f"{which} was not fetched: larger than {limit} (max_message), or "
                "removed meanwhile; it stays on the server",
            )
        )

    # -- POP3 ----------------------------------------------------------------------------

    def pop3(self) -> None:
        request = self.request
        result = self.result
        with Pop3Session.open(
            request.server.settings,
            secret=request.server.secret,
            on_transcript=request.on_transcript,
        ) as session:
            sizes, uidls = session.listing()
            numbers = sorted(sizes)
            if request.criteria.uid_range is not None:
                # POP3 has no UIDs: --uid selects by message number (RFC 1939 "msg").
                numbers = in_set(numbers, request.criteria.uid_range)
            if request.uidls:
                wanted = set(request.uidls)
                numbers = [number for number in numbers if uidls.get(number) in wanted]
            result.selected = len(numbers)
            state = self._load_state(None) if self.tracking else None
            self.state = state
            already: list[int] = []
            if request.new and state is not None:
                if numbers and not uidls:
                    raise ServerUnsupportedError(
                        f"POP3 server {session.where} has no UIDL, which --new needs to "
                        "know what was fetched before (RFC 1939 7)",
                        hint="fetch without --new (with --delete, to take each message once)",
                    )
                already = [n for n in numbers if uidls.get(n) in state.uidls]
                known = set(already)
                numbers = [n for n in numbers if n not in known]
                result.already_fetched = len(already)
            if request.limit is not None:
                numbers = numbers[: request.limit] if request.new else numbers[-request.limit :]
            order = numbers if request.destinations.writes else list(reversed(numbers))
            done: list[int] = []
            got: set[int] = set()
            try:
                for message in session.retrieve(order):
                    got.add(message.number)
                    self._keep(
                        message.data, size=message.size, number=message.number, uidl=message.uid
                    )
                    done.append(message.number)
            finally:
                if state is not None:
                    # UIDLs no longer listed are gone from the server: forget them.
                    listed = set(uidls.values())
                    state.uidls = (state.uidls & listed) | {uidls[n] for n in done if n in uidls}
                    self._save(state)
            for number in order:
                if number not in got:
                    self._not_fetched(number=number)
            if request.delete:
                # RFC 1939 6: DELE marks; QUIT (leaving the `with`) removes. A connection
                # lost before QUIT removes nothing.
                for number in done + (already if state is not None else []):
                    session.delete(number)
                    result.deleted += 1
