"""Header injection through RFC 2047 encoded words: refused in every field, checked on the wire.

The rule (README, "Header values"): a value means what a reader decodes from it, so an
encoded word that decodes to CR, LF, NUL or another control character is refused exactly like
the raw character (exit 65, code header_injection), in every header that takes text. The
serialised header block is checked again before anything is sent or saved.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import re
import subprocess
import sys
import tempfile
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from servers.smtp_server import TEST_PASSWORD, SmtpTestServer, write_account_config
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.errors import HeaderInjectionError, InputDataError
from mailctl.mime.compose import AttachmentSpec, ComposeRequest, compose, serialize
from mailctl.mime.headers import Mailbox
from mailctl.mime.rawmessage import add_missing_headers

runner = CliRunner()

# The payloads: Q and B encodings of a CRLF that would start a Bcc header, and one
# whose empty line would end the header block.
INJECT = "=?UTF-8?Q?a=0D=0ABcc:_x@evil.test?="
INJECT_B = "=?utf-8?b?" + base64.b64encode(b"a\r\nBcc: x@evil.test").decode() + "?="
ENDS_BLOCK = "=?UTF-8?Q?a=0D=0A=0D=0AX-Body:_y?="
# Fits RFC 2392 cid names (no ':'), so it reaches the inline part's headers.
INJECT_CID = "=?UTF-8?Q?a=0D=0ABcc=3A_x@evil.test?="
INJECT_MSGID = "<=?UTF-8?Q?a=0D=0ABcc=3A_x?=@example.org>"
# Not only CRLF: NUL, a UTF-7 CR/LF (no =XX at all) and a nested encoded word.
INJECT_NUL = "=?utf-8?q?a=00b?="
INJECT_UTF7 = "=?utf-7?q?a+AA0ACg-Bcc:_x@evil.test?="
INJECT_NESTED = "=?utf-8?b?" + base64.b64encode(INJECT.encode()).decode() + "?="
# Without a raw '@', which the config schema would already count as a second address.
INJECT_NO_AT = "=?UTF-8?Q?a=0D=0ABcc:_x=40evil.test?="


def _cli(args: list[str], tmp_path: Path, *, config: Path | None = None) -> Any:
    env = {"MAILCTL_CONFIG": str(config or tmp_path / "none.toml"), "NO_COLOR": "1"}
    return runner.invoke(app, args, env=env, catch_exceptions=False)


def _refused(result: Any, field: str) -> None:
    assert result.exit_code == 65, result.stdout + result.stderr
    envelope = json.loads(result.stdout)
    assert envelope["status"] == "error"
    (error,) = envelope["errors"]
    assert error["code"] == "header_injection", error
    assert field in error["message"], error
    assert "\n" not in error["message"] and "\r" not in error["message"]


BASE = ["send", "-n", "--json", "--from", "a@example.org", "--to", "b@example.org", "--body", "x"]


@pytest.mark.parametrize("payload", [INJECT, INJECT_B, ENDS_BLOCK, INJECT_NUL, INJECT_UTF7])
def test_subject_encoded_line_break_is_refused(tmp_path: Path, payload: str) -> None:
    _refused(_cli([*BASE, "--subject", payload], tmp_path), "--subject")


def test_nested_encoded_word_is_refused(tmp_path: Path) -> None:
    _refused(_cli([*BASE, "--subject", INJECT_NESTED], tmp_path), "--subject")


@pytest.mark.parametrize("payload", [INJECT, INJECT_B])
def test_attach_name_encoded_line_break_is_refused(tmp_path: Path, payload: str) -> None:
    attachment = tmp_path / "att.txt"
    attachment.write_text("hello\n")
    result = _cli([*BASE, "--attach", str(attachment), "--attach-name", payload], tmp_path)
    _refused(result, "attachment file name")


def test_attachment_file_named_like_an_encoded_line_break_is_refused(tmp_path: Path) -> None:
    attachment = tmp_path / INJECT
    attachment.write_text("hello\n")
    _refused(_cli([*BASE, "--attach", str(attachment)], tmp_path), "attachment file name")


def test_inline_file_named_like_an_encoded_line_break_is_refused(tmp_path: Path) -> None:
    image = tmp_path / INJECT_CID
    image.write_bytes(b"GIF89a")
    result = _cli([*BASE, "--html", "<img src='cid:x'>", "--inline", str(image)], tmp_path)
    _refused(result, "attachment file name")


@pytest.mark.parametrize("option", ["--from", "--to", "--cc", "--reply-to", "--bcc"])
@pytest.mark.parametrize("form", ["{} <c@example.org>", '"{}" <c@example.org>'])
def test_display_name_encoded_line_break_is_refused(tmp_path: Path, option: str, form: str) -> None:
    args = [a for a in BASE if a not in ("--from", "a@example.org")]
    args = [*args, "--from", "a@example.org"] if option != "--from" else args
    result = _cli([*args, option, form.format(INJECT)], tmp_path)
    _refused(result, option)


@pytest.mark.parametrize(
    ("header", "field"),
    [
        (f"X-Note: {INJECT}", "--header X-Note"),
        (f"X-Note: before {INJECT_B} after", "--header X-Note"),
        (f"Sender: {INJECT} <s@example.org>", "--header"),
        (f"Message-ID: {INJECT_MSGID}", "--header Message-ID"),
        (f"Content-Language: {INJECT}", "--header Content-Language"),
    ],
)
def test_extra_header_encoded_line_break_is_refused(
    tmp_path: Path, header: str, field: str
) -> None:
    _refused(_cli([*BASE, "--header", header], tmp_path), field)


@pytest.mark.parametrize("option", ["--in-reply-to", "--references"])
def test_message_id_options_encoded_line_break_is_refused(tmp_path: Path, option: str) -> None:
    _refused(_cli([*BASE, option, INJECT_MSGID], tmp_path), option)


def test_account_from_encoded_line_break_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[accounts.work]\n"
        f'from = "{INJECT_NO_AT} <a@example.org>"\n'
        '[accounts.work.smtp]\nhost = "127.0.0.1"\nport = 2525\nsecurity = "none"\n'
    )
    config.chmod(0o600)
    result = _cli(
        ["send", "-n", "--json", "--to", "b@example.org", "--body", "x"], tmp_path, config=config
    )
    _refused(result, "from")


# --------------------------------------------------------------------------- sendmail -F


def _sendmail_config(path: Path, server: SmtpTestServer, from_value: str) -> Path:
    return write_account_config(path, server, from_value=from_value)


def _sendmail(args: list[str], message: bytes, config: Path) -> subprocess.CompletedProcess[bytes]:
    env = {
        **os.environ,
        "MAILCTL_CONFIG": str(config),
        "MAILCTL_PASSWORD": TEST_PASSWORD,
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "mailctl", "sendmail", *args],
        input=message,
        capture_output=True,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize("payload", [INJECT, INJECT_B, ENDS_BLOCK])
def test_sendmail_full_name_encoded_line_break_is_refused(
    smtp_server: SmtpTestServer, tmp_path: Path, payload: str
) -> None:
    config = _sendmail_config(tmp_path / "c.toml", smtp_server, "Main <main@example.org>")
    proc = _sendmail(["-F", payload, "-i", "x@example.org"], b"Subject: s\n\nbody\n", config)
    assert proc.returncode == 65, proc.stderr
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "-F" in lines[0], lines
    assert smtp_server.messages == []


def test_sendmail_account_from_encoded_line_break_is_refused(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    config = _sendmail_config(
        tmp_path / "c.toml", smtp_server, f"{INJECT_NO_AT} <main@example.org>"
    )
    proc = _sendmail(["-i", "x@example.org"], b"Subject: s\n\nbody\n", config)
    assert proc.returncode == 65, proc.stderr
    assert smtp_server.messages == []


def test_sendmail_long_full_name_is_folded_and_round_trips(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    config = _sendmail_config(tmp_path / "c.toml", smtp_server, "main@example.org")
    name = "Doe, John - Department of Very Long Names and Other Administrative Units (cron)"
    proc = _sendmail(["-F", name, "-i", "x@example.org"], b"Subject: s\n\nbody\n", config)
    assert proc.returncode == 0, proc.stderr
    data = smtp_server.messages[0].data
    assert header_names(data) == ["from", "date", "message-id", "subject"]
    assert all(len(line) <= 78 for line in data.split(b"\r\n\r\n")[0].split(b"\r\n"))
    message = email.message_from_bytes(data, policy=email.policy.default)
    (box,) = message["From"].addresses
    assert (box.display_name, box.addr_spec) == (name, "main@example.org")


# --------------------------------------------------------------------------- oracles

_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+):")
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def header_names(data: bytes) -> list[str]:
    """Field names of the top header block, read line by line (no email package involved).

    Fails if a line is neither a field nor a continuation, or if the block does not end with
    an empty line: both would mean a value escaped its header.
    """
    head, sep, _ = data.partition(b"\r\n\r\n")
    assert sep, "no empty line ends the header block"
    names: list[str] = []
    for index, line in enumerate(head.split(b"\r\n")):
        assert b"\r" not in line and b"\n" not in line
        if line[:1] in (b" ", b"\t") and index:
            continue
        match = _FIELD.match(line)
        assert match is not None, f"not a header line: {line!r}"
        names.append(match.group(1).decode().lower())
    return names


def part_headers(data: bytes) -> list[list[str]]:
    """Header names of every MIME part, as the email package reads the bytes back."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    out = []
    for part in message.walk():
        assert not part.defects, part.defects
        out.append([name.lower() for name in part])
    return out


