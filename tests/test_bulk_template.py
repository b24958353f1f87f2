"""Bulk-send templates: loading, per-row errors, the sandbox, attachments, and the wire bytes.

Through the public face of mime/template.py (MessageTemplate.load/render/reference); the
messages are read back with the email package, as a receiving mail reader would.
"""

from __future__ import annotations

import email
import email.policy
import os
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from mailctl.errors import (
    AddressError,
    ExitCode,
    HeaderInjectionError,
    InputDataError,
    NoInputError,
    UndefinedColumn,
)
from mailctl.mime.compiled import Skeleton, check_header_block
from mailctl.mime.template import MessageTemplate

MSGID = "<row-7.x@bulk.example.org>"
DATE = "Tue, 07 Jan 2025 10:00:00 +0100"
ROW = {"name": "Bob", "email": "bob@example.com", "order": "42"}

PLAIN = """From: Alice <alice@example.org>
To: {{ mailbox(name, email) }}
Bcc: archive@example.org
Subject: Order {{ order }} for {{ name }}

Dear {{ name }},
your order {{ order }} has shipped.
"""


def write(folder: Path, text: str, name: str = "t.txt") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def load(folder: Path, text: str = PLAIN, **kwargs: object) -> MessageTemplate:
    return MessageTemplate.load(write(folder, text), **kwargs)  # type: ignore[arg-type]


def parse(data: bytes) -> EmailMessage:
    """Read wire bytes as a reader does (line ends are CRLF on the wire, LF in Python)."""
    message = email.message_from_bytes(data.replace(b"\r\n", b"\n"), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def render(template: MessageTemplate, **fields: str) -> EmailMessage:
    return parse(template.render({**ROW, **fields}, message_id=MSGID, date=DATE).data)


# ---------------------------------------------------------------- loading


def test_a_plain_template_renders_a_message_with_bcc_only_in_the_envelope(tmp_path: Path) -> None:
    template = load(tmp_path)
    rendered = template.render(ROW, message_id=MSGID, date=DATE)
    message = parse(rendered.data)
    assert message["Subject"] == "Order 42 for Bob"
    assert message["To"] == "Bob <bob@example.com>"
    assert message["Message-ID"] == MSGID
    assert message["Date"] == DATE
    assert "Bcc" not in message
    assert b"archive@" not in rendered.data
    assert [box.addr_spec for box in rendered.recipients] == [
        "bob@example.com",
        "archive@example.org",
    ]
    assert rendered.sender.addr_spec == "alice@example.org"
    assert rendered.to == "bob@example.com"
    assert rendered.message_id == MSGID
    assert not rendered.smtputf8
    assert message.get_content() == "Dear Bob,\nyour order 42 has shipped.\n"
    assert b"\r\n" in rendered.data
    assert b"\n" not in rendered.data.replace(b"\r\n", b"")


def test_the_fast_bytes_equal_the_reference_for_a_plain_message(tmp_path: Path) -> None:
    template = load(tmp_path)
    fast = template.render(ROW, message_id=MSGID, date=DATE).data
    assert fast == template.reference(ROW, message_id=MSGID, date=DATE)


def test_columns_and_digest(tmp_path: Path) -> None:
    template = load(tmp_path)
    assert template.columns == {"name", "email", "order"}
    assert len(template.digest) == 64
    assert load(tmp_path).digest == template.digest
    assert load(tmp_path, PLAIN + "P.S.\n").digest != template.digest
    html = write(tmp_path, "<p>{{ extra }}</p>", "t.html")
    with_html = load(tmp_path, html_path=html)
    assert with_html.digest != template.digest
    assert "extra" in with_html.columns


def test_the_default_sender_fills_in_a_missing_from(tmp_path: Path) -> None:
    text = PLAIN.replace("From: Alice <alice@example.org>\n", "")
    with pytest.raises(InputDataError, match="no From header"):
        load(tmp_path, text)
    template = load(tmp_path, text, default_from="Carol <carol@example.org>")
    assert render(template)["From"] == "Carol <carol@example.org>"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("From: a@example.org\nthis is not a header\n\nbody", 2, "expected a header line"),
        ("From: a@example.org\nSubject: {{ name \n\nbody", 2, "header Subject"),
        ("From: a@example.org\n\nline one\n{% if x %}\n", 4, "the body"),
        ("From: a@example.org\nDate: {{ d }}\n\nbody", 2, "cannot set Date"),
        ("From: a@example.org\nMessage-ID: <a@b>\n\nbody", 2, "cannot set Message-ID"),
        ("From: a@example.org\nContent-Type: text/html\n\nbody", 2, "set by mailctl"),
        ("From: a@example.org\nSubject: a\nSubject: b\n\nbody", 3, "more than one Subject"),
        ("From: a@example.org\nTo: {% include 'x' %}\n\nbody", 2, "not supported"),
        ("From: not an address\n\nbody", 1, "From"),
        ("  continued\nFrom: a@example.org\n\nbody", 1, "continuation"),
    ],
)
def test_a_bad_template_names_its_file_and_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputDataError) as caught:
        MessageTemplate.load(path)
    assert caught.value.exit_code == ExitCode.DATAERR
    assert f"{path}:{line}" in caught.value.message
    assert words in caught.value.message


