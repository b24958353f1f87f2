"""WirePolicy: policy.SMTP with the email package's header folding corrected for the wire."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from email.headerregistry import (
    Address,
    AddressHeader,
    Group,
    MessageIDHeader,
    UnstructuredHeader,
)
from email.policy import EmailPolicy
from typing import TYPE_CHECKING, Final

from mailctl.errors import AddressError, HeaderInjectionError
from mailctl.hosts import to_ascii_domain
from mailctl.mime.encoded_words import looks_encoded
from mailctl.mime.header_safety import line_problem
from mailctl.text import quote

__all__ = ["WirePolicy", "wire_policy"]

_PLAIN_ASCII: Final = re.compile(r"[\x20-\x7e\t]*")
_PLAIN_UTF8: Final = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]*")
_FOLD_TOKEN: Final = re.compile(r"[ \t]*[^ \t]+(?:[ \t]+$)?")
_ENCODED_WORD: Final = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_ADDRESS_HEADERS: Final = frozenset({"from", "sender", "to", "cc", "bcc", "reply-to"})
# RFC 5322 3.2.3 atext: a display-name word made only of these needs no quotes.
_ATEXT: Final = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_ATOM_PHRASE: Final = re.compile(rf"{_ATEXT.pattern}(?: {_ATEXT.pattern})*")
_EW_CHUNK: Final = 45  # octets per encoded word: 60 base64 characters, 72 with the wrapper
_MAX_TOKEN: Final = 990  # RFC 5322 2.1.1: 998 octets a line, less the name and ": "


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 'B' encoded words for `text`, each holding whole characters (RFC 2047 5).

    Decoders drop the blank between adjacent encoded words (RFC 2047 6.2), so every
    character, spaces included, goes inside a word. Words end after a space where possible:
    CPython's phrase parser wrongly puts a space between adjacent words, and a split after a
    space costs it only a doubled blank instead of a space inside a word.
    """
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in text:
        width = len(char.encode("utf-8"))
        if chunk and size + width > _EW_CHUNK:
            cut = len(chunk)
            if " " in chunk[1:]:
                cut = len(chunk) - chunk[::-1].index(" ")
            words.append(_b_word("".join(chunk[:cut])))
            chunk = chunk[cut:]
            size = len("".join(chunk).encode("utf-8"))
        chunk.append(char)
        size += width
    if chunk:
        words.append(_b_word("".join(chunk)))
    return words


def _b_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode('utf-8')).decode('ascii')}?="


def _encoded_words_separated(folded: str) -> bool:
    """True if every encoded word stands between whitespace, as RFC 2047 5 requires.

    CPython can glue one to the next word (`=?utf-8?b?MMKgIMKg?=0` for "0<NBSP> <NBSP>0"),
    which strict decoders show as raw text.
    """
    for match in _ENCODED_WORD.finditer(folded):
        before = folded[match.start() - 1] if match.start() else " "
        after = folded[match.end()] if match.end() < len(folded) else " "
        if not (before.isspace() and after.isspace()):
            return False
    return True


if TYPE_CHECKING:
    from email.message import EmailMessage

    _PolicyBase = EmailPolicy[EmailMessage]
else:  # EmailPolicy is generic only in typeshed
    _PolicyBase = EmailPolicy


