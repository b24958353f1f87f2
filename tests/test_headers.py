"""Header safety and address parsing: injection refused, ambiguity refused, Unicode handled."""

from __future__ import annotations

import base64
import email
import email.policy
import re
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailctl.errors import AddressError, ExitCode, HeaderInjectionError, InputDataError
from mailctl.hosts import ehlo_name
from mailctl.mime import addresses
from mailctl.mime.headers import (
    Mailbox,
    check_extra_header,
    parse_address_header,
    parse_header_option,
    parse_mailbox,
    parse_mailbox_list,
    parse_msg_ids,
    require_clean,
    wire_policy,
)

# Text with at least one of the three characters that end a header or an SMTP command.
BREAKERS = st.sampled_from(["\r", "\n", "\x00", "\r\n"])
PRINTABLE = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
DIRTY = st.builds(lambda a, b, c: a + b + c, PRINTABLE, BREAKERS, PRINTABLE)
FAST = settings(max_examples=150, deadline=None)


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and "\r" not in text and "\x00" not in text
    return text


# --------------------------------------------------------------------------- require_clean


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hi\r\nBcc: evil@x", "--subject contains a line break"),
        ("hi\nthere", "--subject contains a line break"),
        ("hi\rthere", "--subject contains a line break"),
        ("hi\x00", "--subject contains a NUL character"),
        ("hi\x0bthere", "--subject contains the control character U+000B"),
        ("hi\u2028there", "--subject contains the control character U+2028"),
        ("esc\x1b[31m", "--subject contains the control character U+001B"),
    ],
)
def test_require_clean_names_the_field(value: str, expected: str) -> None:
    with pytest.raises(HeaderInjectionError) as info:
        require_clean("--subject", value)
    assert info.value.message == expected
    assert info.value.exit_code == ExitCode.DATAERR == 65
    assert info.value.code == "header_injection"


def test_require_clean_keeps_tabs_and_unicode() -> None:
    assert require_clean("--subject", "Grüße\tand 日本語") == "Grüße\tand 日本語"


@FAST
@given(DIRTY)
def test_no_dirty_value_is_accepted_anywhere(value: str) -> None:
    """Every entry point refuses CR/LF/NUL with HeaderInjectionError, never anything else."""
    calls = [
        lambda: require_clean("--subject", value),
        lambda: parse_mailbox("--from", value),
        lambda: parse_mailbox("--from", f"{value} <a@example.org>"),
        lambda: parse_mailbox_list("--to", ["a@example.org", value]),
        lambda: parse_address_header("header To", value),
        lambda: parse_header_option(f"X-Test: {value}"),
        lambda: parse_header_option(f"{value}: v"),
        lambda: check_extra_header("X-Test", value),
        lambda: ehlo_name(value),
        lambda: parse_msg_ids("--references", value),
        lambda: Mailbox(value, "a@example.org"),
        lambda: Mailbox("", value),
    ]
    for call in calls:
        with pytest.raises(HeaderInjectionError) as info:
            call()
        one_line(info.value)


