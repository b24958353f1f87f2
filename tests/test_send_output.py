"""What `send` tells its user: the trace in the order things happened, --dry-run's bytes,
reply texts without a repeated enhanced code, and -q/--quiet. Real servers on 127.0.0.1."""

from __future__ import annotations

import json
import ssl
from collections.abc import Sequence
from pathlib import Path

import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st
from servers.hostile import Peer, hostile, run_mailctl
from servers.postfix import PostfixServer
from servers.scripted_smtp import ScriptedFactory, standard_reply
from servers.smtp_server import SmtpTestServer
from test_send_cli import BASIC, invoke, server_args

from mailctl.models import Reply
from mailctl.serialize import to_data


def _index(lines: Sequence[str], needle: str) -> int:
    """The index of the first line holding `needle` (fails the test when there is none)."""
    found = [i for i, line in enumerate(lines) if needle in line]
    assert found, f"{needle!r} not in:\n" + "\n".join(lines)
    return found[0]


# -- 1. --trace records events in the order they happened -----------------------------------


def test_implicit_tls_trace_shows_the_handshake_before_the_greeting(
    smtps_server: SmtpTestServer, tmp_path: Path
) -> None:
    """On an implicit-TLS connection the handshake ends before the server can greet."""
    result = invoke([*BASIC, *server_args(smtps_server), "--body", "x", "--trace"], tmp_path)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    connected = _index(lines, "=== connected to 127.0.0.1")
    established = _index(lines, "=== TLS established")
    greeting = _index(lines, "<~ 220 ")
    assert connected < established < greeting < _index(lines, "~> EHLO")
    assert sum("TLS established" in line for line in lines) == 1
    # the timestamps agree with the order
    stamps = [float(lines[i].split("ms", 1)[0]) for i in (connected, established, greeting)]
    assert stamps == sorted(stamps)


