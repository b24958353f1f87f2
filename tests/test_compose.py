"""Message building, wire bytes, .eml reading, Bcc stripping and dot-stuffing."""

from __future__ import annotations

import email
import email.policy
import os
import re
import stat
import tempfile
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailctl.errors import (
    AddressError,
    ExitCode,
    HeaderInjectionError,
    InputDataError,
    MessageTooLargeError,
    NoInputError,
)
from mailctl.mime.compose import (
    AttachmentSpec,
    ComposeRequest,
    compose,
    dot_stuff,
    dot_unstuff,
    envelope_for,
    guess_content_type,
    message_needs_smtputf8,
    request_needs_smtputf8,
    serialize,
    strip_bcc,
)
from mailctl.mime.headers import Mailbox, parse_mailbox

SENDER = Mailbox("Alice", "alice@example.org")
BOB = Mailbox("Bob", "bob@example.net")
FAST = settings(max_examples=40, deadline=None)

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4


def parse(data: bytes, *, utf8: bool = False) -> EmailMessage:
    """Read wire bytes back with the email package (RFC 6532 headers decoded when utf8)."""
    if utf8:  # composed bodies are 7-bit, so the whole message decodes as UTF-8
        message = email.message_from_string(data.decode("utf-8"), policy=email.policy.default)
    else:
        message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def shape(part: EmailMessage) -> Any:
    """The MIME tree as nested (type, children) tuples, leaves as plain type strings."""
    if part.is_multipart():
        return (part.get_content_type(), [shape(child) for child in part.iter_parts()])  # type: ignore[arg-type]
    return part.get_content_type()


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def request(**kwargs: Any) -> ComposeRequest:
    kwargs.setdefault("sender", SENDER)
    kwargs.setdefault("to", (BOB,))
    return ComposeRequest(**kwargs)


def wire(req: ComposeRequest, *, utf8: bool = False) -> bytes:
    return serialize(compose(req), utf8=utf8)


# --------------------------------------------------------------------------- structure


def test_text_only_is_text_plain_with_a_final_newline() -> None:
    message = parse(wire(request(subject="hi", text="hello")))
    assert shape(message) == "text/plain"
    assert message.get_content() == "hello\r\n"  # CRLF on the wire
    assert message["Content-Transfer-Encoding"] == "7bit"
    assert message["MIME-Version"] == "1.0"


def test_html_only_is_text_html() -> None:
    assert shape(parse(wire(request(html="<p>hi</p>")))) == "text/html"


def test_no_body_is_an_empty_text_part() -> None:
    message = parse(wire(request()))
    assert shape(message) == "text/plain"
    assert message.get_content() == "\r\n"


def test_text_and_html_are_alternatives_html_last() -> None:
    message = parse(wire(request(text="plain", html="<b>rich</b>")))
    assert shape(message) == ("multipart/alternative", ["text/plain", "text/html"])


def test_attachments_make_multipart_mixed(tmp_path: Path) -> None:
    pdf = write(tmp_path, "report.pdf", PDF)
    message = parse(wire(request(text="see attached", attachments=(AttachmentSpec(pdf),))))
    assert shape(message) == ("multipart/mixed", ["text/plain", "application/pdf"])
    part = next(iter(message.iter_attachments()))
    assert part.get_filename() == "report.pdf"
    assert part.get_content_disposition() == "attachment"
    assert part.get_content() == PDF


def test_inline_images_make_multipart_related_around_the_html(tmp_path: Path) -> None:
    logo = write(tmp_path, "logo.png", PNG)
    req = request(html='<img src="cid:logo.png">', attachments=(AttachmentSpec(logo, inline=True),))
    message = parse(wire(req))
    assert shape(message) == ("multipart/related", ["text/html", "image/png"])
    assert message.get_param("type") == "text/html"  # RFC 2387 3.1
    image = message.get_payload()[1]  # type: ignore[index]
    assert image["Content-ID"] == "<logo.png>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == PNG