def test_a_missing_template_or_static_attachment_is_no_input(tmp_path: Path) -> None:
    with pytest.raises(NoInputError):
        MessageTemplate.load(tmp_path / "nope.txt")
    with pytest.raises(NoInputError):
        load(tmp_path, PLAIN.replace("\n\n", "\nAttachment: missing.pdf\n\n", 1))
    with pytest.raises(NoInputError):
        load(tmp_path, html_path=tmp_path / "nope.html")


def test_a_template_that_is_not_utf8_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"From: a@example.org\nSubject: caf\xe9\n\nbody")
    with pytest.raises(InputDataError, match=r"t\.txt:2: .*not UTF-8"):
        MessageTemplate.load(path)


# ---------------------------------------------------------------- per-row errors


def test_a_missing_column_is_an_error_naming_it(tmp_path: Path) -> None:
    template = load(tmp_path)
    with pytest.raises(UndefinedColumn) as caught:
        template.render({"name": "Bob", "email": "bob@example.com"}, message_id=MSGID)
    assert caught.value.code == "missing_column"
    assert caught.value.exit_code == ExitCode.DATAERR
    assert "'order'" in caught.value.message
    assert caught.value.details == {"column": "order"}


def test_a_cell_a_short_row_lacks_is_a_missing_column(tmp_path: Path) -> None:
    with pytest.raises(UndefinedColumn, match="'order'"):
        load(tmp_path).render({**ROW, "order": None}, message_id=MSGID)  # type: ignore[dict-item]


def test_an_empty_value_is_not_a_missing_column(tmp_path: Path) -> None:
    message = render(load(tmp_path), order="")
    assert message["Subject"] == "Order  for Bob"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("name", "Bob\r\nBcc: victim@evil.test"),
        ("name", "Bob\nX-Injected: 1"),
        ("name", "=?UTF-8?Q?a=0D=0ABcc:_x@evil.test?="),
        ("order", "42\rX: y"),
        ("order", "4\x002"),
    ],
)
def test_line_breaks_from_a_row_are_refused_naming_header_and_column(
    tmp_path: Path, column: str, value: str
) -> None:
    template = load(tmp_path)
    with pytest.raises(HeaderInjectionError) as caught:
        template.render({**ROW, column: value}, message_id=MSGID)
    assert "Subject" in caught.value.message or "To" in caught.value.message
    assert caught.value.exit_code == ExitCode.DATAERR


