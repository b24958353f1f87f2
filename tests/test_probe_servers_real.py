"""`mailctl probe` against real servers: Dovecot (IMAP, IMAPS, POP3, POP3S) and Postfix
(STARTTLS submission, implicit TLS, a port without TLS). Each test asserts from the
server's own log that the probe never logged in nor sent AUTH, MAIL, RCPT or DATA.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from servers.dovecot import DovecotServer
from servers.postfix import PostfixServer
from typer.testing import CliRunner

from mailctl.cli.app import app

runner = CliRunner()


def probe(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["probe", *args, "--json"], env={"NO_COLOR": "1"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    envelope: dict[str, Any] = json.loads(result.stdout)
    assert result.exit_code == 0, envelope
    return envelope


def only_host(envelope: dict[str, Any]) -> dict[str, Any]:
    (host,) = envelope["data"]["hosts"]
    assert host["probed"], host
    return host


def codes(host: dict[str, Any]) -> dict[str, str]:
    return {f["code"]: f["severity"] for f in host["findings"]}


@pytest.mark.parametrize(
    ("protocol", "port_name", "implicit"),
    [
        ("imap", "imap_port", False),
        ("imaps", "imaps_port", True),
        ("pop3", "pop3_port", False),
        ("pop3s", "pop3s_port", True),
    ],
)
def test_dovecot(dovecot: DovecotServer, protocol: str, port_name: str, implicit: bool) -> None:
    mark = dovecot.log_mark()
    port = getattr(dovecot, port_name)
    host = only_host(probe(f"127.0.0.1:{port}", "-p", protocol, "--ca-file", str(dovecot.ca_pem)))
    assert host["tls"]["verified"] is True, host["tls"]
    assert host["tls"]["version"] == "TLSv1.3"
    versions = {v["version"]: v["offered"] for v in host["versions"]}
    # The fixture sets ssl_min_protocol = TLSv1.2.
    assert versions == {"TLSv1.3": True, "TLSv1.2": True, "TLSv1.1": False, "TLSv1": False}
    after = host["capabilities_after_tls"]
    if protocol.startswith("imap"):
        assert "IMAP4rev1" in after and any(c.startswith("AUTH=") for c in after)
    else:
        assert "USER" in after and any(c.startswith("SASL") for c in after)
    if not implicit:
        assert host["starttls_offered"] is True
        # The fixture allows plaintext auth (disable_plaintext_auth = no): rightly flagged.
        assert codes(host).get("auth.before_tls") == "error"
    else:
        assert host["capabilities_before_tls"] == []
    assert not {c for c, s in codes(host).items() if s == "error"} - {"auth.before_tls"}
    # Dovecot logs each login process's end: every connection ended with no auth attempt.
    # A connection closed during the TLS handshake may end before Dovecot's auth process
    # answered, which it logs as "disconnected before auth was ready": no attempt either.
    connections = host["connections"]
    ended = r"-login: Info: Disconnected"
    log = dovecot.wait_log(ended, since=mark, count=connections)
    disconnects = [line for line in log.splitlines() if re.search(ended, line)]
    assert len(disconnects) >= connections, log
    no_attempt = re.compile(r"no auth attempts|disconnected before auth was ready")
    assert all(no_attempt.search(line) for line in disconnects), log
    assert "Login: user=" not in log and "auth failed" not in log, log


def test_postfix_submission_with_starttls(postfix: PostfixServer) -> None:
    mark = postfix.quiet_mark()
    host = only_host(
        probe(
            f"127.0.0.1:{postfix.submission_port}",
            "-p",
            "submission",
            "--ca-file",
            str(postfix.ca_pem),
        )
    )
    before = host["capabilities_before_tls"]
    after = host["capabilities_after_tls"]
    assert "STARTTLS" in before
    # smtpd_tls_auth_only = yes: AUTH only after TLS, so no auth.before_tls finding.
    assert not any(c.startswith("AUTH") for c in before)
    assert any(c.startswith("AUTH") for c in after)
    for keyword in ("PIPELINING", "CHUNKING", "DSN", "SMTPUTF8", "8BITMIME", "ENHANCEDSTATUSCODES"):
        assert keyword in after, after
    assert any(c.startswith("SIZE") for c in after)
    assert host["tls"]["verified"] is True
    assert "auth.before_tls" not in codes(host)
    # The fixture leaves smtpd_tls_protocols at Postfix's default, which still accepts TLS
    # 1.0 and 1.1 (checked by hand with `openssl s_client -starttls smtp -tls1`): the probe
    # says so, and that is all it finds.
    assert {c for c, s in codes(host).items() if s != "info"} == {
        "tls.version.tls10",
        "tls.version.tls11",
    }
    _assert_postfix_saw_no_auth_or_mail(postfix, mark, host["connections"])


def test_postfix_port_without_tls(postfix: PostfixServer) -> None:
    mark = postfix.quiet_mark()
    host = only_host(probe(f"127.0.0.1:{postfix.plain_port}", "-p", "smtp"))
    assert codes(host) == {"starttls.missing": "warning"}
    assert host["tls"] is None and host["connections"] == 1
    _assert_postfix_saw_no_auth_or_mail(postfix, mark, 1)


def test_postfix_implicit_tls(postfix: PostfixServer) -> None:
    port = postfix.add_service(
        syslog_name="postfix/smtps",
        smtpd_tls_wrappermode="yes",
        smtpd_tls_security_level="encrypt",
    )
    mark = postfix.quiet_mark()
    host = only_host(probe(f"127.0.0.1:{port}", "-p", "smtps", "--ca-file", str(postfix.ca_pem)))
    assert host["tls"]["verified"] is True
    assert "CHUNKING" in host["capabilities_after_tls"]
    assert host["capabilities_before_tls"] == []
    _assert_postfix_saw_no_auth_or_mail(postfix, mark, host["connections"])


def _assert_postfix_saw_no_auth_or_mail(postfix: PostfixServer, mark: int, sessions: int) -> None:
    """Postfix logs every session's commands at disconnect ("ehlo=2 starttls=1 quit=1
    commands=4"): none may count auth, mail, rcpt, data or bdat."""
    text = postfix.wait_log(r"disconnect from", since=mark, count=sessions)
    counted = re.findall(r"disconnect from .*", text)
    assert len(counted) >= sessions, text
    for line in counted:
        assert re.search(r"\bcommands=\d+", line), line  # the counts are there to check
        assert not re.search(r"\b(auth|mail|rcpt|data|bdat)=", line), line
