"""mime.parse on real shapes and odd ones: what a message says, read as data (issue 10).

Odd messages are written here by hand (broken boundaries, missing or wrong charsets, headers
without a body, a body without headers, 8-bit headers, malformed encodings); hypothesis
compares the parser with the email package on generated messages, and throws arbitrary
bytes at it: it returns or raises MessageParseError, nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mailctl.errors import MessageParseError
from mailctl.mime.parse import (
    AddressInfo,
    ParseLimits,
    attachment_parts,
    html_text,
    parse_message,
    summarize,
)

FULL = (
    b"Received: from mx.example.net (mx.example.net [192.0.2.1]) by mail.example.org (Postfix)"
    b"\r\n\twith ESMTPS id 4XyZ for <a@example.org>; Tue, 1 Oct 2024 12:00:07 +0200\r\n"
    b"Received: from [10.0.0.1] (unknown [10.0.0.1]) by mx.example.net with ESMTPSA id Q;"
    b" Tue, 1 Oct 2024 10:00:00 +0000\r\n"
    b"Received: by localhost (no date here)\r\n"
    b"Authentication-Results: mail.example.org; dkim=pass (2048-bit key; unprotected)"
    b' header.d=example.net header.i=@example.net header.b="abc; def";\r\n'
    b"\tspf=softfail (domain of transitioning x) smtp.mailfrom=x@example.net;\r\n"
    b'\tdmarc=fail reason="policy says; no" header.from=example.net\r\n'
    b"Authentication-Results: evil.example; none\r\n"
    b"From: =?iso-8859-1?q?J=F6rg?= <jorg@example.net>\r\n"
    b'To: "Doe, John" <j@example.org>, undisclosed:;, =?utf-8?b?5pel5pys?= <n@example.jp>\r\n'
    b"Cc: c@example.org\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= =?utf-8?q?_aus_K=C3=B6ln?=\r\n"
    b"Date: Tue, 1 Oct 2024 10:00:00 +0000\r\n"
    b"Message-ID: <m1@example.net>\r\n"
    b"In-Reply-To: <p@example.org>\r\n"
    b"References: <r1@example.org>\r\n <p@example.org>\r\n"
    b"List-Unsubscribe: <https://example.net/u?x=1>,\r\n <mailto:u@example.net?subject=stop>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=outer\r\n\r\n"
    b"preamble\r\n--outer\r\n"
    b'Content-Type: multipart/related; boundary="rel"; type="multipart/alternative"\r\n\r\n'
    b"--rel\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n"
    b"--alt\r\nContent-Type: text/plain; charset=windows-1252\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n=80 5 caf=E9\r\n"
    b"--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"PHA+4oKsIDUgPGltZyBzcmM9ImNpZDpsb2dvIj48L3A+\r\n--alt--\r\n"
    b"--rel\r\nContent-Type: image/png\r\nContent-ID: <logo>\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--rel--\r\n"
    b'--outer\r\nContent-Type: application/pdf; name="old-style.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n"
    b"--outer\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Disposition: attachment; filename*=utf-8''na%C3%AFve%20notes.txt\r\n\r\n"
    b"attached text\r\n"
    b"--outer\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: forwarded\r\nFrom: f@example.org\r\n\r\ninner body\r\n"
    b"--outer--\r\nepilogue\r\n"
)


def test_a_full_message() -> None:
    m = parse_message(FULL)
    assert m.size == len(FULL)
    assert m.subject == "Grüße aus Köln"
    assert m.from_ == (AddressInfo("Jörg", "jorg@example.net"),)
    assert m.to == (
        AddressInfo("Doe, John", "j@example.org"),
        AddressInfo("日本", "n@example.jp"),
    )
    assert m.cc == (AddressInfo("", "c@example.org"),)
    assert (m.date_iso, m.message_id, m.in_reply_to) == (
        "2024-10-01T10:00:00+00:00",
        "<m1@example.net>",
        "<p@example.org>",
    )
    assert m.references == ("<r1@example.org>", "<p@example.org>")
    assert m.text == "€ 5 café"  # RFC 2046 5.1.1: the CRLF before a boundary is the boundary's
    assert m.html == '<p>€ 5 <img src="cid:logo"></p>'
    assert [(a.name, a.content_type, a.size, a.inline, a.content_id) for a in m.attachments] == [
        (None, "image/png", 8, True, "logo"),
        ("old-style.pdf", "application/pdf", 5, False, None),
        ("naïve notes.txt", "text/plain", 13, False, None),
        (None, "message/rfc822", m.attachments[3].size, False, None),
    ]
    assert m.attachments[1].sha256 == hashlib.sha256(b"%PDF-").hexdigest()
    hops = [(h.from_, h.by, h.with_, h.timestamp, h.delay) for h in m.received]
    assert hops == [
        (None, "localhost", None, None, None),
        ("[10.0.0.1]", "mx.example.net", "ESMTPSA", "2024-10-01T10:00:00+00:00", None),
        ("mx.example.net", "mail.example.org", "ESMTPS", "2024-10-01T12:00:07+02:00", 7.0),
    ]
    verdicts = [(v.authserv_id, v.method, v.result) for v in m.authentication]
    assert verdicts == [
        ("mail.example.org", "dkim", "pass"),
        ("mail.example.org", "spf", "softfail"),
        ("mail.example.org", "dmarc", "fail"),
    ]
    assert m.authentication[0].properties["header.b"] == "abc; def"
    assert m.authentication[2].properties["reason"] == "policy says; no"
    assert m.list_unsubscribe == ("https://example.net/u?x=1", "mailto:u@example.net?subject=stop")
    assert m.list_unsubscribe_one_click
    assert m.dsn is None
    assert m.problems == ()
    parts = list(attachment_parts(FULL))
    assert [p.payload[:5] for p in parts[:3]] == [b"\x89PNG\r", b"%PDF-", b"attac"]
    assert b"Subject: forwarded" in parts[3].payload


def test_summary() -> None:
    s = summarize(FULL)
    assert (s.message_id, s.date_iso, s.subject, s.size) == (
        "<m1@example.net>",
        "2024-10-01T10:00:00+00:00",
        "Grüße aus Köln",
        len(FULL),
    )
    # Decoded header text (a listing shows it; parse_message has the address lists).
    assert s.from_ == "Jörg <jorg@example.net>"
    assert s.to == '"Doe, John" <j@example.org>, undisclosed:;, 日本 <n@example.jp>'
    assert (s.attachment_count, s.problem) == (4, None)
    header_only = summarize(FULL.split(b"\r\n\r\n")[0] + b"\r\n\r\n")
    assert (header_only.subject, header_only.attachment_count) == ("Grüße aus Köln", 0)


BOUNCE = (
    b"From: MAILER-DAEMON@example.net\r\nSubject: failure notice\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n"
    b"--r\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n"
    b"--r\r\nContent-Type: message/delivery-status\r\n{cte}\r\n{status}"
    b"--r\r\nContent-Type: text/rfc822-headers\r\n\r\nSubject: mine\r\n--r--\r\n"
)
STATUS = (
    b"Reporting-MTA: dns; mx.example.net\r\nArrival-Date: Tue, 1 Oct 2024 10:00:00 +0000\r\n\r\n"
    b"Original-Recipient: rfc822;x@example.org\r\nFinal-Recipient: rfc822; X@example.org\r\n"
    b"Action: failed\r\nStatus: 5.1.1 (no such user)\r\nRemote-MTA: dns; mx.example.org\r\n"
    b"Diagnostic-Code: smtp; 550 5.1.1 <x@example.org>:\r\n  Recipient address rejected\r\n\r\n"
    b"Final-Recipient: rfc822; y@example.org\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n"
)


@pytest.mark.parametrize("encoded", [False, True])
def test_a_bounce(encoded: bool) -> None:
    import base64

    status = base64.encodebytes(STATUS) if encoded else STATUS
    cte = b"Content-Transfer-Encoding: base64\r\n" if encoded else b""
    raw = BOUNCE.replace(b"{cte}", cte).replace(b"{status}", status)
    dsn = parse_message(raw).dsn
    assert dsn is not None
    assert dsn.reporting_mta == "mx.example.net"
    first, second = dsn.recipients
    assert (first.original_recipient, first.final_recipient) == ("x@example.org", "X@example.org")
    assert (first.action, first.status, first.remote_mta) == ("failed", "5.1.1", "mx.example.org")
    # RFC 5322 2.2.3: unfolding removes the CRLF only, the indentation stays.
    assert first.diagnostic_code == "550 5.1.1 <x@example.org>:  Recipient address rejected"
    assert (second.final_recipient, second.action, second.status) == (
        "y@example.org",
        "delayed",
        "4.4.1",
    )


# -- odd messages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text", "problem"),
    [
        # A boundary declared and never used; none declared; the closing one missing.
        (b"Content-Type: multipart/mixed; boundary=zz\n\nhello\n", "hello\n", "StartBoundary"),
        (b"Content-Type: multipart/mixed\n\nhello\n", "hello\n", "NoBoundaryInMultipart"),
        (b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nunclosed\n", "unclosed", "Close"),
        # Headers without a body, a body without headers, nothing at all.
        (b"Subject: only headers\n", "", None),
        (b"hello\nworld\n", "hello\nworld\n", "MissingHeaderBodySeparator"),
        (b"", "", None),
        # Charsets: none (UTF-8 read), wrong (ASCII declared, UTF-8 sent), unknown, not text,
        # not a codec that can replace, a NUL in the name, absurdly long.
        (b"Content-Type: text/plain\n\ncaf\xc3\xa9", "café", None),
        (b"Content-Type: text/plain; charset=us-ascii\n\ncaf\xc3\xa9", "café", None),
        (b"Content-Type: text/plain; charset=x-nope\n\ncaf\xc3\xa9", "café", "x-nope"),
        (b"Content-Type: text/plain; charset=base64\n\naGk=", "aGk=", "base64"),
        (b"Content-Type: text/plain; charset=rot13\n\nuv", "uv", "rot13"),
        (b"Content-Type: text/plain; charset=idna\n\n\xff\xfe", "\ufffd\ufffd", "idna"),
        (b'Content-Type: text/plain; charset="utf\x00-8"\n\nx', "x", "charset"),
        (b"Content-Type: text/plain; charset=" + b"a" * 5000 + b"\n\nx", "x", "charset"),
        (b"Content-Type: text/plain; charset=utf-8\n\n\xff\xfeok", "\ufffd\ufffdok", None),
        (b"Content-Type: text/plain; charset=utf-16\n\n\xff", "\ufffd", None),
        # Transfer encodings: bad base64, bad quoted-printable, an unknown one.
        (b"Content-Transfer-Encoding: base64\n\n!!!not base64", "!!!not base64", "Base64"),
        (b"Content-Transfer-Encoding: quoted-printable\n\n=ZZ=4", "=ZZ=4", None),
        (b"Content-Transfer-Encoding: x-unknown\n\nraw", "raw", None),
        # A Content-Type the header parser cannot make sense of: text/plain, as RFC 2045 5.2.
        (b"Content-Type: ;;;==\n\nbody", "body", None),
        (b"Content-Type: text/\n\nbody", "body", None),
    ],
)
def test_odd_messages_parse_with_what_can_be_read(
    raw: bytes, text: str, problem: str | None
) -> None:
    m = parse_message(raw)
    assert m.text == text
    assert m.size == len(raw)
    if problem is None:
        assert not [p for p in m.problems if "charset" in p]
    else:
        assert any(problem in p for p in m.problems), m.problems
    assert summarize(raw).size == len(raw)


def test_eight_bit_headers_are_read_as_utf8_with_replacement() -> None:
    raw = (
        b"From: J\xc3\xb6rg <j\xc3\xb6rg@example.org>\r\n"
        b"Subject: latin-1 caf\xe9, utf-8 caf\xc3\xa9\r\n"
        b"To: =?x-unknown?q?a=FF?= <a@example.org>\r\n\r\nx"
    )
    m = parse_message(raw)
    assert m.subject == "latin-1 caf\ufffd, utf-8 café"
    assert m.from_ == (AddressInfo("Jörg", "jörg@example.org"),)
    assert m.to == (AddressInfo("a\ufffd", "a@example.org"),)


def test_bad_addresses_are_read_leniently_with_a_problem() -> None:
    raw = b"From: alice@example.org)<bob@evil.example>\r\nTo: not an address\r\n\r\nx"
    m = parse_message(raw)
    assert m.problems and all(isinstance(p, str) for p in m.problems)
    assert m.to == (AddressInfo("not an address", ""),)
    assert all("\n" not in box.address for box in m.from_)


def test_dates() -> None:
    assert parse_message(b"Date: 1 Oct 2024 10:00 +0100\n\nx").date_iso == (
        "2024-10-01T10:00:00+01:00"
    )
    m = parse_message(b"Date: yesterday at noon\n\nx")
    assert (m.date, m.date_iso) == ("yesterday at noon", None)
    assert parse_message(b"Date: " + b"1 " * 5000 + b"\n\nx").date_iso is None


def test_attachment_names_in_every_encoding() -> None:
    names = [
        ('attachment; filename="plain.txt"', "plain.txt"),
        ("attachment; filename*=iso-8859-1''caf%E9.txt", "café.txt"),
        ("attachment; filename*0*=utf-8''a%C3%A9; filename*1=b.txt", "aéb.txt"),
        ('attachment; filename="=?utf-8?b?5pel5pys6KqeLnR4dA==?="', "日本語.txt"),
        ("attachment", None),
    ]
    parts = "".join(
        f"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: {disp}\r\n\r\nx\r\n"
        for disp, _ in names
    )
    raw = f"Content-Type: multipart/mixed; boundary=b\r\n\r\n{parts}--b--\r\n".encode()
    assert [a.name for a in parse_message(raw).attachments] == [name for _, name in names]


def test_limits_are_checked_as_given() -> None:
    two = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b\n\ny\n--b--\n"
    with pytest.raises(MessageParseError, match=r"more than 2 MIME parts \(ParseLimits.max_parts"):
        parse_message(two, limits=ParseLimits(max_parts=2))
    assert parse_message(two, limits=ParseLimits(max_parts=3)).text == "x\ny"
    with pytest.raises(ValueError, match="max_depth"):
        ParseLimits(max_depth=0)


# -- hypothesis -----------------------------------------------------------------------------

WORDS = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\x7f"),
    min_size=1,
    max_size=30,
).map(lambda text: " ".join(text.split()) or "x")
LOCAL = st.from_regex(r"[a-z0-9]{1,12}(\.[a-z0-9]{1,8})?", fullmatch=True)
DOMAIN = st.from_regex(r"[a-z]{1,10}\.(org|net|example)", fullmatch=True)
NAME = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters='\\"\x7f'),
    max_size=20,
).map(lambda text: " ".join(text.split()))
FILE_NAME = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters='\\"\x7f'),
    min_size=1,
    max_size=40,
).map(lambda text: " ".join(text.split()) or "f")


@st.composite
def messages(draw: st.DrawFn) -> tuple[EmailMessage, list[tuple[str, bytes]]]:
    message = EmailMessage()
    message["Subject"] = draw(WORDS)
    message["From"] = f'"{draw(NAME)}" <{draw(LOCAL)}@{draw(DOMAIN)}>'
    recipients = draw(st.lists(st.tuples(NAME, LOCAL, DOMAIN), min_size=1, max_size=3))
    message["To"] = ", ".join(f'"{n}" <{local}@{domain}>' for n, local, domain in recipients)
    message.set_content(draw(st.text(max_size=300)).replace("\r", ""))
    if draw(st.booleans()):
        message.add_alternative(f"<p>{draw(WORDS)}</p>", subtype="html")
    files = draw(st.lists(st.tuples(FILE_NAME, st.binary(max_size=200)), max_size=3))
    for name, data in files:
        message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return message, files


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_the_parser_agrees_with_the_email_package(
    built: tuple[EmailMessage, list[tuple[str, bytes]]],
) -> None:
    message, files = built
    data = message.as_bytes(policy=policy.SMTP)
    reference = message_from_bytes(data, policy=policy.default)
    # FACTS.md: policy.SMTP can fold a quoted name with a comma into two mailboxes; such bytes
    # are ambiguous, and no reader can be compared with another on them.
    assume(reference["To"].addresses == message["To"].addresses)
    assume(reference["From"].addresses == message["From"].addresses)
    parsed = parse_message(data)
    assert parsed.subject == str(reference["Subject"])
    ours = [(box.name, box.address) for box in (*parsed.from_, *parsed.to)]
    # The email package keeps the folding blank before an encoded display name; a phrase's
    # surrounding blanks mean nothing (RFC 5322 3.2.5), and this parser drops them.
    theirs = [
        (address.display_name.strip(), address.addr_spec)
        for name in ("From", "To")
        for address in reference[name].addresses
    ]
    assert ours == theirs
    body = reference.get_body(("plain",))
    assert body is not None
    assert parsed.text == body.get_content()
    html = reference.get_body(("html",))
    assert parsed.html == (html.get_content() if html is not None else None)
    assert [(a.name, a.size, a.sha256) for a in parsed.attachments] == [
        (name, len(data), hashlib.sha256(data).hexdigest()) for name, data in files
    ]
    assert [(p.name, p.payload) for p in attachment_parts(data)] == files


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_parse_or_fail_cleanly(data: bytes) -> None:
    with contextlib.suppress(MessageParseError):
        parse_message(data)
    assert summarize(data).size == len(data)


MIME_PIECES = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: text/plain; charset=x-bad\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Disposition: attachment; filename*=utf-8''%2E%2E%2Fx\r\n",
        b"Subject: =?utf-8?q?=0D=0A?=\r\n",
        b"\r\n",
        b"--b\r\n",
        b"--b--\r\n",
        b"=?utf-8?b?////?=\r\n",
        b"x\xff\xfe\r\n",
        b"\r",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(MIME_PIECES, max_size=40))
def test_mime_shaped_garbage_parses_or_fails_cleanly(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    with contextlib.suppress(MessageParseError):
        parse_message(data, limits=ParseLimits(max_depth=5, max_parts=20))
    summarize(data, limits=ParseLimits(max_depth=5, max_parts=20))


# -- the text view of HTML bodies ------------------------------------------------------------


def test_html_text() -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body><p>Hi &amp; <b>there</b>"
        "</p><script>alert(1)</script><div>bye</div> a < b <!-- hidden --> d</body></html>"
    )
    assert html_text(html) == "Hi & there\n\nbye\na < b d"


@pytest.mark.parametrize(
    "hostile",
    ["<!--" * 65536, "<a " * 87000, "<" * 262144, "<a b=\"" * 43000, "<script>" * 32768,
     "<![CDATA[" * 29000, "&#" * 131072],
)  # fmt: skip
def test_html_text_is_linear_on_hostile_html(hostile: str) -> None:
    """html.parser takes ~30 s on 256 KiB of unclosed comments on Python 3.11; this must not."""
    started = time.perf_counter()
    html_text(hostile)
    assert time.perf_counter() - started < 3