def test_starttls_trace_order(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    result = invoke([*BASIC, *server_args(smtp_server), "--body", "x", "--trace"], tmp_path)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    greeting = _index(lines, "<- 220 ")
    starttls = _index(lines, "-> STARTTLS")
    ready = next(i for i, line in enumerate(lines) if i > starttls and "<- 220" in line)
    established = _index(lines, "=== TLS established")
    assert greeting < starttls < ready < established < _index(lines, "~> EHLO")
    assert sum("TLS established" in line for line in lines) == 1


def test_tls_trace_shows_the_handshake_when_no_greeting_follows(tmp_path: Path) -> None:
    """A server that completes the handshake and then says nothing: the trace shows that
    TLS is up, so the hang is seen where it is (waiting for the greeting)."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)

    def silent(peer: Peer) -> None:
        peer.stall()

    with hostile(silent, tls=context, lifetime=15.0) as server:
        run = run_mailctl(
            *BASIC, "--body", "x", "--server", f"127.0.0.1:{server.port}", "--tls",
            "--ca-file", str(ca_file), "--connect-timeout", "1", "--trace",
            env={"MAILCTL_CONFIG": str(tmp_path / "none.toml")},
        )  # fmt: skip
    assert run.returncode == 75, (run.returncode, run.stderr)
    lines = run.stderr.splitlines()
    assert _index(lines, "=== TLS established") < _index(lines, "mailctl:")
    assert not any("<~" in line for line in lines)


def test_trace_order_against_postfix_implicit_tls_and_starttls(
    postfix: PostfixServer, tmp_path: Path
) -> None:
    """The same order from a real Postfix: an smtps (wrapper mode) service, then submission."""
    port = postfix.add_service(smtpd_tls_wrappermode="yes", smtpd_tls_security_level="encrypt")
    common = ["send", "--from", "a@example.org", "--to", "b@example.org", "--body", "x"]
    trust = ["--ca-file", str(postfix.ca_pem), "--trace"]
    result = invoke([*common, f"--server=127.0.0.1:{port}", "--tls", *trust], tmp_path)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    established = _index(lines, "=== TLS established")
    assert established < _index(lines, "<~ 220 ") < _index(lines, "~> EHLO")

    submission = [f"--server=127.0.0.1:{postfix.submission_port}", "--starttls"]
    result = invoke(
        [*common, *submission, "--user", postfix.user, *trust],
        tmp_path,
        env={"MAILCTL_PASSWORD": postfix.password},
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    starttls = _index(lines, "-> STARTTLS")
    assert starttls < _index(lines, "=== TLS established") < _index(lines, "~> EHLO")
    assert starttls < _index(lines, "<- 220 2.0.0") < _index(lines, "=== TLS established")


# -- 2. --dry-run prints what the server receives; the summary counts those bytes -------------

LF_EML = (
    b"From: Alice <alice@example.org>\n"
    b"To: bob@example.org\n"
    b"Subject: dots\n"
    b"\n"
    b".a line that starts with a dot\n"
    b"..two dots\n"
    b".\n"
    b"last line without a line end"
)
# RFC 5321 4.5.2: CRLF line ends; the dots are doubled on the wire and undone by the server.
LF_EML_AS_SENT = LF_EML.replace(b"\n", b"\r\n") + b"\r\n"


def test_dry_run_of_an_lf_eml_prints_what_the_server_receives(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    eml = tmp_path / "lf.eml"
    eml.write_bytes(LF_EML)
    saved = tmp_path / "saved.eml"
    dry = invoke(["send", "--eml", str(eml), "--dry-run", "--save", str(saved)], tmp_path)
    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout_bytes == LF_EML_AS_SENT
    assert saved.read_bytes() == LF_EML_AS_SENT
    assert f"--- {len(LF_EML_AS_SENT)} bytes follow" in dry.stderr

    sent = invoke(["send", "--eml", str(eml), *server_args(smtp_server), "--trace"], tmp_path)
    assert sent.exit_code == 0, sent.stderr
    assert smtp_server.messages[0].data == LF_EML_AS_SENT
    assert f"sent {len(LF_EML_AS_SENT)} bytes" in sent.stdout
    # the wire form: three more octets for the three stuffed dots
    assert f"message data: {len(LF_EML_AS_SENT) + 3} octets after dot-stuffing" in sent.stderr


def test_dry_run_json_message_is_the_sent_text(tmp_path: Path) -> None:
    eml = tmp_path / "lf.eml"
    eml.write_bytes(LF_EML)
    dry = invoke(["send", "--eml", str(eml), "--dry-run", "--json"], tmp_path)
    assert dry.exit_code == 0, dry.stdout
    data = json.loads(dry.stdout)["data"]
    assert data["message"].encode() == LF_EML_AS_SENT
    assert data["size"] == len(LF_EML_AS_SENT)


# -- 3. a reply's text does not repeat its enhanced status code -----------------------------


def _no_repeated_code(reply: dict[str, object]) -> None:
    enhanced, message = reply["enhanced"], reply["message"]
    assert isinstance(message, str) and set(reply) == {"code", "message", "enhanced"}
    if enhanced is not None:
        assert isinstance(enhanced, str) and enhanced not in message, reply


def test_json_replies_keep_the_enhanced_code_out_of_the_message(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    smtp_server.reject("carol@example.org", 550, "5.1.1 No such user here")
    args = [*BASIC, "--to", "carol@example.org", *server_args(smtp_server), "--body", "x"]
    partial = invoke([*args, "--allow-partial", "--json"], tmp_path)
    assert partial.exit_code == 69, partial.stdout
    data = json.loads(partial.stdout)["data"]
    assert data["final_reply"]["enhanced"] == "2.0.0"
    assert data["final_reply"]["message"].startswith("Ok: queued as Q")
    refused = next(r["reply"] for r in data["recipients"] if not r["accepted"])
    assert refused == {"code": 550, "message": "No such user here", "enhanced": "5.1.1"}
    for reply in [data["banner"], data["final_reply"], *(r["reply"] for r in data["recipients"])]:
        _no_repeated_code(reply)

    failed = invoke([*args, "--json"], tmp_path)
    assert failed.exit_code == 69, failed.stdout
    envelope = json.loads(failed.stdout)
    assert envelope["data"] == {}  # README: on an error the replies are in errors[].details
    [error] = envelope["errors"]
    assert "550 5.1.1 No such user here" in error["message"]  # the one line keeps its form
    details = error["details"]
    replies = [r["reply"] for r in details["recipients"]]
    assert {"code": 550, "message": "No such user here", "enhanced": "5.1.1"} in replies
    for reply in replies + ([details["reply"]] if details.get("reply") else []):
        _no_repeated_code(reply)


def test_human_output_shows_each_code_once(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    smtp_server.reject("carol@example.org", 550, "5.1.1 No such user here")
    result = invoke(
        [*BASIC, "--to", "carol@example.org", *server_args(smtp_server), "--body", "x",
         "--allow-partial"],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 69, result.stderr
    assert "server: 250 2.0.0 Ok: queued as Q" in result.stdout
    assert "2.0.0 2.0.0" not in result.stdout
    assert "550 5.1.1 No such user here" in result.stderr
    assert "5.1.1 5.1.1" not in result.stderr


def test_multiline_reply_drops_the_code_from_every_line(
    scripted_smtp: ScriptedFactory, tmp_path: Path
) -> None:
    """RFC 2034 4: each line of a multi-line reply carries the enhanced code."""

    def respond(line: str) -> bytes | None:
        if line.upper().startswith("RCPT"):
            return b"550-5.7.1 first line of the policy\r\n550 5.7.1 second line\r\n"
        return standard_reply(line)

    server = scripted_smtp(respond)
    result = invoke(
        [*BASIC, "--body", "x", f"--server=127.0.0.1:{server.port}", "--no-tls", "--json"],
        tmp_path,
        password=False,
    )
    assert result.exit_code == 69, result.stdout
    [error] = json.loads(result.stdout)["errors"]
    [recipient] = error["details"]["recipients"]
    assert recipient["reply"] == {
        "code": 550,
        "message": "first line of the policy\nsecond line",
        "enhanced": "5.7.1",
    }


@given(
    code=st.integers(200, 599),
    enhanced=st.from_regex(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True) | st.none(),
    lines=st.lists(st.text(st.characters(blacklist_characters="\n\r"), max_size=20), min_size=1),
)
def test_reply_json_round_trip(code: int, enhanced: str | None, lines: list[str]) -> None:
    """A reply written to JSON and read back (errors[].details.reply) keeps code and class."""
    prefix = f"{enhanced} " if enhanced else ""
    reply = Reply(code, "\n".join(prefix + line for line in lines))
    written = to_data(reply)
    assert list(written) == ["code", "message", "enhanced"]
    back = Reply.from_data(written)
    assert back is not None and back.code == code
    assert back.enhanced == reply.enhanced and back.text.split("\n") == written["message"].split(
        "\n"
    )


# -- 4. -q/--quiet: the exit code only on success; errors and warnings still print ------------


@pytest.mark.parametrize("where", ["after", "before"])
def test_quiet_send_prints_nothing_on_success(
    smtp_server: SmtpTestServer, tmp_path: Path, where: str
) -> None:
    args = [*BASIC, *server_args(smtp_server), "--body", "x"]
    args = [*args, "-q"] if where == "after" else ["--quiet", *args]
    result = invoke(args, tmp_path)
    assert result.exit_code == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    assert len(smtp_server.messages) == 1


def test_quiet_send_still_reports_failures(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    smtp_server.reject("carol@example.org", 550, "5.1.1 No such user here")
    args = [*BASIC, "--to", "carol@example.org", *server_args(smtp_server), "--body", "x", "-q"]
    partial = invoke([*args, "--allow-partial"], tmp_path)
    assert partial.exit_code == 69
    assert partial.stdout == ""
    assert partial.stderr.splitlines() == [
        "mailctl: recipient carol@example.org refused: 550 5.1.1 No such user here"
    ]
    refused = invoke(args, tmp_path)
    assert refused.exit_code == 69 and refused.stdout == ""
    assert len(refused.stderr.splitlines()) == 1 and "carol@example.org" in refused.stderr
    # warnings are not success chatter: --insecure is still warned about
    insecure = invoke(
        [*BASIC, *server_args(smtp_server), "--body", "x", "-q", "--insecure"], tmp_path
    )
    assert insecure.exit_code == 0 and insecure.stdout == ""
    assert insecure.stderr.startswith("warning: certificate verification is off")


def test_quiet_leaves_json_and_dry_run_output_alone(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    """--json asked for the envelope and --dry-run for the bytes: -q drops only the chatter."""
    sent = invoke([*BASIC, *server_args(smtp_server), "--body", "x", "-q", "--json"], tmp_path)
    assert sent.exit_code == 0 and json.loads(sent.stdout)["status"] == "ok"
    eml = tmp_path / "lf.eml"
    eml.write_bytes(LF_EML)
    dry = invoke(["send", "--eml", str(eml), "--dry-run", "-q"], tmp_path)
    assert dry.exit_code == 0
    assert (dry.stdout_bytes, dry.stderr) == (LF_EML_AS_SENT, "")


def test_quiet_is_one_option_for_every_reporting_command(tmp_path: Path) -> None:
    env = {"MAILCTL_CONFIG": str(tmp_path / "none.toml")}
    bench = run_mailctl("bench", "--messages", "20", "--mode", "reuse", "-q", env=env)
    assert (bench.returncode, bench.stdout, bench.stderr) == (0, "", "")
    sink = run_mailctl("sink", "--listen", "127.0.0.1:0", "--duration", "0.3", "-q", env=env)
    assert (sink.returncode, sink.stdout, sink.stderr) == (0, "", "")
    sink_json = run_mailctl(
        "sink", "--listen", "127.0.0.1:0", "--duration", "0.3", "--quiet", "--json", env=env
    )
    assert sink_json.returncode == 0 and sink_json.stderr == ""
    assert json.loads(sink_json.stdout)["data"]["stopped_by"] == "duration"
    listed = run_mailctl("account", "list", "-q", env=env)
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "", "")
    missing = run_mailctl("account", "show", "nope", "-q", env=env)
    assert missing.returncode == 78 and missing.stdout == ""
    assert missing.stderr.startswith("mailctl: ") and len(missing.stderr.splitlines()) == 1
