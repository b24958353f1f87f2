"""`mailctl send` end to end against real aiosmtpd servers on 127.0.0.1: what arrived, codes."""

from __future__ import annotations

import base64
import email
import email.policy
import json
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers.smtp_server import TEST_PASSWORD, TEST_USER, CertKind, SmtpTestServer
from typer.testing import CliRunner, Result

from mailctl.cli.app import app
from mailctl.models import Security

runner = CliRunner()


def _secret_forms() -> list[str]:
    """The password and the encodings in which AUTH would carry it."""
    plain = f"\0{TEST_USER}\0{TEST_PASSWORD}".encode()
    return [
        TEST_PASSWORD,
        base64.b64encode(plain).decode(),
        base64.b64encode(TEST_PASSWORD.encode()).decode(),
    ]


def invoke(
    args: Sequence[str],
    tmp_path: Path,
    *,
    password: bool = True,
    stdin: str | bytes | None = None,
    env: dict[str, str] | None = None,
) -> Result:
    full_env = {"MAILCTL_CONFIG": str(tmp_path / "no-config.toml"), "NO_COLOR": "1"}
    if password:
        full_env["MAILCTL_PASSWORD"] = TEST_PASSWORD
    full_env.update(env or {})
    result = runner.invoke(app, list(args), input=stdin, env=full_env, catch_exceptions=False)
    everything = result.stdout + result.stderr
    for secret in _secret_forms():
        assert secret not in everything, "a secret reached the output"
    return result


def server_args(server: SmtpTestServer, *, user: bool = True) -> list[str]:
    security = {Security.TLS: "--tls", Security.STARTTLS: "--starttls", Security.NONE: "--no-tls"}
    args = [f"--server=127.0.0.1:{server.port}", security[server.security]]
    if server.ca_file:
        args += ["--ca-file", str(server.ca_file)]
    if user:
        args += ["--user", TEST_USER]
    return args


def received(server: SmtpTestServer, index: int = 0) -> EmailMessage:
    # Parse with LF line ends so decoded bodies compare with the text given on the command line.
    data = server.messages[index].data.replace(b"\r\n", b"\n")
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


BASIC = [
    "send",
    "--from",
    "Alice <alice@example.org>",
    "--to",
    "bob@example.org",
    "--subject",
    "hi",
]


