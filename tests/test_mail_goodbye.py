"""IMAP/POP3 sessions end with LOGOUT/QUIT after every orderly failure, never after a dead one.

RFC 3501 6.1.3 and RFC 1939 6: a client ends a session with LOGOUT or QUIT. After a refused
login, a missing STARTTLS or a refusal of what the client needs, the connection is still in
step and saying goodbye is what a server expects (Dovecot logs "Aborted login by logging
out" instead of "Connection closed"). After a timeout, a read limit, a dropped connection or
a garbled answer, nothing more is sent. `mailctl account test` is the entry point; the
Dovecot log and scripted servers recording what they received are the witnesses.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from servers.dovecot import DovecotServer
from servers.hostile import Peer, Script, hostile, write_config
from typer.testing import CliRunner, Result

from mailctl.cli.app import app
from mailctl.errors import FolderUnavailableError, ProtocolError
from mailctl.models import Protocol, Security
from mailctl.protocols.imap import ImapSession
from mailctl.protocols.pop3 import Pop3Session

runner = CliRunner()
BOTH = pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3], ids=["imap", "pop3"])
PASSWORD = "scripted-pw-3817"


def account_test(config: Path, protocol: str, password: str | None, **block: object) -> Result:
    """Write account `h` with one `protocol` block and run `account test h --json`."""
    write_config(config, protocol, **block)
    env = {"MAILCTL_CONFIG": str(config), "NO_COLOR": "1"}
    if password is not None:
        env["MAILCTL_PASSWORD"] = password
    result = runner.invoke(app, ["account", "test", "h", "--json"], env=env)
    assert "Traceback" not in result.output
    return result


def the_error(result: Result) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(result.stdout)
    [error] = envelope["errors"]
    return error


def dovecot_block(server: DovecotServer, protocol: Protocol, security: Security) -> dict[str, Any]:
    return {
        "host": server.host,
        "port": server.port(protocol, security),
        "security": security.value,
        "ca_file": str(server.ca_pem),
    }


# -- against Dovecot ---------------------------------------------------------------------------


@BOTH
@pytest.mark.parametrize("security", [Security.TLS, Security.STARTTLS], ids=["tls", "starttls"])
def test_a_refused_login_ends_with_a_goodbye(
    dovecot: DovecotServer, tmp_path: Path, protocol: Protocol, security: Security
) -> None:
    user = dovecot.add_user()
    block = dovecot_block(dovecot, protocol, security) | {"username": user.name}
    mark = dovecot.log_mark()
    result = account_test(tmp_path / "cfg" / "config.toml", protocol.value, "wrong", **block)
    assert result.exit_code == 77, result.stdout
    assert the_error(result)["code"] == "auth_failed"
    log = dovecot.wait_log(f"user=<{user.name}>", since=mark)
    [line] = [entry for entry in log.splitlines() if f"user=<{user.name}>" in entry]
    assert "Disconnected: Aborted login by logging out (auth failed" in line, line


@BOTH
def test_starttls_not_offered_ends_with_a_goodbye(
    dovecot_plain: DovecotServer, tmp_path: Path, protocol: Protocol
) -> None:
    said = re.escape("Aborted login by logging out (no auth attempts")
    user = dovecot_plain.add_user()
    block = dovecot_block(dovecot_plain, protocol, Security.STARTTLS) | {"username": user.name}
    mark = dovecot_plain.log_mark()
    result = account_test(tmp_path / "cfg" / "config.toml", protocol.value, "pw", **block)
    assert result.exit_code == 76, result.stdout
    assert the_error(result)["code"] == "starttls_unavailable"
    dovecot_plain.wait_log(said, since=mark)


def test_a_refused_imap_operation_ends_with_logout(dovecot: DovecotServer) -> None:
    """An operation the server refuses (SELECT of a folder that does not exist) leaves the
    session in step: leaving the `with` block says LOGOUT."""
    user = dovecot.add_user()
    settings = dovecot.settings(Protocol.IMAP, Security.TLS, user=user.name)
    with (
        pytest.raises(FolderUnavailableError, match="No such folder"),
        ImapSession.open(settings, secret=lambda: user.password) as session,
    ):
        session.select("No such folder")
    log = dovecot.wait_log(re.escape(f"imap({user.name})"))
    assert (
        f"imap({user.name})" in log
        and "Disconnected: Logged out" in log.split(f"imap({user.name})", 1)[1].splitlines()[0]
    ), log


def test_a_refused_pop3_operation_ends_with_quit(dovecot: DovecotServer) -> None:
    user = dovecot.add_user()
    settings = dovecot.settings(Protocol.POP3, Security.TLS, user=user.name)
    with (
        pytest.raises(ProtocolError, match="retr"),
        Pop3Session.open(settings, secret=lambda: user.password) as session,
    ):
        session.retr(99)
    log = dovecot.wait_log(re.escape(f"pop3({user.name})"))
    assert "Disconnected: Logged out" in log.split(f"pop3({user.name})", 1)[1].splitlines()[0], log


# -- scripted servers: what was received ---------------------------------------------------------


def imap_capabilities(peer: Peer, capabilities: bytes) -> None:
    peer.send(b"* OK scripted IMAP ready\r\n")
    tag, command = peer.command()
    assert command == b"CAPABILITY", command
    peer.send(b"* CAPABILITY IMAP4rev1 " + capabilities + b"\r\n" + tag + b" OK done\r\n")


def imap_goodbye(peer: Peer) -> None:
    """Answer LOGOUT as RFC 3501 6.1.3 says, whatever the client sends first."""
    while True:
        tag, command = peer.command()
        if command == b"LOGOUT":
            peer.send(b"* BYE logging out\r\n" + tag + b" OK bye\r\n")
            peer.stall()  # until the client closes
            return
        peer.send(tag + b" BAD unexpected\r\n")


def imap_refused_login(peer: Peer) -> None:
    imap_capabilities(peer, b"AUTH=PLAIN")
    tag, command = peer.command()
    assert command == b"AUTHENTICATE", command
    peer.send(b"+ \r\n")
    peer.line()  # the credentials
    peer.send(tag + b" NO [AUTHENTICATIONFAILED] scripted refusal\r\n")
    imap_goodbye(peer)


def imap_login_disabled(peer: Peer) -> None:
    """No mechanism mailctl may use: refused before the password is asked for."""
    imap_capabilities(peer, b"LOGINDISABLED AUTH=GSSAPI")
    imap_goodbye(peer)


def imap_refused_starttls(peer: Peer) -> None:
    imap_capabilities(peer, b"STARTTLS")
    tag, command = peer.command()
    assert command == b"STARTTLS", command
    peer.send(tag + b" NO [UNAVAILABLE] TLS is down today\r\n")
    imap_goodbye(peer)


def pop3_capa(peer: Peer, capabilities: bytes) -> None:
    peer.send(b"+OK scripted POP3 ready\r\n")
    assert peer.line() == b"CAPA"
    peer.send(b"+OK\r\n" + capabilities + b".\r\n")


def pop3_goodbye(peer: Peer) -> None:
    while True:
        if peer.line() == b"QUIT":
            peer.send(b"+OK bye\r\n")
            peer.stall()
            return
        peer.send(b"-ERR unexpected\r\n")


def pop3_refused_login(peer: Peer) -> None:
    pop3_capa(peer, b"USER\r\n")
    assert peer.line() == b"USER alice"
    peer.send(b"+OK\r\n")
    assert peer.line().startswith(b"PASS ")
    peer.send(b"-ERR [AUTH] scripted refusal\r\n")
    pop3_goodbye(peer)


def pop3_no_usable_mechanism(peer: Peer) -> None:
    pop3_capa(peer, b"SASL GSSAPI\r\n")
    pop3_goodbye(peer)


def pop3_refused_stls(peer: Peer) -> None:
    pop3_capa(peer, b"STLS\r\nUSER\r\n")
    assert peer.line() == b"STLS"
    peer.send(b"-ERR [SYS/TEMP] TLS is down today\r\n")
    pop3_goodbye(peer)


@pytest.mark.parametrize(
    ("protocol", "script", "security", "exit_code"),
    [
        ("imap", imap_refused_login, "none", 77),
        ("imap", imap_login_disabled, "none", 77),
        ("imap", imap_refused_starttls, "starttls", 76),
        ("pop3", pop3_refused_login, "none", 77),
        ("pop3", pop3_no_usable_mechanism, "none", 77),
        ("pop3", pop3_refused_stls, "starttls", 76),
    ],
    ids=[
        "imap-login-refused",
        "imap-no-mechanism",
        "imap-starttls-refused",
        "pop3-login-refused",
        "pop3-no-mechanism",
        "pop3-stls-refused",
    ],
)
def test_an_orderly_failure_says_goodbye(
    tmp_path: Path, protocol: str, script: Script, security: str, exit_code: int
) -> None:
    goodbye = b"LOGOUT" if protocol == "imap" else b"QUIT"
    with hostile(script) as server:
        result = account_test(
            tmp_path / "cfg" / "config.toml", protocol, PASSWORD,
            host="127.0.0.1", port=server.port, security=security, username="alice",
            allow_plaintext_auth=True, command_timeout=5,
        )  # fmt: skip
        assert server.wait_closed(5)
    assert result.exit_code == exit_code, result.stdout
    assert any(line.endswith(goodbye) for line in server.received), server.received


def imap_stalls_at_login(peer: Peer) -> None:
    imap_capabilities(peer, b"AUTH=PLAIN")
    peer.command()
    peer.stall()


def imap_drops_at_login(peer: Peer) -> None:
    imap_capabilities(peer, b"AUTH=PLAIN")
    peer.command()
    peer.close()


def imap_garbles_login(peer: Peer) -> None:
    imap_capabilities(peer, b"AUTH=PLAIN")
    peer.command()
    peer.send(b"\x00\x01 what is this\r\n")
    imap_goodbye(peer)


def pop3_stalls_at_login(peer: Peer) -> None:
    pop3_capa(peer, b"USER\r\n")
    peer.line()
    peer.stall()


def pop3_garbles_login(peer: Peer) -> None:
    pop3_capa(peer, b"USER\r\n")
    peer.line()
    peer.send(b"what is this\r\n")
    pop3_goodbye(peer)


@pytest.mark.parametrize(
    ("protocol", "script", "code"),
    [
        ("imap", imap_stalls_at_login, "timeout"),
        ("imap", imap_drops_at_login, "connection_lost"),
        ("imap", imap_garbles_login, "connection_lost"),
        ("pop3", pop3_stalls_at_login, "timeout"),
        ("pop3", pop3_garbles_login, "protocol_error"),
    ],
    ids=["imap-stall", "imap-drop", "imap-garbled", "pop3-stall", "pop3-garbled"],
)
def test_no_goodbye_after_a_dead_or_garbled_exchange(
    tmp_path: Path, protocol: str, script: Script, code: str
) -> None:
    goodbye = b"LOGOUT" if protocol == "imap" else b"QUIT"
    with hostile(script) as server:
        result = account_test(
            tmp_path / "cfg" / "config.toml", protocol, PASSWORD,
            host="127.0.0.1", port=server.port, security="none", username="alice",
            allow_plaintext_auth=True, command_timeout=1,
        )  # fmt: skip
        assert script is imap_drops_at_login or server.wait_closed(5)
    assert the_error(result)["code"] == code, result.stdout
    assert not any(line.endswith(goodbye) for line in server.received), server.received


# -- the server's BYE text is kept ----------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["plain", "login"])
def test_a_bye_during_login_is_reported_with_its_text(tmp_path: Path, mechanism: str) -> None:
    """imapclient turns the abort into LoginError; the BYE text says why (RFC 3501 7.1.5)."""

    def script(peer: Peer) -> None:
        imap_capabilities(peer, b"AUTH=PLAIN")
        peer.command()
        peer.send(b"* BYE [UNAVAILABLE] too many connections from your address\r\n")
        peer.close()

    with hostile(script) as server:
        result = account_test(
            tmp_path / "cfg" / "config.toml", "imap", PASSWORD,
            host="127.0.0.1", port=server.port, security="none", username="alice",
            allow_plaintext_auth=True, command_timeout=5, auth=mechanism,
        )  # fmt: skip
    error = the_error(result)
    assert error["code"] == "connection_lost", error
    assert "too many connections from your address" in error["message"], error
    assert not any(line.endswith(b"LOGOUT") for line in server.received), server.received


# -- a POP3 reply nobody asked for is not the answer to the next command ---------------------------


def test_a_pop3_reply_too_many_is_a_protocol_error(tmp_path: Path) -> None:
    """USER answered twice: PASS would read the second +OK and "log in" with any password."""

    def script(peer: Peer) -> None:
        pop3_capa(peer, b"USER\r\n")
        assert peer.line() == b"USER alice"
        peer.send(b"+OK\r\n+OK logged in\r\n")
        pop3_goodbye(peer)

    with hostile(script) as server:
        result = account_test(
            tmp_path / "cfg" / "config.toml", "pop3", PASSWORD,
            host="127.0.0.1", port=server.port, security="none", username="alice",
            allow_plaintext_auth=True, command_timeout=5,
        )  # fmt: skip
        assert server.wait_closed(5)
    assert result.exit_code == 76, result.stdout
    error = the_error(result)
    assert error["code"] == "protocol_error" and "+OK logged in" in error["message"], error
    assert not any(line.startswith(b"PASS") for line in server.received), server.received