class WirePolicy(_PolicyBase):
    """policy.SMTP with corrections of how the email package folds headers.

    1. Unstructured and msg-id values that need no encoding (ASCII, or anything printable
       with utf8) are folded only at whitespace (RFC 5322 2.2.3), never turned into RFC 2047
       encoded words: CPython encodes any token longer than a line, which breaks
       References, In-Reply-To, Message-ID, Content-ID and List-Unsubscribe. Unstructured
       text a reader would decode (`=?x?q?...?=`) is written as encoded words, so a reader
       decodes it exactly once and sees the text; a bare "=?" stays as it is.
    2. Without utf8, an address whose domain is non-ASCII gets the IDNA A-label (RFC 5890):
       CPython would put an encoded word inside the domain. A non-ASCII local part has no
       ASCII form and raises AddressError (RFC 6531).
    3. Address lists are written by `_fold_addresses`: CPython loses spaces where it splits a
       phrase into encoded words, and drops the quotes of a long quoted display name when
       it folds it, so `"Doe, John" <j@x>` came back as two mailboxes.
    4. If CPython's folding glues an encoded word to a neighbouring word (RFC 2047 5), the
       value is written again as encoded words.
    5. A header whose decoded value holds CR, LF, NUL or another control character raises
       HeaderInjectionError instead of being written (CPython writes decoded line breaks of
       encoded words as real ones), and every folded header must be header lines.
    Source values of parsed messages (strings, not header objects) keep their bytes.
    """

    def fold(self, name: str, value: str) -> str:
        if not hasattr(value, "name"):
            return str(super().fold(name, value))
        return self._fold_header(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        if not hasattr(value, "name"):
            folded: bytes = super().fold_binary(name, value)
            return folded
        charset = "utf-8" if self.utf8 else "ascii"
        return self._fold_header(name, value).encode(charset, "surrogateescape")

    def _fold_header(self, name: str, value: str) -> str:
        _refuse_breaks(name, value)
        folded = self._fold_value(name, value)
        self._check_lines(name, folded)
        return folded

    def _fold_value(self, name: str, value: str) -> str:
        if isinstance(value, (UnstructuredHeader, MessageIDHeader)):
            text = str(value)
            if isinstance(value, UnstructuredHeader) and looks_encoded(text):
                # Text a reader would decode is encoded itself, so it is read literally.
                return self._fold_tokens(name, [(" ", word) for word in _encoded_words(text)])
            plain = self._plain_fold(name, text)
            if plain is not None:
                return plain
        value = self._ascii_addresses(name, value)
        if isinstance(value, AddressHeader):
            rewritten = self._fold_addresses(name, value)
            if rewritten is not None:
                return rewritten
        folded = str(super().fold(name, value))
        if _encoded_words_separated(folded):
            return folded
        if isinstance(value, UnstructuredHeader):
            return self._fold_tokens(name, [(" ", word) for word in _encoded_words(str(value))])
        return folded  # pragma: no cover - other structured headers hold no encoded words

    def _check_lines(self, name: str, folded: str) -> None:
        """Every line of a folded header is the field or a continuation (RFC 5322 2.2.3)."""
        lines = folded.split(self.linesep)
        body, last = lines[:-1], lines[-1]
        broken = (
            last != ""
            or not body
            or any("\r" in line or "\n" in line for line in body)
            or any(line[:1] not in (" ", "\t") or not line.strip(" \t") for line in body[1:])
        )
        if broken:
            raise HeaderInjectionError(
                f"header {name} does not fold into header lines",
                hint="a value must not end a header line or the header block",
            )

    def _plain_fold(self, name: str, text: str) -> str | None:
        pattern = _PLAIN_UTF8 if self.utf8 else _PLAIN_ASCII
        # Text that could be read as an encoded word on the way back is encoded (_fold_value).
        if looks_encoded(text) or not pattern.fullmatch(text):
            return None
        limit = self.max_line_length or 0
        if text[:1] not in (" ", "\t") and text.strip(" \t") and len(name) + 2 + len(text) <= limit:
            return f"{name}: {text}{self.linesep}"  # what the tokens below join to, unfolded
        tokens = _FOLD_TOKEN.findall(text)
        if any(len(token) > _MAX_TOKEN - len(name) for token in tokens):
            return None  # only encoded words can split a token this long
        if not tokens:
            return f"{name}: {self.linesep}"
        pieces = [(" ", tokens[0].lstrip(" \t"))]
        # Fold before a token's own leading whitespace: unfolding restores it exactly.
        for token in tokens[1:]:
            stripped = token.lstrip(" \t")
            pieces.append((token[: len(token) - len(stripped)], stripped))
        return self._fold_tokens(name, pieces)

    def _fold_tokens(self, name: str, pieces: list[tuple[str, str]]) -> str:
        """Join (glue, token) pairs after `name:`, breaking lines inside the glue's blanks.

        The glue's last character must be a blank (or the glue empty); "," then " " folds
        as "," CRLF " ".
        """
        limit = self.max_line_length or 0
        lines: list[str] = []
        current = f"{name}:"
        for index, (glue, token) in enumerate(pieces):
            if index and limit and glue and len(current) + len(glue) + len(token) > limit:
                head, blank = glue[:-1], glue[-1]
                lines.append(current + head)
                current = blank + token
            else:
                current += glue + token
        lines.append(current)
        return self.linesep.join(lines) + self.linesep

    def _fold_addresses(self, name: str, header: AddressHeader) -> str | None:
        """Write an address list as `phrase <addr-spec>` items (see fold_mailboxes)."""
        items: list[tuple[str, str]] = []
        for group in header.groups:
            if group.display_name is not None:
                return None  # pragma: no cover - compose never writes groups
            for address in group.addresses:
                spec = Address(username=address.username, domain=address.domain).addr_spec
                items.append((address.display_name, spec))
        return self.fold_mailboxes(name, items)

    def fold_mailboxes(self, name: str, items: Iterable[tuple[str, str]]) -> str:
        """Fold `name: phrase <addr-spec>, ...` for (display name, addr-spec) pairs.

        The addr-specs are written as given (the caller picks U- or A-label domains).
        Folding is allowed only at blanks between tokens; a quoted display name is split at
        its own spaces, which RFC 5322 3.2.4 allows inside a quoted-string (FWS), so the
        quotes and the comma inside them stay where they were. Also the fast path of bulk
        messages (mime/compiled.py) folds with this, so both write the same header.
        """
        pieces: list[tuple[str, str]] = []
        for display_name, spec in items:
            glue = ", " if pieces else " "
            if not display_name:
                pieces.append((glue, spec))
                continue
            limit = _MAX_TOKEN - len(name)
            for word in self._phrase(display_name, limit):
                pieces.append((glue, word))
                glue = " "
            pieces.append((" ", f"<{spec}>"))
        return self._fold_tokens(name, pieces)

    def fold_text(self, name: str, text: str) -> str:
        """Fold an unstructured value (Subject, a custom header) given as a plain string.

        What `fold` writes for an UnstructuredHeader, except that text needing encoding is
        always written as 'B' encoded words (CPython picks 'Q' or 'B'): the same meaning.
        Raises HeaderInjectionError for a control character in `text` or a folded result
        that is not header lines.
        """
        limit = self.max_line_length or 0
        if (
            len(name) + 2 + len(text) <= limit
            and "=?" not in text
            and text.isprintable()
            and name.isprintable()
            and (self.utf8 or text.isascii())
            and text[:1] != " "
            and text.strip(" ")
        ):
            # What the steps below return for a short line of printable text (no tab, no
            # control, nothing a reader could decode), without them: the Subject and the
            # Message-ID of every bulk-send row.
            return f"{name}: {text}{self.linesep}"
        return self._fold_text_full(name, text)

    def _fold_text_full(self, name: str, text: str) -> str:
        if looks_encoded(text):
            # A clean encoded word means its decoded text (README): the header object a
            # message would hold decodes it, and _fold_value writes what that holds.
            text = str(self.header_factory(name, text))
        problem = line_problem(text)
        if problem is not None:
            raise HeaderInjectionError(f"header {name} holds {problem} after decoding")
        folded = None if looks_encoded(text) else self._plain_fold(name, text)
        if folded is None:
            folded = self._fold_tokens(name, [(" ", word) for word in _encoded_words(text)])
        self._check_lines(name, folded)
        return folded

    def _phrase(self, display_name: str, limit: int) -> list[str]:
        """The words of a display name (RFC 5322 3.2.5 phrase); blanks separate them.

        Atoms stay bare; anything else is one quoted-string split at its spaces; text that
        cannot be written as is (non-ASCII without utf8, controls, Unicode blanks, a blank
        run, or text that readers would decode as an encoded word) becomes encoded words.
        """
        words = display_name.split(" ")
        if _ATOM_PHRASE.fullmatch(display_name) and "=?" not in display_name:
            return words  # the common case, decided below too: atoms need no quotes
        raw_ok = not looks_encoded(display_name) and all(words) and all(map(self._writable, words))
        if raw_ok:
            if all(self._atom(word) for word in words):
                return words
            quoted = [w.replace("\\", "\\\\").replace('"', '\\"') for w in words]
            quoted[0] = '"' + quoted[0]
            quoted[-1] = quoted[-1] + '"'
            if all(len(word) <= limit for word in quoted):
                return quoted
        return _encoded_words(display_name)

    def _writable(self, word: str) -> bool:
        """Visible ASCII, or with utf8 also printable non-blank Unicode (RFC 6532 3.2)."""
        return all(
            "\x21" <= c <= "\x7e"
            if c.isascii()
            else self.utf8 and c.isprintable() and not c.isspace()
            for c in word
        )

    def _atom(self, word: str) -> bool:
        ascii_part = "".join(c for c in word if c.isascii())
        return not ascii_part or _ATEXT.fullmatch(ascii_part) is not None

    def _ascii_addresses(self, name: str, value: str) -> str:
        if (
            self.utf8
            or name.lower() not in _ADDRESS_HEADERS
            or not isinstance(value, AddressHeader)
        ):
            return value
        groups: tuple[Group, ...] = value.groups
        if all(a.domain.isascii() and a.username.isascii() for g in groups for a in g.addresses):
            return value
        rebuilt: list[Group] = []
        for group in groups:
            members: list[Address] = []
            for address in group.addresses:
                if not address.username.isascii():
                    raise AddressError(
                        f"header {name}: {quote(address.addr_spec)} has a non-ASCII local part",
                        hint="send with SMTPUTF8 (RFC 6531)",
                    )
                domain = to_ascii_domain(address.domain)
                members.append(Address(address.display_name, address.username, domain))
            rebuilt.append(Group(group.display_name, tuple(members)))
        header: str = self.header_factory(name, rebuilt)
        return header


_WIRE: Final = WirePolicy(linesep="\r\n")
_WIRE_UTF8: Final = _WIRE.clone(utf8=True)


def wire_policy(*, utf8: bool = False) -> WirePolicy:
    """The policy for wire bytes: CRLF, 78-column folding; `utf8` writes RFC 6532 headers."""
    return _WIRE_UTF8 if utf8 else _WIRE


def _refuse_breaks(name: str, value: str) -> None:
    """Refuse a header object whose decoded value (or a parameter) holds a control character.

    CPython decodes RFC 2047 words when it builds a header object and writes a decoded
    CR/LF of a parameter or (on 3.11) of unstructured text as a real line break.
    """
    texts = [str(value)]
    params = getattr(value, "params", None)
    if params:
        texts += [str(v) for v in params.values()]
    for text in texts:
        problem = line_problem(text)
        if problem is not None:
            raise HeaderInjectionError(f"header {name} holds {problem} after decoding")
