"""Property tests: the fast bulk builder means exactly what the email package would write.

For generated rows (hostile names, non-ASCII, encoded-word look-alikes, long lines, dots,
IDN domains, UTF-8 local parts), `MessageTemplate.render` (mime/compiled.py) and
`MessageTemplate.reference` (compose + serialize) are parsed back with the email package and
compared: header names in order, decoded values, mailboxes, the MIME tree, decoded bodies and
attachment bytes. The fast bytes also pass `send`'s serialised-header check (wire_check).
Both paths refuse the same rows. The simple-address regex path agrees with the full parsers.
"""

from __future__ import annotations

import email
import email.policy
from email.headerregistry import AddressHeader, ParameterizedMIMEHeader
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailctl.errors import InputDataError, MailctlError
from mailctl.hosts import to_ascii_domain
from mailctl.mime import addresses
from mailctl.mime.template import MessageTemplate
from mailctl.mime.wire_check import check_wire_headers

PROPS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
DATE = "Tue, 07 Jan 2025 10:00:00 +0100"
MSGID = "<row-1.abc@bulk.example.org>"

HEAD = """From: Alice Example <alice@example.org>
To: {{ mailbox(name, email) }}
Cc: {{ cc }}
Bcc: {{ bcc }}
Reply-To: {{ reply }}
Subject: {{ subject }}
X-Note: {{ note }}
"""

# Text that stresses what a header or body can hold: quotes, specials, blanks, non-ASCII,
# encoded-word look-alikes, dots and "From " at line starts, controls (both must refuse).
PIECES = st.sampled_from(
    [
        "Bob",
        " ",
        "  ",
        ",",
        '"',
        "\\",
        "<",
        ">",
        "(x)",
        ";",
        ":",
        "é",
        "Zoë",
        "中文",
        "🙂",
        "\u00a0",
        "=?",
        "?=",
        "=?utf-8?q?hi?=",
        "=?utf-8?b?aGk=?=",
        "=?utf-8?q?a=0D=0Ab?=",
        ".",
        "\n.",
        "\nFrom ",
        "\n",
        "\r\n",
        "\r",
        "\t",
        "=",
        "x" * 90,
        "-",
        "--",
        "\x00",
        "\x07",
    ]
)
TEXT = st.lists(PIECES | st.text(max_size=8), max_size=12).map("".join)
LOCAL = st.sampled_from(["bob", "b.o+b", "o'neil", "x_y", "jos\u00e9", "\u4e2d"])
DOMAIN = st.sampled_from(["example.com", "ex-ample.org", "ex\u00e4mple.org", "xn--bcher-kva.de"])
EMAIL = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN)
LIST = st.lists(EMAIL, max_size=3).map(", ".join)


