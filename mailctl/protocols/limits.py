"""How much an IMAP or POP3 server may make mailctl read, and for how long (`ReadLimits`).

A server is untrusted input: imaplib/imapclient believe any literal size (CPython
gh-119511) and keep every untagged response, poplib collects multi-line answers without
a count limit, and their timeouts apply to each socket read, so a server trickling one
byte a second is never cut off. Every byte of an IMAP/POP3 session is read through
`protocols.wire.Wire`, which enforces these limits; `fetch` raises only `max_message`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailctl.models import Timeouts

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class ReadLimits:
    """Caps on one session's reads. Sizes are octets; a response is everything a server
    sends for one command (or as its greeting), up to and including the final line.

    - `max_line`: one line, CRLF included. IMAP has no line limit of its own and
      RFC 1939 3 allows POP3 responses 512 octets; 64 KiB leaves room for long
      CAPABILITY/SEARCH lines.
    - `max_literal`: one IMAP literal (RFC 3501 4.3) outside a message body.
    - `max_response`: all lines and literals of one response together.
    - `max_response_lines`: lines in one response: IMAP untagged responses and
      continuation requests, or the lines of a POP3 multi-line answer (CAPA, LIST, UIDL).
    - `max_message`: one message (the IMAP FETCH BODY[] literal, the lines of a POP3
      RETR answer), counted apart from the caps above, which still bound the rest of
      the answer.
    - `session_seconds`: the whole session from connect to close, on top of the
      per-response deadlines (greeting: connect_timeout; each command: command_timeout;
      a message command: data_timeout). None: no session-wide limit.
    """

    max_line: int = 64 * KIB
    max_literal: int = 1 * MIB
    max_response: int = 4 * MIB
    max_response_lines: int = 10_000
    max_message: int = 50 * MIB
    session_seconds: float | None = None


def octets(value: int) -> str:
    """A size as messages show it: 64 KiB, 50 MiB, 1000 octets."""
    for unit, size in (("MiB", MIB), ("KiB", KIB)):
        if value >= size and value % size == 0:
            return f"{value // size} {unit}"
    return f"{value} octets"


def login_check_limits(timeouts: Timeouts) -> ReadLimits:
    """The limits of `account test`'s login check: default sizes, and the whole session
    (connect, greeting, STARTTLS, capabilities, login, logout) within
    connect_timeout + 2 x command_timeout."""
    return ReadLimits(session_seconds=timeouts.connect + 2 * timeouts.command)


def listing_limits(base: ReadLimits, count: int) -> ReadLimits:
    """`base` raised so that a listing of `count` messages fits: UID SEARCH answers on one
    line (up to 11 octets a UID), UIDL/LIST/FETCH answers one line or two a message.

    `count` comes from STAT or EXISTS, which the server sent itself: what it announced is
    what it may list, never more than what it holds.
    """
    from dataclasses import replace

    lines = 2 * count + 100
    line = 12 * count + 1024
    return replace(
        base,
        max_line=max(base.max_line, line),
        max_response_lines=max(base.max_response_lines, lines),
        max_response=max(base.max_response, line + 80 * lines),
    )