def expected_headers(message: EmailMessage) -> list[list[str]]:
    return [[name.lower() for name in part] for part in message.walk()]


def assert_sound(message: EmailMessage, data: bytes) -> EmailMessage:
    """The bytes hold exactly the composed headers, in every part, each decoding cleanly."""
    assert header_names(data) == [name.lower() for name in message]
    assert part_headers(data) == expected_headers(message)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    for part in parsed.walk():
        for name, value in part.items():
            assert not _CONTROLS.search(str(value)), (name, str(value))
        for _, value in part.get_params(header="content-disposition") or []:
            assert not _CONTROLS.search(str(value))
    assert isinstance(parsed, EmailMessage)
    return parsed


# --------------------------------------------------------------------------- property tests

# Payloads that could end a header or a line for some reader, mixed with ordinary text.
_PIECES = st.sampled_from(
    ["\r", "\n", "\r\n", "\x00", "\t", "\x0b", "\x1b", " ", "a", "Bcc: x@evil.test", "é", "日", ":"]
)
PAYLOADS = st.lists(_PIECES, min_size=1, max_size=6).map("".join)
CHARSETS = st.sampled_from(
    [
        "utf-8", "UTF-8", "uTf-8", "us-ascii", "iso-8859-1", "latin-1", "iso-8859-2",
        "windows-1252", "koi8-r", "utf-7", "utf-16", "unknown-8bit", "x-no-such-charset",
        "utf-8*en",
    ]
)  # fmt: skip


