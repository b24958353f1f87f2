"""ImapSession.fetch_bodies / fetch_headers: the lean UID FETCH reader (protocols/imap/bulk.py).

Against the real Dovecot: the bytes fetched are the bytes seeded (plain, IMAPS, STARTTLS),
several batches, flags and sizes as the server keeps them, \\Seen left alone. Against small
scripted servers: what a real server never sends (a 10 GB literal, a hung or trickled
answer, a literal cut into pieces, answers out of order and in unusual forms, bodies
nobody asked for, an endless stream of flag updates), each bounded in time and bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from servers.dovecot import DovecotServer
from servers.hostile import HostileServer, Peer, hostile

from mailctl.errors import ConnectionLostError, ProtocolError, ResponseLimitError, TimeoutFailure
from mailctl.models import Protocol, Security, ServerSettings, Timeouts
from mailctl.protocols.imap import ImapSession
from mailctl.protocols.imap.bulk import uid_set
from mailctl.protocols.imap.types import ImapMessage
from mailctl.protocols.limits import KIB, MIB, ReadLimits


def message(index: int, size: int) -> bytes:
    """A CRLF message of about `size` octets; its first line names it."""
    head = f"Subject: message {index}\r\nFrom: a@example.org\r\n\r\n".encode()
    line = f"line of message {index}, with text to make about seventy octets...\r\n".encode()
    return head + line * max(1, (size - len(head)) // len(line))


# -- against Dovecot --------------------------------------------------------------------------

SECURITIES = pytest.mark.parametrize(
    "security", [Security.NONE, Security.TLS, Security.STARTTLS], ids=["plain", "imaps", "starttls"]
)


def server_for(security: Security, dovecot: DovecotServer, plain: DovecotServer) -> DovecotServer:
    return plain if security is Security.NONE else dovecot


@SECURITIES
def test_bytes_fetched_are_the_bytes_seeded(
    dovecot: DovecotServer, dovecot_plain: DovecotServer, security: Security
) -> None:
    server = server_for(security, dovecot, dovecot_plain)
    user = server.add_user()
    sizes = [10 * KIB] * 20 + [1, 300 * KIB, 3 * MIB]  # several reads for the big literals
    seeded = {message(index, size) for index, size in enumerate(sizes)}
    for data in seeded:
        server.seed(data, user=user.name)
    settings = server.settings(
        Protocol.IMAP, security, user=user.name, allow_plaintext_auth=security is Security.NONE
    )
    with ImapSession.open(settings, secret=lambda: user.password) as session:
        session.select("INBOX")
        uids = session.uids()
        got = list(session.fetch_bodies(uids, batch=7))  # 4 batches
        assert {item.data for item in got} == seeded
        assert sorted(item.uid for item in got) == sorted(uids)
        assert all(item.size == len(item.data) for item in got)  # RFC822.SIZE, CRLF as stored
        assert all(item.internal_date and item.internal_date[2] == "-" for item in got)
        # The session is still in step: an ordinary command works after the bulk reads.
        assert session.uids() == uids


def test_headers_flags_and_peek(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    first, second = message(1, 2 * KIB), message(2, 2 * KIB)
    dovecot.seed(first, user=user.name)
    dovecot.seed(second, user=user.name, flags="FS")
    settings = dovecot.settings(Protocol.IMAP, Security.TLS, user=user.name)
    with ImapSession.open(settings, secret=lambda: user.password) as session:
        session.select("INBOX")
        uids = session.uids()
        headers = {item.uid: item for item in session.fetch_headers(uids)}
        bodies = {item.uid: item for item in session.fetch_bodies(uids)}
    assert [headers[uid].data for uid in uids] == [
        first.split(b"\r\n\r\n")[0] + b"\r\n\r\n",
        second.split(b"\r\n\r\n")[0] + b"\r\n\r\n",
    ]
    assert headers[uids[0]].size == len(first)  # the whole message's size, not the header's
    assert "\\Seen" not in bodies[uids[0]].flags
    assert {"\\Seen", "\\Flagged"} <= set(bodies[uids[1]].flags)
    # BODY.PEEK: a new session still sees the first message unseen.
    with ImapSession.open(settings, secret=lambda: user.password) as session:
        session.select("INBOX")
        [again] = list(session.fetch_bodies(uids[:1]))
    assert "\\Seen" not in again.flags


def test_a_uid_the_server_no_longer_has_is_left_out(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    dovecot.seed(message(1, KIB), user=user.name)
    settings = dovecot.settings(Protocol.IMAP, Security.TLS, user=user.name)
    with ImapSession.open(settings, secret=lambda: user.password) as session:
        session.select("INBOX")
        [uid] = session.uids()
        assert [item.uid for item in session.fetch_bodies([uid, uid + 1, uid + 50])] == [uid]


def test_uid_sets_are_ranges() -> None:
    assert uid_set([5, 1, 2, 3, 9, 10, 3]) == b"1:3,5,9:10"
    assert uid_set([7]) == b"7"


# -- scripted servers ---------------------------------------------------------------------------

FAST = Timeouts(connect=2.0, command=2.0, data=1.0)


def settings_for(server: HostileServer, **overrides: object) -> ServerSettings:
    base = ServerSettings(
        host="127.0.0.1", port=server.port, security=Security.NONE, username="alice",
        allow_plaintext_auth=True, timeouts=FAST,
    )  # fmt: skip
    return replace(base, **overrides)  # type: ignore[arg-type]


def command(peer: Peer) -> tuple[bytes, bytes]:
    """The next command's tag and the rest of its line, answering CAPABILITY."""
    while True:
        tag, _, rest = peer.line().partition(b" ")
        if rest.upper() != b"CAPABILITY":
            return tag, rest
        peer.send(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")


def fetch_command(peer: Peer) -> tuple[bytes, bytes]:
    """Greet, answer LOGIN and EXAMINE; return the UID FETCH's tag and line."""
    peer.send(b"* OK ready\r\n")
    tag, rest = command(peer)
    assert rest.startswith(b"LOGIN"), rest
    peer.send(tag + b" OK logged in\r\n")
    tag, rest = command(peer)
    assert rest.startswith(b"EXAMINE"), rest
    peer.send(b"* 3 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n" + tag + b" OK [READ-ONLY] selected\r\n")
    tag, rest = command(peer)
    if rest.startswith(b"UID SEARCH LARGER "):
        # fetch_bodies asks for the messages over max_message first: none here (a body
        # literal may still announce anything: the limits apply to what comes, not to
        # what was said).
        peer.send(b"* SEARCH\r\n" + tag + b" OK done\r\n")
        tag, rest = command(peer)
    assert rest.startswith(b"UID FETCH "), rest
    return tag, rest


def logout(peer: Peer) -> None:
    """Answer LOGOUT, then wait for the client to close."""
    tag, rest = command(peer)
    assert rest == b"LOGOUT", rest
    peer.send(b"* BYE bye\r\n" + tag + b" OK done\r\n")
    peer.stall()


def fetched(
    script: Callable[[Peer], None],
    uids: list[int],
    *,
    limits: ReadLimits | None = None,
    mark_seen: bool = False,
) -> tuple[list[ImapMessage], HostileServer]:
    with hostile(script) as server:
        with ImapSession.open(settings_for(server), secret=lambda: "pw", limits=limits) as session:
            session.select("INBOX")
            got = list(session.fetch_bodies(uids, mark_seen=mark_seen))
        assert server.wait_closed(3)
    return got, server


def literal(uid: int, data: bytes, *, number: int = 1) -> bytes:
    return b"* %d FETCH (UID %d FLAGS () BODY[] {%d}\r\n%s)\r\n" % (number, uid, len(data), data)


def test_answers_out_of_order_and_in_unusual_forms() -> None:
    """RFC 3501 7.4.2: items in any order, untagged data between, bodies as quoted strings,
    flag updates without a body, extra items after the literal."""
    body = b"Subject: split\r\n\r\n" + b"x" * 5000 + b"\r\n"

    def script(peer: Peer) -> None:
        tag, rest = fetch_command(peer)
        assert rest == b"UID FETCH 5,7,9 (UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[])"
        peer.send(b"* 4 EXISTS\r\n* 3 FETCH (UID 9 FLAGS (\\Seen))\r\n")
        peer.send(b'* OK [ALERT] a quoted "word and {3}\r\nabc\r\n')  # a literal in text
        peer.send(b'* 3 FETCH (BODY[] "quoted body" UID 9 RFC822.SIZE 11)\r\n')
        peer.send(
            b"* 1 FETCH (RFC822.SIZE %d uid 5 BODY[] {%d}\r\n%s MODSEQ (12) "
            b'INTERNALDATE "01-Jan-2026 00:00:00 +0000" FLAGS (\\Answered $Label))\r\n'
            % (len(body), len(body), body)
        )
        peer.send(literal(7, b"", number=2))
        peer.send(tag + b" OK done\r\n")
        logout(peer)

    got, _server = fetched(script, [9, 5, 7])
    assert [(item.uid, item.data) for item in got] == [(9, b"quoted body"), (5, body), (7, b"")]
    assert got[1].flags == ("\\Answered", "$Label")
    assert got[1].internal_date == "01-Jan-2026 00:00:00 +0000"
    assert got[1].size == len(body) and got[0].size == 11 and got[2].size == 0


def test_the_next_batch_is_asked_for_before_the_current_one_is_answered() -> None:
    """RFC 3501 5.5: two UID FETCH commands in flight, so the server never waits."""

    def script(peer: Peer) -> None:
        first, rest = fetch_command(peer)
        assert rest.startswith(b"UID FETCH 1:2 "), rest
        assert peer.has_pending(wait=1.0)  # before any answer
        second, rest = command(peer)
        assert rest.startswith(b"UID FETCH 3:4 "), rest
        assert not peer.has_pending(wait=0.1)  # two at most
        peer.send(literal(1, b"a\r\n") + literal(2, b"b\r\n", number=2) + first + b" OK\r\n")
        third, rest = command(peer)  # sent once the first was answered
        assert rest.startswith(b"UID FETCH 5 "), rest
        peer.send(literal(3, b"c\r\n", number=3) + literal(4, b"d\r\n", number=4))
        peer.send(second + b" OK\r\n" + literal(5, b"e\r\n", number=5) + third + b" OK\r\n")
        logout(peer)

    with hostile(script) as server:
        with ImapSession.open(settings_for(server), secret=lambda: "pw") as session:
            session.select("INBOX")
            got = [item.data for item in session.fetch_bodies([1, 2, 3, 4, 5], batch=2)]
        assert server.wait_closed(3)
    assert got == [b"a\r\n", b"b\r\n", b"c\r\n", b"d\r\n", b"e\r\n"]


def test_a_refusal_with_another_fetch_in_flight_abandons_the_connection() -> None:
    def script(peer: Peer) -> None:
        first, _rest = fetch_command(peer)
        command(peer)
        peer.send(first + b" NO [SERVERBUG] broken\r\n")
        peer.stall()

    with hostile(script) as server:
        session = ImapSession.open(settings_for(server), secret=lambda: "pw")
        session.select("INBOX")
        with pytest.raises(ProtocolError, match="refused UID FETCH"):
            list(session.fetch_bodies([1, 2, 3], batch=2))
        assert server.wait_closed(2)  # the second answer is still coming: out of step
        session.close()
        assert not any(b"LOGOUT" in line for line in server.received)


def test_a_literal_cut_into_pieces_is_read_whole() -> None:
    body = b"Subject: pieces\r\n\r\n" + bytes(range(256)) * 64

    def script(peer: Peer) -> None:
        tag, _rest = fetch_command(peer)
        head = b"* 1 FETCH (UID 3 RFC822.SIZE %d BODY[] {%d}\r" % (len(body), len(body))
        whole = head + b"\n" + body + b")\r\n" + tag + b" OK done\r\n"
        for start in range(0, len(whole), 997):  # the line end and the literal split too
            peer.send(whole[start : start + 997])
            time.sleep(0.001)
        logout(peer)

    got, _server = fetched(script, [3])
    assert [item.data for item in got] == [body]


def test_mark_seen_asks_for_body_without_peek() -> None:
    def script(peer: Peer) -> None:
        tag, rest = fetch_command(peer)
        assert rest == b"UID FETCH 3 (UID FLAGS RFC822.SIZE INTERNALDATE BODY[])", rest
        # Dovecot's form, with the \Seen that fetching BODY[] set sent after the body.
        peer.send(
            b'* 1 FETCH (UID 3 FLAGS () RFC822.SIZE 4 INTERNALDATE "01-Jan-2026 00:00:00 +0000" '
            b"BODY[] {4}\r\nhi\r\n FLAGS (\\Seen))\r\n" + tag + b" OK done\r\n"
        )
        logout(peer)

    got, _server = fetched(script, [3], mark_seen=True)
    assert [(item.data, item.flags) for item in got] == [(b"hi\r\n", ("\\Seen",))]


def test_a_ten_gigabyte_literal_is_refused_before_reading() -> None:
    def script(peer: Peer) -> None:
        _tag, _rest = fetch_command(peer)
        peer.send(b"* 1 FETCH (UID 3 BODY[] {10737418240}\r\n")
        peer.flood(b"From: x\r\n")

    with hostile(script) as server:
        session = ImapSession.open(settings_for(server), secret=lambda: "pw")
        session.select("INBOX")
        started = time.monotonic()
        with pytest.raises(ResponseLimitError, match=r"10737418240.*max_message = 50 MiB"):
            list(session.fetch_bodies([3]))
        assert time.monotonic() - started < 1
        assert server.wait_closed(3)
        assert server.sent < 5 * MIB  # the flood was cut off, not read
        session.close()  # no LOGOUT after a limit: just hangs up


@pytest.mark.parametrize(
    "answer",
    [b"* 1 FETCH (UID 3 X-NOTE {2000000}\r\n", b"* OK [ALERT] see {2000000}\r\n"],
    ids=["other-item", "untagged-text"],
)
def test_a_literal_other_than_the_body_is_bounded_by_max_literal(answer: bytes) -> None:
    def script(peer: Peer) -> None:
        fetch_command(peer)
        peer.send(answer)
        peer.flood(b"x" * 1000)

    with hostile(script) as server:
        session = ImapSession.open(settings_for(server), secret=lambda: "pw")
        session.select("INBOX")
        with pytest.raises(ResponseLimitError, match=r"2000000-octet literal.*max_literal = 1 MiB"):
            list(session.fetch_bodies([3]))
        session.abort()


@pytest.mark.parametrize("extra", [0, 1], ids=["at-limit", "one-over"])
def test_a_message_at_max_message_passes_one_octet_more_does_not(extra: int) -> None:
    limit = 64 * KIB
    body = b"S" * (limit + extra)

    def script(peer: Peer) -> None:
        tag, _rest = fetch_command(peer)
        peer.send(literal(3, body) + tag + b" OK done\r\n")
        logout(peer)

    limits = ReadLimits(max_message=limit)
    if extra:
        with pytest.raises(ResponseLimitError, match="max_message = 64 KiB"):
            fetched(script, [3], limits=limits)
    else:
        got, _server = fetched(script, [3], limits=limits)
        assert [len(item.data) for item in got] == [limit]


def test_each_message_has_its_own_budget_and_deadline() -> None:
    """Four messages of 40 KiB each in one answer, 0.4 s apart: together over max_message
    (64 KiB) and over data_timeout (1 s); each one within both."""
    body = b"B" * (40 * KIB)

    def script(peer: Peer) -> None:
        tag, _rest = fetch_command(peer)
        for number, uid in enumerate((11, 12, 13, 14), start=1):
            peer.send(literal(uid, body, number=number))
            time.sleep(0.4)
        peer.send(tag + b" OK done\r\n")
        logout(peer)

    got, _server = fetched(script, [11, 12, 13, 14], limits=ReadLimits(max_message=64 * KIB))
    assert [item.uid for item in got] == [11, 12, 13, 14]


def test_a_pause_within_the_deadline_is_waited_out() -> None:
    """The wire waits at most 1 s per recv and checks the deadline in between: a pause of
    1.5 s inside a message is fine when data_timeout is 2.5 s."""
    body = b"P" * 3000

    def script(peer: Peer) -> None:
        tag, _rest = fetch_command(peer)
        whole = literal(3, body) + tag + b" OK done\r\n"
        peer.send(whole[:1000])
        time.sleep(1.5)
        peer.send(whole[1000:])
        logout(peer)

    with hostile(script) as server:
        settings = settings_for(server, timeouts=Timeouts(connect=2.0, command=2.0, data=2.5))
        with ImapSession.open(settings, secret=lambda: "pw") as session:
            session.select("INBOX")
            assert [item.data for item in session.fetch_bodies([3])] == [body]


def test_a_hung_fetch_hits_the_data_timeout() -> None:
    def script(peer: Peer) -> None:
        fetch_command(peer)
        peer.stall()

    with hostile(script) as server:
        session = ImapSession.open(settings_for(server), secret=lambda: "pw")
        session.select("INBOX")
        started = time.monotonic()
        with pytest.raises(TimeoutFailure, match=r"UID FETCH within 1 s .*data_timeout"):
            list(session.fetch_bodies([3]))
        assert 0.9 < time.monotonic() - started < 2
        assert server.wait_closed(2)
        session.close()


def test_a_trickled_message_hits_the_data_timeout() -> None:
    def script(peer: Peer) -> None:
        fetch_command(peer)
        peer.send(b"* 1 FETCH (UID 3 BODY[] {100000}\r\n")
        peer.trickle(b"slow", interval=0.05, repeat=True)

    with hostile(script) as server:
        session = ImapSession.open(settings_for(server), secret=lambda: "pw")
        session.select("INBOX")
        started = time.monotonic()
        with pytest.raises(TimeoutFailure, match="data_timeout"):
            list(session.fetch_bodies([3]))
        assert time.monotonic() - started < 2
        session.abort()


def test_endless_flag_updates_are_cut_off() -> None:
    """Budgets renew only with a body asked for: lines without one still count."""

    def script(peer: Peer) -> None:
        fetch_command(peer)
        peer.flood(b"* 1 FETCH (UID 3 FLAGS (\\Seen))\r\n")

    with hostile(script) as server:
        session = ImapSession.open(settings_for(server), secret=lambda: "pw")
        session.select("INBOX")
        with pytest.raises(ResponseLimitError, match="max_response_lines"):
            list(session.fetch_bodies([3]))
        session.abort()


@pytest.mark.parametrize(
    "answer",
    [
        literal(4, b"not asked for"),
        literal(3, b"once") + literal(3, b"twice"),
    ],
    ids=["other-uid", "same-uid-twice"],
)
def test_bodies_nobody_asked_for_are_refused(answer: bytes) -> None:
    """Each body renews the budgets, so bodies are counted against the UIDs asked for:
    an endless stream of bodies cannot keep one answer going."""

    def script(peer: Peer) -> None:
        fetch_command(peer)
        peer.send(answer)
        peer.stall()

    with hostile(script) as server:
        session = ImapSession.open(settings_for(server), secret=lambda: "pw")
        session.select("INBOX")
        with pytest.raises(ProtocolError, match="nobody asked for"):
            list(session.fetch_bodies([3]))
        assert server.wait_closed(2)
        session.close()


@pytest.mark.parametrize(
    "line",
    [
        b"* 1 FETCH (UID 3 BODY[] {5}\r\nabc",  # cut inside the literal
        b"* 1 FETCH (UID 3 BODY[] ",  # cut inside the line
    ],
    ids=["in-literal", "in-line"],
)
def test_a_connection_cut_mid_answer_is_a_lost_connection(line: bytes) -> None:
    def script(peer: Peer) -> None:
        fetch_command(peer)
        peer.send(line)
        peer.close()

    with hostile(script) as server:
        session = ImapSession.open(settings_for(server), secret=lambda: "pw")
        session.select("INBOX")
        with pytest.raises(ConnectionLostError):
            list(session.fetch_bodies([3]))
        session.abort()


@pytest.mark.parametrize(
    "answer",
    [
        b"* 1 FETCH (UID 3 BODY[] {5}\r\nhello\r\n",  # no ")" after the literal
        b"* 1 FETCH (UID 3 BODY[] {5}garbage\r\n",
        b'* 1 FETCH (UID 3 BODY[] "unterminated)\r\n',
        b"* 1 FETCH (UID 3 FLAGS " + b"(" * 40 + b")" * 40 + b")\r\n",
        b"+ go ahead\r\n",
        b'* 1 FETCH (UID 3 FLAGS () RFC822.SIZE 1 INTERNALDATE "x" BODY[] {1}\r\n'
        b'x BODY[] "again")\r\n',
    ],
    ids=["no-close", "bad-literal", "bad-quoted", "deep-lists", "continuation", "two-bodies"],
)
def test_malformed_answers_are_protocol_errors(answer: bytes) -> None:
    def script(peer: Peer) -> None:
        fetch_command(peer)
        peer.send(answer)
        peer.stall()

    with hostile(script) as server:
        session = ImapSession.open(settings_for(server), secret=lambda: "pw")
        session.select("INBOX")
        started = time.monotonic()
        with pytest.raises(ProtocolError):
            list(session.fetch_bodies([3]))
        assert time.monotonic() - started < 1.5
        session.abort()


def test_a_refused_fetch_keeps_the_session_in_step() -> None:
    def script(peer: Peer) -> None:
        tag, _rest = fetch_command(peer)
        peer.send(literal(3, b"first\r\n") + tag + b" NO [SERVERBUG] broken\r\n")
        logout(peer)

    with hostile(script) as server:
        session = ImapSession.open(settings_for(server), secret=lambda: "pw")
        session.select("INBOX")
        got: list[bytes] = []
        with pytest.raises(ProtocolError, match=r"refused UID FETCH: .*SERVERBUG"):
            got.extend(item.data for item in session.fetch_bodies([3]))
        assert got == [b"first\r\n"]
        session.close()
        assert b"LOGOUT" in server.received[-1]


def test_stopping_early_abandons_the_connection() -> None:
    """The rest of the answer is still coming: the session cannot be used (or LOGOUT) after."""

    def script(peer: Peer) -> None:
        fetch_command(peer)
        peer.send(literal(3, b"a\r\n") + literal(4, b"b\r\n", number=2))
        peer.stall()

    with hostile(script) as server:
        session = ImapSession.open(settings_for(server), secret=lambda: "pw")
        session.select("INBOX")
        for _item in session.fetch_bodies([3, 4]):
            break
        assert server.wait_closed(2)
        with pytest.raises(ProtocolError, match="stopped reading a UID FETCH answer mid-answer"):
            session.uids()
        session.close()
        assert not any(b"LOGOUT" in line for line in server.received)


def test_no_command_goes_out_while_an_answer_is_being_read(dovecot: DovecotServer) -> None:
    """Two UID FETCH commands are in flight while messages are handed out: a command sent
    then (a --delete checkpoint did) would read the FETCH answer as its own. The session
    refuses it before sending; once the answer is read, the same command works."""
    user = dovecot.add_user()
    for index in range(6):
        dovecot.seed(b"Subject: %d\r\n\r\nbody\r\n" % index, user=user.name)
    settings = dovecot.settings(Protocol.IMAP, Security.TLS, user=user.name)
    with ImapSession.open(settings, secret=lambda: user.password) as session:
        session.select("INBOX", readonly=False)
        uids = session.uids()
        messages = session.fetch_bodies(uids, batch=2)
        first = next(messages)
        with pytest.raises(RuntimeError, match="UID FETCH answer is still being read"):
            session.delete([first.uid])
        assert len([first, *messages]) == 6
        session.delete([first.uid])
        assert session.uids() == uids[1:]