def test_a_line_break_in_a_subject_column_names_the_column(tmp_path: Path) -> None:
    template = load(tmp_path)
    with pytest.raises(HeaderInjectionError, match=r"header Subject.*column 'order'"):
        template.render({**ROW, "order": "1\r\nBcc: x@evil.test"}, message_id=MSGID)


def test_line_breaks_in_the_body_are_text_and_never_bare(tmp_path: Path) -> None:
    template = load(tmp_path, PLAIN.replace("Dear {{ name }}", "Dear {{ note }}"))
    data = template.render({**ROW, "note": "a\rb\nc\r\nd"}, message_id=MSGID).data
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert parse(data).get_content().startswith("Dear a\nb\nc\nd,\n")


@pytest.mark.parametrize(
    ("email_value", "error"),
    [
        ("not-an-address", AddressError),
        ("bob@example.com, eve@evil.test", None),
        ("bob@-bad-.org", AddressError),
        ('"ceo@example.com" <x@evil.test>', AddressError),
    ],
)
def test_addresses_from_a_row_are_parsed_strictly(
    tmp_path: Path, email_value: str, error: type[Exception] | None
) -> None:
    template = load(tmp_path, PLAIN.replace("{{ mailbox(name, email) }}", "{{ email }}"))
    if error is None:
        rendered = template.render({**ROW, "email": email_value}, message_id=MSGID)
        assert len(rendered.recipients) == 3
        return
    with pytest.raises(error):
        template.render({**ROW, "email": email_value}, message_id=MSGID)


def test_a_row_with_no_recipient_is_refused(tmp_path: Path) -> None:
    text = "From: a@example.org\nTo: {{ email }}\n\nhi"
    with pytest.raises(AddressError, match="no recipient"):
        load(tmp_path, text).render({"email": ""}, message_id=MSGID)


def test_a_bad_message_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="Message-ID"):
        load(tmp_path).render(ROW, message_id="<a@b>\r\nBcc: x@y")
    with pytest.raises(InputDataError, match="Message-ID"):
        load(tmp_path).render(ROW, message_id="no-brackets@example.org")


def test_names_with_commas_quotes_and_brackets_stay_one_mailbox(tmp_path: Path) -> None:
    template = load(tmp_path)
    for name in ["Smith, John", 'Bob "the builder" <b>', "O'Brien (Sales)", "Zoë Ünal"]:
        rendered = template.render({**ROW, "name": name}, message_id=MSGID)
        to = parse(rendered.data)["To"]
        assert len(to.addresses) == 1
        assert to.addresses[0].display_name == name
        assert to.addresses[0].addr_spec == "bob@example.com"


def test_a_too_long_header_line_is_refused(tmp_path: Path) -> None:
    template = load(tmp_path, PLAIN.replace("{{ mailbox(name, email) }}", "{{ email }}"))
    row = {**ROW, "email": "a" * 1000 + "@example.com"}
    with pytest.raises(InputDataError, match="998"):
        template.render(row, message_id=MSGID)
    with pytest.raises(InputDataError):
        template.reference(row, message_id=MSGID)


def test_a_long_subject_folds_and_keeps_its_meaning(tmp_path: Path) -> None:
    subject = "word " * 60 + "x" * 1200
    template = load(tmp_path, "From: a@example.org\nTo: b@example.org\nSubject: {{ s }}\n\nhi")
    data = template.render({"s": subject}, message_id=MSGID).data
    assert max(map(len, data.split(b"\r\n"))) <= 998
    assert " ".join(str(parse(data)["Subject"]).split()) == " ".join(subject.split())


def test_a_non_ascii_local_part_needs_smtputf8(tmp_path: Path) -> None:
    rendered = load(tmp_path).render({**ROW, "email": "jos\u00e9@example.com"}, message_id=MSGID)
    assert rendered.smtputf8
    message = email.message_from_string(rendered.data.decode(), policy=email.policy.SMTPUTF8)
    assert message["To"].addresses[0].username == "jos\u00e9"