def test_every_part_together(tmp_path: Path) -> None:
    logo = write(tmp_path, "logo.png", PNG)
    pdf = write(tmp_path, "report.pdf", PDF)
    req = request(
        text="plain",
        html='<img src="cid:logo.png">',
        attachments=(AttachmentSpec(pdf), AttachmentSpec(logo, inline=True)),
    )
    assert shape(parse(wire(req))) == (
        "multipart/mixed",
        [
            (
                "multipart/alternative",
                ["text/plain", ("multipart/related", ["text/html", "image/png"])],
            ),
            "application/pdf",
        ],
    )


def test_attachments_without_a_body_still_get_a_text_part(tmp_path: Path) -> None:
    pdf = write(tmp_path, "a.pdf", PDF)
    message = parse(wire(request(attachments=(AttachmentSpec(pdf),))))
    assert shape(message) == ("multipart/mixed", ["text/plain", "application/pdf"])


def test_inline_without_html_is_refused(tmp_path: Path) -> None:
    logo = write(tmp_path, "logo.png", PNG)
    with pytest.raises(InputDataError, match="inline attachments need an HTML body"):
        compose(request(text="x", attachments=(AttachmentSpec(logo, inline=True),)))


# --------------------------------------------------------------------------- headers


def test_bcc_never_reaches_the_message_but_reaches_the_envelope() -> None:
    secret = Mailbox("Secret", "hidden@example.com")
    req = request(bcc=(secret,), cc=(Mailbox("", "carol@example.com"),), text="x")
    message = compose(req)
    data = serialize(message)
    assert "Bcc" not in message
    assert b"bcc" not in data.lower()
    assert b"hidden@example.com" not in data
    envelope = envelope_for(req, smtputf8=False)
    assert envelope.sender == "alice@example.org"
    assert envelope.recipients == ("bob@example.net", "carol@example.com", "hidden@example.com")


def test_envelope_recipients_are_unique_by_mailbox() -> None:
    req = request(
        to=(BOB, Mailbox("", "bob@EXAMPLE.net")),
        cc=(Mailbox("", "Bob@example.net"),),
        bcc=(BOB,),
    )
    # RFC 5321 2.4: the domain is case-insensitive, the local part may not be.
    assert envelope_for(req, smtputf8=False).recipients == ("bob@example.net", "Bob@example.net")


def test_date_and_message_id_are_generated_and_well_formed() -> None:
    first = parse(wire(request(text="x")))
    second = parse(wire(request(text="x")))
    date = parsedate_to_datetime(str(first["Date"]))
    assert date.tzinfo is not None
    assert abs(datetime.now(date.tzinfo) - date) < timedelta(minutes=5)
    assert re.fullmatch(r"<[^<>@\s]+@example\.org>", str(first["Message-ID"]))
    assert first["Message-ID"] != second["Message-ID"]


def test_message_id_domain_and_idn_sender() -> None:
    custom = parse(wire(request(text="x", message_id_domain="mail.example.com")))
    assert str(custom["Message-ID"]).endswith("@mail.example.com>")
    idn = parse(wire(request(sender=Mailbox("", "zoe@bücher.example"), text="x")))
    assert str(idn["Message-ID"]).endswith("@xn--bcher-kva.example>")
    with pytest.raises(AddressError):
        compose(request(message_id_domain="bad domain"))


def test_date_and_message_id_may_be_given() -> None:
    extra = (("Date", "Tue, 07 Jan 2025 10:00:00 +0100"), ("Message-ID", "<given.1@example.org>"))
    message = parse(wire(request(text="x", extra_headers=extra)))
    assert message.get_all("Date") == ["Tue, 07 Jan 2025 10:00:00 +0100"]
    assert message.get_all("Message-ID") == ["<given.1@example.org>"]