def _codec(charset: str) -> str:
    name = charset.partition("*")[0]
    try:
        "".encode(name)
    except LookupError:
        return "utf-8"
    return name


@st.composite
def encoded_words(draw: st.DrawFn) -> str:
    """One RFC 2047 encoded word, Q or B, any case, for a payload with controls in it."""
    charset = draw(CHARSETS)
    text = draw(PAYLOADS)
    data = text.encode(_codec(charset), errors="replace")
    if draw(st.booleans()):
        body = "".join(
            "_"
            if byte == 0x20
            else chr(byte)
            if chr(byte).isalnum() and byte < 128
            else f"={byte:02X}"
            for byte in data
        )
        cte = draw(st.sampled_from("qQ"))
    else:
        body = base64.b64encode(data).decode()
        cte = draw(st.sampled_from("bB"))
    return f"=?{charset}?{cte}?{body}?="


# Values: encoded words between plain words, adjacent or separated by blanks.
VALUES = st.lists(
    st.one_of(encoded_words(), st.sampled_from(["hi", "x@evil.test", "Bcc:", "=?", "?="])),
    min_size=1,
    max_size=4,
).flatmap(lambda parts: st.sampled_from(["", " ", "  "]).map(lambda sep: sep.join(parts)))

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SENDER = Mailbox("Alice", "alice@example.org")
BOB = Mailbox("Bob", "bob@example.net")