def test_the_date_defaults_to_now(tmp_path: Path) -> None:
    data = load(tmp_path).render(ROW, message_id=MSGID).data
    assert parsedate_to_datetime(str(parse(data)["Date"])).year >= 2025
    with pytest.raises(InputDataError, match="Date"):
        load(tmp_path).render(ROW, message_id=MSGID, date="yesterday")


# ---------------------------------------------------------------- the sandbox


@pytest.mark.parametrize(
    "expression",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ name.__class__.__base__ }}",
        "{{ '-' * 100000000 }}",
        "{{ 10 ** (10 ** 10) }}",
        "{{ [1] * 10000000 }}",
        "{{ name.ljust(50000000) }}",
        "{{ name.center(order|int * 100000) }}",
    ],
)
def test_template_injection_in_the_template_is_refused_per_row(
    tmp_path: Path, expression: str
) -> None:
    template = load(tmp_path, PLAIN + expression + "\n")
    with pytest.raises(InputDataError) as caught:
        template.render(ROW, message_id=MSGID)
    assert "class 'str'" not in caught.value.message
    assert "unsafe" in caught.value.message
    assert caught.value.exit_code == ExitCode.DATAERR


def test_lipsum_is_not_offered(tmp_path: Path) -> None:
    template = load(tmp_path, PLAIN + "{{ lipsum(10000000) }}\n")
    assert "lipsum" in template.columns  # not a global any more: a column like any name
    with pytest.raises(UndefinedColumn, match="'lipsum'"):
        template.render(ROW, message_id=MSGID)


def test_row_values_are_data_never_templates(tmp_path: Path) -> None:
    hostile = "{{ ''.__class__.__mro__ }} {% for x in range(9) %}X{% endfor %} {{ 7*7 }}"
    message = render(load(tmp_path), name=hostile)
    assert hostile in message.get_content()
    assert "49" not in message.get_content()
    assert "<class" not in message.get_content()


def test_only_the_html_body_is_autoescaped(tmp_path: Path) -> None:
    html = write(tmp_path, "<p>Hi {{ name }}</p>\n", "t.html")
    template = load(tmp_path, html_path=html)
    message = render(template, name="<script>x</script> & co")
    assert message.get_content_type() == "multipart/alternative"
    text, html_part = message.get_payload()
    assert "<script>x</script> & co" in text.get_content()
    assert "&lt;script&gt;x&lt;/script&gt; &amp; co" in html_part.get_content()
    assert "<script>" not in html_part.get_content()
    assert message["Subject"] == "Order 42 for <script>x</script> & co"


# ---------------------------------------------------------------- attachments


ATTACHING = PLAIN.replace("\n\n", "\nAttachment: brochure.pdf\nAttachment: files/{{ file }}\n\n", 1)


@pytest.fixture
def attaching(tmp_path: Path) -> Path:
    (tmp_path / "brochure.pdf").write_bytes(b"%PDF brochure")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "inv-42.pdf").write_bytes(b"%PDF invoice 42")
    (tmp_path / "secret.txt").write_text("secret")
    return tmp_path


def test_static_and_per_row_attachments(attaching: Path) -> None:
    template = load(attaching, ATTACHING)
    message = render(template, file="inv-42.pdf")
    assert message.get_content_type() == "multipart/mixed"
    files = [(p.get_filename(), p.get_content()) for p in message.iter_attachments()]
    assert files == [("brochure.pdf", b"%PDF brochure"), ("inv-42.pdf", b"%PDF invoice 42")]
    assert "file" in template.columns


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "../../etc/passwd", "/etc/passwd", "link-out", "sub/../../secret.txt", ""],
)
def test_a_row_path_leading_outside_the_folder_is_refused(attaching: Path, path: str) -> None:
    outside = attaching / "elsewhere"
    outside.mkdir()
    (outside / "x.txt").write_text("x")
    (attaching / "files" / "link-out").symlink_to(outside / "x.txt")
    text = PLAIN.replace("\n\n", "\nAttachment: {{ file }}\n\n", 1)
    template = load(attaching, text, attachments_root=attaching / "files")
    assert render(template, file="inv-42.pdf")  # inside the folder: attached
    with pytest.raises(InputDataError) as caught:
        template.render({**ROW, "file": path}, message_id=MSGID)
    assert caught.value.exit_code == ExitCode.DATAERR
    assert "attachment path" in caught.value.message


