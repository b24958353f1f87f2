"""Header-block edits for sendmail mode keep every other byte as it was."""

from __future__ import annotations

import email
import email.policy

from hypothesis import given
from hypothesis import strategies as st

from mailctl.mime.headers import Mailbox
from mailctl.mime.rawmessage import add_missing_headers, header_value, split_header_block

SENDER = Mailbox(display_name="", addr_spec="cron@example.org")


def test_split_prefers_first_blank_line_crlf_and_lf() -> None:
    assert split_header_block(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore") == (
        b"A: 1\r\nB: 2\r\n",
        b"\r\nbody\r\n\r\nmore",
    )
    assert split_header_block(b"A: 1\n\nbody") == (b"A: 1\n", b"\nbody")
    assert split_header_block(b"just a body\n") == (b"", b"just a body\n")


def test_header_value_unfolds_and_ignores_body() -> None:
    raw = b"Subject: a\r\n  folded\r\nX: y\r\n\r\nFrom: not-a-header@example.org\r\n"
    assert header_value(raw, "subject") == "a folded"
    assert header_value(raw, "From") is None


def test_adds_from_date_message_id_when_missing() -> None:
    out = add_missing_headers(b"Subject: cron\n\nbody\n", sender=SENDER, full_name="Cron Daemon")
    message = email.message_from_bytes(out, policy=email.policy.default)
    assert message["From"].addresses[0].addr_spec == "cron@example.org"
    assert message["From"].addresses[0].display_name == "Cron Daemon"
    assert message["Date"] is not None and message["Message-ID"] is not None
    assert out.endswith(b"Subject: cron\n\nbody\n")


def test_body_only_input_gets_a_header_block() -> None:
    out = add_missing_headers(b"hello\n", sender=SENDER)
    headers, rest = split_header_block(out)
    assert rest == b"\nhello\n"
    assert b"From: cron@example.org" in headers


def test_existing_headers_are_left_alone() -> None:
    raw = (
        b"From: A <a@example.org>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        b"Message-ID: <1@x>\r\n\r\nb\r\n"
    )
    assert add_missing_headers(raw, sender=SENDER) == raw


def test_non_ascii_full_name_is_encoded() -> None:
    out = add_missing_headers(b"Subject: x\n\nb\n", sender=SENDER, full_name="Zoë Cron")
    assert out.isascii()
    message = email.message_from_bytes(out, policy=email.policy.default)
    assert message["From"].addresses[0].display_name == "Zoë Cron"


@given(st.binary(max_size=300))
def test_body_bytes_survive(body: bytes) -> None:
    raw = b"Subject: s\r\n\r\n" + body
    out = add_missing_headers(raw, sender=SENDER)
    assert out.endswith(raw)


def test_idn_sender_gets_a_label_from_and_ascii_message_id() -> None:
    sender = Mailbox(display_name="", addr_spec="cron@bücher.example")
    out = add_missing_headers(b"Subject: x\n\nb\n", sender=sender, full_name="Cron, Daily")
    assert out.isascii()
    message = email.message_from_bytes(out, policy=email.policy.default)
    (box,) = message["From"].addresses
    assert (box.display_name, box.addr_spec) == ("Cron, Daily", "cron@xn--bcher-kva.example")
    assert str(message["Message-ID"]).endswith("@xn--bcher-kva.example>")


def test_full_name_encoded_word_means_its_text() -> None:
    out = add_missing_headers(b"Subject: x\n\nb\n", sender=SENDER, full_name="=?utf-8?q?Zo=C3=AB?=")
    message = email.message_from_bytes(out, policy=email.policy.default)
    assert message["From"].addresses[0].display_name == "Zoë"