@pytest.mark.parametrize(
    ("extra", "error", "text"),
    [
        ((("Date", "x"),), InputDataError, "not an RFC 5322 date"),
        (
            (
                ("Date", "Tue, 07 Jan 2025 10:00:00 +0100"),
                ("date", "Tue, 07 Jan 2025 10:00:00 +0100"),
            ),
            InputDataError,
            "more than once",
        ),
        ((("Content-Type", "text/html"),), InputDataError, "set by mailctl"),
        ((("Bcc", "x@example.org"),), InputDataError, "use --bcc"),
        ((("X-A b", "v"),), HeaderInjectionError, "not a valid header field name"),
        ((("X-Note", "a\r\nBcc: evil@example.org"),), HeaderInjectionError, "line break"),
    ],
)
def test_extra_headers_are_validated_in_compose_too(
    extra: tuple[tuple[str, str], ...], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        compose(request(text="x", extra_headers=extra))


def test_extra_headers_are_written_in_order() -> None:
    extra = (("X-One", "1"), ("Sender", "Desk <desk@example.org>"), ("X-Two", "2"))
    message = parse(wire(request(text="x", extra_headers=extra)))
    assert message["X-One"] == "1" and message["X-Two"] == "2"
    assert message["Sender"].addresses[0].addr_spec == "desk@example.org"
    names = [name for name in message if name.startswith("X-")]
    assert names == ["X-One", "X-Two"]


def test_extra_content_headers_survive_set_content() -> None:
    """EmailMessage.set_content clears Content-* headers; extra ones are added after it."""
    for html in (None, "<p>x</p>"):
        message = parse(
            wire(request(text="x", html=html, extra_headers=(("Content-Language", "de"),)))
        )
        assert message["Content-Language"] == "de"


def test_reply_headers() -> None:
    only_parent = parse(wire(request(text="x", in_reply_to="<p.1@example.org>")))
    assert only_parent["In-Reply-To"] == "<p.1@example.org>"
    assert only_parent["References"] == "<p.1@example.org>"  # a thread starts here
    chain = parse(
        wire(
            request(
                text="x",
                in_reply_to="<p.2@example.org>",
                references="<p.1@example.org>  <p.2@example.org>",
            )
        )
    )
    assert chain["References"] == "<p.1@example.org> <p.2@example.org>"
    with pytest.raises(InputDataError, match="--in-reply-to"):
        compose(request(in_reply_to="p.1@example.org"))
    with pytest.raises(HeaderInjectionError, match="--references contains a line break"):
        compose(request(references="<a@x>\r\nBcc: evil@x"))


def test_subject_injection_is_refused() -> None:
    with pytest.raises(HeaderInjectionError) as info:
        compose(request(subject="hi\r\nBcc: evil@x"))
    assert info.value.message == "--subject contains a line break"
    assert info.value.exit_code == 65


def test_display_name_injection_is_refused() -> None:
    with pytest.raises(HeaderInjectionError, match="line break"):
        compose(request(to=(Mailbox("Bob\r\nBcc: evil@x", "bob@example.net"),)))


# --------------------------------------------------------------------------- non-ASCII


def test_non_ascii_headers_are_encoded_for_ascii_wire(tmp_path: Path) -> None:
    cv = write(tmp_path, "cv.pdf", PDF)
    req = request(
        sender=parse_mailbox("--from", "Zoë Ünïcode <zoe@bücher.example>"),
        to=(Mailbox("Jürgen Groß", "juergen@example.net"), Mailbox("李小龍", "li@example.cn")),
        subject="Grüße aus Köln — 東京",
        text="Grüße\n",
        attachments=(AttachmentSpec(cv, filename="résumé.pdf"),),
    )
    data = wire(req)
    assert data.isascii()
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"=?utf-8?" in head
    assert b"zoe@xn--bcher-kva.example" in head
    assert b"filename*=utf-8''r%C3%A9sum%C3%A9.pdf" in data  # RFC 2231
    message = parse(data)
    assert str(message["Subject"]) == "Grüße aus Köln — 東京"
    assert message["From"].addresses[0].display_name == "Zoë Ünïcode"
    assert [a.display_name for a in message["To"].addresses] == ["Jürgen Groß", "李小龍"]
    assert next(iter(message.iter_attachments())).get_filename() == "résumé.pdf"
    assert message.get_body(("plain",)).get_content() == "Grüße\r\n"  # type: ignore[union-attr]


def test_utf8_wire_keeps_unicode_headers() -> None:
    req = request(
        sender=Mailbox("Jöran", "jöran@exämple.org"), subject="Grüße", text="hi", to=(BOB,)
    )
    assert request_needs_smtputf8(req)
    message = compose(req)
    assert message_needs_smtputf8(message)
    with pytest.raises(InputDataError, match="non-ASCII local part"):
        serialize(message)
    data = serialize(message, utf8=True)
    assert "From: Jöran <jöran@exämple.org>".encode() in data
    assert "Subject: Grüße".encode() in data
    parsed = parse(data, utf8=True)
    assert parsed["From"].addresses[0].addr_spec == "jöran@exämple.org"
    assert envelope_for(req, smtputf8=True).sender == "jöran@exämple.org"


def test_body_encodings_stay_seven_bit() -> None:
    latin = parse(wire(request(text="Hello from Köln, see you soon.")))
    assert latin["Content-Transfer-Encoding"] == "quoted-printable"
    cjk = parse(wire(request(text="東京都" * 40)))
    assert cjk["Content-Transfer-Encoding"] == "base64"
    assert cjk.get_content() == "東京都" * 40 + "\r\n"
    long_line = "word " * 300
    data = wire(request(text=long_line + "\n.\n\x00end"))
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert b"\x00" not in data
    assert parse(data).get_content().replace("\r\n", "\n") == long_line + "\n.\n\x00end\n"


def test_body_line_endings_are_normalised() -> None:
    data = wire(request(text="a\r\nb\rc\nd"))
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", data) is None
    assert parse(data).get_content().replace("\r\n", "\n") == "a\nb\nc\nd\n"


# --------------------------------------------------------------------------- attachments


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "application/pdf"),
        ("photo.JPG", "image/jpeg"),
        ("notes.txt", "text/plain"),
        ("archive.tar.gz", "application/gzip"),
        ("forwarded.eml", "application/octet-stream"),
        ("no-extension", "application/octet-stream"),
        ("weird.zzzunknown", "application/octet-stream"),
    ],
)
def test_content_type_guess(name: str, expected: str) -> None:
    assert guess_content_type(name) == expected


