"""Address headers survive folding: one mailbox stays one mailbox, with the same display name.

policy.SMTP folds a long quoted display name with a comma by dropping the quotes, so
`"Doe, John ..." <j@example.org>` came back as two mailboxes. Every reader used here must
find the same mailboxes: the email package (policy.default), the legacy `getaddresses`
(what simple receivers and DMARC checks resemble) and mailctl's own two-parser reading.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import re
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers.smtp_server import TEST_PASSWORD, TEST_USER, SmtpTestServer
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.hosts import to_ascii_domain
from mailctl.mime.compose import ComposeRequest, compose, serialize
from mailctl.mime.headers import Mailbox, parse_address_header

runner = CliRunner()

LONG = (
    "Doe, John - Department of Very Long Names and Other Administrative Units of the "
    "Ministry of Everything"
)


def unfolded(data: bytes, name: str) -> str:
    """The raw value of header `name` with folding removed (RFC 5322 2.2.3)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    match = re.search(rf"^{name}:((?:[^\r\n]*)(?:\r\n[ \t][^\r\n]*)*)", head, re.M | re.I)
    assert match is not None, f"no {name} header"
    return match.group(1).replace("\r\n", "").strip()


_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def _rfc2047_phrase(raw: str) -> str:
    """Decode a display name the way RFC 2047 6.2 says (blanks between encoded words vanish).

    CPython's address parser keeps those blanks, so encoded phrases are decoded as text.
    """
    phrase = raw[: raw.rindex("<")].strip() if "<" in raw else raw
    return str(email.policy.default.header_factory("X-Phrase", phrase))


def _split_top(value: str) -> list[str]:
    """Split an address list at commas outside quotes, comments and angle brackets."""
    items, current, depth, quoted, escaped, angle = [], [], 0, False, False, False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and (quoted or depth):
            escaped = True
        elif char == '"' and not depth:
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and not depth and char in "<>":
            angle = char == "<"
        elif char == "," and not (quoted or depth or angle):
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    items.append("".join(current).strip())
    return items


def _ascii_spec(spec: str) -> str:
    local, _, domain = spec.rpartition("@")
    return f"{local}@{to_ascii_domain(domain).lower()}"


def assert_mailboxes(data: bytes, header: str, boxes: list[Mailbox]) -> None:
    """Every reader finds exactly `boxes` in `header` of the wire bytes."""
    raw = unfolded(data, header)
    want_specs = [_ascii_spec(b.addr_spec) for b in boxes]
    # The email package.
    if data.isascii():
        parsed = email.message_from_bytes(data, policy=email.policy.default)
    else:  # RFC 6532 UTF-8 headers (composed bodies are 7-bit)
        parsed = email.message_from_string(data.decode("utf-8"), policy=email.policy.default)
    found = parsed[header].addresses
    assert [_ascii_spec(a.addr_spec) for a in found] == want_specs, raw
    # The legacy parser, strict where this Python has it.
    legacy = [spec for _, spec in getaddresses([raw]) if spec]
    assert [_ascii_spec(spec) for spec in legacy] == want_specs, raw
    # mailctl's reading (both parsers must agree, or it raises).
    assert [_ascii_spec(b.addr_spec) for b in parse_address_header(header, raw)] == want_specs
    # Display names: RFC 2047 decoding of each item's phrase; exact after blank runs.
    items = _split_top(raw)
    assert len(items) == len(boxes), raw
    for item, box in zip(items, boxes, strict=True):
        if _ENCODED_WORD.search(item):
            name = _rfc2047_phrase(item)
        else:
            name = email.policy.default.header_factory("To", item).addresses[0].display_name
        # Mailbox keeps a phrase's meaning: runs of blanks are one space, ends do not count.
        assert re.sub("[ \t]+", " ", name).strip() == box.display_name, (item, box)


# --------------------------------------------------------------------------- the named case