def test_error_messages_escape_control_characters() -> None:
    with pytest.raises(AddressError) as info:
        parse_mailbox("--to", "a@x.org)<b@evil.example>")
    assert "'a@x.org)<b@evil.example>'" in one_line(info.value)


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a@example.org", [("", "a@example.org")]),
        ("Alice <alice@example.org>", [("Alice", "alice@example.org")]),
        ("a@x.org, B <b@y.org>", [("", "a@x.org"), ("B", "b@y.org")]),
        ('"Doe, John" <j@example.org>', [("Doe, John", "j@example.org")]),
        ('"john doe"@example.org', [("", '"john doe"@example.org')]),
        ('"john"@example.org', [("", "john@example.org")]),
        ("a@example.org (Alice)", [("", "a@example.org")]),
        ('"bob@example.org" <bob@example.org>', [("bob@example.org", "bob@example.org")]),
        ("=?utf-8?q?Zo=C3=AB?= <z@example.org>", [("Zoë", "z@example.org")]),
        ("Zoë   Ünïcode <zoe@exämple.org>", [("Zoë Ünïcode", "zoe@exämple.org")]),
        ("jöran@example.org", [("", "jöran@example.org")]),
        ("root@localhost", [("", "root@localhost")]),
    ],
)
def test_valid_addresses(value: str, expected: list[tuple[str, str]]) -> None:
    found = parse_mailbox_list("--to", [value])
    assert [(m.display_name, m.addr_spec) for m in found] == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        # CVE-2023-27043: the legacy parser reads a different address than the modern one.
        ("alice@example.org)<bob@evil.example>", "invalid address"),
        ("alice@example.org<bob@evil.example>", "invalid address"),
        ("alice@example.org)(bob@evil.example", "invalid address"),
        ("a@example.org (b@evil.example)", "ambiguous"),
        ("no-at-sign", "no '@'"),
        ("@example.org", "invalid address"),
        ("a@", "cannot parse|invalid address"),  # the wording differs by Python version
        ("<a@example.org", "missing trailing '>'"),
        ("a@example.org>", "invalid address"),
        ('"Alice <a@example.org>', "invalid address"),
        ("Alice, Bob <b@example.org>", "local part with no domain"),
        ("a@b@c.example", "invalid address"),
        ("a@example.org,", "ambiguous"),
        ("Bob <a@example.org> <c@example.org>", "invalid address"),
        ('"a@x.org, b@y.org" <c@z.org>', "looks like an address"),
        ('"ceo@bank.example" <mallory@evil.example>', "looks like an address"),
        ("team: a@x.org, b@y.org;", "group syntax"),
        ("<@route.example:b@example.org>", "obsolete route"),
        ("a@[192.0.2.1]", "a@[192.0.2.1]"),
        ("a@-bad.example", "not a valid host name"),
        ("a@under_score.example", "not a valid host name"),
        ("a..b@example.org", "invalid address"),
    ],
)
def test_invalid_or_ambiguous_addresses(value: str, reason: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_mailbox_list("--to", [value])
    text = one_line(info.value)
    assert text.startswith("--to")
    assert any(part in text for part in reason.split("|")), text
    assert info.value.exit_code == ExitCode.DATAERR


def test_address_injection_is_header_injection() -> None:
    with pytest.raises(HeaderInjectionError, match=r"^--to contains a line break$"):
        parse_mailbox_list("--to", ["a@x.org\nRCPT TO:<b@y.org>"])


def test_parse_mailbox_wants_exactly_one() -> None:
    with pytest.raises(AddressError, match="exactly one address, got 2"):
        parse_mailbox("--from", "a@x.org, b@y.org")
    with pytest.raises(AddressError, match="--from is empty"):
        parse_mailbox("--from", "   ")


def test_header_parsing_allows_groups_and_empty_values() -> None:
    assert parse_address_header("header To", "undisclosed-recipients:;") == ()
    assert parse_address_header("header To", "") == ()
    found = parse_address_header("header To", "team: a@x.org, B <b@y.org>;, c@z.org")
    assert [m.addr_spec for m in found] == ["a@x.org", "b@y.org", "c@z.org"]
    with pytest.raises(AddressError):
        parse_address_header("header To", "alice@example.org)<bob@evil.example>")


def test_strict_fallback_matches_cpython_rules() -> None:
    """Python 3.11.7 has no getaddresses(strict=); the backport must refuse what it refuses."""
    assert addresses._legacy_strict("a@x.org, B <b@y.org>") == [("", "a@x.org"), ("B", "b@y.org")]
    assert addresses._legacy_strict('"x, y" <c@z.org>') == [("x, y", "c@z.org")]
    for bad in ["alice@example.org)<bob@evil>", "a@x.org,", "a@x (b", "a@[1.2.3.4]"]:
        assert addresses._legacy_strict(bad) == [("", "")], bad


def test_mailbox_normalises_display_name_blanks() -> None:
    assert Mailbox("  Zoë \t  Ünïcode ", "z@example.org").display_name == "Zoë Ünïcode"


def test_mailbox_constructor_validates() -> None:
    with pytest.raises(AddressError):
        Mailbox("", "not an address")
    with pytest.raises(AddressError):
        Mailbox("", "@example.org")


def test_non_ascii_local_part_needs_smtputf8() -> None:
    box = parse_mailbox("--to", "Jöran <jöran@exämple.org>")
    assert box.needs_smtputf8
    assert box.envelope_address(smtputf8=True) == "jöran@exämple.org"
    with pytest.raises(AddressError, match="non-ASCII local part"):
        box.envelope_address(smtputf8=False)


def test_idn_domain_is_idna_encoded_without_smtputf8() -> None:
    box = parse_mailbox("--to", "Zoë <zoe@bücher.example>")
    assert not box.needs_smtputf8
    assert box.envelope_address(smtputf8=False) == "zoe@xn--bcher-kva.example"
    assert box.envelope_address(smtputf8=True) == "zoe@bücher.example"
    quoted = parse_mailbox("--to", '"john doe"@bücher.example')
    assert quoted.envelope_address(smtputf8=False) == '"john doe"@xn--bcher-kva.example'


def test_formatted_quotes_specials() -> None:
    box = Mailbox("Doe, John", "j@example.org")
    assert box.formatted() == '"Doe, John" <j@example.org>'
    assert parse_mailbox("--to", box.formatted()) == box


LOCAL = st.from_regex(r"[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,10}(\.[a-z0-9_-]{1,8}){0,2}", fullmatch=True)
LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
NAME_TEXT = st.text(
    st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp", "Zs"), include_characters=" "),
    max_size=40,
)


@FAST
@given(local=LOCAL, labels=st.lists(LABEL, min_size=1, max_size=3), name=NAME_TEXT)
def test_formatted_mailbox_parses_back_to_itself(local: str, labels: list[str], name: str) -> None:
    """What formatted() writes, parse_mailbox reads back unchanged (names without '@')."""
    name = name.replace("@", "")
    if "=?" in name:  # text that is itself an encoded word would be decoded, by design
        return
    box = Mailbox(name, f"{local}@{'.'.join(labels)}")
    assert parse_mailbox("--to", box.formatted()) == box


# --------------------------------------------------------------------------- other headers


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("X-Campaign: spring", ("X-Campaign", "spring")),
        ("X-Empty:", ("X-Empty", "")),
        ("List-Id:   <list.example.org>  ", ("List-Id", "<list.example.org>")),
        ("Date: Tue, 07 Jan 2025 10:00:00 +0100", ("Date", "Tue, 07 Jan 2025 10:00:00 +0100")),
        ("Message-ID: <abc.123@example.org>", ("Message-ID", "<abc.123@example.org>")),
        ("Sender: Bob <bob@example.org>", ("Sender", "Bob <bob@example.org>")),
        ("X-Note: a: b: c", ("X-Note", "a: b: c")),
    ],
)
def test_header_option_accepts(raw: str, expected: tuple[str, str]) -> None:
    assert parse_header_option(raw) == expected