def _template(root: Path, *, html: bool, attach: bool) -> MessageTemplate:
    text = HEAD + ("Attachment: {{ file }}\n" if attach else "") + "\n{{ body }}"
    path = root / f"t-{html}-{attach}.txt"
    path.write_text(text, encoding="utf-8")
    html_path = None
    if html:
        html_path = root / "t.html"
        html_path.write_text("<p>{{ name }}</p>\n{{ body }}", encoding="utf-8")
    return MessageTemplate.load(path, html_path=html_path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bulkprops")
    (root / "a.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 3)
    (root / "r\u00e9sum\u00e9 2024.txt").write_bytes(b"plain\r\nbytes\n")
    (root / "=?utf-8?q?x?=.bin").write_bytes(b"\x00\x01")
    (root / "empty.bin").write_bytes(b"")
    return root


def _parse(data: bytes) -> EmailMessage:
    # RFC 6532 headers are UTF-8; the bodies are 7-bit, so decoding the whole is safe.
    message = email.message_from_string(
        data.decode("utf-8", "surrogateescape"), policy=email.policy.default
    )
    assert isinstance(message, EmailMessage)
    return message


def _value(value: Any) -> Any:
    if isinstance(value, AddressHeader):
        return [
            ("".join(a.display_name.split()), a.username, to_ascii_domain(a.domain).lower())
            for a in value.addresses
        ]
    if isinstance(value, ParameterizedMIMEHeader):
        params = {k: str(v) for k, v in value.params.items() if k != "boundary"}
        return str(value).partition(";")[0].strip().lower(), sorted(params.items())
    return " ".join(str(value).split())


def meaning(data: bytes) -> list[Any]:
    """What a reader sees: per part, header names and decoded values, and the content."""
    out: list[Any] = []
    for part in _parse(data).walk():
        headers = [(name.lower(), _value(value)) for name, value in part.items()]
        content: Any = None
        if not part.is_multipart():
            content = part.get_content()
        out.append((part.get_content_type(), headers, content, part.defects))
    return out


def _both(template: MessageTemplate, fields: dict[str, str]) -> tuple[Any, Any]:
    results: list[Any] = []
    for build in (template.render, template.reference):
        try:
            results.append(build(fields, message_id=MSGID, date=DATE))
        except MailctlError as err:
            results.append(err)
    return results[0], results[1]


def _check(template: MessageTemplate, fields: dict[str, str]) -> None:
    fast, reference = _both(template, fields)
    if isinstance(reference, MailctlError) or isinstance(fast, MailctlError):
        # Both refuse the row, and as bad data (exit 65), never as something else.
        assert isinstance(fast, InputDataError), (fast, reference)
        assert isinstance(reference, InputDataError), (fast, reference)
        return
    data = fast.data
    assert meaning(data) == meaning(reference)
    head = data.partition(b"\r\n\r\n")[0]
    assert b"\nbcc" not in head.lower() and not head.lower().startswith(b"bcc")
    lines = data.split(b"\r\n")
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert max(map(len, lines)) <= 998
    assert data.endswith(b"\r\n")
    # send's own check, on the fast bytes: the reference message with the fast boundaries.
    composed = template.reference_message(fields, message_id=MSGID, date=DATE)
    for mine, theirs in zip(composed.walk(), _parse(data).walk(), strict=True):
        if mine.is_multipart():
            mine.set_boundary(theirs.get_boundary())
    check_wire_headers(composed, data, utf8=fast.smtputf8)


ROW = st.fixed_dictionaries(
    {
        "name": TEXT,
        "email": EMAIL,
        "cc": LIST,
        "bcc": LIST,
        "reply": LIST,
        "subject": TEXT,
        "note": TEXT,
        "body": st.lists(TEXT, max_size=6).map("\n".join),
    }
)


@PROPS
@given(row=ROW, html=st.booleans())
def test_fast_path_means_what_the_email_package_writes(
    folder: Path, row: dict[str, str], html: bool
) -> None:
    _check(_template(folder, html=html, attach=False), row)


@PROPS
@given(
    row=ROW,
    file=st.sampled_from(["a.pdf", "r\u00e9sum\u00e9 2024.txt", "=?utf-8?q?x?=.bin", "empty.bin"]),
    html=st.booleans(),
)
def test_attachments_mean_the_same_bytes_and_names(
    folder: Path, row: dict[str, str], file: str, html: bool
) -> None:
    _check(_template(folder, html=html, attach=True), {**row, "file": file})


@PROPS
@given(body=st.text(max_size=3000))
def test_any_body_text_round_trips(folder: Path, body: str) -> None:
    row = {
        "name": "Bob",
        "email": "bob@example.com",
        "cc": "",
        "bcc": "",
        "reply": "",
        "subject": "s",
        "note": "n",
        "body": body,
    }
    _check(_template(folder, html=True, attach=False), row)


# ---------------------------------------------------------------- the simple-address path

ATOM = st.text(alphabet="abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=6)
QUOTED = st.text(alphabet="ab ,;:<>()[].é\u00a0\u2000\u00ad中🙂Ü-", max_size=8)
SPEC = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.lists(ATOM, min_size=1, max_size=3).map(".".join),
    st.sampled_from(["x.org", "a-b.example", "localhost", "-bad.org", "x..org", "x.org."]),
)
ITEM = st.one_of(
    SPEC,
    st.builds(
        lambda n, s: f"{n} <{s}>", st.lists(ATOM, min_size=1, max_size=3).map(" ".join), SPEC
    ),
    st.builds(lambda n, s: f'"{n}" <{s}>', QUOTED, SPEC),
    st.builds(lambda n, s: f'"{n}"<{s}>', QUOTED, SPEC),
)
ADDRESS_LIST = st.builds(
    lambda items, sep, pad: pad + sep.join(items) + pad,
    st.lists(ITEM, min_size=1, max_size=3),
    st.sampled_from([",", ", ", " ,  ", ",\t"]),
    st.sampled_from(["", " ", "\t"]),
)


def _public(value: str, *, simple: bool) -> Any:
    """parse_mailbox_list's answer (mailboxes or the error class), the simple path on or off."""
    original = addresses._parse_simple
    if not simple:
        addresses._parse_simple = lambda field, text: None  # type: ignore[assignment]
    try:
        return addresses.parse_mailbox_list("To", [value])
    except MailctlError as err:
        return type(err)
    finally:
        addresses._parse_simple = original  # type: ignore[assignment]


@settings(max_examples=400, deadline=None)
@given(value=ADDRESS_LIST | st.text(alphabet='ab@.<>", ', max_size=20))
def test_simple_address_path_agrees_with_the_full_parsers(value: str) -> None:
    assert _public(value, simple=True) == _public(value, simple=False)


@settings(max_examples=300, deadline=None)
@given(spec=SPEC)
def test_simple_addr_spec_split_agrees_with_the_parser(spec: str) -> None:
    try:
        fast = addresses._split_addr_spec(spec)
    except ValueError:
        fast = None
    original = addresses._SIMPLE_ADDR
    addresses._SIMPLE_ADDR = addresses.re.compile(r"(?!)")  # type: ignore[misc]
    try:
        slow = addresses._split_addr_spec(spec)
    except ValueError:
        slow = None
    finally:
        addresses._SIMPLE_ADDR = original  # type: ignore[misc]
    assert fast == slow