def test_the_attachments_folder_defaults_to_the_template_folder(attaching: Path) -> None:
    text = PLAIN.replace("\n\n", "\nAttachment: {{ file }}\n\n", 1)
    template = load(attaching, text)
    message = render(template, file="files/inv-42.pdf")
    assert [p.get_filename() for p in message.iter_attachments()] == ["inv-42.pdf"]
    with pytest.raises(InputDataError, match="outside"):
        template.render({**ROW, "file": "../x"}, message_id=MSGID)


def test_a_missing_per_row_attachment_is_no_input_for_that_row(attaching: Path) -> None:
    template = load(attaching, ATTACHING)
    with pytest.raises(NoInputError):
        template.render({**ROW, "file": "nope.pdf"}, message_id=MSGID)
    assert render(template, file="inv-42.pdf")  # the next row is fine


def test_a_file_used_by_many_rows_is_read_once_and_again_when_it_changes(attaching: Path) -> None:
    template = load(attaching, ATTACHING)
    cache = template._cache
    for _ in range(5):
        render(template, file="inv-42.pdf")
    assert cache.reads == 1
    path = attaching / "files" / "inv-42.pdf"
    path.write_bytes(b"%PDF invoice 42, corrected")
    os.utime(path, ns=(1, 1))
    message = render(template, file="inv-42.pdf")
    assert cache.reads == 2
    assert list(message.iter_attachments())[1].get_content() == b"%PDF invoice 42, corrected"


def test_the_attachment_cache_is_bounded(attaching: Path) -> None:
    for number in range(20):
        (attaching / "files" / f"f{number}.bin").write_bytes(bytes([number]) * 1000)
    template = load(attaching, ATTACHING)
    template._cache.max_entries = 5
    for number in range(20):
        render(template, file=f"f{number}.bin")
    assert len(template._cache._parts) == 5


# ---------------------------------------------------------------- the skeleton and guards


def test_seven_bit_text_holding_the_boundary_is_re_encoded() -> None:
    skeleton = Skeleton(html=True, attachments=False, static=())
    first = parse(b"Subject: x\r\n" + skeleton.body("a", "<p>b</p>"))
    boundary = first.get_boundary()
    assert boundary is not None and boundary.startswith("=_")
    hostile = f"x\n--{boundary}\nContent-Type: text/html\n\n<script>\n--{boundary}--\n"
    message = parse(b"Subject: x\r\n" + skeleton.body(hostile, "<p>b</p>"))
    text, _ = message.get_payload()
    assert len(message.get_payload()) == 2
    assert text.get_content() == hostile
    assert text["Content-Transfer-Encoding"] == "quoted-printable"


@pytest.mark.parametrize(
    "block",
    [
        b"Subject: a\r\nBcc: x@evil.test\r\n",  # one field too many
        b"Subject: a\r\n \r\n",  # a blank continuation ends the block for some readers
        b"Subject: a\rBcc: x\r\n",  # a bare CR
        b"Subject: a\r\nnot a field\r\n",
    ],
)
def test_the_per_row_header_check_refuses_an_extra_line(block: bytes) -> None:
    with pytest.raises(HeaderInjectionError):
        check_header_block(block, fields=1)


def test_the_per_row_header_check_passes_folded_fields() -> None:
    check_header_block(b"Subject: a\r\n b\r\nTo: x@y.org\r\n", fields=2)
    with pytest.raises(InputDataError, match="998"):
        check_header_block(b"Subject: " + b"a" * 1000 + b"\r\n", fields=1)


