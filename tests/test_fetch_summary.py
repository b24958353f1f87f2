"""fetch's per-message envelope (core/fetch/summary.summarize_headers): a header-block reader
kept apart from mime.parse for speed, so it must read what the email package reads."""

from __future__ import annotations

import email
import email.policy
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from mailctl.core.fetch.state import _header_block, header_block, message_key
from mailctl.core.fetch.summary import summarize_headers


def test_folded_encoded_first_wins_and_case_blind() -> None:
    data = (
        b"Received: from x\r\n\tby y\r\n"
        b"FROM: Ann <ann@example.org>\r\n"
        b"subject: =?utf-8?q?caf=C3=A9?=\r\n and more\r\n"
        b"Subject: a second subject\r\n"
        b"X-Subject: not this\r\n"
        b"Message-ID: <id@example.org>\r\n"
        b"Date: Fri, 27 Nov 2026 12:00:00 +0100\r\n"
        b"\r\n"
        b"From: a body line, not a header\r\n"
    )
    summary = summarize_headers(data)
    assert summary.from_ == "Ann <ann@example.org>"
    assert summary.subject == "café and more"
    assert summary.message_id == "<id@example.org>"
    assert summary.date_iso == "2026-11-27T12:00:00+01:00"
    assert summary.to is None
    assert summary.attachment_count == 0 and summary.problem is None


def test_bare_lf_and_headers_only() -> None:
    summary = summarize_headers(b"To: b@example.org\nSubject: one\n two\n")
    assert (summary.to, summary.subject) == ("b@example.org", "one two")


def test_an_unknown_charset_is_a_problem_not_an_error() -> None:
    summary = summarize_headers(b"Subject: =?x-nonesuch?q?abc?=\r\n\r\n")
    assert summary.subject == "=?x-nonesuch?q?abc?=" and summary.problem is not None


_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " .,-", min_size=1, max_size=200)


@settings(max_examples=200, deadline=None)
@given(subject=_TEXT, name=st.text(alphabet=string.ascii_letters, min_size=1, max_size=20))
def test_agrees_with_the_email_package(subject: str, name: str) -> None:
    message = email.message.EmailMessage(policy=email.policy.SMTP)
    message["From"] = f"{name} <{name.lower()}@example.org>"
    message["To"] = "b@example.org"
    message["Subject"] = subject  # long ones are folded by the policy
    message["Message-ID"] = "<x@example.org>"
    message.set_content("body\n")
    data = message.as_bytes()
    read = email.message_from_bytes(data, policy=email.policy.default)
    summary = summarize_headers(data)
    assert summary.subject == " ".join(str(read["Subject"]).split())
    assert summary.from_ == str(read["From"])
    assert summary.to == str(read["To"]) and summary.message_id == str(read["Message-ID"])


@settings(max_examples=400)
@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"X: y", b" "]), max_size=24))
def test_the_fast_header_block_is_the_regex_one(pieces: list[bytes]) -> None:
    """message_key's C-only header-block cut gives what header_block's regex gives, for any
    mix of CRLF, bare LF and bare CR: keys written by earlier runs must still match."""
    data = b"".join(pieces)
    assert _header_block(data) == header_block(data)
    assert message_key(data) == message_key(header_block(data))
