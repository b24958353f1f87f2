"""`mailctl probe` against real local SMTP servers with deliberately broken setups.

Every server here is started per test on 127.0.0.1 with certificates made for this run
(tests/servers/probe_servers.py, and aiosmtpd from tests/servers/smtp_server.py). Each test
asserts what the user sees (exit code, JSON findings, the human report) and what the server
received: never AUTH, MAIL, RCPT or DATA.
"""

from __future__ import annotations

import json
import ssl
import time
from typing import Any

import pytest
from servers.probe_servers import (
    ProbeServerFactory,
    ProbeSmtpServer,
    endless_continuation,
    flood_banner,
    one_byte_a_minute,
)
from servers.smtp_server import CertKind, SmtpServerFactory
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.models import Security

runner = CliRunner()
FORBIDDEN = {"AUTH", "MAIL", "RCPT", "DATA", "BDAT", "VRFY", "EXPN"}


def probe(*args: str, expect: int | None = None) -> tuple[int, dict[str, Any]]:
    """Run `mailctl probe ARGS --json`; return the exit code and the envelope."""
    result = runner.invoke(app, ["probe", *args, "--json"], env={"NO_COLOR": "1"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    envelope = json.loads(result.stdout)
    if expect is not None:
        assert result.exit_code == expect, envelope
    return result.exit_code, envelope


def codes(envelope: dict[str, Any], host: int = 0) -> dict[str, str]:
    """code -> severity of one host's findings."""
    return {f["code"]: f["severity"] for f in envelope["data"]["hosts"][host]["findings"]}


def versions(envelope: dict[str, Any]) -> dict[str, bool | None]:
    return {v["version"]: v["offered"] for v in envelope["data"]["hosts"][0]["versions"]}


def target(server: ProbeSmtpServer) -> str:
    return f"127.0.0.1:{server.port}"


def assert_read_only(server: ProbeSmtpServer) -> None:
    assert server.verbs, "the probe talked to the server"
    assert not FORBIDDEN & set(server.verbs), server.verbs


def test_a_good_starttls_server_has_no_problem_findings(
    probe_server: ProbeServerFactory, probe_certs: Any
) -> None:
    server = probe_server()
    _, envelope = probe(
        target(server), "-p", "submission", "--ca-file", str(probe_certs.ca_file), expect=0
    )
    host = envelope["data"]["hosts"][0]
    assert host["probed"] and host["starttls_offered"]
    assert "STARTTLS" in host["capabilities_before_tls"]
    assert "AUTH PLAIN LOGIN" in host["capabilities_after_tls"]
    assert host["tls"]["verified"] is True and host["tls"]["version"] == "TLSv1.3"
    leaf = host["tls"]["chain"][0]
    assert "mx.probe.test" in leaf["sans"] and leaf["days_left"] > 1000
    assert leaf["key_type"].startswith("EC") and len(leaf["sha256"]) == 64
    # What the ssl module cannot tell is null (unknown), not guessed.
    assert host["tls"]["group"] is None and host["tls"]["ocsp_stapled"] is None
    assert versions(envelope) == {
        "TLSv1.3": True,
        "TLSv1.2": True,
        "TLSv1.1": False,
        "TLSv1": False,
    }
    assert not {c for c, s in codes(envelope).items() if s != "info"}
    for phase in ("connect", "banner", "ehlo", "starttls", "handshake", "ehlo_tls", "scan"):
        assert phase in host["timings_ms"], host["timings_ms"]
    # One dialogue plus one connection per TLS version, within the budget.
    assert host["connections"] == server.connections == 5
    assert_read_only(server)


@pytest.mark.parametrize(
    ("cert", "code"),
    [
        ("expired", "tls.expired"),
        ("wrong-name", "cert.name_mismatch"),
        ("unknown-ca", "cert.untrusted"),
        ("self-signed", "cert.self_signed"),
    ],
)
@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_a_bad_certificate_is_an_error_finding_and_the_probe_goes_on(
    probe_server: ProbeServerFactory, probe_certs: Any, cert: str, code: str, implicit: bool
) -> None:
    server = probe_server(cert=cert, implicit_tls=implicit)
    protocol = "smtps" if implicit else "submission"
    _, envelope = probe(
        target(server),
        "-p",
        protocol,
        "--ca-file",
        str(probe_certs.ca_file),
        "--fail-on",
        "error",
        expect=1,
    )
    host = envelope["data"]["hosts"][0]
    assert codes(envelope).get(code) == "error", codes(envelope)
    assert host["tls"]["verified"] is False and host["tls"]["verify_code"] is not None
    # Recorded, not fatal: the versions were still scanned, the chain still read.
    assert versions(envelope)["TLSv1.3"] is True and host["tls"]["chain"]
    assert host["capabilities_after_tls"], "the dialogue went on after TLS"
    assert envelope["status"] == "partial"
    assert_read_only(server)


def test_an_expired_and_misnamed_certificate_shows_both(
    probe_server: ProbeServerFactory, probe_certs: Any
) -> None:
    """OpenSSL reports one verify error; mailctl checks dates and names itself too."""
    server = probe_server(cert="expired")
    _, envelope = probe(
        target(server),
        "-p",
        "submission",
        "--ca-file",
        str(probe_certs.ca_file),
        "--tls-name",
        "mail.other.test",
    )
    found = codes(envelope)
    assert found.get("tls.expired") == "error" and found.get("cert.name_mismatch") == "error"
    name = next(
        f for f in envelope["data"]["hosts"][0]["findings"] if f["code"] == "cert.name_mismatch"
    )
    assert "'mail.other.test'" in name["message"] and "--tls-name" in name["fix"]


def test_a_certificate_about_to_expire_is_a_warning(
    probe_server: ProbeServerFactory, probe_certs: Any
) -> None:
    server = probe_server(cert="soon")
    args = (target(server), "-p", "submission", "--ca-file", str(probe_certs.ca_file))
    _, envelope = probe(*args, "--fail-on", "error", expect=0)
    assert codes(envelope).get("tls.expires_soon") == "warning"
    probe(*args, "--fail-on", "warning", expect=1)


def test_without_the_private_ca_the_chain_is_untrusted(probe_server: ProbeServerFactory) -> None:
    server = probe_server()
    _, envelope = probe(target(server), "-p", "submission")
    assert codes(envelope).get("cert.untrusted") == "error"
    fix = next(f for f in envelope["data"]["hosts"][0]["findings"] if f["code"] == "cert.untrusted")
    assert "--ca-file" in fix["fix"]


@pytest.mark.parametrize(
    ("knobs", "offered", "finding"),
    [
        (
            {"maximum": ssl.TLSVersion.TLSv1_2},
            {"TLSv1.3": False, "TLSv1.2": True, "TLSv1.1": False, "TLSv1": False},
            ("tls.version.no_tls13", "info"),
        ),
        (
            {"minimum": ssl.TLSVersion.TLSv1_3},
            {"TLSv1.3": True, "TLSv1.2": False, "TLSv1.1": False, "TLSv1": False},
            None,
        ),
        (
            {"minimum": ssl.TLSVersion.TLSv1, "maximum": ssl.TLSVersion.TLSv1_1},
            {"TLSv1.3": False, "TLSv1.2": False, "TLSv1.1": True, "TLSv1": True},
            ("tls.version.no_modern", "error"),
        ),
    ],
    ids=["tls12-only", "tls13-only", "tls10-11-only"],
)
def test_each_tls_version_is_tried_on_its_own_connection(
    probe_server: ProbeServerFactory,
    probe_certs: Any,
    knobs: dict[str, Any],
    offered: dict[str, bool],
    finding: tuple[str, str] | None,
) -> None:
    server = probe_server(**knobs)
    _, envelope = probe(target(server), "-p", "submission", "--ca-file", str(probe_certs.ca_file))
    assert versions(envelope) == offered
    found = codes(envelope)
    if finding is not None:
        assert found.get(finding[0]) == finding[1], found
    if offered["TLSv1"]:
        assert found.get("tls.version.tls10") == "warning"
        assert found.get("tls.version.tls11") == "warning"
    host = envelope["data"]["hosts"][0]
    negotiated = max(
        (v for v, ok in offered.items() if ok), key=["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"].index
    )
    assert host["tls"]["version"] == negotiated and host["tls"]["verified"] is True
    assert_read_only(server)


def test_auth_before_starttls_is_an_error_and_no_auth_is_sent(
    probe_server: ProbeServerFactory, probe_certs: Any
) -> None:
    server = probe_server(auth_before_tls=True)
    _, envelope = probe(
        target(server), "-p", "submission", "--ca-file", str(probe_certs.ca_file), expect=0
    )
    assert codes(envelope).get("auth.before_tls") == "error"
    assert_read_only(server)


@pytest.mark.parametrize(("protocol", "severity"), [("submission", "error"), ("smtp", "warning")])
def test_no_starttls_is_named(
    probe_server: ProbeServerFactory, protocol: str, severity: str
) -> None:
    """Port 587 must offer STARTTLS; between MTAs (port 25) its absence is a warning."""
    server = probe_server(starttls=False)
    _, envelope = probe(target(server), "-p", protocol, expect=0)
    assert codes(envelope).get("starttls.missing") == severity
    host = envelope["data"]["hosts"][0]
    assert host["tls"] is None and host["versions"] == [] and host["connections"] == 1
    assert server.handshakes == 0 and server.verbs == ["EHLO", "QUIT"]


def test_bytes_injected_after_ready_to_start_tls_are_flagged(
    probe_server: ProbeServerFactory, probe_certs: Any
) -> None:
    server = probe_server(inject=b"250-INJECTED\r\n250 AUTH PLAIN\r\n")
    _, envelope = probe(
        target(server), "-p", "submission", "--ca-file", str(probe_certs.ca_file), expect=0
    )
    finding = next(
        f for f in envelope["data"]["hosts"][0]["findings"] if f["code"] == "starttls.injection"
    )
    assert finding["severity"] == "error" and "INJECTED" in finding["message"]
    # The injected lines were dropped, not read as the answer to the EHLO after TLS.
    assert "INJECTED" not in envelope["data"]["hosts"][0]["capabilities_after_tls"]
    assert_read_only(server)


def test_aiosmtpd_with_an_expired_certificate(smtp_server_factory: SmtpServerFactory) -> None:
    """The issue's aiosmtpd case: STARTTLS + AUTH with an expired certificate."""
    server = smtp_server_factory(security=Security.STARTTLS, cert=CertKind.EXPIRED)
    _, envelope = probe(
        f"127.0.0.1:{server.port}", "-p", "submission", "--ca-file", str(server.ca_file)
    )
    assert codes(envelope).get("tls.expired") == "error"
    assert not server.auth_attempts and not server.messages


def test_aiosmtpd_implicit_tls_for_the_wrong_name(smtp_server_factory: SmtpServerFactory) -> None:
    server = smtp_server_factory(security=Security.TLS, cert=CertKind.WRONG_HOST)
    _, envelope = probe(f"127.0.0.1:{server.port}", "-p", "smtps", "--ca-file", str(server.ca_file))
    assert codes(envelope).get("cert.name_mismatch") == "error"
    assert not server.auth_attempts and not server.messages


# -- politeness ----------------------------------------------------------------------------


def test_a_421_greeting_is_backed_off_and_retried_within_the_budget(
    probe_server: ProbeServerFactory, probe_certs: Any
) -> None:
    server = probe_server(busy_first=1)
    started = time.monotonic()
    _, envelope = probe(target(server), "-p", "submission", "--ca-file", str(probe_certs.ca_file))
    elapsed = time.monotonic() - started
    host = envelope["data"]["hosts"][0]
    assert host["probed"] and host["tls"]["verified"] is True
    assert codes(envelope).get("connect.busy") == "info"
    assert elapsed >= 1.0, "backed off before trying again"
    assert server.connections == host["connections"] <= 6


def test_a_server_that_always_says_421_is_left_alone_at_the_deadline(
    probe_server: ProbeServerFactory,
) -> None:
    server = probe_server(busy_first=100)
    started = time.monotonic()
    _, envelope = probe(target(server), "-p", "submission", "--deadline", "2.5", expect=0)
    assert time.monotonic() - started < 6
    assert codes(envelope).get("connect.busy") == "warning"
    assert server.connections == 2  # at once, then after 1 s; the next wait passes the deadline


# -- hostile servers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("greeting", "words"),
    [
        (flood_banner, "longer than 4096 octets"),
        (endless_continuation, "more than 200 lines"),
        (one_byte_a_minute, "did not finish its answer within 1 s"),
    ],
    ids=["10MB-banner", "endless-220-lines", "1-byte-a-minute"],
)
def test_hostile_greetings_are_bounded_protocol_errors(
    probe_server: ProbeServerFactory, greeting: Any, words: str
) -> None:
    server = probe_server(greeting=greeting)
    started = time.monotonic()
    _, envelope = probe(
        target(server), "-p", "submission", "--timeout", "1", "--fail-on", "error", expect=1
    )
    assert time.monotonic() - started < 5
    finding = next(
        f for f in envelope["data"]["hosts"][0]["findings"] if f["code"] == "protocol.error"
    )
    assert words in finding["message"], finding
    assert server.connections == 1  # no version scan of a server that broke the dialogue


# -- hosts, exit codes and usage -----------------------------------------------------------


def test_no_host_reachable_exits_74(free_port: int) -> None:
    _, envelope = probe(f"127.0.0.1:{free_port}", "-p", "submission", expect=74)
    assert envelope["status"] == "error"
    assert codes(envelope) == {"connect.failed": "error"}
    assert envelope["errors"][0]["code"] == "connect_failed"


def test_one_host_down_of_two_is_a_finding_not_74(
    probe_server: ProbeServerFactory, probe_certs: Any, free_port: int
) -> None:
    server = probe_server()
    args = (
        target(server),
        f"127.0.0.1:{free_port}",
        "-p",
        "submission",
        "--ca-file",
        str(probe_certs.ca_file),
    )
    _, envelope = probe(*args, expect=0)
    assert codes(envelope, 1) == {"connect.failed": "error"}
    probe(*args, "--fail-on", "error", expect=1)


@pytest.mark.parametrize(
    "args",
    [
        ["127.0.0.1:2525"],  # not a well-known port, no --protocol
        ["127.0.0.1:587", "--protocol", "smtpx"],
        ["127.0.0.1:587", "--fail-on", "info"],
        ["127.0.0.1:587", "--timeout", "0"],
    ],
)
def test_usage_errors_exit_64(args: list[str]) -> None:
    result = runner.invoke(app, ["probe", *args], env={"NO_COLOR": "1"})
    assert result.exit_code == 64, result.output


def test_the_protocol_is_inferred_from_a_well_known_port() -> None:
    from mailctl.cli.probe import _target

    assert _target("mx.example:465", None, None).protocol.value == "smtps"
    assert _target("mx.example:993", None, None).protocol.value == "imaps"
    assert _target("mx.example:110", None, None).protocol.value == "pop3"
    assert _target("mx.example", None, None).port == 25
    assert _target("[::1]:587", None, None).host == "::1"


def test_the_human_report_names_each_problem_with_its_fix(
    probe_server: ProbeServerFactory, probe_certs: Any
) -> None:
    server = probe_server(cert="expired", auth_before_tls=True)
    result = runner.invoke(
        app,
        ["probe", target(server), "-p", "submission", "--ca-file", str(probe_certs.ca_file)],
        env={"NO_COLOR": "1", "COLUMNS": "100"},
    )
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "certificate NOT verified: certificate has expired" in text
    assert "ERROR   tls.expired:" in text and "fix: renew the certificate" in text
    assert "ERROR   auth.before_tls:" in text and "smtpd_tls_auth_only" in text
    assert "TLS 1.3 yes, TLS 1.2 yes, TLS 1.1 no, TLS 1.0 no" in text


def test_fail_on_works_in_a_shell_if(
    probe_server: ProbeServerFactory, probe_certs: Any, tmp_path: Any
) -> None:
    """The issue's "Done when": `--json --fail-on error` in a shell `if`."""
    import os
    import subprocess
    import sys

    bad = probe_server(cert="expired")
    good = probe_server()
    script = (
        'if "$PY" -m mailctl probe "$1" -p submission --ca-file "$CA" --json --fail-on error '
        '>/dev/null; then echo clean; else echo "found $?"; fi'
    )
    env = {**os.environ, "PY": sys.executable, "CA": str(probe_certs.ca_file)}
    for server, said in ((good, "clean"), (bad, "found 1")):
        out = subprocess.run(
            ["sh", "-c", script, "sh", target(server)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=True,
        )
        assert out.stdout.strip() == said, out


@pytest.fixture
def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- IMAP and POP3 servers that misbehave --------------------------------------------------


def scripted(replies: dict[bytes, bytes], greeting: bytes, heard: list[bytes]) -> Any:
    """A `greeting` hook: send `greeting`, then answer each command line by its first word
    (or its second, after an IMAP tag) from `replies`; record every line in `heard`."""

    def run(conn: Any) -> None:
        conn.sendall(greeting)
        reader = conn.makefile("rb")
        try:
            for _ in range(20):
                line = reader.readline(1024)
                if not line:
                    return
                heard.append(line.rstrip())
                words = line.split()
                verb = words[0].upper() if words else b""
                if verb not in replies and len(words) > 1:
                    verb = words[1].upper()
                reply = replies.get(verb, b"-ERR unknown\r\n")
                if callable(reply):
                    reply(conn)
                    return
                conn.sendall(reply)
                if verb in (b"QUIT", b"LOGOUT"):
                    return
        finally:
            reader.close()

    return run


def test_an_imap_bye_greeting_is_the_server_sending_us_away(
    probe_server: ProbeServerFactory,
) -> None:
    heard: list[bytes] = []
    server = probe_server(greeting=scripted({}, b"* BYE too many connections\r\n", heard))
    _, envelope = probe(target(server), "-p", "imap", "--deadline", "1.5", expect=0)
    assert codes(envelope).get("connect.busy") == "warning"
    assert heard == []  # nothing said to a server that said goodbye


def test_imap_preauth_and_no_starttls(probe_server: ProbeServerFactory) -> None:
    heard: list[bytes] = []
    replies = {
        b"CAPABILITY": b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\np1 OK done\r\n",
        b"LOGOUT": b"* BYE bye\r\np9 OK done\r\n",
    }
    server = probe_server(greeting=scripted(replies, b"* PREAUTH welcome\r\n", heard))
    _, envelope = probe(target(server), "-p", "imap", expect=0)
    found = codes(envelope)
    assert found.get("imap.preauth") == "error"
    assert found.get("starttls.missing") == "error"
    assert found.get("auth.before_tls") == "error"  # AUTH=PLAIN, and LOGIN not disabled
    assert heard == [b"p1 CAPABILITY", b"p9 LOGOUT"]


def test_pop3_stls_offered_but_refused(probe_server: ProbeServerFactory) -> None:
    heard: list[bytes] = []
    replies = {
        b"CAPA": b"+OK\r\nUSER\r\nSTLS\r\nSASL PLAIN\r\n.\r\n",
        b"STLS": b"-ERR TLS not available right now\r\n",
        b"QUIT": b"+OK bye\r\n",
    }
    server = probe_server(greeting=scripted(replies, b"+OK POP3 ready\r\n", heard))
    _, envelope = probe(target(server), "-p", "pop3", expect=0)
    found = codes(envelope)
    assert found.get("starttls.failed") == "error"
    assert found.get("auth.before_tls") == "error"
    failed = next(
        f for f in envelope["data"]["hosts"][0]["findings"] if f["code"] == "starttls.failed"
    )
    assert "TLS not available right now" in failed["message"]
    assert heard == [b"CAPA", b"STLS", b"QUIT"]  # never USER, PASS or AUTH


def test_pop3_endless_capa_is_bounded(probe_server: ProbeServerFactory) -> None:
    def endless(conn: Any) -> None:
        conn.sendall(b"+OK\r\n")
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                conn.sendall(b"X-CAPABILITY-FOREVER\r\n" * 200)
        except OSError:
            pass

    heard: list[bytes] = []
    server = probe_server(greeting=scripted({b"CAPA": endless}, b"+OK ready\r\n", heard))
    started = time.monotonic()
    _, envelope = probe(target(server), "-p", "pop3", "--fail-on", "error", expect=1)
    assert time.monotonic() - started < 5
    finding = next(
        f for f in envelope["data"]["hosts"][0]["findings"] if f["code"] == "protocol.error"
    )
    assert "more than 200 lines" in finding["message"]


def test_the_readme_walkthrough_on_mailctl_sink(tmp_path: Any) -> None:
    """README: probe the sink (STARTTLS, its kept certificate untrusted), then trust it."""
    import os
    import subprocess
    import sys

    from servers.sink_process import SinkProcess

    ca = tmp_path / "sink-ca.pem"
    sink = SinkProcess(tmp_path, "--starttls", "--ca-out", str(ca))
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    command = [sys.executable, "-m", "mailctl", "probe", f"127.0.0.1:{sink.port}"]
    try:
        first = subprocess.run(
            [*command, "--protocol", "submission"],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        second = subprocess.run(
            [*command, "--protocol", "submission", "--ca-file", str(ca)],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
    finally:
        stats = sink.stop()
    assert first.returncode == 0, first.stderr
    assert "ERROR   cert.self_signed:" in first.stdout and "fix: use a certificate" in first.stdout
    assert second.returncode == 0 and "  no findings" in second.stdout, second.stdout
    assert stats.get("messages") == 0  # nothing was sent, only looked at


def test_without_a_host_the_accounts_servers_are_probed(
    probe_server: ProbeServerFactory, probe_certs: Any, tmp_path: Any
) -> None:
    from servers.hostile import write_config

    server = probe_server(cert="expired")
    config = write_config(
        tmp_path / "cfg" / "config.toml",
        "smtp",
        host="127.0.0.1",
        port=server.port,
        security="starttls",
        ca_file=str(probe_certs.ca_file),
    )
    _, envelope = probe("--config", str(config), "--account", "h", expect=0)
    host = envelope["data"]["hosts"][0]
    assert (host["port"], host["protocol"]) == (server.port, "submission")
    # The block's ca_file is trusted: only the expiry is wrong, not the issuer.
    assert codes(envelope).get("tls.expired") == "error"
    assert "cert.untrusted" not in codes(envelope)
    assert_read_only(server)


def test_nothing_to_probe_is_a_usage_error(tmp_path: Any) -> None:
    result = runner.invoke(
        app,
        ["probe"],
        env={"NO_COLOR": "1", "XDG_CONFIG_HOME": str(tmp_path), "MAILCTL_CONFIG": ""},
    )
    assert result.exit_code == 64, result.output
    assert "nothing to probe" in result.output
