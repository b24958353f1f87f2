"""ImapSession / Pop3Session: real mail through the bounded reads (Dovecot), hostile answers cut.

The login check is covered by test_imap_pop3_checks.py and, from the CLI, by
test_hostile_mail_servers.py; here are the operations `fetch` will use (SELECT, UID SEARCH,
FETCH; STAT, LIST, UIDL, RETR) and the limits that only they reach.
"""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import trustme
from servers.dovecot import DovecotServer
from servers.hostile import HostileServer, Peer, hostile

from mailctl.errors import (
    ConnectionLostError,
    HeaderInjectionError,
    MailctlError,
    ProtocolError,
    ResponseLimitError,
    TimeoutFailure,
)
from mailctl.models import Protocol, Security, ServerSettings, Timeouts
from mailctl.protocols.checks import LoginCheck
from mailctl.protocols.imap import ImapSession
from mailctl.protocols.limits import KIB, ReadLimits
from mailctl.protocols.pop3 import Pop3Session

BOTH = pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3], ids=["imap", "pop3"])
CHECKS: dict[Protocol, Callable[..., LoginCheck]] = {
    Protocol.IMAP: ImapSession.check,
    Protocol.POP3: Pop3Session.check,
}


def message(size: int) -> bytes:
    """A CRLF message of about `size` octets with dot-led lines (POP3 stuffs those)."""
    head = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: bounded\r\n\r\n"
    line = b".leading dot, then text to fill a line of about seventy octets.......\r\n"
    return head + line * max(1, (size - len(head)) // len(line)) + b"..\r\n.\r\nend\r\n"


# -- normal operation against Dovecot -------------------------------------------------------


@pytest.mark.parametrize("security", [Security.TLS, Security.STARTTLS], ids=["tls", "starttls"])
def test_imap_session_reads_a_message(dovecot: DovecotServer, security: Security) -> None:
    user = dovecot.add_user()
    raw = message(300 * KIB)  # several reads for the literal
    dovecot.seed(raw, user=user.name)
    settings = dovecot.settings(Protocol.IMAP, security, user=user.name)
    with ImapSession.open(settings, secret=lambda: user.password) as session:
        assert session.info.authenticated and session.info.tls is not None
        assert session.select("INBOX").exists == 1
        [uid] = session.uids()
        assert session.fetch_message(uid) == raw


@pytest.mark.parametrize("security", [Security.TLS, Security.STARTTLS], ids=["tls", "starttls"])
def test_pop3_session_reads_a_message(dovecot: DovecotServer, security: Security) -> None:
    user = dovecot.add_user()
    raw = message(300 * KIB)
    dovecot.seed(raw, user=user.name)
    settings = dovecot.settings(Protocol.POP3, security, user=user.name)
    with Pop3Session.open(settings, secret=lambda: user.password) as session:
        count, size = session.stat()
        assert count == 1 and size == len(raw)
        assert session.list_sizes() == {1: len(raw)}
        assert list(session.list_uids()) == [1]
        assert session.retr(1) == raw  # dot-stuffing undone, CRLF kept
    assert dovecot.maildir(user.name).joinpath("new").iterdir()  # nothing deleted


@BOTH
def test_the_login_check_fits_in_tight_limits(dovecot: DovecotServer, protocol: Protocol) -> None:
    """Budgets are per command: a real exchange needs a few short lines per answer."""
    tight = ReadLimits(max_line=2 * KIB, max_literal=KIB, max_response=8 * KIB,
                       max_response_lines=20, max_message=KIB, session_seconds=20)  # fmt: skip
    settings = dovecot.settings(protocol, Security.STARTTLS)
    result = CHECKS[protocol](settings, secret=lambda: dovecot.password, limits=tight)
    assert result.authenticated


@BOTH
def test_a_message_over_max_message_is_refused(dovecot: DovecotServer, protocol: Protocol) -> None:
    user = dovecot.add_user()
    dovecot.seed(message(200 * KIB), user=user.name)
    settings = dovecot.settings(protocol, Security.TLS, user=user.name)
    limits = ReadLimits(max_message=64 * KIB)
    with pytest.raises(ResponseLimitError) as caught:
        if protocol is Protocol.IMAP:
            with ImapSession.open(settings, secret=lambda: user.password, limits=limits) as imap:
                imap.select("INBOX")
                imap.fetch_message(imap.uids()[0])
        else:
            with Pop3Session.open(settings, secret=lambda: user.password, limits=limits) as pop:
                pop.retr(1)
    text = caught.value.one_line()
    assert "max_message = 64 KiB" in text and f"{dovecot.host}:{settings.port}" in text
    assert caught.value.exit_code == 76


def test_a_folder_name_with_a_line_break_is_refused(dovecot: DovecotServer) -> None:
    settings = dovecot.settings(Protocol.IMAP, Security.TLS)
    with (
        ImapSession.open(settings, secret=lambda: dovecot.password) as session,
        pytest.raises(HeaderInjectionError),
    ):
        session.select("INBOX\r\nA1 DELETE INBOX")


# -- hostile answers to the operations ------------------------------------------------------

FAST = Timeouts(connect=2.0, command=2.0, data=1.0)


def plain(server: HostileServer, **overrides: object) -> ServerSettings:
    base = ServerSettings(
        host="127.0.0.1", port=server.port, security=Security.NONE, username="alice",
        allow_plaintext_auth=True, timeouts=FAST,
    )  # fmt: skip
    return replace(base, **overrides)  # type: ignore[arg-type]


def pop3_logged_in(peer: Peer) -> bytes:
    """Greet, answer CAPA and USER/PASS; return the next command line."""
    peer.send(b"+OK ready\r\n")
    assert peer.line() == b"CAPA"
    peer.send(b"+OK\r\nUSER\r\n.\r\n")
    assert peer.line() == b"USER alice"
    peer.send(b"+OK\r\n")
    assert peer.line().startswith(b"PASS ")
    peer.send(b"+OK logged in\r\n")
    return peer.line()


def imap_next(peer: Peer) -> tuple[bytes, bytes]:
    """The next command's tag and name, answering CAPABILITY (imapclient asks it often)."""
    while True:
        tag, command = peer.command()
        if command != b"CAPABILITY":
            return tag, command
        peer.send(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")


def imap_logged_in(peer: Peer) -> tuple[bytes, bytes]:
    """Greet, answer LOGIN and SELECT; return the next command's tag and name."""
    peer.send(b"* OK ready\r\n")
    tag, command = imap_next(peer)
    assert command == b"LOGIN", command
    peer.send(tag + b" OK logged in\r\n")
    tag, command = imap_next(peer)
    assert command == b"EXAMINE", command  # SELECT read-only
    peer.send(b"* 1 EXISTS\r\n* OK [UIDVALIDITY 1] v\r\n" + tag + b" OK [READ-ONLY] selected\r\n")
    return imap_next(peer)


def test_pop3_list_with_endless_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    def script(peer: Peer) -> None:
        assert pop3_logged_in(peer) == b"LIST"
        peer.send(b"+OK scan listing follows\r\n")
        peer.flood(b"1 100\r\n")

    with hostile(script) as server:
        session = Pop3Session.open(plain(server), secret=lambda: "pw")
        started = time.monotonic()
        with pytest.raises(ResponseLimitError, match="max_response_lines") as caught:
            session.list_sizes()
        assert "LIST" in caught.value.message
        assert server.wait_closed(3), "the connection must be closed when a limit trips"
        assert time.monotonic() - started < 4
        session.abort()


def test_pop3_retr_trickle_stops_at_the_data_timeout() -> None:
    def script(peer: Peer) -> None:
        assert pop3_logged_in(peer) == b"RETR 1"
        peer.send(b"+OK message follows\r\n")
        peer.trickle(b"Subject: slow\r\n", interval=0.1, repeat=True)

    with hostile(script) as server, Pop3Session.open(plain(server), secret=lambda: "pw") as session:
        started = time.monotonic()
        with pytest.raises(TimeoutFailure, match=r"RETR within 1 s .*data_timeout"):
            session.retr(1)
        assert 0.9 < time.monotonic() - started < 2
        assert server.wait_closed(2)


def test_imap_fetch_with_a_huge_literal() -> None:
    def script(peer: Peer) -> None:
        tag, command = imap_logged_in(peer)
        assert command == b"UID", command  # UID SEARCH
        peer.send(b"* SEARCH 7\r\n" + tag + b" OK done\r\n")
        imap_next(peer)  # UID FETCH
        peer.send(b"* 1 FETCH (UID 7 BODY[] {9999999999}\r\n")
        peer.trickle(b"From: x\r\n", interval=0.05, repeat=True)

    with hostile(script) as server:
        session = ImapSession.open(plain(server), secret=lambda: "pw")
        session.select("INBOX")
        with pytest.raises(ResponseLimitError, match=r"9999999999.*max_message = 50 MiB"):
            session.fetch_message(session.uids()[0])
        assert server.wait_closed(3)
        session.abort()


def test_imap_fetch_counts_lines_around_the_message() -> None:
    """A message command allows a big literal, not an endless stream of small lines."""

    def script(peer: Peer) -> None:
        tag, _command = imap_logged_in(peer)
        peer.send(b"* SEARCH 7\r\n" + tag + b" OK done\r\n")
        imap_next(peer)
        peer.flood(b"* 1 FETCH (FLAGS (\\Seen))\r\n")

    with hostile(script) as server:
        session = ImapSession.open(plain(server), secret=lambda: "pw")
        session.select("INBOX")
        with pytest.raises(ResponseLimitError, match="max_response_lines"):
            session.fetch_message(session.uids()[0])
        session.abort()


def test_imap_capability_answer_without_data_is_a_protocol_error() -> None:
    """imapclient fails with AttributeError when CAPABILITY says OK and lists nothing."""

    def script(peer: Peer) -> None:
        peer.send(b"* OK ready\r\n")
        tag, _ = imap_next(peer)  # LOGIN
        peer.send(tag + b" OK logged in\r\n")
        tag, _ = imap_next(peer)  # EXAMINE
        peer.send(b"* 1 EXISTS\r\n* OK [UIDVALIDITY 1] v\r\n" + tag + b" OK selected\r\n")
        tag, command = peer.command()
        assert command == b"CAPABILITY", command
        peer.send(tag + b" OK but no capabilities\r\n")
        peer.stall()

    with hostile(script) as server:
        session = ImapSession.open(plain(server), secret=lambda: "pw")
        session.select("INBOX")
        with pytest.raises(ProtocolError, match=r"127\.0\.0\.1.*during search"):
            session.uids()
        session.abort()


def test_session_deadline_covers_the_whole_exchange() -> None:
    """Each answer comes within command_timeout; together they outlast session_seconds."""

    def script(peer: Peer) -> None:
        peer.send(b"* OK ready\r\n")
        while True:
            tag, _command = peer.command()
            time.sleep(0.4)
            peer.send(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")

    with hostile(script) as server:
        started = time.monotonic()
        with pytest.raises(TimeoutFailure, match=r"within 0.3 s \(limit session_seconds\)"):
            ImapSession.open(
                plain(server, username=None), secret=None, limits=ReadLimits(session_seconds=0.3)
            )
        assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    "protocol",
    [Protocol.IMAP, Protocol.POP3],
    ids=["imap", "pop3"],
)
def test_data_sent_before_the_starttls_handshake_is_refused(
    protocol: Protocol, server_tls: tuple[ssl.SSLContext, Path]
) -> None:
    """Plaintext answers queued behind the STARTTLS reply must not pass as TLS-protected."""
    context, ca_file = server_tls

    def imap(peer: Peer) -> None:
        peer.send(b"* OK ready\r\n")
        tag, _ = peer.command()
        peer.send(b"* CAPABILITY IMAP4rev1 STARTTLS\r\n" + tag + b" OK done\r\n")
        tag, command = peer.command()
        assert command == b"STARTTLS"
        peer.send(tag + b" OK go\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN INJECTED\r\n")
        peer.start_tls(context)
        peer.stall()

    def pop3(peer: Peer) -> None:
        peer.send(b"+OK ready\r\n")
        assert peer.line() == b"CAPA"
        peer.send(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n")
        assert peer.line() == b"STLS"
        peer.send(b"+OK go\r\n+OK\r\nINJECTED\r\n.\r\n")
        peer.start_tls(context)
        peer.stall()

    script = imap if protocol is Protocol.IMAP else pop3
    session_type = ImapSession if protocol is Protocol.IMAP else Pop3Session
    with hostile(script) as server:
        settings = replace(
            plain(server, username=None), security=Security.STARTTLS, ca_file=ca_file
        )
        with pytest.raises(ProtocolError, match="response injection"):
            session_type.open(settings, secret=None)
        assert server.wait_closed(2)


# -- TLS handshakes run under the deadline, not a per-read timeout ---------------------------


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context, ca_file


@BOTH
@pytest.mark.parametrize("security", [Security.TLS, Security.STARTTLS], ids=["tls", "starttls"])
def test_a_trickled_tls_handshake_ends_at_the_deadline(
    server_tls: tuple[ssl.SSLContext, Path], protocol: Protocol, security: Security
) -> None:
    context, ca_file = server_tls

    def script(peer: Peer) -> None:
        if security is Security.STARTTLS and protocol is Protocol.IMAP:
            peer.send(b"* OK ready\r\n")
            tag, _ = peer.command()
            peer.send(b"* CAPABILITY IMAP4rev1 STARTTLS\r\n" + tag + b" OK done\r\n")
            tag, _ = peer.command()
            peer.send(tag + b" OK go\r\n")
        elif security is Security.STARTTLS:
            peer.send(b"+OK ready\r\n")
            assert peer.line() == b"CAPA"
            peer.send(b"+OK\r\nSTLS\r\n.\r\n")
            assert peer.line() == b"STLS"
            peer.send(b"+OK go\r\n")
        # Each byte comes long before any per-read timeout; the whole takes minutes.
        peer.trickle_tls_handshake(context, interval=0.05)

    with hostile(script) as server:
        settings = ServerSettings(
            host="127.0.0.1", port=server.port, security=security, ca_file=ca_file,
            timeouts=Timeouts(connect=1.0, command=1.0),
        )  # fmt: skip
        started = time.monotonic()
        with pytest.raises(TimeoutFailure) as caught:
            CHECKS[protocol](settings, secret=None)
        assert time.monotonic() - started < 2.5
        key = "connect_timeout" if security is Security.TLS else "command_timeout"
        assert key in caught.value.message and "during tls" in caught.value.message


# -- the login exchange with a broken or hostile server --------------------------------------


def test_pop3_connection_closed_during_capa_is_connection_lost() -> None:
    """poplib's capa() reported a cut-off CAPA as "CAPA not supported": the check passed."""

    def script(peer: Peer) -> None:
        peer.send(b"+OK ready\r\n")
        assert peer.line() == b"CAPA"
        peer.send(b"+OK\r\nUSER\r\n")  # and hang up before the final dot

    with hostile(script) as server, pytest.raises(ConnectionLostError, match="capability"):
        Pop3Session.check(plain(server, username=None), secret=None)


def test_pop3_capa_with_empty_and_non_ascii_lines() -> None:
    """poplib's capa() failed with IndexError (exit 70) on an empty line."""

    def script(peer: Peer) -> None:
        peer.send(b"+OK ready\r\n")
        assert peer.line() == b"CAPA"
        peer.send(b"+OK\r\nUSER\r\n\r\nX-\xc3\x9cNI arg\r\n.\r\n")
        assert peer.line() == b"QUIT"
        peer.send(b"+OK bye\r\n")

    with hostile(script) as server:
        result = Pop3Session.check(plain(server, username=None), secret=None)
    assert result.capabilities == ("USER", "X-\u00dcNI arg")


def test_pop3_login_needs_plus_ok_not_any_plus() -> None:
    """RFC 1939 3: success is "+OK"; a bare "+" (a SASL continuation) is not a login."""

    def script(peer: Peer) -> None:
        peer.send(b"+OK ready\r\n")
        assert peer.line() == b"CAPA"
        peer.send(b"+OK\r\nSASL PLAIN\r\n.\r\n")
        assert peer.line().startswith(b"AUTH PLAIN ")
        peer.send(b"+ \r\n")
        peer.stall()

    with hostile(script) as server, pytest.raises(ProtocolError):
        Pop3Session.check(plain(server), secret=lambda: "pw")


def test_imap_authenticate_sends_the_credentials_once() -> None:
    """imapclient answers every continuation with the password again; we cancel instead."""

    def script(peer: Peer) -> None:
        peer.send(b"* OK ready\r\n")
        tag, _ = peer.command()
        peer.send(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
        tag, command = peer.command()
        assert command == b"AUTHENTICATE", command
        for _ in range(5):
            peer.send(b"+ \r\n")
            if peer.line() == b"*":  # RFC 3501 6.2.2: the client cancels
                break
        peer.send(tag + b" BAD cancelled\r\n")
        peer.stall()

    with hostile(script) as server:
        with pytest.raises(MailctlError):
            ImapSession.check(plain(server), secret=lambda: "pw")
        credentials = base64.b64encode(b"\0alice\0pw")
        assert server.received.count(credentials) == 1, server.received
        assert server.received[-1] == b"*"


def test_a_folder_name_with_a_line_break_from_the_server_is_never_sent_back() -> None:
    """A LIST name decoding (modified UTF-7, RFC 3501 5.1.3) to CR LF + a command: folders()
    lists it without counts and never puts it in a STATUS (imapclient would send it inline)."""
    commands: list[bytes] = []

    def script(peer: Peer) -> None:
        peer.send(b"* OK ready\r\n")
        tag, command = imap_next(peer)
        peer.send(tag + b" OK logged in\r\n")
        tag, command = imap_next(peer)
        assert command == b"LIST", command
        peer.send(
            b'* LIST () "." "INBOX"\r\n* LIST () "." "x&AA0ACg-A9 DELETE INBOX"\r\n'
            + tag
            + b" OK listed\r\n"
        )
        while True:
            tag, command = imap_next(peer)
            commands.append(command)
            if command == b"LOGOUT":
                peer.send(b"* BYE\r\n" + tag + b" OK bye\r\n")
                return
            peer.send(b'* STATUS "INBOX" (MESSAGES 2 UNSEEN 1)\r\n' + tag + b" OK done\r\n")

    with (
        hostile(script) as server,
        ImapSession.open(plain(server), secret=lambda: "pw") as session,
    ):
        found = {folder.name: folder for folder in session.folders()}
    assert found["INBOX"].messages == 2
    assert found["x\r\nA9 DELETE INBOX"].messages is None
    assert commands == [b"STATUS", b"LOGOUT"]


def test_imap_delete_and_move_without_uidplus_change_nothing() -> None:
    """Without UIDPLUS a plain EXPUNGE would also remove what others flagged \\Deleted: delete
    and COPY-based move refuse before sending STORE, COPY or EXPUNGE."""
    from mailctl.errors import ServerUnsupportedError

    commands: list[bytes] = []

    def script(peer: Peer) -> None:
        tag, command = imap_logged_in(peer)
        while True:
            commands.append(command)
            if command == b"LOGOUT":
                peer.send(b"* BYE\r\n" + tag + b" OK bye\r\n")
                return
            peer.send(tag + b" OK done\r\n")
            tag, command = imap_next(peer)

    with (
        hostile(script) as server,
        ImapSession.open(plain(server), secret=lambda: "pw") as session,
    ):
        session.select("INBOX")
        with pytest.raises(ServerUnsupportedError, match="UIDPLUS"):
            session.delete([1])
        with pytest.raises(ServerUnsupportedError, match="UIDPLUS"):
            session.move([1], "Archive")
    assert not {b"STORE", b"COPY", b"EXPUNGE", b"MOVE", b"UID"} & set(commands), commands


def test_imap_idle_is_bounded_when_the_server_never_ends_it() -> None:
    """IDLE waits `seconds` at most; a server that never answers DONE hits command_timeout."""

    def script(peer: Peer) -> None:
        peer.send(b"* OK ready\r\n")
        while True:
            tag, command = peer.command()
            if command == b"CAPABILITY":
                peer.send(b"* CAPABILITY IMAP4rev1 IDLE\r\n" + tag + b" OK done\r\n")
            elif command == b"EXAMINE":
                peer.send(b"* 1 EXISTS\r\n* OK [UIDVALIDITY 1] v\r\n" + tag + b" OK done\r\n")
            elif command == b"IDLE":
                peer.send(b"+ idling\r\n")
                peer.stall()  # DONE is never answered
            else:
                peer.send(tag + b" OK done\r\n")

    with hostile(script) as server:
        session = ImapSession.open(plain(server), secret=lambda: "pw")
        session.select("INBOX")
        started = time.monotonic()
        with pytest.raises(TimeoutFailure, match="DONE"):
            session.idle(0.3)
        assert time.monotonic() - started < FAST.command + 2
        session.abort()


def test_imap_fetch_bodies_with_a_literal_bigger_than_its_announced_size() -> None:
    """SEARCH LARGER says nothing is too large, the body literal announces 10 GB: refused
    before reading."""

    def script(peer: Peer) -> None:
        tag, command = imap_logged_in(peer)
        assert command == b"UID", command  # UID SEARCH LARGER max_message
        peer.send(b"* SEARCH\r\n" + tag + b" OK done\r\n")  # nothing too large, it says
        imap_next(peer)  # UID FETCH 7 (... BODY.PEEK[])
        peer.send(b"* 1 FETCH (UID 7 RFC822.SIZE 10 BODY[] {9999999999}\r\n")
        peer.trickle(b"From: x\r\n", interval=0.05, repeat=True)

    with hostile(script) as server:
        session = ImapSession.open(plain(server), secret=lambda: "pw")
        session.select("INBOX")
        with pytest.raises(ResponseLimitError, match=r"9999999999.*max_message"):
            list(session.fetch_bodies([7]))
        assert server.wait_closed(3)
        session.abort()