def _compose(kind: str, value: str, utf8: bool, directory: Path) -> tuple[EmailMessage, bytes]:
    request: dict[str, Any] = {"sender": SENDER, "to": (BOB,), "text": "body"}
    if kind == "subject":
        request["subject"] = value
    elif kind in ("from", "to", "cc", "reply-to"):
        box = Mailbox(value, "carol@example.org")
        key = {"from": "sender", "reply-to": "reply_to"}.get(kind, kind)
        request[key] = box if kind == "from" else (box, BOB)
    elif kind == "header":
        request["extra_headers"] = (("X-Note", value),)
    elif kind == "in-reply-to":
        request["in_reply_to"] = f"<{value.replace(' ', '')}@example.org>"
    elif kind == "attachment":
        path = directory / "file.bin"
        path.write_bytes(b"data")
        request["attachments"] = (AttachmentSpec(path, filename=value.replace("/", "")),)
    message = compose(ComposeRequest(**request))
    return message, serialize(message, utf8=utf8)


@PROPERTY
@given(
    kind=st.sampled_from(
        ["subject", "from", "to", "cc", "reply-to", "header", "in-reply-to", "attachment"]
    ),
    value=VALUES,
    utf8=st.booleans(),
)
def test_no_encoded_value_escapes_its_header(kind: str, value: str, utf8: bool) -> None:
    """Any value is refused (65) or the wire bytes hold exactly the composed headers."""
    with tempfile.TemporaryDirectory() as directory:
        try:
            message, data = _compose(kind, value, utf8, Path(directory))
        except InputDataError as err:  # HeaderInjectionError and friends: exit 65
            assert err.exit_code == 65
            return
    assert_sound(message, data)


# Charsets mail really uses, each with letters it can hold (ASCII letters go with all).
_CHARSET_TEXT = {
    "utf-8": "Grüße 日本語 🎉 Ω", "UTF-8": "ünï", "iso-8859-1": "café ÿ", "utf-7": "Zoë ✓",
    "iso-2022-jp": "日本語のテスト", "shift_jis": "カタカナ漢字", "euc-kr": "한국어 테스트",
    "gb2312": "中文测试", "big5": "中文測試", "koi8-r": "Русский", "windows-1251": "Текст",
}  # fmt: skip


@st.composite
def clean_encoded_words(draw: st.DrawFn) -> tuple[str, str]:
    """An encoded word, Q or B, for printable text in a charset that holds it: (word, text)."""
    charset = draw(st.sampled_from(sorted(_CHARSET_TEXT)))
    alphabet = st.sampled_from(_CHARSET_TEXT[charset] + "abcXYZ09.,:;()!?-")
    text = draw(st.text(alphabet, min_size=1, max_size=20).map(lambda t: t.strip() or "x"))
    data = text.encode(charset)
    if draw(st.booleans()):
        return f"=?{charset}?b?{base64.b64encode(data).decode()}?=", text
    body = "".join(f"={byte:02X}" for byte in data)
    return f"=?{charset}?Q?{body}?=", text


@PROPERTY
@given(word=clean_encoded_words(), utf8=st.booleans())
def test_clean_encoded_words_are_accepted_and_mean_their_text(
    word: tuple[str, str], utf8: bool
) -> None:
    """Refusal is not blanket: an encoded word for printable text is sent, decoded once."""
    raw, text = word
    assume("=?" not in text)
    message = compose(ComposeRequest(sender=SENDER, to=(BOB,), subject=raw, text="x"))
    parsed = assert_sound(message, serialize(message, utf8=utf8))
    assert str(parsed["Subject"]) == text


@PROPERTY
@given(name=VALUES)
def test_sendmail_added_from_never_escapes(name: str) -> None:
    """-F goes into a From line mailctl adds: refused, or exactly one From with that name."""
    raw = b"Subject: s\r\nTo: x@example.org\r\n\r\nbody\r\n"
    try:
        data = add_missing_headers(raw, sender=SENDER, full_name=name)
    except InputDataError as err:
        assert err.exit_code == 65
        return
    assert header_names(data) == ["from", "date", "message-id", "subject", "to"]
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    (box,) = parsed["From"].addresses
    assert box.addr_spec == "alice@example.org"
    assert not _CONTROLS.search(box.display_name)


def test_header_injection_error_is_what_compose_raises() -> None:
    with pytest.raises(HeaderInjectionError, match="--subject"):
        compose(ComposeRequest(sender=SENDER, to=(BOB,), subject=INJECT))


# --------------------------------------------------------------------------- the last guard