def test_filename_override_sets_name_and_type(tmp_path: Path) -> None:
    path = write(tmp_path, "upload.bin", b"%PDF")
    message = parse(wire(request(attachments=(AttachmentSpec(path, filename="Q3 report.pdf"),))))
    part = next(iter(message.iter_attachments()))
    assert part.get_filename() == "Q3 report.pdf"
    assert part.get_content_type() == "application/pdf"


@pytest.mark.parametrize(
    ("filename", "error", "text"),
    [
        ("evil\r\nContent-Type: text/html", HeaderInjectionError, "attachment file name contains"),
        ("bad\nname.pdf", HeaderInjectionError, "line break"),
        ("../../etc/passwd", InputDataError, "not a bare file name"),
        ("dir\\file", InputDataError, "not a bare file name"),
        ("", InputDataError, "not a bare file name"),
    ],
)
def test_bad_attachment_names(
    tmp_path: Path, filename: str, error: type[Exception], text: str
) -> None:
    path = write(tmp_path, "a.pdf", PDF)
    with pytest.raises(error, match=re.escape(text)):
        compose(request(attachments=(AttachmentSpec(path, filename=filename),)))


def test_inline_names_must_work_in_cid_urls(tmp_path: Path) -> None:
    path = write(tmp_path, "my logo.png", PNG)
    with pytest.raises(InputDataError, match="cid: URL"):
        compose(request(html="x", attachments=(AttachmentSpec(path, inline=True),)))
    other = write(tmp_path, "logo.png", PNG)
    twice = (AttachmentSpec(other, inline=True), AttachmentSpec(other, inline=True))
    with pytest.raises(InputDataError, match="same name"):
        compose(request(html="x", attachments=twice))


