"""`mailctl account test` against hostile IMAP and POP3 servers: every read is bounded.

Each server floods, trickles or stalls before any password is involved; mailctl runs in a
child process (1 GiB address-space cap) and must fail with one line naming the server and
the limit, in bounded time and with bounded memory.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from servers.hostile import Peer, Run, Script, hostile, run_mailctl, write_config

MAX_RSS_MIB = 200  # peak RSS allowed for a mailctl process fighting a hostile server
FLOOD_SECONDS = 15.0  # a flood must be cut off well before this (the server lives 30 s)


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    ca_file: Path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return Tls(server=context, ca_file=ca_file)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return tmp_path / "cfg" / "config.toml"


def account_test(config: Path, protocol: str, port: int, **block: object) -> Run:
    """Write account `h` with one block pointing at `port`, run `account test h --json`."""
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "connect_timeout": 5,
        "command_timeout": 5,
    }
    settings.update(block)
    write_config(config, protocol, **settings)
    return run_mailctl("account", "test", "h", "--json", env={"MAILCTL_CONFIG": str(config)})


def failure(run: Run, *, exit_code: int, code: str, port: int) -> str:
    """Check the envelope of a failed one-block test; return the error's one-line message."""
    assert run.returncode == exit_code, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    envelope: dict[str, Any] = json.loads(run.stdout)
    assert envelope["exit_code"] == exit_code and envelope["status"] == "error"
    [error] = envelope["errors"]
    assert error["code"] == code, error
    message: str = error["message"]
    assert "\n" not in message and f"127.0.0.1:{port}" in message, message
    assert run.max_rss_mib < MAX_RSS_MIB, f"peak RSS {run.max_rss_mib:.0f} MiB"
    return message


# -- IMAP: floods, before TLS and without a password ------------------------------------------


def imap_greet(peer: Peer) -> bytes:
    """Greet without capabilities, so the client asks CAPABILITY; return that command's tag."""
    peer.send(b"* OK hostile IMAP ready\r\n")
    tag, command = peer.command()
    assert command == b"CAPABILITY", command
    return tag


def imap_endless_untagged(peer: Peer) -> None:
    imap_greet(peer)
    peer.flood(b"* OK ab\r\n")  # 2-octet texts: no cached 1-byte objects


def imap_huge_literal(peer: Peer) -> None:
    imap_greet(peer)
    peer.send(b"* CAPABILITY {9999999999}\r\n")
    peer.trickle(b"IMAP4rev1 ", interval=0.05, repeat=True)


def imap_endless_line(peer: Peer) -> None:
    imap_greet(peer)
    peer.send(b"* CAPABILITY IMAP4rev1 ")
    peer.flood(b"X")


def imap_many_literals(peer: Peer) -> None:
    """Each literal is small, but there is no end of them: the response total must stop it."""
    imap_greet(peer)
    peer.send(b"* CAPABILITY {65000}\r\n")
    peer.flood(b"A" * 65000 + b" {65000}\r\n")


@pytest.mark.parametrize(
    ("script", "limit"),
    [
        (imap_endless_untagged, "max_response_lines"),
        (imap_huge_literal, "max_literal"),
        (imap_endless_line, "max_line"),
        (imap_many_literals, "max_response"),
    ],
    ids=["endless-untagged", "huge-literal", "endless-line", "many-literals"],
)
def test_imap_flood_is_cut_off(config: Path, script: Script, limit: str) -> None:
    with hostile(script) as server:
        run = account_test(config, "imap", server.port)
        assert server.wait_closed(5)  # mailctl hung up; it did not wait for the end
    message = failure(run, exit_code=76, code="response_limit", port=server.port)
    assert limit in message and "CAPABILITY" in message, message
    assert run.seconds < FLOOD_SECONDS


def test_imap_flood_over_tls_is_cut_off(config: Path, tls: Tls) -> None:
    with hostile(imap_endless_untagged, tls=tls.server) as server:
        run = account_test(config, "imap", server.port, security="tls", ca_file=str(tls.ca_file))
    message = failure(run, exit_code=76, code="response_limit", port=server.port)
    assert "max_response_lines" in message
    assert run.seconds < FLOOD_SECONDS


# -- IMAP: trickles and tarpits: the deadline covers the whole answer, not each read ------------


def imap_trickled_capability(peer: Peer) -> None:
    imap_greet(peer)
    # Every read gets a byte well within command_timeout; the answer never completes.
    peer.trickle(b"* OK trickle\r\n", interval=0.2, repeat=True)


def imap_trickled_greeting(peer: Peer) -> None:
    peer.trickle(b"* OK " + b"slow" * 1000 + b"\r\n", interval=0.2)


def test_imap_trickle_fails_at_the_command_timeout(config: Path) -> None:
    with hostile(imap_trickled_capability) as server:
        run = account_test(config, "imap", server.port, command_timeout=2)
    message = failure(run, exit_code=75, code="timeout", port=server.port)
    assert "command_timeout" in message and "CAPABILITY" in message, message
    assert run.seconds < 2 + 4  # the timeout, plus start-up; a per-read timeout would never end