def _composed() -> tuple[EmailMessage, bytes]:
    message = compose(
        ComposeRequest(
            sender=Mailbox("Doe, John", "j@example.org"), to=(BOB,), subject="hi", text="x"
        )
    )
    return message, serialize(message)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Subject: hi\r\n", b"Subject: hi\r\nBcc: x@evil.test\r\n"),  # an added field
        (b"Subject: hi\r\n", b"Subject: a\r\n\r\nX: hi\r\n"),  # the block ends early
        (b"Subject: hi\r\n", b"Subject: hi\r\n \r\n"),  # a blank continuation line
        (b"Subject: hi\r\n", b"Subject: hi\rBcc: x@evil.test\r\n"),  # a bare CR
        (b"Subject: hi\r\n", b"Subject: ho\r\n"),  # another meaning
        (b'From: "Doe, John" <j@example.org>', b"From: Doe, John <j@example.org>"),  # two boxes
        (b"Content-Type: text/plain", b"Content-Type: text/html"),
    ],
)
def test_the_wire_check_refuses_bytes_that_differ_from_the_message(old: bytes, new: bytes) -> None:
    from mailctl.mime.wire_check import check_wire_headers

    message, data = _composed()
    check_wire_headers(message, data, utf8=False)  # the untouched bytes pass
    assert old in data
    with pytest.raises(HeaderInjectionError):
        check_wire_headers(message, data.replace(old, new, 1), utf8=False)


@pytest.mark.parametrize("payload", [INJECT, INJECT_B, ENDS_BLOCK])
@pytest.mark.parametrize("header", ["Subject", "X-Note", "Content-Disposition"])
def test_the_wire_policy_refuses_decoded_breaks_even_past_the_input_checks(
    payload: str, header: str
) -> None:
    """A header set directly (no require_clean) still cannot put a line break on the wire."""
    from mailctl.mime.headers import wire_policy

    message = EmailMessage(policy=wire_policy())
    if header == "Content-Disposition":
        message.set_content(b"x", "application", "octet-stream", filename=payload)
    else:
        message[header] = payload
    with pytest.raises(HeaderInjectionError, match=header):
        message.as_bytes(policy=wire_policy())


# --------------------------------------------------------------------------- other members


def test_inline_name_with_a_clean_encoded_word_is_refused(tmp_path: Path) -> None:
    """The part's filename would be decoded while the HTML's cid: URL names the literal."""
    image = tmp_path / "=?utf-8?q?logo?=.png"
    image.write_bytes(b"GIF89a")
    html = f"<img src='cid:{image.name}'>"
    result = _cli([*BASE, "--html", html, "--inline", str(image)], tmp_path)
    assert result.exit_code == 65
    assert "cid: URL" in json.loads(result.stdout)["errors"][0]["message"]


@pytest.mark.parametrize("value", ["https://example.org/u?id=?42", "a =? b", "50% ?= maybe"])
def test_text_with_a_bare_marker_is_written_as_is(value: str) -> None:
    """Only text a reader would decode is encoded; a lone '=?' or '?=' stays readable."""
    message = compose(
        ComposeRequest(
            sender=SENDER, to=(BOB,), subject=value, extra_headers=(("X-Url", value),), text="x"
        )
    )
    data = serialize(message)
    assert f"Subject: {value}\r\n".encode() in data
    assert f"X-Url: {value}\r\n".encode() in data


# ISO-2022-JP switches character sets with ESC sequences: its bytes hold 0x1B, its text not.
JAPANESE = "=?ISO-2022-JP?B?GyRCRnxLXDhsJE4lRiU5JUgbKEI=?="
JAPANESE_NAME = "=?ISO-2022-JP?B?GyRCOzNFRBsoQiAbJEJCQE86GyhC?="


