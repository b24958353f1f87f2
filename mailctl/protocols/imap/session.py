"""IMAP sessions over imapclient (`ImapSession`): IMAP's words for the `MailSession` skeleton."""

from __future__ import annotations

import contextlib
import imaplib
import ssl
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mailctl.errors import (
    AuthUnsupportedError,
    ConnectionLostError,
    FolderUnavailableError,
    ProtocolError,
    ServerUnsupportedError,
)
from mailctl.models import AuthMechanism, Protocol, Security, ServerSettings
from mailctl.protocols.checks import SecretBox
from mailctl.protocols.imap.search import SearchCriteria, require_folder_name
from mailctl.protocols.imap.types import FolderStatus, ImapMessage, SelectedFolder
from mailctl.protocols.limits import ReadLimits
from mailctl.protocols.mailsession import MailSession
from mailctl.text import excerpt, quote

if TYPE_CHECKING:  # the bulk reader builds them; imported when it runs
    from mailctl.protocols.imap.types import ImapMessage


class ImapSession(MailSession):
    """An IMAP session: `open()` (TLS, capabilities, login), operations, `close()` (LOGOUT)."""

    protocol = Protocol.IMAP
    starttls_command = "STARTTLS"
    any_login = "plain or login"
    transient_codes = frozenset({"UNAVAILABLE", "INUSE", "LIMIT"})  # RFC 5530

    def __init__(self, settings: ServerSettings, box: SecretBox, limits: ReadLimits) -> None:
        super().__init__(settings, box, limits)
        self._client: Any = None  # a BoundedIMAPClient once connected
        self._capability_list: tuple[str, ...] = ()

    # -- operations (folders, fetch) ----------------------------------------------------

    def supports(self, capability: str) -> bool:
        """Whether the server offers `capability` now. Servers list more after login (RFC
        3501 6.2.3: Dovecot's MOVE and UIDPLUS), so imapclient's own list is asked, which
        it takes from the login answer or a new CAPABILITY."""
        with self.guard("capability"):
            return bool(self._client.has_capability(capability.upper()))

    def folders(self) -> list[FolderStatus]:
        """Every folder (LIST "" "*", RFC 3501 6.3.8) with its STATUS counts (6.3.10).

        SIZE (RFC 8438) is asked for when STATUS=SIZE is offered. A \\Noselect or
        \\NonExistent folder, or one whose STATUS is refused, has None counts.
        """
        with self.guard("list"):
            listed = self._client.list_folders()
        items = ["MESSAGES", "UNSEEN"] + (["SIZE"] if self.supports("STATUS=SIZE") else [])
        out: list[FolderStatus] = []
        for raw_flags, raw_delimiter, raw_name in listed:
            name = _server_text(raw_name)
            flags = tuple(_server_text(flag) for flag in raw_flags)
            delimiter = _server_text(raw_delimiter) if raw_delimiter is not None else None
            counts: dict[bytes, int] = {}
            if not {"\\NOSELECT", "\\NONEXISTENT"} & {flag.upper() for flag in flags} and (
                _clean_name(name)
            ):
                try:
                    with self.guard("status"):
                        counts = self._client.folder_status(name, items)
                except ProtocolError as err:
                    if not (err.__cause__ is not None and self._refusal(err.__cause__)):
                        raise
            out.append(
                FolderStatus(
                    name=name,
                    delimiter=delimiter,
                    flags=flags,
                    messages=_count(counts, b"MESSAGES"),
                    unseen=_count(counts, b"UNSEEN"),
                    size=_count(counts, b"SIZE"),
                )
            )
        return out

    def select(self, folder: str, *, readonly: bool = True) -> SelectedFolder:
        """EXAMINE (`readonly`) or SELECT `folder` (RFC 3501 6.3.1-2); the caps on listings
        are raised to fit the EXISTS it announces.

        Raises HeaderInjectionError (CR, LF or NUL in the name: imapclient would send it
        inline, its issue #657), ProtocolError (no such folder: the server's NO), and the
        session's I/O errors.
        """
        require_folder_name(folder)
        with self._folder_refusal(folder), self.guard("select"):
            response = self._client.select_folder(folder, readonly=readonly)
        exists = int(response.get(b"EXISTS", 0))
        validity = response.get(b"UIDVALIDITY")
        uidnext = response.get(b"UIDNEXT")
        if not isinstance(validity, int):
            # RFC 3501 6.3.1: UIDVALIDITY is required; without it UIDs mean nothing next time.
            raise ProtocolError(f"IMAP server {self.where} sent no UIDVALIDITY for the folder")
        self.size_for(exists)
        return SelectedFolder(
            name=folder,
            uidvalidity=validity,
            uidnext=uidnext if isinstance(uidnext, int) else None,
            exists=exists,
        )

    def search(self, criteria: SearchCriteria) -> list[int]:
        """UID SEARCH with `criteria` in the selected folder; UIDs in ascending order."""
        from imapclient.response_parser import parse_message_list

        with self.guard("search"):
            data = self._client._raw_command_untagged(b"SEARCH", criteria.words())
            return sorted(int(uid) for uid in parse_message_list(data))

    def uids(self) -> list[int]:
        """The UIDs of every message in the selected folder (UID SEARCH ALL)."""
        return self.search(SearchCriteria())

    def fetch_message(self, uid: int) -> bytes:
        """The whole message with `uid`, without setting \\Seen (BODY.PEEK[]).

        Raises ResponseLimitError, ProtocolError (no such message), and I/O errors.
        """
        for message in self._fetch_group([uid], [b"BODY.PEEK[]"]):
            return message.data
        raise ProtocolError(f"IMAP server {self.where} sent no message for UID {uid}")

    def delete(self, uids: Sequence[int]) -> None:
        """Delete `uids` from the selected (read-write) folder: STORE \\Deleted, then UID
        EXPUNGE (RFC 4315 2.1), which expunges those UIDs only.

        A plain EXPUNGE would also remove what anyone else flagged \\Deleted, so without
        UIDPLUS this refuses (ServerUnsupportedError) before changing anything.
        """
        if not uids:
            return
        self._require("UIDPLUS", "delete messages by UID")
        with self.guard("delete"):
            self._client.add_flags(list(uids), [b"\\Deleted"], silent=True)
            self._client.uid_expunge(list(uids))

    def move(self, uids: Sequence[int], folder: str) -> None:
        """Move `uids` to `folder`: UID MOVE (RFC 6851) when offered, else UID COPY, then
        STORE \\Deleted and UID EXPUNGE (RFC 4315), refused without UIDPLUS before any change.
        """
        require_folder_name(folder)
        if not uids:
            return
        if self.supports("MOVE"):
            with self._folder_refusal(folder), self.guard("move"):
                self._client.move(list(uids), folder)
            return
        self._require("UIDPLUS", "move messages without MOVE")
        with self._folder_refusal(folder), self.guard("copy"):
            self._client.copy(list(uids), folder)
        self.delete(uids)

    def idle(self, seconds: float) -> bool:
        """Wait up to `seconds` in IDLE (RFC 2177) for the server to report a change;
        return whether it did. Ends IDLE (DONE) before returning, so other commands may
        follow. Raises ServerUnsupportedError without IDLE, and the session's errors."""
        import select

        self._require("IDLE", "watch a folder")
        with self.guard("idle"):
            self._client.idle()
            sock = self._client.socket()
            changed = self.wire.buffered or bool(
                select.select([sock], [], [], max(0.0, seconds))[0]
            )
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                changed = True
            # DONE is not a tagged command: give its answer a fresh deadline by hand.
            self.wire.begin(sock, "DONE")
            _text, responses = self._client.idle_done()
        return changed or any(_is_change(item) for item in responses)

    @contextlib.contextmanager
    def _folder_refusal(self, folder: str) -> Iterator[None]:
        """A NO to SELECT, EXAMINE, MOVE or COPY names the folder (66), not the protocol."""
        try:
            yield
        except ProtocolError as err:
            cause = err.__cause__
            if cause is None or not self._refusal(cause):
                raise
            text = excerpt(_error_text(cause), secret=self.secret_shown)
            raise FolderUnavailableError(
                f"IMAP server {self.where} refused folder {quote(folder)}: {text}",
                hint="check the name with `mailctl folders` (names are case-sensitive, "
                "INBOX aside)",
            ) from cause

    def _require(self, capability: str, what: str) -> None:
        if not self.supports(capability):
            raise ServerUnsupportedError(
                f"IMAP server {self.where} does not offer {capability}, needed to {what}",
                hint="fetch without that option, or use a server that offers it",
            )

    def _fetch_group(self, uids: list[int], wanted: list[bytes]) -> Iterator[ImapMessage]:
        """One UID FETCH for `uids`; its literals together within `max_message`."""
        with self.guard("fetch"), self.wire.message_command("UID FETCH"):
            self._client.normalise_times = False
            response = self._client.fetch(uids, wanted)
        for uid in uids:
            item = response.get(uid)
            if not isinstance(item, dict):
                continue
            data = item.get(b"BODY[]", item.get(b"BODY[HEADER]"))
            if not isinstance(data, bytes):
                continue
            size = item.get(b"RFC822.SIZE")
            yield ImapMessage(
                uid=uid,
                flags=tuple(_server_text(flag) for flag in item.get(b"FLAGS", ())),
                size=size if isinstance(size, int) else len(data),
                internal_date=_imap_date(item.get(b"INTERNALDATE")),
                data=data,
            )

    # -- bulk reads: the lean UID FETCH reader of imap/bulk.py ---------------------------

    def fetch_bodies(
        self, uids: Sequence[int], *, mark_seen: bool = False, batch: int = 500
    ) -> Iterator[ImapMessage]:
        """The messages with `uids` (whole, raw), one UID FETCH per `batch` UIDs (the
        next one sent while the current one is answered).

        BODY.PEEK[] leaves \\Seen alone unless `mark_seen`. Messages come as they arrive
        (server order within a batch); a UID the server no longer has is left out. Each
        message is bounded by `max_message` and has `data_timeout`; memory holds one
        message at a time. A message over `max_message` by its RFC822.SIZE (asked first,
        one UID SEARCH LARGER) is left out like a vanished one: it does not end the session.
        Consume the iterator to the end: stopping early abandons the connection (the
        session can then only be aborted).

        Raises ResponseLimitError, TimeoutFailure, ConnectionLostError, ProtocolError.
        """
        if batch < 1:
            raise ValueError("batch must be at least 1")
        if not uids:
            return iter(())
        # Sizes first: a message over max_message is left out (the caller reports it)
        # rather than ending the session in the middle of its literal. RFC 3501 6.4.4:
        # LARGER compares RFC822.SIZE, so one short answer replaces a size per message. A
        # server that answers wrongly still meets max_message on the literal itself.
        over = set(self.search(SearchCriteria(larger=self.limits.max_message)))
        wanted = [uid for uid in uids if uid not in over] if over else list(uids)
        return self._bulk(wanted, section=b"", peek=not mark_seen, batch=batch)

    def fetch_headers(self, uids: Sequence[int], *, batch: int = 500) -> Iterator[ImapMessage]:
        """Like `fetch_bodies`, with `data` the header block only (BODY.PEEK[HEADER])."""
        return self._bulk(uids, section=b"HEADER", peek=True, batch=batch)

    def _bulk(
        self, uids: Sequence[int], *, section: bytes, peek: bool, batch: int
    ) -> Iterator[ImapMessage]:
        from mailctl.protocols.imap.bulk import read_batches

        if batch < 1:
            raise ValueError("batch must be at least 1")
        if any(uid < 1 for uid in uids):
            raise ValueError("IMAP UIDs are positive (RFC 3501 2.3.1.1)")
        if not uids:
            return
        with self.guard("fetch"), self.streaming("a UID FETCH answer"):
            yield from read_batches(
                self._client.bounded,
                self.wire,
                where=self.where,
                batches=[uids[start : start + batch] for start in range(0, len(uids), batch)],
                section=section,
                peek=peek,
            )

    # -- the skeleton's steps ----------------------------------------------------------

    def _dial(self, context: ssl.SSLContext | None) -> None:
        from mailctl.protocols.imap.wire import BoundedIMAPClient  # imapclient is slow to import

        settings = self.settings
        self._client = BoundedIMAPClient(
            settings.host,
            settings.port,
            wire=self.wire,
            context=context,
            implicit_tls=settings.security is Security.TLS,
            timeouts=settings.timeouts,
            tls_name=settings.tls_name,
        )

    def _offers_starttls(self) -> bool:
        return "STARTTLS" in self._capabilities()

    def _starttls(self, context: ssl.SSLContext) -> None:
        self._client.starttls(context)

    def _capabilities(self) -> tuple[str, ...]:
        raw: tuple[bytes, ...] = self._client.capabilities()
        self._capability_list = tuple(item.decode("ascii", "replace").upper() for item in raw)
        return self._capability_list

    def _tls_socket(self) -> ssl.SSLSocket | None:
        sock = self._client.socket() if self._client is not None else None
        return sock if isinstance(sock, ssl.SSLSocket) else None

    def _logins(self) -> dict[AuthMechanism, str]:
        logins: dict[AuthMechanism, str] = {}
        # AUTHENTICATE PLAIN carries UTF-8 and needs no quoting: preferred when offered.
        if "AUTH=PLAIN" in self._capability_list:
            logins[AuthMechanism.PLAIN] = "plain"
        # RFC 3501 6.2.3: LOGINDISABLED forbids the LOGIN command. For IMAP, auth = login is
        # the LOGIN command, not SASL LOGIN.
        if "LOGINDISABLED" not in self._capability_list:
            logins[AuthMechanism.LOGIN] = "login"
        return logins

    def _login(self, method: str, password: str) -> None:
        from imapclient.exceptions import LoginError

        username = self.settings.username or ""
        try:
            if method == "plain":
                # RFC 4616 PLAIN is one message. imapclient's plain_login sends it again for
                # every continuation a server asks; once answered, return None: imaplib then
                # sends "*", which cancels the exchange (RFC 3501 6.2.2).
                answers = [f"\0{username}\0{password}"]
                self._client.sasl_login("PLAIN", lambda _: answers.pop() if answers else None)
            else:
                if not (username.isascii() and password.isascii()):
                    raise AuthUnsupportedError(
                        f"the IMAP LOGIN command cannot carry a non-ASCII user name or "
                        f"password to {self.where}",
                        hint="use auth = plain if the server offers AUTH=PLAIN",
                    )
                self._client.login(_quoted(username), password)
        except LoginError as err:
            dropped = err.__context__
            if isinstance(dropped, imaplib.IMAP4.abort):
                # imapclient turns every failure inside LOGIN into LoginError, drops included.
                raise self._dropped(dropped) from err
            raise self._login_refused(excerpt(_error_text(err), secret=password)) from err

    def _dropped(self, err: imaplib.IMAP4.abort) -> ConnectionLostError:
        """The connection ended: say why with the server's BYE if it sent one.

        RFC 3501 7.1.5: a server sends BYE with its reason before it closes. imaplib keeps
        the BYE among the untagged responses and raises with its own text ("socket error:
        EOF") when the close comes first, as it does inside AUTHENTICATE.
        """
        imap = getattr(self._client, "_imap", None)
        byes = getattr(imap, "untagged_responses", {}).get("BYE") or []
        text = f"BYE {_server_text(byes[-1])}" if byes else _error_text(err)
        return ConnectionLostError(
            f"IMAP server {self.where} dropped the connection during {self.clock.phase}: "
            f"{excerpt(text, secret=self.secret_shown)}"
        )

    def _lost(self, err: Exception) -> ConnectionLostError | None:
        return self._dropped(err) if isinstance(err, imaplib.IMAP4.abort) else None

    def _answer_text(self, err: Exception) -> str | None:
        return _error_text(err) if isinstance(err, imaplib.IMAP4.error) else None

    def _refusal(self, cause: BaseException) -> bool:
        # imaplib raises `error` for a tagged NO/BAD and `abort` (a subclass) for a drop
        # or an answer it cannot parse.
        return isinstance(cause, imaplib.IMAP4.error) and not isinstance(cause, imaplib.IMAP4.abort)

    def _goodbye(self) -> None:
        self._client.logout()

    def _shutdown(self) -> None:
        if self._client is not None:
            with contextlib.suppress(imaplib.IMAP4.error, OSError, EOFError):
                self._client.shutdown()


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _imap_date(value: object) -> str | None:
    """INTERNALDATE as RFC 3501 writes it ("17-Jul-1996 02:44:25 -0700"); imapclient
    hands a datetime (with its zone: normalise_times is off)."""
    if not isinstance(value, datetime):
        return None
    offset = value.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    zone = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return (
        f"{value.day:02d}-{_MONTHS[value.month - 1]}-{value.year} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} {zone}"
    )


def _count(counts: dict[bytes, int], key: bytes) -> int | None:
    value = counts.get(key)
    return value if isinstance(value, int) else None


def _is_change(item: object) -> bool:
    """An untagged answer during IDLE that says the folder changed (EXISTS, RECENT,
    EXPUNGE, FETCH: RFC 3501 7.3-7.4)."""
    return (
        isinstance(item, tuple)
        and len(item) >= 2
        and item[1]
        in (
            b"EXISTS",
            b"RECENT",
            b"EXPUNGE",
            b"FETCH",
        )
    )


def _clean_name(folder: str) -> bool:
    return not any(char in folder for char in "\r\n\0")


def _quoted(value: str) -> str:
    """An IMAP quoted string (RFC 3501 4.3); imaplib quotes the password but not the user."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _server_text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _error_text(err: BaseException) -> str:
    """The server text in an imaplib/imapclient error, without a bytes repr around it."""
    first = err.args[0] if err.args else ""
    if isinstance(first, bytes):
        return _server_text(first)
    text = str(first)
    # imapclient re-raises login failures as LoginError(str(imaplib_error)): "b'...'".
    if len(text) >= 3 and text[0] == "b" and text[1] in "'\"" and text[-1] == text[1]:
        text = text[2:-1]
    return text
