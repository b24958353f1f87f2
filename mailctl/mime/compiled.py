"""The fast bulk message builder: a MIME skeleton compiled once, each row's parts put in as bytes.

DESIGN.md: an `EmailMessage` per row costs ~3.5 ms; the same bytes assembled from pre-encoded
parts cost ~80 us. The skeleton holds the boundaries and every static part (MIME-Version,
Content-Type lines, attachments the template names without a variable) as wire bytes; a row
adds its header lines (folded by mailctl's `WirePolicy`, so both paths write headers the same
way), its text and HTML bodies (7bit, quoted-printable or base64 picked as `compose` picks)
and its own attachments (encoded once per file by mime/attachment_cache.py). The output is
proven equal to `compose` + `serialize` by tests/test_bulk_template_props.py.
"""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from mailctl.errors import HeaderInjectionError, InputDataError
from mailctl.mime.compose import MAX_LINE, normalise_text, text_cte
from mailctl.mime.encoded_words import looks_encoded
from mailctl.mime.header_safety import require_utf8
from mailctl.mime.wire_policy import wire_policy

__all__ = [
    "EncodedAttachment",
    "Skeleton",
    "check_header_block",
    "encode_attachment",
    "fold_mailboxes",
    "fold_text",
    "text_part",
]

CRLF: Final = b"\r\n"
_B64_LINE: Final = 76  # RFC 2045 6.8: at most 76 characters a line
# RFC 2231 7: attribute-char, the characters of a parameter value written without %XX.
_ATTR_CHAR: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$&+.^_`|~-"
)
_BLANK_CONTINUATION: Final = re.compile(rb"\r\n[ \t]+\r\n")
_QUOTABLE: Final = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")  # printable ASCII but '"' '\'


def fold_text(name: str, text: str, *, utf8: bool) -> bytes:
    """One unstructured header (Subject, a custom header) as wire bytes, folded at 78."""
    policy = wire_policy(utf8=utf8)
    return policy.fold_text(name, text).encode("utf-8" if utf8 else "ascii")


def fold_mailboxes(name: str, items: Iterable[tuple[str, str]], *, utf8: bool) -> bytes:
    """One address header for (display name, addr-spec) pairs, as WirePolicy folds it."""
    folded = wire_policy(utf8=utf8).fold_mailboxes(name, items)
    return folded.encode("utf-8" if utf8 else "ascii")


def check_header_block(head: bytes, *, fields: int) -> None:
    """The cheap per-row guard: `head` is exactly `fields` header fields, no line over 998.

    Every value was checked before it was folded, and each field was folded into header
    lines; this catches whatever slipped past: a bare CR or LF, an empty line or a blank
    continuation (some readers end the header block there), or a line break that starts one
    field too many. Counting line ends instead of parsing lines (wire_check.header_field_names,
    ~10 us) costs ~1 us a message (benchmarks/bulk_render.py). Raises HeaderInjectionError.
    """
    crlf = head.count(CRLF)
    continued = head.count(b"\r\n ") + head.count(b"\r\n\t")
    broken = (
        head.count(b"\r") != crlf
        or head.count(b"\n") != crlf
        or not head.endswith(CRLF)
        or head[:1] in (b" ", b"\t")
        or b"\r\n\r\n" in head
        or _BLANK_CONTINUATION.search(head) is not None
    )
    if broken or crlf - continued != fields:
        raise HeaderInjectionError(
            "the header block holds other lines than were rendered",
            hint="mailctl refuses to send what it did not mean to write; please report it",
        )
    if len(head) > MAX_LINE and max(map(len, head.split(CRLF))) > MAX_LINE:
        raise InputDataError(f"a header line is longer than {MAX_LINE} octets")


def _base64_lines(data: bytes) -> bytes:
    """base64 in lines of 76 characters, each ending CRLF (RFC 2045 6.8)."""
    encoded = binascii.b2a_base64(data, newline=False)
    if len(encoded) <= _B64_LINE:
        return encoded + CRLF if encoded else b""
    lines = [encoded[i : i + _B64_LINE] for i in range(0, len(encoded), _B64_LINE)]
    return CRLF.join(lines) + CRLF


def _encode_text(text: str, boundary_free: Sequence[bytes]) -> tuple[str, bytes]:
    """(CTE, encoded body with CRLF line ends) for text already normalised to LF lines."""
    cte = text_cte(text)
    data = text.encode("utf-8")
    if cte == "7bit":
        body = data.replace(b"\n", CRLF)
        # A boundary starts with "=_", which quoted-printable and base64 never write; only
        # 7-bit text can hold one (RFC 2046 5.1.1 forbids it), so such text is re-encoded.
        if not any(boundary in body for boundary in boundary_free):
            return cte, body
        cte = "quoted-printable"
    if cte == "quoted-printable":
        # istext: line ends stay line ends; trailing blanks and '=' are escaped (RFC 2045 6.7).
        return cte, binascii.b2a_qp(data, istext=True).replace(b"\n", CRLF)
    # RFC 2045 6.8 / RFC 2046 4.1.1: text is base64-encoded in canonical form, CRLF lines.
    return cte, _base64_lines(data.replace(b"\n", CRLF))


def text_part(text: str, subtype: str, *, boundaries: Sequence[bytes] = ()) -> bytes:
    """A text/* part (its Content-* lines, a blank line, the body), charset utf-8.

    Line ends become LF then CRLF as `compose` does. Raises InputDataError for text that is
    not UTF-8 (surrogate escapes of undecodable input).
    """
    try:
        text.encode("utf-8")  # one C pass; require_utf8's regex only to word the error
    except UnicodeEncodeError:
        require_utf8(f"the {subtype} body", text)
        raise
    cte, body = _encode_text(normalise_text(text), boundaries)
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n'
    return head.encode("ascii") + CRLF + body


@dataclass(frozen=True)
class EncodedAttachment:
    """An attachment part as wire bytes: its headers, a blank line, base64 lines."""

    filename: str
    content_type: str
    part: bytes
    size: int  # of the file, for the per-message budget


def _param(key: str, value: str) -> str:
    """`key="value"`, or RFC 2231 `key*=utf-8''%XX` for what a quoted-string cannot hold.

    A quoted value holding an encoded word is decoded by readers (README: a clean encoded
    word means its decoded text), as `compose` writes it too.
    """
    if value.isascii() and _QUOTABLE.fullmatch(value):
        return f'{key}="{value}"'
    encoded = "".join(
        chr(byte) if byte in _ATTR_CHAR else f"%{byte:02X}" for byte in value.encode("utf-8")
    )
    return f"{key}*=utf-8''{encoded}"


def encode_attachment(data: bytes, *, filename: str, content_type: str) -> EncodedAttachment:
    """Encode a file as an attachment part, in `compose`'s header order (CTE, disposition, type).

    `filename` was checked by compose.attachment_name. Raises InputDataError if a header line
    would be longer than 998 octets (a name far past any file system's NAME_MAX).
    """
    head = (
        "Content-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: attachment;\r\n {_param('filename', filename)}\r\n"
        f"Content-Type: {content_type};\r\n {_param('name', filename)}\r\n"
    )
    if any(len(line) > MAX_LINE for line in head.split("\r\n")):
        raise InputDataError(f"attachment name {filename[:40]!r}... is too long for a header")
    if looks_encoded(filename):
        # What readers decode must be what `compose` means: checked like the header values.
        from mailctl.mime.header_safety import require_clean

        require_clean("attachment file name", filename)
    part = head.encode("ascii") + CRLF + _base64_lines(data)
    return EncodedAttachment(filename, content_type, part, len(data))


def _boundary() -> str:
    # "=_" never occurs in quoted-printable or base64 output (RFC 2045 6.7, 6.8), and 128
    # random bits make a collision with 7-bit text chance-free; _encode_text checks anyway.
    return "=_mailctl_" + secrets.token_hex(16)


class Skeleton:
    """The MIME structure of a template, as `compose` builds it, with its boundaries fixed.

    text -> text/plain; text + html -> multipart/alternative (RFC 2046 5.1.4, HTML last);
    any attachment -> multipart/mixed around that. `static` are attachments known at compile
    time; a row adds its own after them.
    """

    def __init__(self, *, html: bool, attachments: bool, static: Sequence[EncodedAttachment]):
        self.html = html
        self.mixed = attachments or bool(static)
        self.static = tuple(static)
        self._alt = _boundary().encode("ascii") if html else b""
        self._mix = _boundary().encode("ascii") if self.mixed else b""
        self._boundaries = tuple(b for b in (self._alt, self._mix) if b)

    def body(
        self,
        text: str,
        html: str | None,
        attachments: Sequence[EncodedAttachment] = (),
    ) -> bytes:
        """Everything after the message's own headers, from MIME-Version to the end."""
        content = text_part(text, "plain", boundaries=self._boundaries)
        if self.html:
            assert html is not None
            alt = self._alt
            content = (
                b'Content-Type: multipart/alternative;\r\n boundary="' + alt + b'"\r\n\r\n--'
                + alt + CRLF + content + b"\r\n--" + alt + CRLF
                + text_part(html, "html", boundaries=self._boundaries)
                + b"\r\n--" + alt + b"--\r\n"
            )  # fmt: skip
        if not self.mixed:
            return b"MIME-Version: 1.0\r\n" + content
        mix = self._mix
        pieces = [
            b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n boundary="' + mix + b'"\r\n',
            CRLF,
            b"--" + mix + CRLF,
            content,
        ]
        for attachment in (*self.static, *attachments):
            pieces += [b"\r\n--", mix, CRLF, attachment.part]
        pieces += [b"\r\n--", mix, b"--\r\n"]
        return b"".join(pieces)