@pytest.mark.parametrize(
    ("raw", "error", "text"),
    [
        ("X Foo: bar", HeaderInjectionError, "not a valid header field name"),
        ("X-Foo : bar", HeaderInjectionError, "not a valid header field name"),
        (": bar", HeaderInjectionError, "not a valid header field name"),
        ("Ünï: bar", HeaderInjectionError, "not a valid header field name"),
        ("no colon here", InputDataError, "has no ':'"),
        (
            "X-Foo: a\r\nBcc: evil@example.org",
            HeaderInjectionError,
            "--header X-Foo contains a line",
        ),
        ("Content-Type: text/html", InputDataError, "set by mailctl from the message parts"),
        ("content-transfer-encoding: 8bit", InputDataError, "set by mailctl"),
        ("MIME-Version: 1.0", InputDataError, "set by mailctl"),
        ("Bcc: x@example.org", InputDataError, "use --bcc instead"),
        ("To: x@example.org", InputDataError, "use --to instead"),
        ("Subject: x", InputDataError, "use --subject instead"),
        ("Resent-To: x@example.org", InputDataError, "cannot be set"),
        ("Orig-Date: x", InputDataError, "cannot be set"),
        ("Return-Path: <x@example.org>", InputDataError, "cannot be set"),
        ("Date: yesterday", InputDataError, "not an RFC 5322 date"),
        ("Message-ID: abc@example.org", InputDataError, "not a message id"),
        ("Message-ID: <a b@example.org>", InputDataError, "not a message id"),
        ("Sender: a@x.org, b@y.org", AddressError, "exactly one address"),
    ],
)
def test_header_option_refuses(raw: str, error: type[Exception], text: str) -> None:
    with pytest.raises(error) as info:
        parse_header_option(raw)
    assert type(info.value) is error
    assert text in one_line(info.value)