def test_imap_trickled_greeting_fails_at_the_connect_timeout(config: Path) -> None:
    with hostile(imap_trickled_greeting) as server:
        run = account_test(config, "imap", server.port, connect_timeout=2)
    message = failure(run, exit_code=74, code="connect_failed", port=server.port)
    assert "2 s" in message and "connect_timeout" in message, message
    assert run.seconds < 2 + 4


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_tls_tarpit_fails_at_the_connect_timeout(config: Path, protocol: str) -> None:
    """Implicit TLS to a server that accepts and never answers the ClientHello."""
    with hostile(lambda peer: peer.stall()) as server:
        run = account_test(config, protocol, server.port, security="tls", connect_timeout=2)
    assert run.returncode in {74, 75}, (run.returncode, run.stdout, run.stderr)
    assert f"127.0.0.1:{server.port}" in json.loads(run.stdout)["errors"][0]["message"]
    assert run.seconds < 2 + 4


def imap_starttls_then_silence(peer: Peer) -> None:
    tag = imap_greet(peer)
    peer.send(b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n" + tag + b" OK done\r\n")
    tag, command = peer.command()
    assert command == b"STARTTLS", command
    peer.send(tag + b" OK begin TLS now\r\n")
    peer.stall()  # never speaks TLS


def pop3_stls_then_silence(peer: Peer) -> None:
    peer.send(b"+OK ready\r\n")
    while (command := peer.line().upper()) == b"CAPA":  # asked once or twice before STLS
        peer.send(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n")
    assert command == b"STLS", command
    peer.send(b"+OK begin TLS\r\n")
    peer.stall()


@pytest.mark.parametrize(
    ("protocol", "script"),
    [("imap", imap_starttls_then_silence), ("pop3", pop3_stls_then_silence)],
)
def test_starttls_handshake_tarpit_fails_in_time_without_asking_for_the_password(
    config: Path, tmp_path: Path, protocol: str, script: Script
) -> None:
    marker = tmp_path / "password-command-ran"
    with hostile(script) as server:
        run = account_test(
            config, protocol, server.port, security="starttls", command_timeout=2,
            username="alice", password_command=f"touch {marker} && echo pw",
        )  # fmt: skip
    message = failure(run, exit_code=75, code="timeout", port=server.port)
    assert "tls" in message.lower(), message
    assert run.seconds < 2 + 4
    assert not marker.exists()  # the password was never asked for before TLS
    assert not any(b"alice" in line or b"LOGIN" in line.upper() for line in server.received)


# -- POP3 -------------------------------------------------------------------------------------


def pop3_greet(peer: Peer) -> None:
    peer.send(b"+OK hostile POP3 ready\r\n")
    assert peer.line().upper() == b"CAPA"


def pop3_endless_capa(peer: Peer) -> None:
    pop3_greet(peer)
    peer.send(b"+OK capabilities follow\r\n")
    peer.flood(b"X-CAP\r\n")


def pop3_endless_capa_line(peer: Peer) -> None:
    pop3_greet(peer)
    peer.send(b"+OK capabilities follow\r\nX-CAP ")
    peer.flood(b"y")


def pop3_endless_greeting(peer: Peer) -> None:
    peer.send(b"+OK ")
    peer.flood(b"z")


def pop3_trickled_capa(peer: Peer) -> None:
    pop3_greet(peer)
    peer.send(b"+OK capabilities follow\r\n")
    peer.trickle(b"USER\r\n", interval=0.2, repeat=True)


@pytest.mark.parametrize(
    ("script", "limit", "where"),
    [
        (pop3_endless_capa, "max_response_lines", "CAPA"),
        (pop3_endless_capa_line, "max_line", "CAPA"),
        (pop3_endless_greeting, "max_line", "greeting"),
    ],
    ids=["endless-capa", "endless-capa-line", "endless-greeting"],
)
def test_pop3_flood_is_cut_off(config: Path, script: Script, limit: str, where: str) -> None:
    with hostile(script) as server:
        run = account_test(config, "pop3", server.port)
        assert server.wait_closed(5)
    message = failure(run, exit_code=76, code="response_limit", port=server.port)
    assert limit in message and where in message, message
    assert run.seconds < FLOOD_SECONDS


def test_pop3_flood_over_tls_is_cut_off(config: Path, tls: Tls) -> None:
    with hostile(pop3_endless_capa, tls=tls.server) as server:
        run = account_test(config, "pop3", server.port, security="tls", ca_file=str(tls.ca_file))
    message = failure(run, exit_code=76, code="response_limit", port=server.port)
    assert "max_response_lines" in message


def test_pop3_trickle_fails_at_the_command_timeout(config: Path) -> None:
    with hostile(pop3_trickled_capa) as server:
        run = account_test(config, "pop3", server.port, command_timeout=2)
    message = failure(run, exit_code=75, code="timeout", port=server.port)
    assert "command_timeout" in message and "CAPA" in message, message
    assert run.seconds < 2 + 4


def test_human_output_is_one_line_naming_server_and_limit(config: Path) -> None:
    with hostile(pop3_endless_capa) as server:
        write_config(
            config, "pop3", host="127.0.0.1", port=server.port, security="none", command_timeout=5
        )
        run = run_mailctl("account", "test", "h", env={"MAILCTL_CONFIG": str(config)})
    assert run.returncode == 76
    assert "FAILED" in run.stdout and "Traceback" not in run.stdout + run.stderr
    [line] = [text for text in run.stdout.splitlines() if "max_response_lines" in text]
    assert f"127.0.0.1:{server.port}" in line
