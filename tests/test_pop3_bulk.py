"""Pop3Session.retrieve: pipelined RETR read in blocks (protocols/pop3/bulk.py).

Against the real Dovecot: the bytes retrieved are the bytes seeded (plain, POP3S, STLS), with
UIDL ids and LIST sizes, nothing deleted. Against small scripted servers: commands really go
out pipelined only when CAPA says PIPELINING, an endless or trickled RETR is cut off, the
size limit is exact, a LIST size over the limit is refused before any RETR, -ERR in the
middle of a window, bare LF line ends (kept as sent), a terminator split across reads.
Dot-unstuffing is checked against stuffing with hypothesis, the block arriving in pieces.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servers.dovecot import DovecotServer
from servers.hostile import HostileServer, Peer, hostile

from mailctl.errors import ConnectionLostError, ProtocolError, ResponseLimitError, TimeoutFailure
from mailctl.models import Protocol, Security, ServerSettings, Timeouts
from mailctl.protocols.limits import KIB, MIB, ReadLimits
from mailctl.protocols.pop3 import Pop3Session
from mailctl.protocols.pop3.bulk import WINDOW, unstuff
from mailctl.protocols.pop3.types import Pop3Message
from mailctl.protocols.wire import dot_block_end


def message(index: int, size: int) -> bytes:
    """A CRLF message of about `size` octets with dot-led lines inside (POP3 stuffs them).

    Not on the first line: Dovecot 2.3 does not stuff a message's first line (seen here:
    "..x" stored is sent as "..x"), which reads back as ".x" in any client.
    """
    head = f"Subject: message {index}\r\nFrom: a@example.org\r\n\r\n".encode()
    line = f"line of message {index}, with text to make about seventy octets...\r\n".encode()
    body = line * max(1, (size - len(head)) // len(line))
    return head + b".leading dot\r\n..two dots\r\n.\r\n" + body + b"..\r\n"


# -- against Dovecot --------------------------------------------------------------------------

SECURITIES = pytest.mark.parametrize(
    "security", [Security.NONE, Security.TLS, Security.STARTTLS], ids=["plain", "pop3s", "stls"]
)


@SECURITIES
def test_bytes_retrieved_are_the_bytes_seeded(
    dovecot: DovecotServer, dovecot_plain: DovecotServer, security: Security
) -> None:
    server = dovecot_plain if security is Security.NONE else dovecot
    user = server.add_user()
    sizes = [10 * KIB] * (WINDOW + 6) + [1, 300 * KIB, 3 * MIB]  # two windows, big messages
    seeded = [message(index, size) for index, size in enumerate(sizes)]
    for data in seeded:
        server.seed(data, user=user.name)
    settings = server.settings(
        Protocol.POP3, security, user=user.name, allow_plaintext_auth=security is Security.NONE
    )
    with Pop3Session.open(settings, secret=lambda: user.password) as session:
        uids = session.list_uids()
        numbers = sorted(uids)
        got = list(session.retrieve(numbers))
        assert [item.number for item in got] == numbers
        assert sorted(item.data for item in got) == sorted(seeded)
        assert all(item.size == len(item.data) for item in got)  # Dovecot's LIST is exact
        assert [item.uid for item in got] == [uids[number] for number in numbers]
        # In step after the bulk reads: an ordinary command works, and a second pass too.
        assert session.stat() == (len(seeded), sum(map(len, seeded)))
        assert [item.data for item in session.retrieve(numbers[-2:])] == [
            item.data for item in got[-2:]
        ]
    with Pop3Session.open(settings, secret=lambda: user.password) as session:
        assert session.stat()[0] == len(seeded)  # nothing deleted
        # While a window of RETR answers is still coming, no other command may go out
        # (it would read a RETR answer as its own): refused before it is sent.
        messages = session.retrieve(numbers)
        first = next(messages)
        with pytest.raises(RuntimeError, match="RETR answers is still being read"):
            session.delete(first.number)
        assert len([first, *messages]) == len(numbers)
        assert session.stat()[0] == len(seeded)  # in step, and nothing deleted


# -- scripted servers ---------------------------------------------------------------------------

FAST = Timeouts(connect=2.0, command=2.0, data=1.0)
CAPA = b"+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\n.\r\n"


def settings_for(server: HostileServer, **overrides: object) -> ServerSettings:
    base = ServerSettings(
        host="127.0.0.1", port=server.port, security=Security.NONE, username="alice",
        allow_plaintext_auth=True, timeouts=FAST,
    )  # fmt: skip
    return replace(base, **overrides)  # type: ignore[arg-type]


def logged_in(peer: Peer, *, capa: bytes = CAPA, sizes: dict[int, int] | None = None) -> None:
    """Greet, answer CAPA, USER/PASS, LIST (`sizes`, default 3 messages of 100) and UIDL."""
    sizes = sizes if sizes is not None else {1: 100, 2: 100, 3: 100}
    peer.send(b"+OK ready\r\n")
    assert peer.line() == b"CAPA"
    peer.send(capa)
    assert peer.line() == b"USER alice"
    peer.send(b"+OK\r\n")
    assert peer.line().startswith(b"PASS ")
    peer.send(b"+OK logged in\r\n")
    assert peer.line() == b"LIST"
    listing = b"".join(b"%d %d\r\n" % item for item in sizes.items())
    peer.send(b"+OK\r\n" + listing + b".\r\n")
    if b"UIDL" in capa:
        assert peer.line() == b"UIDL"
        peer.send(b"+OK\r\n" + b"".join(b"%d uid-%d\r\n" % (n, n) for n in sizes) + b".\r\n")


def quit_(peer: Peer) -> None:
    assert peer.line() == b"QUIT"
    peer.send(b"+OK bye\r\n")
    peer.stall()


def retrieved(
    script: Callable[[Peer], None], numbers: list[int], *, limits: ReadLimits | None = None
) -> tuple[list[Pop3Message], HostileServer]:
    with hostile(script) as server:
        with Pop3Session.open(settings_for(server), secret=lambda: "pw", limits=limits) as session:
            got = list(session.retrieve(numbers))
        assert server.wait_closed(3)
    return got, server


def test_retrs_go_out_pipelined_when_offered() -> None:
    """RFC 2449 6.6: all three RETRs arrive before the first answer is sent."""

    def script(peer: Peer) -> None:
        logged_in(peer)
        commands = [peer.line() for _ in range(3)]
        assert commands == [b"RETR 1", b"RETR 2", b"RETR 3"]
        for number in (1, 2, 3):
            peer.send(b"+OK\r\nSubject: %d\r\n\r\nbody\r\n.\r\n" % number)
        quit_(peer)

    got, _server = retrieved(script, [1, 2, 3])
    assert [(item.number, item.uid, item.size) for item in got] == [
        (1, "uid-1", 100), (2, "uid-2", 100), (3, "uid-3", 100),
    ]  # fmt: skip
    assert got[2].data == b"Subject: 3\r\n\r\nbody\r\n"


def test_the_window_slides() -> None:
    """More RETRs go out once half of the window is answered, before the rest is."""
    count = WINDOW + WINDOW // 2

    def script(peer: Peer) -> None:
        logged_in(peer, sizes=dict.fromkeys(range(1, count + 1), 10))
        assert [peer.line() for _ in range(WINDOW)] == [
            b"RETR %d" % n for n in range(1, WINDOW + 1)
        ]
        assert not peer.has_pending(wait=0.1)  # one window at most
        for number in range(1, WINDOW // 2 + 1):
            peer.send(b"+OK\r\nm%d\r\n.\r\n" % number)
        assert peer.has_pending(wait=1.0)  # the next RETRs, half a window still unanswered
        assert peer.line() == b"RETR %d" % (WINDOW + 1)
        for number in range(WINDOW // 2 + 1, count + 1):
            if number > WINDOW + 1:
                assert peer.line() == b"RETR %d" % number
            peer.send(b"+OK\r\nm%d\r\n.\r\n" % number)
        quit_(peer)

    got, _server = retrieved(script, list(range(1, count + 1)))
    assert [item.data for item in got] == [b"m%d\r\n" % n for n in range(1, count + 1)]


def test_one_retr_at_a_time_without_pipelining() -> None:
    def script(peer: Peer) -> None:
        logged_in(peer, capa=b"+OK\r\nUSER\r\nUIDL\r\n.\r\n")
        for number in (1, 2):
            assert peer.line() == b"RETR %d" % number
            # A pipelining client would have sent the next RETR by now.
            assert not peer.has_pending(wait=0.1)
            peer.send(b"+OK\r\nm%d\r\n.\r\n" % number)
        quit_(peer)

    got, _server = retrieved(script, [1, 2])
    assert [item.data for item in got] == [b"m1\r\n", b"m2\r\n"]


def test_dot_stuffing_bare_lf_and_split_terminators() -> None:
    def script(peer: Peer) -> None:
        logged_in(peer)
        for _ in range(3):
            peer.line()
        peer.send(b"+OK\r\n..one\r\n...two\r\n.\r")
        time.sleep(0.05)
        peer.send(b"\n+OK\r\nbare\nlf\n..dot\n.\n")  # RFC 1939 wants CRLF; kept as sent
        peer.send(b"+OK\r\n.\r\n")  # an empty message
        quit_(peer)

    got, _server = retrieved(script, [1, 2, 3])
    assert [item.data for item in got] == [b".one\r\n..two\r\n", b"bare\nlf\n.dot\n", b""]


def test_an_endless_retr_is_cut_at_max_message() -> None:
    def script(peer: Peer) -> None:
        logged_in(peer)
        peer.line()
        peer.send(b"+OK\r\n")
        peer.flood(b"endless line of a message that never ends ......................\r\n")

    with hostile(script) as server:
        session = Pop3Session.open(
            settings_for(server), secret=lambda: "pw", limits=ReadLimits(max_message=MIB)
        )
        started = time.monotonic()
        with pytest.raises(ResponseLimitError, match="max_message = 1 MiB"):
            list(session.retrieve([1]))
        assert time.monotonic() - started < 1
        assert server.wait_closed(3)
        assert server.sent < 8 * MIB
        session.close()


@pytest.mark.parametrize("extra", [0, 1], ids=["at-limit", "one-over"])
def test_a_message_at_max_message_passes_one_octet_more_does_not(extra: int) -> None:
    """Counted as sent (dot-stuffed), CRLFs included, the "." line not."""
    limit = 64 * KIB
    line = b"x" * 1022 + b"\r\n"
    body = line * (limit // len(line) - 1) + b"y" * (1022 + extra) + b"\r\n"
    assert len(body) == limit + extra

    def script(peer: Peer) -> None:
        logged_in(peer, sizes={1: limit})  # LIST may be off: the read counts
        peer.line()
        peer.send(b"+OK\r\n" + body + b".\r\n")
        quit_(peer)

    limits = ReadLimits(max_message=limit)
    if extra:
        with pytest.raises(ResponseLimitError, match="max_message = 64 KiB"):
            retrieved(script, [1], limits=limits)
    else:
        got, _server = retrieved(script, [1], limits=limits)
        assert [len(item.data) for item in got] == [limit]


def test_a_list_size_over_the_limit_is_left_out_before_any_retr() -> None:
    """The 10 GB message is never asked for (no RETR 2): the others still come, and the
    caller (fetch) reports the one left out instead of the run ending."""

    def script(peer: Peer) -> None:
        logged_in(peer, sizes={1: 100, 2: 10 * 1024**3, 3: 100})
        assert [peer.line(), peer.line()] == [b"RETR 1", b"RETR 3"]
        peer.send(b"+OK\r\none\r\n.\r\n+OK\r\nthree\r\n.\r\n")
        quit_(peer)

    got, server = retrieved(script, [1, 2, 3])
    assert [(item.number, item.data) for item in got] == [(1, b"one\r\n"), (3, b"three\r\n")]
    assert b"RETR 2" not in server.received


def test_a_number_not_in_list_is_left_out() -> None:
    def script(peer: Peer) -> None:
        logged_in(peer)
        assert peer.line() == b"RETR 1"
        peer.send(b"+OK\r\none\r\n.\r\n")
        quit_(peer)

    got, server = retrieved(script, [1, 7])
    assert [item.number for item in got] == [1]
    assert b"RETR 7" not in server.received


def test_err_in_the_middle_of_a_window_abandons_the_connection() -> None:
    def script(peer: Peer) -> None:
        logged_in(peer)
        for _ in range(3):
            peer.line()
        peer.send(b"+OK\r\none\r\n.\r\n-ERR no such message\r\n+OK\r\nthree\r\n.\r\n")
        peer.stall()

    with hostile(script) as server:
        session = Pop3Session.open(settings_for(server), secret=lambda: "pw")
        got: list[bytes] = []
        with pytest.raises(ProtocolError, match="RETR 2 with -ERR no such message"):
            got.extend(item.data for item in session.retrieve([1, 2, 3]))
        assert got == [b"one\r\n"]
        assert server.wait_closed(2)  # the third answer is still unread: out of step
        session.close()
        assert b"QUIT" not in server.received


def test_a_trickled_retr_hits_the_data_timeout() -> None:
    def script(peer: Peer) -> None:
        logged_in(peer)
        peer.line()
        peer.send(b"+OK\r\n")
        peer.trickle(b"Subject: slow\r\n", interval=0.05, repeat=True)

    with hostile(script) as server:
        session = Pop3Session.open(settings_for(server), secret=lambda: "pw")
        started = time.monotonic()
        with pytest.raises(TimeoutFailure, match=r"RETR within 1 s .*data_timeout"):
            list(session.retrieve([1]))
        assert 0.9 < time.monotonic() - started < 2
        session.abort()


def test_each_answer_has_its_own_deadline() -> None:
    """Three answers 0.4 s apart: 1.2 s in all, over data_timeout (1 s); each within it."""

    def script(peer: Peer) -> None:
        logged_in(peer)
        for _ in range(3):
            peer.line()
        for number in (1, 2, 3):
            time.sleep(0.4)
            peer.send(b"+OK\r\nm%d\r\n.\r\n" % number)
        quit_(peer)

    got, _server = retrieved(script, [1, 2, 3])
    assert [item.data for item in got] == [b"m1\r\n", b"m2\r\n", b"m3\r\n"]


@pytest.mark.parametrize(
    "answer",
    [b"+OK\r\ncut in the middle", b"+OK\r\ncut\r\n.", b""],
    ids=["mid-line", "mid-terminator", "before-status"],
)
def test_a_connection_cut_mid_answer_is_a_lost_connection(answer: bytes) -> None:
    def script(peer: Peer) -> None:
        logged_in(peer)
        peer.line()
        peer.send(answer)
        peer.close()

    with hostile(script) as server:
        session = Pop3Session.open(settings_for(server), secret=lambda: "pw")
        with pytest.raises(ConnectionLostError):
            list(session.retrieve([1]))
        session.abort()


def test_an_answer_that_is_not_ok_is_refused() -> None:
    def script(peer: Peer) -> None:
        logged_in(peer)
        peer.line()
        peer.send(b"+OKAY\r\nx\r\n.\r\n")
        peer.stall()

    with hostile(script) as server:
        session = Pop3Session.open(settings_for(server), secret=lambda: "pw")
        with pytest.raises(ProtocolError, match=r"RETR 1 with \+OKAY"):
            list(session.retrieve([1]))
        session.abort()


# -- dot-unstuffing -------------------------------------------------------------------------------

LINES = st.lists(
    st.binary(max_size=12)
    .map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b""))
    .map(
        lambda raw: raw if raw[:1] != b"." or len(raw) % 2 else b"." + raw  # many dot-led lines
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(LINES, st.integers(min_value=1, max_value=7), st.sampled_from([b"\r\n", b"\n"]))
def test_unstuff_undoes_stuffing(lines: list[bytes], piece: int, end: bytes) -> None:
    """RFC 1939 3: each line starting with "." gets one more; the "." line ends the answer.
    The block arrives `piece` octets at a time, each scan starting where the wire's does."""
    stuffed = b"".join((b"." + line if line[:1] == b"." else line) + end for line in lines)
    block = stuffed + b"." + end
    buffer, dots, found = bytearray(), [], -1
    for start in range(0, len(block), piece):
        scanned = max(0, len(buffer) - 4)
        buffer += block[start : start + piece]
        found = dot_block_end(buffer, scanned, dots)
        if found >= 0:
            break
    assert found == len(block)
    assert unstuff(block, dots) == b"".join(line + end for line in lines)