@pytest.mark.parametrize("option", ["--from", "--to", "--cc", "--reply-to"])
def test_long_quoted_name_with_comma_stays_one_mailbox(tmp_path: Path, option: str) -> None:
    value = f'"{LONG}" <j@example.org>'
    args = ["send", "-n", "--body", "x", "--from", "a@example.org", "--to", "b@example.org"]
    if option == "--from":
        args[args.index("a@example.org")] = value
    elif option == "--to":
        args[args.index("b@example.org")] = value
    else:
        args += [option, value]
    env = {"MAILCTL_CONFIG": str(tmp_path / "none.toml"), "NO_COLOR": "1"}
    result = runner.invoke(app, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    data = result.stdout_bytes
    header = {"--from": "From", "--to": "To", "--cc": "Cc", "--reply-to": "Reply-To"}[option]
    assert_mailboxes(data, header, [Mailbox(LONG, "j@example.org")])
    head = data.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n")), head


# --------------------------------------------------------------------------- property test

SPECIALS = st.sampled_from([*list(',;:()<>[]@"\\.'), "=?", "?=", "'", "\t"])
NAME_PIECES = st.one_of(
    st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp", "Zs")), max_size=12),
    SPECIALS,
    st.sampled_from([" ", "  ", "Doe,", "John", "Ünïcode", "日本語テキスト", "Ω" * 30, "x" * 90]),
)
NAMES = st.lists(NAME_PIECES, max_size=12).map("".join)
ADDRESSES = st.sampled_from(
    ["j@example.org", "x.y+tag@sub.example.net", '"odd local"@example.org', "z@bücher.example"]
)
MAILBOXES = st.builds(lambda n, a: (n, a), NAMES, ADDRESSES)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _mailbox(name: str, address: str) -> Mailbox | None:
    try:
        return Mailbox(name.replace("\t", " "), address)
    except Exception:  # names Mailbox refuses (controls) are not this test's subject
        return None


@PROPERTY
@given(
    sender=MAILBOXES,
    lists=st.lists(st.lists(MAILBOXES, min_size=1, max_size=3), min_size=3, max_size=3),
    utf8=st.booleans(),
)
def test_every_display_name_round_trips(
    sender: tuple[str, str], lists: list[list[tuple[str, str]]], utf8: bool
) -> None:
    """parse(serialise(mailbox)) == mailbox for From, To, Cc and Reply-To, alone and in lists."""
    boxes = [_mailbox(*sender)] + [_mailbox(*pair) for group in lists for pair in group]
    if any(box is None for box in boxes):
        return
    sender_box = boxes[0]
    assert sender_box is not None
    groups: list[list[Mailbox]] = []
    position = 1
    for group in lists:
        groups.append([b for b in boxes[position : position + len(group)] if b is not None])
        position += len(group)
    to, cc, reply_to = groups
    message = compose(
        ComposeRequest(
            sender=sender_box, to=tuple(to), cc=tuple(cc), reply_to=tuple(reply_to), text="x"
        )
    )
    data = serialize(message, utf8=utf8)
    assert utf8 or data.isascii()
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    for header, want in (("From", [sender_box]), ("To", to), ("Cc", cc), ("Reply-To", reply_to)):
        assert_mailboxes(data, header, want)


def test_quoted_specials_and_encoded_lookalikes_round_trip() -> None:
    names = [
        'Roe, Jane (the; "boss") \\ x',
        "a@b",  # an '@' inside a quoted display name is no address
        "=?utf-8?q?not_decoded?=",  # a literal encoded-word lookalike stays literal
        "x" * 200,
        "日本語テキスト" * 8,
        "Zoë, Ünal; (ops)",
    ]
    boxes = [Mailbox(name, f"u{i}@example.org") for i, name in enumerate(names)]
    for utf8 in (False, True):
        message = compose(ComposeRequest(sender=boxes[0], to=tuple(boxes), text="x"))
        data = serialize(message, utf8=utf8)
        assert_mailboxes(data, "To", boxes)
        assert_mailboxes(data, "From", boxes[:1])


# --------------------------------------------------------------------------- on the wire


def test_the_wire_carries_exactly_the_checked_bytes(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    """What aiosmtpd receives is byte for byte what --save wrote after the checks."""
    saved = tmp_path / "sent.eml"
    attachment = tmp_path / "résumé, final (v2).txt"
    attachment.write_text("hello\n")
    args = [
        "send", f"--server=127.0.0.1:{smtp_server.port}", "--starttls",
        "--ca-file", str(smtp_server.ca_file), "--user", TEST_USER,
        "--from", f'"{LONG}" <j@example.org>',
        "--to", '"Roe, Jane" <r@example.org>, Zoë Ünal <z@example.org>',
        "--cc", f'"{LONG}, again" <k@example.org>',
        "--subject", ("=?utf-8?q?Gr=C3=BC=C3=9Fe?= and a long subject " * 3).strip(),
        "--header", "X-Note: =?utf-8?b?" + base64.b64encode("ok ✓".encode()).decode() + "?=",
        "--body", "x", "--attach", str(attachment), "--save", str(saved), "--json",
    ]  # fmt: skip
    env = {
        "MAILCTL_CONFIG": str(tmp_path / "none.toml"),
        "MAILCTL_PASSWORD": TEST_PASSWORD,
        "NO_COLOR": "1",
    }
    result = runner.invoke(app, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["status"] == "ok"
    (got,) = smtp_server.messages
    assert got.data == saved.read_bytes()
    head = got.data.split(b"\r\n\r\n", 1)[0]
    names = [
        line.split(b":", 1)[0].decode().lower()
        for line in head.split(b"\r\n")
        if line[:1] not in (b" ", b"\t")
    ]
    assert names == [
        "date", "from", "to", "cc", "subject", "message-id", "x-note", "mime-version",
        "content-type",
    ]  # fmt: skip
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))
    assert_mailboxes(got.data, "From", [Mailbox(LONG, "j@example.org")])
    assert_mailboxes(
        got.data,
        "To",
        [Mailbox("Roe, Jane", "r@example.org"), Mailbox("Zoë Ünal", "z@example.org")],
    )
    assert_mailboxes(got.data, "Cc", [Mailbox(f"{LONG}, again", "k@example.org")])
    message = email.message_from_bytes(got.data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert str(message["Subject"]) == ("Grüße and a long subject " * 3).strip()
    assert str(message["X-Note"]) == "ok ✓"
    (part,) = list(message.iter_attachments())
    assert part.get_filename() == "résumé, final (v2).txt"
