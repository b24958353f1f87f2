"""The bulk body path of IMAP: one `UID FETCH` per batch, its answer read by a lean parser.

imapclient parses a FETCH answer into nested Python objects and imaplib keeps every
untagged response in a dict; for thousands of messages that parsing is the cost
(FACTS.md: ~0.9 s per 5,000 messages). Here the answer is read straight from the
session's `Wire` (every line under `max_line`, every literal's announced size checked
before a byte is read: the body against `max_message`, any other against `max_literal`;
a `data_timeout` deadline per message) and
only the items asked for are kept. imapclient still runs every other command.

Answers (RFC 3501 7.4.2, 6.4.8): each untagged FETCH carries UID (a UID command
must include it), and the items in any order, on several lines when a value is a
literal. Untagged responses about other things (EXISTS, EXPUNGE, flag updates) may come
in between; they are counted against the line budget and skipped. A body for a UID not
asked for, or a second one for the same UID, is a protocol error: with the per-message
budgets renewed for each body, that count is what keeps one answer finite.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from mailctl.errors import ConnectionLostError, ProtocolError
from mailctl.protocols.imap.types import ImapMessage
from mailctl.text import excerpt

if TYPE_CHECKING:
    from mailctl.protocols.imap.wire import BoundedIMAP4
    from mailctl.protocols.wire import Wire

# RFC 3501 9: message-data = nz-number SP "FETCH" SP msg-att
_FETCH = re.compile(rb"\* (\d+) FETCH \(", re.IGNORECASE)
# An item name: UID, FLAGS, RFC822.SIZE, BODY[], BODY[HEADER], BODY[]<0> ...
_NAME = re.compile(rb"([A-Za-z0-9.\-]+)(\[[^\]\r\n]*\](?:<\d+>)?)?")
_ATOM = re.compile(rb"[^\s()\"{}]+")
_QUOTED = re.compile(rb'"((?:[^"\\\r\n]|\\.)*)"')
# RFC 3501 4.3 (and RFC 7888's non-synchronising form): a literal ends its line.
_LITERAL = re.compile(rb"\{(\d{1,20})\+?\}\r?\n\Z")
_MAX_DEPTH = 16  # nested lists in one value (BODYSTRUCTURE needs a few)
# The answer as Dovecot (and most servers) words it, items in the order asked: read with
# one match; anything else goes through the general parser below.
_USUAL = re.compile(
    rb"\* \d+ FETCH \(UID (\d{1,10}) FLAGS \(([^()\"{}\r\n]*)\) RFC822\.SIZE (\d{1,20}) "
    rb'INTERNALDATE "([^"\\\r\n]*)" BODY\[(HEADER)?\] \{(\d{1,20})\}\r\n\Z',
    re.IGNORECASE,
)

Value = bytes | None | tuple["Value", ...]


def uid_set(uids: Iterable[int]) -> bytes:
    """The shortest sequence-set for `uids` (RFC 3501 9): "1:500,502,510:512"."""
    ranges: list[str] = []
    ordered = sorted(set(uids))
    index = 0
    while index < len(ordered):
        first = last = ordered[index]
        index += 1
        while index < len(ordered) and ordered[index] == last + 1:
            last = ordered[index]
            index += 1
        ranges.append(str(first) if first == last else f"{first}:{last}")
    return ",".join(ranges).encode("ascii")


class _Answer:
    """A cursor over one untagged response: the current line, and the wire for the rest."""

    def __init__(self, reader: _BatchReader, line: bytes, position: int) -> None:
        self.reader = reader
        self.line = line
        self.position = position

    def skip_spaces(self) -> None:
        line, position = self.line, self.position
        while position < len(line) and line[position] == 0x20:
            position += 1
        self.position = position

    def peek(self) -> int:
        """The next octet, or -1 at the line end (a response must not end there)."""
        self.skip_spaces()
        line = self.line
        if self.position >= len(line) or line[self.position] in (0x0D, 0x0A):
            return -1
        return line[self.position]

    def value(self, depth: int = 0, *, body: bool = False) -> Value:
        """One value: atom/number/NIL, quoted string, literal or parenthesised list.

        A literal is bounded by `max_message` when it is the `body` asked for, else by
        `max_literal`."""
        first = self.peek()
        if first == 0x28:  # "("
            if depth >= _MAX_DEPTH:
                raise self.reader.malformed(self.line)
            self.position += 1
            items: list[Value] = []
            while (next_octet := self.peek()) != 0x29:  # ")"
                if next_octet < 0:
                    raise self.reader.malformed(self.line)
                items.append(self.value(depth + 1))
            self.position += 1
            return tuple(items)
        if first == 0x22:  # '"'
            match = _QUOTED.match(self.line, self.position)
            if match is None:
                raise self.reader.malformed(self.line)
            self.position = match.end()
            return re.sub(rb"\\(.)", rb"\1", match.group(1))
        if first == 0x7B:  # "{"
            match = _LITERAL.match(self.line, self.position)
            if match is None:
                raise self.reader.malformed(self.line)
            data = self.reader.literal(int(match.group(1)), body=body)
            self.line = self.reader.line()  # the response goes on after the literal
            self.position = 0
            return data
        match = _ATOM.match(self.line, self.position)
        if match is None:
            raise self.reader.malformed(self.line)
        self.position = match.end()
        atom = match.group(0)
        return None if atom.upper() == b"NIL" else atom

    def items(self) -> dict[bytes, Value]:
        """The msg-att list up to its ")": item name (upper case) -> value."""
        found: dict[bytes, Value] = {}
        while (first := self.peek()) != 0x29:
            if first < 0:
                raise self.reader.malformed(self.line)
            match = _NAME.match(self.line, self.position)
            if match is None:
                raise self.reader.malformed(self.line)
            self.position = match.end()
            name = match.group(0).upper()
            found[name] = self.value(body=name == self.reader.key)
        self.position += 1
        if self.peek() >= 0:
            raise self.reader.malformed(self.line)  # nothing may follow the list
        return found


class _BatchReader:
    """Reads the answers to the UID FETCH commands in flight, for the UIDs `wanted`."""

    def __init__(self, imap: BoundedIMAP4, wire: Wire, *, where: str, section: bytes) -> None:
        self.imap = imap
        self.wire = wire
        self.where = where
        self.wanted: set[int] = set()  # UIDs of the commands sent, not yet received
        self.section = section.upper()
        self.key = b"BODY[" + self.section + b"]"

    def line(self) -> bytes:
        line = self.wire.readline(self.imap.sock)
        if not line.endswith(b"\n"):
            raise ConnectionLostError(
                f"IMAP server {self.where} closed the connection during fetch"
            )
        return line

    def literal(self, size: int, *, body: bool) -> bytes:
        data = self.wire.read(self.imap.sock, size, body=body)
        if len(data) != size:
            raise ConnectionLostError(
                f"IMAP server {self.where} closed the connection in the middle of a message"
            )
        return data

    def malformed(self, line: bytes) -> ProtocolError:
        return ProtocolError(
            f"IMAP server {self.where} sent a FETCH answer mailctl cannot read: {excerpt(line)}",
            hint="the server is broken or hostile; if it is yours, check its logs",
        )

    def message(self, line: bytes) -> ImapMessage | None:
        """The message an untagged response starting with `line` carries, if any."""
        usual = _USUAL.match(line)
        if usual is not None and (usual.group(5) or b"").upper() == self.section:
            return self._usual(usual)
        match = _FETCH.match(line)
        if match is None:
            _other(self, line)
            return None
        items = _Answer(self, line, match.end()).items()
        body = items.get(self.key)
        if body is None:
            return None  # a flag update or another item without the body
        if not isinstance(body, bytes):
            raise self.malformed(line)
        size = _number(items.get(b"RFC822.SIZE"))
        date = items.get(b"INTERNALDATE")
        return ImapMessage(
            uid=self._asked(_number(items.get(b"UID")), items.get(b"UID")),
            flags=_flags(items.get(b"FLAGS")),
            size=len(body) if size is None else size,
            internal_date=date.decode("ascii", "replace") if isinstance(date, bytes) else None,
            data=body,
        )

    def _usual(self, usual: re.Match[bytes]) -> ImapMessage:
        body = self.literal(int(usual.group(6)), body=True)
        rest = self.line()
        flags = usual.group(2)
        shown = tuple(flags.decode("ascii", "replace").split()) if flags else ()
        if rest != b")\r\n":  # more items after the body: read them the general way
            items = _Answer(self, rest, 0).items()
            if self.key in items:
                raise self.malformed(rest)
            if b"FLAGS" in items:  # e.g. \Seen, set by fetching BODY[] (RFC 3501 6.4.5)
                shown = _flags(items[b"FLAGS"])
        return ImapMessage(
            uid=self._asked(int(usual.group(1)), usual.group(1)),
            flags=shown,
            size=int(usual.group(3)),
            internal_date=usual.group(4).decode("ascii", "replace"),
            data=body,
        )

    def _asked(self, uid: int | None, shown: object) -> int:
        """`uid`, once: a body for a UID not asked for (or twice) is refused."""
        if uid is None or uid not in self.wanted:
            raise _unasked(self.where, str(shown))
        self.wanted.discard(uid)
        return uid


def read_batches(
    imap: BoundedIMAP4,
    wire: Wire,
    *,
    where: str,
    batches: Sequence[Sequence[int]],
    section: bytes,
    peek: bool,
) -> Iterator[ImapMessage]:
    """Send one `UID FETCH` per batch of UIDs and yield each message as its answer arrives.

    `section`: b"" for the whole message, b"HEADER" for the header block. `peek`: BODY.PEEK
    (leaves \\Seen alone, RFC 3501 6.4.5). The next batch's command goes out while the
    current one is answered (RFC 3501 5.5: FETCH commands may be pipelined), so the server
    never waits for it: at most two in flight. Messages come in the server's order; a
    UID the server no longer has is simply missing. Consume the iterator to the end:
    closing it early abandons the connection (the rest of the answer is still coming).

    Raises ResponseLimitError, TimeoutFailure, ConnectionLostError, ProtocolError
    (malformed answer, unexpected body, NO/BAD).
    """
    fetch = b"BODY.PEEK[" if peek else b"BODY["
    items = b" (UID FLAGS RFC822.SIZE INTERNALDATE " + fetch + section + b"])"
    reader = _BatchReader(imap, wire, where=where, section=section)
    pending = iter(batches)
    in_flight: dict[bytes, None] = {}  # tags, oldest first

    def send_next() -> None:
        uids = next(pending, None)
        if uids is not None:
            reader.wanted.update(uids)
            # Each command starts fresh budgets and deadline (between two messages).
            with wire.message_command("UID FETCH"):
                in_flight[imap.start_command(b"UID FETCH " + uid_set(uids) + items)] = None

    finished = False
    try:
        send_next()
        send_next()
        while in_flight:
            line = reader.line()
            tag = line.split(b" ", 1)[0]
            if tag in in_flight:
                del in_flight[tag]
                finished = not in_flight  # in step only if nothing else is coming
                _completed(reader, line, tag)
                send_next()
                continue
            message = reader.message(line)
            if message is not None:
                yield message
                wire.next_message()  # the next message gets its own budgets
        finished = True
    finally:
        if not finished:
            wire.abandon("a UID FETCH answer")


def _unasked(where: str, uid: str) -> ProtocolError:
    return ProtocolError(
        f"IMAP server {where} sent a message nobody asked for (UID {excerpt(uid)}) "
        "in its answer to UID FETCH",
        hint="the server is broken or hostile; if it is yours, check its logs",
    )


def _completed(reader: _BatchReader, line: bytes, tag: bytes) -> None:
    """The tagged line: OK ends the answer; NO or BAD is the server refusing."""
    status = line[len(tag) + 1 :].split(b" ", 1)[0].upper().rstrip(b"\r\n")
    if status != b"OK":
        text = excerpt(line[len(tag) + 1 :])
        # Chained to imaplib's refusal type: the session knows a NO/BAD leaves it in step
        # (LOGOUT may follow), as when imaplib itself reads the refusal.
        raise ProtocolError(
            f"IMAP server {reader.where} refused UID FETCH: {text}"
        ) from imaplib.IMAP4.error(text)


def _other(reader: _BatchReader, line: bytes) -> None:
    """An untagged response other than FETCH: skip it (read its literals), BYE ends."""
    if not line.startswith(b"* "):
        raise reader.malformed(line)  # a continuation or another tag: out of step
    if line[2:6].upper() == b"BYE ":
        raise ConnectionLostError(
            f"IMAP server {reader.where} ended the session during fetch: {excerpt(line[2:])}"
        )
    # e.g. "* 3 EXISTS", "* OK [ALERT] text": free text, not values. A line ending in a
    # literal (as imaplib reads it) goes on after the literal, which is read and dropped.
    while (match := _LITERAL.search(line)) is not None:
        reader.literal(int(match.group(1)), body=False)
        line = reader.line()


def _number(value: Value) -> int | None:
    if isinstance(value, bytes) and value.isdigit() and len(value) <= 20:
        return int(value)
    return None


def _flags(value: Value) -> tuple[str, ...]:
    if not isinstance(value, tuple):
        return ()
    return tuple(flag.decode("ascii", "replace") for flag in value if isinstance(flag, bytes))