def test_msg_ids() -> None:
    assert parse_msg_ids("--references", " <a@x>\t<b.c@y.example>  ") == "<a@x> <b.c@y.example>"
    assert parse_msg_ids("--in-reply-to", "<x@[192.0.2.1]>") == "<x@[192.0.2.1]>"
    for bad in ["a@x", "<a>", "<a@x", "<a@@x>", "<a@x> junk", "", "<ä@x>"]:
        with pytest.raises(InputDataError, match="is not a list of message ids"):
            parse_msg_ids("--references", bad)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mail.example.org", "mail.example.org"),
        ("my_host", "my_host"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("[192.0.2.1]", "[192.0.2.1]"),
        ("[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]"),
    ],
)
def test_ehlo_name_accepts(value: str, expected: str) -> None:
    assert ehlo_name(value) == expected


@pytest.mark.parametrize(
    "value", ["", "a b", "host.", "-host", "[300.1.1.1]", "[IPv6:zz]", "a" * 64, "x:y"]
)
def test_ehlo_name_refuses(value: str) -> None:
    with pytest.raises(InputDataError, match="EHLO name"):
        ehlo_name(value)


def test_ehlo_name_injection() -> None:
    with pytest.raises(HeaderInjectionError, match=r"^EHLO name contains a line break$"):
        ehlo_name("host\r\nMAIL FROM:<x@y>")


# --------------------------------------------------------------------------- wire policy


def _wire(message: EmailMessage, *, utf8: bool = False) -> bytes:
    return message.as_bytes(policy=wire_policy(utf8=utf8))


def _header_lines(data: bytes, name: bytes) -> bytes:
    match = re.search(rb"^" + name + rb":.*?\r\n(?! )", data, re.M | re.S)
    assert match is not None
    return match.group()


def test_long_ascii_values_fold_at_spaces_and_are_never_encoded() -> None:
    """CPython would turn >78-column tokens into encoded words, breaking References."""
    ids = " ".join(f"<{'x' * 90}.{n}@example.org>" for n in range(3))
    url = "<https://example.org/unsubscribe/" + "a" * 120 + ">"
    message = EmailMessage(policy=wire_policy())
    message["References"] = ids
    message["List-Unsubscribe"] = url
    message["Message-ID"] = f"<{'m' * 100}@example.org>"
    message["Subject"] = "plain words " * 12
    data = _wire(message)
    assert b"=?" not in data
    references = _header_lines(data, b"References")
    assert references.count(b"\r\n") == 3  # one id a line
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert str(parsed["References"]) == ids
    assert str(parsed["List-Unsubscribe"]) == url
    assert str(parsed["Subject"]) == "plain words " * 12  # trailing blank kept
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))


def test_idn_domain_in_header_becomes_a_label_without_utf8() -> None:
    message = EmailMessage(policy=wire_policy())
    message["To"] = [Mailbox("Zoë", "zoe@bücher.example").address()]
    assert b"zoe@xn--bcher-kva.example" in _wire(message)
    assert "zoe@bücher.example".encode() in _wire(message, utf8=True)


def test_non_ascii_local_part_cannot_be_written_as_ascii() -> None:
    message = EmailMessage(policy=wire_policy())
    message["To"] = [Mailbox("", "jöran@example.org").address()]
    with pytest.raises(AddressError, match="non-ASCII local part"):
        _wire(message)
    assert "To: jöran@example.org".encode() in _wire(message, utf8=True)


def test_encoded_words_keep_spaces_at_word_boundaries() -> None:
    """CPython drops the space where it splits a phrase into two encoded words."""
    name = "Ω" * 25 + " " + "ß" * 10
    message = EmailMessage(policy=wire_policy())
    message["From"] = [Mailbox(name, "a@example.org").address()]
    data = _wire(message)
    assert data.isascii()
    words = re.findall(rb"=\?utf-8\?b\?([A-Za-z0-9+/=]+)\?=", data)
    assert "".join(base64.b64decode(w).decode() for w in words) == name


def test_validated_domains_are_remembered_in_bounded_memory_and_bad_ones_never() -> None:
    # bulk-send validates the same few domains on every row: the answer is kept, bounded.
    from mailctl.errors import AddressError
    from mailctl.mime import domains

    assert domains.validate_domain("To", "bücher.example") == "xn--bcher-kva.example"
    assert domains.validate_domain("Cc", "bücher.example") == "xn--bcher-kva.example"
    for field in ("To", "Cc"):  # refused every time, naming the field asked about
        with pytest.raises(AddressError, match=f"^{field}: domain"):
            domains.validate_domain(field, "-bad.example")
    assert "-bad.example" not in domains._VALID
    for n in range(domains._VALID_MAX * 2):
        domains.validate_domain("To", f"d{n}.example")
    assert len(domains._VALID) <= domains._VALID_MAX