def test_iso_2022_jp_encoded_words_are_not_controls(tmp_path: Path) -> None:
    result = _cli(
        [*BASE[:-4], "--to", f"{JAPANESE_NAME} <b@example.org>", "--body", "x",
         "--subject", JAPANESE],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.stdout
    envelope = json.loads(result.stdout)
    assert envelope["status"] == "ok"


def test_sendmail_t_with_iso_2022_jp_display_names(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    config = _sendmail_config(tmp_path / "c.toml", smtp_server, "main@example.org")
    message = (
        f"From: {JAPANESE_NAME} <main@example.org>\nTo: {JAPANESE_NAME} <x@example.org>\n"
        f"Subject: {JAPANESE}\n\nbody\n"
    ).encode()
    proc = _sendmail(["-t", "-i"], message, config)
    assert proc.returncode == 0, proc.stderr
    assert smtp_server.messages[0].rcpt_tos == ["x@example.org"]


# Found by test_no_encoded_value_escapes_its_header: an encoded word whose bytes are not text
# in its charset (an unknown one, or invalid UTF-8) leaves the email package holding
# surrogates, and serialising it crashed (exit 70, internal error).
UNDECODABLE = [
    "=?unknown-8bit?b?QmNjOiB4QGV2aWwudGVzdEJjYzogeEBldmlsLnRlc3TDqQ==?=x@evil.test",
    "=?unknown-8bit?b?w6k=?=x",
    "=?x-no-such-charset?q?caf=C3=A9?=",
    "=?utf-8?q?=80=81?=",
    "=?us-ascii?q?caf=E9?=",
]


@pytest.mark.parametrize("payload", UNDECODABLE)
@pytest.mark.parametrize("option", ["--subject", "--header"])
def test_encoded_word_that_is_not_text_in_its_charset_is_refused(
    tmp_path: Path, payload: str, option: str
) -> None:
    value = payload if option == "--subject" else f"X-Note: {payload}"
    result = _cli([*BASE, option, value], tmp_path)
    assert result.exit_code == 65, result.stdout + result.stderr
    (error,) = json.loads(result.stdout)["errors"]
    assert error["code"] == "invalid_input", error
    assert "not text in its charset" in error["message"], error


def test_clean_encoded_words_in_odd_charsets_still_mean_their_text(tmp_path: Path) -> None:
    for word in (
        "=?iso-2022-jp?b?GyRCRnxLXDhsGyhC?=",
        "=?utf-7?q?Zo+AOs-?=",
        "=?utf-8?q?caf=C3=A9?=",
    ):
        result = _cli([*BASE, "--subject", word], tmp_path)
        assert result.exit_code == 0, result.stdout


# Every character the full check refuses, some it accepts, and the encoded-word marker.
_SUSPECT = st.sampled_from(
    [chr(c) for c in range(0x00, 0x21)]
    + [chr(c) for c in range(0x7F, 0xA1)]
    + ["\u2028", "\u2029", "\ud800", "\udcff", "\u00a0", "\u3000", "é", "a", "=", "?", " "]
)


@given(value=st.text(alphabet=_SUSPECT, max_size=12))
@settings(max_examples=3000, deadline=None)
def test_the_fast_clean_check_accepts_nothing_the_full_check_refuses(value: str) -> None:
    # header_safety._clean skips the full check for printable text without "=?" (bulk-send
    # checks several values a row): it must never let through what the full check refuses.
    from mailctl.mime import header_safety

    controls = (
        "\r" in value
        or "\n" in value
        or "\x00" in value
        or header_safety._OTHER_CONTROLS.search(value) is not None
    )
    full = header_safety.non_utf8(value) is None and not controls
    assert (header_safety.line_problem(value) is not None) == controls, repr(value)
    if header_safety._clean(value):
        assert full, repr(value)
    if not full:
        with pytest.raises((HeaderInjectionError, InputDataError)):
            header_safety.require_clean("field", value)


_FOLDABLE = st.sampled_from(
    [
        "a",
        "Z",
        " ",
        "\t",
        "=",
        "?",
        "é",
        "\u00a0",
        "\r",
        "\x7f",
        "\u2028",
        "x" * 30,
        "=?utf-8?q?a?=",
    ]
)


@given(
    name=st.sampled_from(["Subject", "Message-ID", "X-Campaign", "X\rBad"]),
    text=st.lists(_FOLDABLE, max_size=8).map("".join),
    utf8=st.booleans(),
)
@settings(max_examples=3000, deadline=None)
def test_the_short_line_fast_path_folds_as_the_full_path(name: str, text: str, utf8: bool) -> None:
    # WirePolicy.fold_text writes a short printable line directly (bulk-send's Subject and
    # Message-ID of every row): the same text, or the same refusal, as the full path.
    from mailctl.mime.wire_policy import wire_policy

    policy = wire_policy(utf8=utf8)
    try:
        expected: str | type[Exception] = policy._fold_text_full(name, text)
    except (HeaderInjectionError, InputDataError) as err:
        expected = type(err)
    try:
        got: str | type[Exception] = policy.fold_text(name, text)
    except (HeaderInjectionError, InputDataError) as err:
        got = type(err)
    assert got == expected
