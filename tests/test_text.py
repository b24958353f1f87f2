"""mailctl.text: the one way to show text mailctl did not write (terminal, value, excerpt)."""

from __future__ import annotations

import io
import unicodedata
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.table import Table
from rich.text import Text
from servers.smtp_server import TEST_PASSWORD, SmtpTestServer
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.cli.output import make_console
from mailctl.text import EXCERPT_LIMIT, QUOTE_LIMIT, clean, excerpt, inert, quote

# Every code point class that matters: controls, C1, bidi, line separators, surrogates, astral.
ANY_TEXT = st.text(
    alphabet=st.characters(codec=None, exclude_categories=()),
    max_size=300,
)
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
MARKUP_ALPHABET = st.sampled_from([*"[]/:=#@ab12 _-.,", "[bold]", "[/]", ":smile:", "[/x]"])


def _unsafe(char: str) -> bool:
    """What a terminal would act on: C0 (but tab and newline), DEL, C1, bidi controls."""
    code = ord(char)
    return (code < 0x20 and char not in "\t\n") or 0x7F <= code <= 0x9F or char in BIDI


def _is_surrogate(char: str) -> bool:
    return 0xD800 <= ord(char) <= 0xDFFF


# -- clean: the terminal -------------------------------------------------------------------


@given(ANY_TEXT)
def test_clean_leaves_nothing_a_terminal_acts_on(text: str) -> None:
    shown = clean(text)
    assert not any(_unsafe(char) or _is_surrogate(char) for char in shown)
    shown.encode("utf-8")  # strict: a non-UTF-8 name cannot crash the writer
    assert clean(shown) == shown


@given(st.text(alphabet=st.characters(categories=("L", "N", "P", "S", "Zs")), max_size=100))
def test_clean_keeps_printable_text(text: str) -> None:
    assert clean(text) == text


def test_clean_examples() -> None:
    assert clean("ok\x1b[31mred\x07\x9b") == "ok[31mred"
    assert clean("tab\tand\nnewline") == "tab\tand\nnewline"
    assert clean("abc\u202edef") == "abcdef"
    assert clean("caf\udce9.txt") == "caf\\xe9.txt"


@given(st.lists(MARKUP_ALPHABET, max_size=30).map("".join))
@settings(max_examples=200)
def test_rich_output_prints_text_as_is(text: str) -> None:
    """Table cells and lines are never read as rich markup or :emoji: codes."""
    for renderable in (clean(text), Text(clean(text))):
        console = make_console(file=io.StringIO())
        table = Table("cell", box=None, show_header=False)
        table.add_row(renderable)
        console.print(table)
        console.print(renderable)
        printed = console.file.getvalue()  # type: ignore[attr-defined]
        assert printed.count(clean(text).strip()) >= 2, printed


def test_refused_recipient_with_markup_in_its_reply_is_printed_as_is(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    """A server's reply text in the refused-recipients table: '[/bold]' used to raise rich's
    MarkupError after the message had been sent, turning a partial send into exit 70."""
    smtp_server.reject("gone@example.org", code=550, text="5.1.1 no [/bold] such :smile: user")
    result = CliRunner().invoke(
        app,
        [
            "send", "--from", "a@example.org", "--to", "bob@example.org",
            "--to", "gone@example.org", "--body", "x", "--allow-partial",
            f"--server=127.0.0.1:{smtp_server.port}", "--starttls",
            "--ca-file", str(smtp_server.ca_file), "--user", "alice",
        ],
        env={
            "MAILCTL_CONFIG": str(tmp_path / "none.toml"),
            "MAILCTL_PASSWORD": TEST_PASSWORD,
            "NO_COLOR": "1",
        },
    )  # fmt: skip
    assert result.exit_code == 69, result.stderr
    assert "no [/bold] such :smile: user" in result.stderr
    assert smtp_server.messages[0].rcpt_tos == ["bob@example.org"]


# -- quote: a value in a one-line message --------------------------------------------------


@given(ANY_TEXT, st.integers(min_value=8, max_value=200))
def test_quote_is_one_printable_bounded_line(text: str, limit: int) -> None:
    shown = quote(text, limit=limit)
    assert shown.isprintable(), shown
    assert len(shown) <= limit + 3
    shown.encode("utf-8")
    if len(repr(text)) <= limit:
        assert shown == repr(text)  # exact: the user can find a stray space or CR
    else:
        assert shown.endswith("...")


def test_quote_examples(tmp_path: Path) -> None:
    assert quote("a\r\nb") == "'a\\r\\nb'"
    assert quote("x" * 500).endswith("...") and len(quote("x" * 500)) == QUOTE_LIMIT + 3
    assert quote(tmp_path / "r\u00e9sum\u00e9.pdf") == repr(str(tmp_path / "r\u00e9sum\u00e9.pdf"))
    assert quote(Path("caf\udce9")) == "'caf\\udce9'"
    assert quote(587) == "587"
    assert quote("\u202eevil") == "'\\u202eevil'"


# -- excerpt: someone else's text in a one-line message -------------------------------------


@given(st.one_of(ANY_TEXT, st.binary(max_size=400)), st.integers(min_value=0, max_value=300))
def test_excerpt_is_one_printable_bounded_line(text: str | bytes, limit: int) -> None:
    shown = excerpt(text, limit=limit)
    assert len(shown) <= limit
    assert shown.isprintable() or shown == "", shown
    assert not any(unicodedata.category(char) == "Zl" for char in shown)
    assert "  " not in shown and shown == shown.strip()
    shown.encode("utf-8")


@given(ANY_TEXT)
def test_excerpt_masks_the_secret(text: str) -> None:
    secret = "pa55-w0rd"
    assert secret not in excerpt(f"{text} {secret} {text}", secret=secret, limit=10_000)


def test_excerpt_examples() -> None:
    assert excerpt(b"-ERR [AUTH] bad\r\n  password\r\n") == "-ERR [AUTH] bad password"
    assert excerpt("250 ok\x1b[2J\x00") == "250 ok\\x1b[2J\\x00"
    assert excerpt("x" * 500) == "x" * (EXCERPT_LIMIT - 3) + "..."
    assert excerpt("NO " + TEST_PASSWORD, secret=TEST_PASSWORD) == "NO <redacted>"
    assert excerpt(b"\xff ok") == "\ufffd ok"


# -- inert: text a message chose (subjects, names, bodies), for tables and blocks ---------------

_ACTING = {"\x1b", "\r", "\x00", "\x07", "\x9b", "\u202e", "\u2066", "\u2028", "\u2029"}


@given(ANY_TEXT)
def test_inert_leaves_nothing_a_terminal_acts_on(text: str) -> None:
    one_line = inert(text)
    assert not _ACTING.intersection(one_line) and "\n" not in one_line and "\t" not in one_line
    block = inert(text, lines=True)
    assert not _ACTING.intersection(block)
    assert block.count("\n") == text.count("\n")
    one_line.encode("utf-8")  # lone surrogates are shown as \xNN: writable to any UTF-8 stream
    block.encode("utf-8")


def test_inert_shows_what_it_replaced() -> None:
    assert inert("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"
    assert inert("a\r\nb") == "a\\x0d\\x0ab"
    assert inert("a\r\nb\tc", lines=True) == "a\\x0d\nb\tc"
    assert inert("\u202egpj.exe") == "\\u202egpj.exe"
    assert inert("[bold red]x[/]") == "[bold red]x[/]"  # markup is the printer's business