def test_missing_attachment_is_no_input(tmp_path: Path) -> None:
    with pytest.raises(NoInputError, match="does not exist") as info:
        compose(request(attachments=(AttachmentSpec(tmp_path / "nope.pdf"),)))
    assert info.value.exit_code == ExitCode.NOINPUT == 66
    with pytest.raises(NoInputError):
        compose(request(attachments=(AttachmentSpec(tmp_path / "nope" / "x.pdf"),)))


def test_directory_fifo_and_device_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # a FIFO with no writer: opening it must not block
    for path in (tmp_path, fifo, Path("/dev/null")):
        with pytest.raises(InputDataError, match="not a regular file"):
            compose(request(attachments=(AttachmentSpec(path, filename="x.bin"),)))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_attachment_is_no_input(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.pdf", PDF)
    path.chmod(0)
    try:
        with pytest.raises(NoInputError, match="not readable"):
            compose(request(attachments=(AttachmentSpec(path),)))
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_permission_denied_is_no_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs as root too: the open itself is made to fail the way a mode-000 file fails."""
    path = write(tmp_path, "secret.pdf", PDF)
    real_open = os.open

    def refuse(target: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(target) == path:
            raise PermissionError(13, "Permission denied", str(target))
        return real_open(target, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)  # mailctl.inputs opens attachments
    with pytest.raises(NoInputError, match="not readable"):
        compose(request(attachments=(AttachmentSpec(path),)))


def test_attachments_have_a_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCTL_MAX_INPUT", "1000")
    small = write(tmp_path, "a.bin", b"x" * 600)
    with pytest.raises(MessageTooLargeError):
        compose(request(attachments=(AttachmentSpec(small), AttachmentSpec(small, filename="b"))))


# --------------------------------------------------------------------------- round trip

SAFE_CHARS = st.characters(
    exclude_categories=("Cc", "Cs", "Zl", "Zp", "Zs"), include_characters=" "
)
# CPython's readers strip and split on Unicode blanks (NBSP...) in phrases: that is their
# quirk, not the writer's, so names and subjects here use the ASCII space only.
SUBJECTS = st.text(SAFE_CHARS, max_size=150).filter(lambda s: "=?" not in s and s == s.strip())
NAMES = st.text(SAFE_CHARS, max_size=60).map(lambda s: " ".join(s.replace("@", "").split()))
BODIES = st.text(st.characters(exclude_categories=("Cs",)), max_size=400)
FILE_NAMES = st.text(SAFE_CHARS, min_size=1, max_size=40).filter(
    lambda s: "/" not in s and "\\" not in s and s not in {".", ".."} and s == s.strip()
)
CID_NAMES = st.from_regex(r"[A-Za-z0-9_-]{1,12}\.(png|gif)", fullmatch=True)


def phrase_of(raw: str) -> str:
    """Decode a display name as RFC 2047 6.2 says: blanks between encoded words vanish.

    CPython's address parser keeps them, so encoded phrases are decoded as unstructured text.
    """
    header = email.policy.default.header_factory("From", raw)
    if "=?" not in raw:
        return str(header.addresses[0].display_name)
    return str(email.policy.default.header_factory("X-Phrase", raw[: raw.rindex("<")].strip()))


def normalised(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


@FAST
@given(
    subject=SUBJECTS,
    name=NAMES.filter(lambda s: "=?" not in s),
    text=BODIES,
    html=st.none() | BODIES,
    files=st.lists(st.tuples(FILE_NAMES, st.binary(max_size=300)), max_size=2),
    inline=st.lists(
        st.tuples(CID_NAMES, st.binary(max_size=100)), max_size=2, unique_by=lambda t: t[0]
    ),
    utf8=st.booleans(),
)
def test_composed_messages_parse_back_to_the_same_content(
    subject: str,
    name: str,
    text: str,
    html: str | None,
    files: list[tuple[str, bytes]],
    inline: list[tuple[str, bytes]],
    utf8: bool,
) -> None:
    if html is None:
        inline = []
    with tempfile.TemporaryDirectory() as directory:
        specs = [
            AttachmentSpec(write(Path(directory), f"f{i}", data), filename=filename)
            for i, (filename, data) in enumerate(files)
        ] + [
            AttachmentSpec(write(Path(directory), f"i{i}", data), filename=filename, inline=True)
            for i, (filename, data) in enumerate(inline)
        ]
        req = request(
            sender=Mailbox(name, "alice@example.org"),
            to=(Mailbox(name, "bob@bücher.example"), BOB),
            subject=subject,
            text=text,
            html=html,
            attachments=tuple(specs),
        )
        data = wire(req, utf8=utf8)

    assert re.search(rb"\r(?!\n)|(?<!\r)\n", data) is None
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert utf8 or data.isascii()
    message = parse(data, utf8=utf8)
    assert str(message.get("Subject", "")) == subject
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    raw_from = re.search(r"^From:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.M)
    assert raw_from is not None
    assert phrase_of(raw_from.group(1).replace("\r\n", "").strip()) == name
    domain = "bücher.example" if utf8 else "xn--bcher-kva.example"
    assert [a.addr_spec for a in message["To"].addresses] == [f"bob@{domain}", "bob@example.net"]
    plain = message.get_body(("plain",))
    assert plain is not None and normalised(plain.get_content()) == normalised(text)
    if html is not None:
        rich = message.get_body(("html",))
        assert rich is not None and normalised(rich.get_content()) == normalised(html)
    found = [
        (part.get_filename(), part.get_payload(decode=True), part.get_content_disposition())
        for part in message.walk()
        if part.get_content_disposition() is not None
    ]
    inline_found = [(n, d) for n, d, disp in found if disp == "inline"]
    attached = [(n, d) for n, d, disp in found if disp == "attachment"]
    assert inline_found == inline
    assert attached == files


# --------------------------------------------------------------------------- strip_bcc


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b"To: a@x\r\nBcc: b@y\r\nSubject: s\r\n\r\nBcc: body@z\r\n",
            b"To: a@x\r\nSubject: s\r\n\r\nBcc: body@z\r\n",
        ),
        (b"To: a@x\nbcc: b@y,\n c@y\n\tdone@y\nSubject: s\n\nbody", b"To: a@x\nSubject: s\n\nbody"),
        (b"BCC: b@y\r\nTo: a@x\r\n\r\n", b"To: a@x\r\n\r\n"),
        (b"Resent-Bcc: b@y\nX-Bcc-Note: kept\n\nb", b"X-Bcc-Note: kept\n\nb"),
        (b"Bcc : obsolete@y\nTo: a@x\n\nb", b"To: a@x\n\nb"),
        (
            b"From nobody Mon Jan  1\nBcc: b@y\nTo: a@x\n\nb",
            b"From nobody Mon Jan  1\nTo: a@x\n\nb",
        ),
        # A bare CR ends a line for the email parser and for dot_stuff: strip what follows it.
        (b"Subject: x\rBcc: b@y\r\nTo: a@x\r\n\r\n", b"Subject: x\rTo: a@x\r\n\r\n"),
        (b"To: a@x\nBcc: b@y", b"To: a@x\n"),
        (b"Bcc:\n", b""),
        # The parser ends the header block at the first non-field line.
        (b"To: a@x\nnot a header\nBcc: b@y\n\n", b"To: a@x\nnot a header\nBcc: b@y\n\n"),
        (b"To: a@x\r\n\r\n", b"To: a@x\r\n\r\n"),
    ],
)
def test_strip_bcc_examples(raw: bytes, expected: bytes) -> None:
    assert strip_bcc(raw) == expected


HEADER_NAMES = st.sampled_from(
    ["To", "Subject", "X-Bcc-Info", "Bccx", "Bcc", "bcc", "BCC", "Resent-Bcc", "Cc"]
)
VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)


@settings(max_examples=150, deadline=None)
@given(
    fields=st.lists(
        st.tuples(HEADER_NAMES, VALUES, st.lists(VALUES.map(lambda v: " " + v), max_size=2)),
        min_size=1,
        max_size=8,
    ),
    eol=st.sampled_from([b"\r\n", b"\n"]),
    body=st.binary(max_size=200),
)
def test_strip_bcc_removes_bcc_and_keeps_every_other_byte(
    fields: list[tuple[str, str, list[str]]], eol: bytes, body: bytes
) -> None:
    def block(name: str, value: str, more: list[str]) -> bytes:
        return eol.join(f"{line}".encode() for line in [f"{name}: {value}", *more]) + eol

    is_bcc = [name.lower() in {"bcc", "resent-bcc"} for name, _, _ in fields]
    raw = b"".join(block(*field) for field in fields) + eol + body
    expected = b"".join(block(*f) for f, bcc in zip(fields, is_bcc, strict=True) if not bcc)
    out = strip_bcc(raw)
    assert out == expected + eol + body
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    assert "Bcc" not in parsed and "Resent-Bcc" not in parsed


# --------------------------------------------------------------------------- dot-stuffing


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", b""),
        (b"a", b"a\r\n"),
        (b".", b"..\r\n"),
        (b"a\n.\nb\n", b"a\r\n..\r\nb\r\n"),
        (b".hidden\r\n..two\r\n", b"..hidden\r\n...two\r\n"),
        (b"x\r.\r", b"x\r\n..\r\n"),
        # SMTP smuggling: "\n.\r\n" must not become an end-of-data on the server.
        (b"a\n.\r\nMAIL FROM:<x@y>\r\n", b"a\r\n..\r\nMAIL FROM:<x@y>\r\n"),
        (b"a\r\n\r\n", b"a\r\n\r\n"),
    ],
)
def test_dot_stuff_examples(data: bytes, expected: bytes) -> None:
    assert dot_stuff(data) == expected


LINE_BITS = st.lists(
    st.sampled_from([b".", b"..", b"\r", b"\n", b"\r\n", b"a", b" ", b"\x00", b"\xff"]), max_size=40
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(LINE_BITS, st.binary(max_size=200)))
def test_dot_stuff_round_trip_and_wire_safety(data: bytes) -> None:
    out = dot_stuff(data)
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", out) is None  # CRLF only
    assert out == b"" or out.endswith(b"\r\n")
    lines = out.split(b"\r\n")[:-1]
    assert b"." not in lines  # nothing the server could take as the end of data
    assert all(not line.startswith(b".") or line.startswith(b"..") for line in lines)
    crlf = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    if crlf and not crlf.endswith(b"\r\n"):
        crlf += b"\r\n"
    assert dot_unstuff(out) == crlf


@pytest.mark.parametrize(
    ("text", "cte"),
    [
        ("", "7bit"),
        ("a" * 78, "7bit"),
        ("a" * 79, "quoted-printable"),  # RFC 5322 2.1.1: lines should stay within 78
        ("short\n" + "a" * 79 + "\nshort", "quoted-printable"),
        ("short\n" + "a" * 78 + "\n", "7bit"),
        ("caf\u00e9 au lait, please\n", "quoted-printable"),
        ("\u00e9" * 40, "base64"),
    ],
)
def test_text_cte_by_line_length_and_bytes(text: str, cte: str) -> None:
    from mailctl.mime.compose import text_cte

    assert text_cte(text) == cte


@given(st.text(alphabet=st.sampled_from([chr(c) for c in range(0, 0x82)] + ["é", "\u2028"])))
@settings(max_examples=2000, deadline=None)
def test_plain_7bit_is_the_regex_it_replaces(text: str) -> None:
    from mailctl.mime.compose import _PLAIN_7BIT, plain_7bit

    assert plain_7bit(text) == (_PLAIN_7BIT.fullmatch(text) is not None), repr(text)
