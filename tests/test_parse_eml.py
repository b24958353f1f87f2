"""read_eml, envelope_sender and header_recipients: moved from mime/compose.py to mime/parse
with their tests (issue 10: one parser), now bounded by ParseLimits."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.errors import AddressError, InputDataError, MessageTooLargeError
from mailctl.inputs import DEFAULT_MAX_INPUT
from mailctl.mime.compose import ComposeRequest, compose
from mailctl.mime.headers import Mailbox
from mailctl.mime.parse import envelope_sender, header_recipients, read_eml

SENDER = Mailbox("Alice", "alice@example.org")


def test_read_eml_parses_a_message() -> None:
    message = read_eml(b"From: A <a@example.org>\r\nSubject: hi\r\n\r\nbody\r\n")
    assert str(message["Subject"]) == "hi"
    assert message.get_content() == "body\r\n"


@pytest.mark.parametrize("data", [b"", b"just a body line\n", b"\nbody after a blank line\n"])
def test_read_eml_needs_a_header_block(data: bytes) -> None:
    with pytest.raises(InputDataError, match="no header block"):
        read_eml(data)


def test_read_eml_size_limit() -> None:
    data = b"Subject: x\n\n" + b"x" * DEFAULT_MAX_INPUT
    with pytest.raises(MessageTooLargeError):
        read_eml(data)


def test_read_eml_part_limit_stops_early() -> None:
    parts = b"--b\nContent-Type: text/plain\n\nx\n" * 20000
    data = b"From: a@x.org\nContent-Type: multipart/mixed; boundary=b\n\n" + parts + b"--b--\n"
    started = time.perf_counter()
    with pytest.raises(InputDataError, match="more than 1000 MIME parts"):
        read_eml(data)
    # Parsing all 20,000 parts takes ~10 s here; stopping at 1,000 takes well under one.
    assert time.perf_counter() - started < 5


def test_read_eml_depth_limit() -> None:
    head = tail = b""
    for level in range(60):
        head += b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (level, level)
        tail = b"\n--b%d--\n" % level + tail
    data = b"From: a@x.org\n" + head + b"Content-Type: text/plain\n\nhi\n" + tail
    with pytest.raises(InputDataError, match="nests more than 50 levels"):
        read_eml(data)


def test_envelope_sender_prefers_sender() -> None:
    both = read_eml(b"From: A <a@example.org>, B <b@example.org>\nSender: S <s@example.org>\n\nx")
    assert envelope_sender(both) == Mailbox("S", "s@example.org")
    only_from = read_eml(b"From: =?utf-8?q?Zo=C3=AB?= <z@example.org>\n\nx")
    assert envelope_sender(only_from) == Mailbox("Zoë", "z@example.org")
    assert envelope_sender(read_eml(b"Subject: none\n\nx")) is None


def test_envelope_sender_refuses_unclear_senders() -> None:
    with pytest.raises(AddressError, match="2 addresses"):
        envelope_sender(read_eml(b"From: a@example.org, b@example.org\n\nx"))
    with pytest.raises(AddressError, match="2 From headers"):
        envelope_sender(read_eml(b"From: a@example.org\nFrom: b@example.org\n\nx"))
    with pytest.raises(AddressError, match="header From"):
        envelope_sender(read_eml(b"From: alice@example.org)<bob@evil.example>\n\nx"))


def test_envelope_sender_reads_utf8_headers() -> None:
    """RFC 6532 raw UTF-8 arrives as surrogate escapes from the bytes parser."""
    message = read_eml("From: Jöran <jöran@exämple.org>\n\nx".encode())
    assert envelope_sender(message) == Mailbox("Jöran", "jöran@exämple.org")
    with pytest.raises(AddressError, match="not valid UTF-8"):
        envelope_sender(read_eml(b"From: \xff <a@example.org>\n\nx"))


def test_header_recipients() -> None:
    raw = (
        b"From: a@example.org\r\n"
        b"To: B <b@example.org>,\r\n c@example.org\r\n"
        b"Cc: team: d@example.org, B <b@example.org>;\r\n"
        b"Bcc: hidden@example.org\r\n"
        b"To: undisclosed-recipients:;\r\n"
        b"\r\nbody\r\n"
    )
    found = header_recipients(read_eml(raw))
    assert [m.addr_spec for m in found] == [
        "b@example.org",
        "c@example.org",
        "d@example.org",
        "hidden@example.org",
    ]
    with pytest.raises(AddressError, match="header To"):
        header_recipients(read_eml(b"To: a@example.org (b@evil.example)\n\nx"))


def test_header_recipients_of_a_composed_message() -> None:
    message = compose(
        ComposeRequest(
            sender=SENDER,
            to=(Mailbox("Bob", "bob@example.net"),),
            cc=(Mailbox("Doe, John", "j@example.org"),),
            text="x",
        )
    )
    assert [m.addr_spec for m in header_recipients(message)] == ["bob@example.net", "j@example.org"]
    assert envelope_sender(message) == SENDER


def test_send_eml_is_parsed_within_the_same_limits(tmp_path: Path) -> None:
    """`send --eml` (and sendmail mode, the same core path) reads through mime.parse: a 1 MB
    header line, which main accepted and sent, is refused before anything is sent."""
    eml = tmp_path / "big.eml"
    eml.write_bytes(
        b"From: a@example.org\r\nTo: b@example.org\r\nSubject: "
        + b"x" * (1024 * 1024)
        + b"\r\n\r\nhi\r\n"
    )
    result = CliRunner().invoke(
        app, ["send", "--dry-run", "--eml", str(eml), "--to", "c@example.org", "--json"]
    )
    assert result.exit_code == 65, result.output
    error = json.loads(result.stdout)["errors"][0]
    assert error["code"] == "message_unparseable"
    assert "ParseLimits.max_header_line" in error["message"]