def test_a_part_is_named_after_the_path_written_not_a_links_target(attaching: Path) -> None:
    (attaching / "files" / "blob-7f3a").write_bytes(b"%PDF blob")
    (attaching / "files" / "invoice.pdf").symlink_to(attaching / "files" / "blob-7f3a")
    message = render(load(attaching, ATTACHING), file="invoice.pdf")
    names = [part.get_filename() for part in message.iter_attachments()]
    assert names == ["brochure.pdf", "invoice.pdf"]


def test_a_missing_static_attachment_names_the_template_line(tmp_path: Path) -> None:
    path = write(tmp_path, PLAIN.replace("\n\n", "\nAttachment: gone.pdf\n\n", 1))
    with pytest.raises(NoInputError, match=rf"{path}:5: attachment .*gone\.pdf"):
        MessageTemplate.load(path)


def test_a_postal_address_column_does_not_hide_the_mailbox_helper(tmp_path: Path) -> None:
    template = load(tmp_path, PLAIN + "Ship to: {{ address }}\n")
    message = render(template, address="1 Main St, Springfield")
    assert message["To"].addresses[0].display_name == "Bob"
    assert "Ship to: 1 Main St, Springfield" in message.get_content()


def test_every_header_kind_renders_as_the_reference_does(tmp_path: Path) -> None:
    text = (
        "from: Alice <alice@example.org>\n"
        "sender: Bulk Robot <robot@example.org>\n"
        "to: {{ email }}\n"
        "cc: {{ cc }}\n"
        "reply-to: Help Desk <help@example.org>\n"
        "subject: Re: {{ order }}\n"
        "in-reply-to: <{{ order }}@shop.example.org>\n"
        "references: <a@example.org>\n"
        "  <{{ order }}@shop.example.org>\n"
        "X-Tag: one\n"
        "X-Tag: {{ order }}\n"
        "X-Empty: {{ cc }}\n"
        "\n"
        "hi\n"
    )
    template = load(tmp_path, text)
    row = {"email": "bob@example.com", "cc": "", "order": "42"}
    fast = template.render(row, message_id=MSGID, date=DATE).data
    assert fast == template.reference(row, message_id=MSGID, date=DATE)
    message = parse(fast)
    assert message["Sender"] == "Bulk Robot <robot@example.org>"
    assert message["In-Reply-To"] == "<42@shop.example.org>"
    assert message["References"] == "<a@example.org> <42@shop.example.org>"
    assert message.get_all("X-Tag") == ["one", "42"]
    assert "Cc" not in message and "X-Empty" not in message


def test_a_cell_cannot_add_a_recipient_to_a_one_mailbox_header(tmp_path: Path) -> None:
    template = load(
        tmp_path, PLAIN.replace("{{ mailbox(name, email) }}", "{{ name }} <{{ email }}>")
    )
    assert render(template)["To"] == "Bob <bob@example.com>"
    with pytest.raises(AddressError, match="2 addresses where the template writes one"):
        template.render({**ROW, "name": "eve@evil.test, Bob"}, message_id=MSGID)
    # A column holding a list is still a list when the template writes no <...> around it.
    listing = load(tmp_path, PLAIN.replace("{{ mailbox(name, email) }}", "{{ email }}"))
    rendered = listing.render({**ROW, "email": "a@example.com, b@example.com"}, message_id=MSGID)
    assert len(rendered.recipients) == 3


@pytest.mark.parametrize(
    "cell", ["a@example.org>, <eve@evil.test", "a@example.org, eve@evil.test", "no-at-sign", ""]
)
def test_mailbox_takes_one_plain_address(tmp_path: Path, cell: str) -> None:
    with pytest.raises(InputDataError, match="mailbox"):
        load(tmp_path).render({**ROW, "email": cell}, message_id=MSGID)