def test_text_html_attachment_over_starttls_with_auth(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 fake\x00\xff binary")
    result = invoke(
        [
            *BASIC, *server_args(smtp_server),
            "--body", "plain text", "--html", "<p>html</p>",
            "--attach", str(report), "--cc", "carol@example.org, Dan <dan@example.org>",
            "--bcc", "eve@example.org", "--header", "X-Campaign: spring", "--json",
        ],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    envelope = json.loads(result.stdout)
    assert envelope["mailctl_result_version"] == "2"
    assert envelope["status"] == "ok" and envelope["exit_code"] == 0
    data = envelope["data"]
    assert data["final_reply"]["code"] == 250
    assert data["auth_mechanism"] and data["tls"]["version"].startswith("TLSv1.")
    phases = {"connect", "banner", "ehlo", "starttls", "auth", "mail_rcpt", "data", "end_of_data"}
    assert set(data["timings_ms"]) == phases  # JSON v2: milliseconds, bench's phase names

    got = smtp_server.messages[0]
    assert got.tls and got.authenticated_as == TEST_USER
    assert got.mail_from == "alice@example.org"
    assert sorted(got.rcpt_tos) == sorted(
        ["bob@example.org", "carol@example.org", "dan@example.org", "eve@example.org"]
    )
    message = received(smtp_server)
    assert message["Bcc"] is None and b"eve@example.org" not in got.data
    assert message["X-Campaign"] == "spring"
    assert message.get_content_type() == "multipart/mixed"
    body = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert body is not None and body.get_content().strip() == "plain text"
    assert html is not None and html.get_content().strip() == "<p>html</p>"
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content() == report.read_bytes()


def test_implicit_tls_and_trace(smtps_server: SmtpTestServer, tmp_path: Path) -> None:
    result = invoke([*BASIC, *server_args(smtps_server), "--body", "x", "--trace"], tmp_path)
    assert result.exit_code == 0, result.stderr
    trace = result.stderr
    assert "~> EHLO" in trace and "<~ 250" in trace  # every line inside TLS is marked
    assert "redacted" in trace
    assert len(smtps_server.messages) == 1


def test_trace_marks_the_switch_to_tls(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    result = invoke([*BASIC, *server_args(smtp_server), "--body", "x", "--trace"], tmp_path)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    starttls = next(i for i, line in enumerate(lines) if "-> STARTTLS" in line)
    assert any("<- 220" in line for line in lines[starttls:])
    assert any("~> MAIL FROM:<alice@example.org>" in line for line in lines[starttls:])


def test_non_ascii_everywhere(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    attachment = tmp_path / "résumé.txt"
    attachment.write_text("ünïcode", encoding="utf-8")
    result = invoke(
        [
            "send", "--from", "Zoë Ünal <zoe@example.org>", "--to", "Jörg <jorg@example.org>",
            "--subject", "Grüße 🎉", "--body", "Hallo wörld", "--attach", str(attachment),
            *server_args(smtp_server),
        ],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    raw = smtp_server.messages[0].data
    message = received(smtp_server)
    assert message["Subject"] == "Grüße 🎉"
    assert message["From"].addresses[0].display_name == "Zoë Ünal"
    (part,) = list(message.iter_attachments())
    assert part.get_filename() == "résumé.txt"
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert header_block.isascii()  # RFC 2047/2231 encoded, no SMTPUTF8 needed


def test_smtputf8_when_local_part_needs_it(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    result = invoke(
        ["send", "--from", "alice@example.org", "--to", "jörg@example.org", "--subject", "x",
         "--body", "y", *server_args(smtp_server)],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    got = smtp_server.messages[0]
    assert got.rcpt_tos == ["jörg@example.org"]
    assert "SMTPUTF8" in got.mail_options


def test_a_reply_to_needing_smtputf8_is_sent_with_it_but_stays_out_of_the_envelope(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    """Reply-To is a header, not a recipient; but a UTF-8 local part in any header needs an
    SMTPUTF8 session (RFC 6531/6532). Exit 65 before: the envelope and the SMTPUTF8 decision
    were a copy in core that left Reply-To out of both (mime.compose has the one rule now)."""
    result = invoke(
        ["send", "--from", "alice@example.org", "--to", "bob@example.org", "--reply-to",
         "Jörg <jörg@example.org>", "--subject", "x", "--body", "y", *server_args(smtp_server)],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    got = smtp_server.messages[0]
    assert got.rcpt_tos == ["bob@example.org"]
    assert "SMTPUTF8" in got.mail_options
    assert "Reply-To: Jörg <jörg@example.org>".encode() in got.data


def test_dry_run_connects_to_nothing_and_prints_exact_bytes(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    saved = tmp_path / "out.eml"
    result = invoke(
        [*BASIC, *server_args(smtp_server), "--body", "dry", "--dry-run", "--save", str(saved),
         "--bcc", "hidden@example.org"],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert smtp_server.connections == 0
    assert saved.read_bytes() == result.stdout_bytes
    assert "RCPT TO:<hidden@example.org>" in result.stderr
    assert b"hidden@example.org" not in result.stdout_bytes
    assert saved.stat().st_mode & 0o777 == 0o600


def test_dry_run_needs_no_account_or_server(tmp_path: Path) -> None:
    result = invoke([*BASIC, "--body", "x", "--dry-run", "--json"], tmp_path)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert data["dry_run"] is True and "Subject: hi" in data["message"]


def test_eml_is_sent_as_is_except_bcc(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    raw = (
        b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nBcc: secret@example.org\r\n"
        b"Subject: as is\r\nX-Keep:   odd   spacing\r\n\r\n.leading dot\r\nbody\r\n"
    )
    path = tmp_path / "m.eml"
    path.write_bytes(raw)
    result = invoke(["send", "--eml", str(path), *server_args(smtp_server)], tmp_path)
    assert result.exit_code == 0, result.stderr
    got = smtp_server.messages[0]
    assert got.mail_from == "alice@example.org"
    assert sorted(got.rcpt_tos) == ["bob@example.org", "secret@example.org"]
    assert got.data == raw.replace(b"Bcc: secret@example.org\r\n", b"")


def test_eml_from_stdin_with_explicit_envelope(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    raw = b"From: a@example.org\nTo: b@example.org\nSubject: s\n\nbody\n"
    result = invoke(
        ["send", "--eml", "-", "--from", "bounce@example.org", "--to", "only@example.org",
         *server_args(smtp_server)],
        tmp_path,
        stdin=raw,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    got = smtp_server.messages[0]
    assert (got.mail_from, got.rcpt_tos) == ("bounce@example.org", ["only@example.org"])
    assert got.data == raw.replace(b"\n", b"\r\n")


def test_body_from_stdin(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    result = invoke([*BASIC, *server_args(smtp_server)], tmp_path, stdin="from a pipe\n")
    assert result.exit_code == 0, result.stderr
    part = received(smtp_server).get_body(("plain",))
    assert part is not None and part.get_content() == "from a pipe\n"


def test_inline_image_for_html(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    logo.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    result = invoke(
        [*BASIC, *server_args(smtp_server), "--body", "t", "--html", '<img src="cid:logo.png">',
         "--inline", str(logo)],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    message = received(smtp_server)
    related = [p for p in message.walk() if p.get_content_type() == "multipart/related"]
    assert related
    image = next(p for p in message.walk() if p.get_content_type() == "image/png")
    assert image["Content-ID"] == "<logo.png>"
    assert image.get_content() == logo.read_bytes()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (["--subject", "hi\r\nBcc: evil@example.org"], "subject"),
        (["--header", "X-A: b\nRCPT TO:<evil@example.org>"], "header"),
        (["--to", "bob@example.org\r\nRCPT TO:<evil@example.org>"], "to"),
        (["--from", "a@example.org\nX: y"], "from"),
        (["--ehlo", "host\r\nMAIL FROM:<x@y>"], "ehlo"),
        (["--attach-name", "a\r\nb.txt", "--attach", "__FILE__"], "attach"),
        (["--in-reply-to", "<a@b>\r\nBcc: x@y"], "in-reply-to"),
    ],
)
def test_injection_never_reaches_the_wire(
    smtp_server: SmtpTestServer, tmp_path: Path, extra: list[str], field: str
) -> None:
    file = tmp_path / "f.txt"
    file.write_text("x")
    extra = [str(file) if item == "__FILE__" else item for item in extra]
    args = ["send", "--from", "a@example.org", "--to", "bob@example.org", "--body", "x"]
    result = invoke([*args, *extra, *server_args(smtp_server), "--json"], tmp_path)
    assert result.exit_code == 65, result.stdout
    envelope = json.loads(result.stdout)
    assert envelope["status"] == "error" and envelope["exit_code"] == 65
    assert field in envelope["errors"][0]["message"].lower()
    assert smtp_server.connections == 0


@pytest.mark.parametrize(
    "address",
    [
        "bob",
        "bob@",
        "@example.org",
        "a@example.org)<b@evil.example>",
        '"unbalanced <a@example.org>',
    ],
)
def test_invalid_addresses(smtp_server: SmtpTestServer, tmp_path: Path, address: str) -> None:
    args = [
        "send",
        "--from",
        "a@example.org",
        "--to",
        address,
        "--body",
        "x",
        *server_args(smtp_server),
    ]
    result = invoke(args, tmp_path)
    assert result.exit_code == 65
    assert "--to" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert smtp_server.connections == 0


def test_attachment_problems(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    missing = invoke(
        [*BASIC, "--body", "x", "--attach", str(tmp_path / "nope.pdf"), *server_args(smtp_server)],
        tmp_path,
    )
    assert missing.exit_code == 66 and "nope.pdf" in missing.stderr
    folder = invoke(
        [*BASIC, "--body", "x", "--attach", str(tmp_path), *server_args(smtp_server)], tmp_path
    )
    assert folder.exit_code == 65
    assert smtp_server.connections == 0


@pytest.mark.parametrize("kind", [CertKind.UNTRUSTED, CertKind.WRONG_HOST, CertKind.EXPIRED])
def test_bad_certificates_refused(smtp_server_factory: Any, tmp_path: Path, kind: CertKind) -> None:
    server = smtp_server_factory(security=Security.STARTTLS, cert=kind)
    result = invoke([*BASIC, "--body", "x", *server_args(server)], tmp_path)
    assert result.exit_code == 76, result.stderr
    assert "certificate" in result.stderr.lower()
    assert server.messages == [] and server.auth_attempts == []


def test_insecure_by_name_works_with_a_warning(smtp_server_factory: Any, tmp_path: Path) -> None:
    server = smtp_server_factory(security=Security.STARTTLS, cert=CertKind.UNTRUSTED)
    result = invoke([*BASIC, "--body", "x", *server_args(server), "--insecure"], tmp_path)
    assert result.exit_code == 0, result.stderr
    assert "verification is off" in result.stderr


def test_starttls_not_offered_refused_before_auth(smtp_server_factory: Any, tmp_path: Path) -> None:
    server = smtp_server_factory(security=Security.STARTTLS, starttls_offered=False)
    result = invoke([*BASIC, "--body", "x", *server_args(server)], tmp_path)
    assert result.exit_code == 76
    assert "STARTTLS" in result.stderr
    assert server.auth_attempts == [] and server.messages == []


def test_plaintext_auth_refused_before_connecting(
    plain_smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    result = invoke([*BASIC, "--body", "x", *server_args(plain_smtp_server)], tmp_path)
    assert result.exit_code == 77
    assert "--allow-plaintext-auth" in result.stderr
    assert plain_smtp_server.connections == 0


def test_plain_relay_without_auth(plain_smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    result = invoke([*BASIC, "--body", "x", *server_args(plain_smtp_server, user=False)], tmp_path)
    assert result.exit_code == 0, result.stderr
    assert len(plain_smtp_server.messages) == 1


def test_wrong_password_one_attempt(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    result = invoke(
        [*BASIC, "--body", "x", *server_args(smtp_server)],
        tmp_path,
        env={"MAILCTL_PASSWORD": "wrong-password-123"},
    )
    assert result.exit_code == 77
    assert len(smtp_server.auth_attempts) == 1
    assert "wrong-password-123" not in result.stdout + result.stderr


def test_password_command(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    script = tmp_path / "pw.sh"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' '{TEST_PASSWORD}'\n")
    script.chmod(0o700)
    result = invoke(
        [*BASIC, "--body", "x", *server_args(smtp_server), "--password-command", str(script)],
        tmp_path,
        password=False,
    )
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(("code", "exit_code"), [(550, 69), (450, 75), (552, 75)])
def test_refused_recipient_aborts_by_default(
    smtp_server: SmtpTestServer, tmp_path: Path, code: int, exit_code: int
) -> None:
    smtp_server.reject("gone@example.org", code=code)
    result = invoke(
        [*BASIC, "--to", "gone@example.org", "--body", "x", *server_args(smtp_server), "--json"],
        tmp_path,
    )
    assert result.exit_code == exit_code
    envelope = json.loads(result.stdout)
    assert envelope["status"] == "error"
    assert "gone@example.org" in json.dumps(envelope["errors"])
    assert smtp_server.messages == []


def test_allow_partial_sends_to_the_rest(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    smtp_server.reject("gone@example.org", code=550)
    result = invoke(
        [*BASIC, "--to", "gone@example.org", "--body", "x", *server_args(smtp_server),
         "--allow-partial", "--json"],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 69
    envelope = json.loads(result.stdout)
    assert envelope["status"] == "partial"
    recipients = {r["address"]: r["accepted"] for r in envelope["data"]["recipients"]}
    assert recipients == {"bob@example.org": True, "gone@example.org": False}
    assert smtp_server.messages[0].rcpt_tos == ["bob@example.org"]


@pytest.mark.parametrize(("reply", "exit_code"), [("554 5.7.1 spam", 69), ("451 4.3.0 later", 75)])
def test_final_reply_failures(
    smtp_server: SmtpTestServer, tmp_path: Path, reply: str, exit_code: int
) -> None:
    smtp_server.final_reply = reply
    result = invoke([*BASIC, "--body", "x", *server_args(smtp_server)], tmp_path)
    assert result.exit_code == exit_code
    assert reply.split(maxsplit=1)[0] in result.stderr


def test_connection_refused_and_unknown_host(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = invoke([*BASIC, "--body", "x", f"--server=127.0.0.1:{port}", "--no-tls"], tmp_path)
    assert refused.exit_code == 74
    unknown = invoke(
        [*BASIC, "--body", "x", "--server", "no-such-host.invalid:25", "--no-tls"], tmp_path
    )
    assert unknown.exit_code == 68


def test_no_account_no_server_is_config_error(tmp_path: Path) -> None:
    result = invoke([*BASIC, "--body", "x"], tmp_path)
    assert result.exit_code == 78
    assert "account add" in result.stderr


def test_conflicting_security_flags(tmp_path: Path) -> None:
    result = invoke([*BASIC, "--body", "x", "--server", "h", "--tls", "--no-tls"], tmp_path)
    assert result.exit_code == 64


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.lists(
        st.sampled_from(["", ".", "..", ".x", "line", " .", "\t", "é", "a.b"]),
        min_size=1,
        max_size=8,
    ).map("\n".join)
)
def test_bodies_with_dots_and_bare_lf_arrive_intact(
    plain_smtp_server: SmtpTestServer, tmp_path: Path, body: str
) -> None:
    before = len(plain_smtp_server.messages)
    result = invoke([*BASIC, "--body", body, *server_args(plain_smtp_server, user=False)], tmp_path)
    assert result.exit_code == 0, result.stderr
    part = received(plain_smtp_server, before).get_body(("plain",))
    assert part is not None
    expected = body if body.endswith("\n") else body + "\n"
    # MIME text is canonically CRLF (RFC 2045 2.10); a base64 part decodes with CRLF line ends.
    assert part.get_content().replace("\r\n", "\n") == expected
