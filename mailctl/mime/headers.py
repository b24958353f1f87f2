"""Header safety: no CR, LF or NUL reaches a header or a command; addresses are unambiguous."""

from __future__ import annotations

import base64
import inspect
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email import _header_value_parser as hvp
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import (
    Address,
    AddressHeader,
    Group,
    HeaderRegistry,
    MessageIDHeader,
    UnstructuredHeader,
)
from email.policy import EmailPolicy
from email.utils import getaddresses, parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Final

from mailctl.errors import AddressError, HeaderInjectionError, InputDataError

__all__ = [
    "Mailbox",
    "WirePolicy",
    "check_extra_header",
    "is_msg_id",
    "parse_address_header",
    "parse_header_option",
    "parse_mailbox",
    "parse_mailbox_list",
    "parse_msg_ids",
    "require_clean",
    "shown",
    "to_ascii_domain",
    "validate_domain",
    "validate_ehlo_name",
    "wire_policy",
]

# Characters that end a line for someone: CR and LF for SMTP and RFC 5322, and the extra
# separators str.splitlines() honours, which the email package itself splits on
# (policy.header_store_parse), so letting them through would silently change a header.
_OTHER_CONTROLS: Final = re.compile("[\x01-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_SHOWN_LIMIT: Final = 120

# RFC 5322 2.2: field-name = 1*ftext; ftext = %d33-57 / %d59-126 (printable ASCII but ':').
_FIELD_NAME: Final = re.compile(r"[\x21-\x39\x3b-\x7e]+")

# RFC 5322 3.6.4 msg-id, read leniently on the left (obs-id-left is common in the wild) but
# always ASCII, without whitespace, angle brackets or a second '@'.
_ID_PART: Final = r"[\x21-\x3b\x3d\x3f\x41-\x7e]+"
_MSG_ID: Final = re.compile(rf"<{_ID_PART}@(?:{_ID_PART}|\[[\x21-\x5a\x5e-\x7e]*\])>")
_MSG_ID_LIST: Final = re.compile(rf"\s*(?:{_MSG_ID.pattern}\s*)+")
# RFC 5322 2.1.1: a line is at most 998 octets; leave room for "References: ".
MAX_MSG_ID_LENGTH: Final = 900

# RFC 1035 2.3.1 / RFC 5321 4.1.2: letters, digits, hyphen; no hyphen at either end.
_LDH_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# EHLO names are matched the same way but tolerate '_', which real host names carry.
_EHLO_LABEL: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")

# Header names compose owns; setting them with --header would duplicate or break the MIME tree.
_STRUCTURAL: Final = frozenset(
    {
        "content-type",
        "content-transfer-encoding",
        "mime-version",
        "content-disposition",
        "content-id",
    }
)
_DEDICATED: Final = {
    "from": "--from",
    "to": "--to",
    "cc": "--cc",
    "bcc": "--bcc",
    "reply-to": "--reply-to",
    "subject": "--subject",
    "in-reply-to": "--in-reply-to",
    "references": "--references",
}

_REGISTRY: Final = HeaderRegistry()
_BLANKS: Final = re.compile(r"[ \t]+")


def shown(value: str) -> str:
    """Render user data for a one-line error message: quoted, control characters escaped.

    `repr` escapes CR, LF, NUL and every other non-printable character, so the message can
    never break a terminal line or a log record; long values are cut.
    """
    if len(value) > _SHOWN_LIMIT:
        value = value[:_SHOWN_LIMIT] + "..."
    return repr(value)


def require_clean(field: str, value: str) -> str:
    """Return `value` unchanged if it can go into one header line or protocol command.

    Raises HeaderInjectionError naming `field` for CR, LF (a new header or SMTP command would
    start there), NUL, and other control or line-separator characters.
    """
    if "\r" in value or "\n" in value:
        raise HeaderInjectionError(
            f"{field} contains a line break", hint="header values must be a single line"
        )
    if "\x00" in value:
        raise HeaderInjectionError(f"{field} contains a NUL character")
    found = _OTHER_CONTROLS.search(value)
    if found:
        raise HeaderInjectionError(
            f"{field} contains the control character U+{ord(found.group()):04X}"
        )
    return value


# --------------------------------------------------------------------------- domains


def to_ascii_domain(domain: str) -> str:
    """Return the A-label (IDNA, RFC 3490/5891) form of `domain`; ASCII passes unchanged.

    Raises UnicodeError for labels IDNA cannot encode. Uses the stdlib codec (IDNA 2003),
    because the project does not depend on the `idna` package.
    """
    if domain.isascii():
        return domain
    return domain.encode("idna").decode("ascii")


def validate_domain(field: str, domain: str) -> str:
    """Check a host name (U-labels allowed) and return its A-label form.

    Raises AddressError naming `field` for empty labels, bad characters or lengths.
    """
    require_clean(field, domain)
    if not domain:
        raise AddressError(f"{field} has an empty domain")
    if domain.startswith("["):
        raise AddressError(
            f"{field}: domain literals such as {shown(domain)} are not supported",
            hint="use a host name",
        )
    try:
        ascii_domain = to_ascii_domain(domain)
    except UnicodeError as err:
        raise AddressError(f"{field}: domain {shown(domain)} is not a valid host name") from err
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or not all(_LDH_LABEL.fullmatch(label) for label in labels):
        raise AddressError(f"{field}: domain {shown(domain)} is not a valid host name")
    return ascii_domain


# --------------------------------------------------------------------------- mailboxes


def _split_addr_spec(addr_spec: str) -> tuple[str, str]:
    """Parse an addr-spec with the policy.default parser; (local_part, domain), or ValueError."""
    try:
        token, rest = hvp.get_addr_spec(addr_spec)
    except Exception as err:  # the parser raises IndexError and friends on odd input
        raise ValueError(str(err) or type(err).__name__) from err
    defects = [d for d in token.all_defects if not isinstance(d, NonASCIILocalPartDefect)]
    if rest or defects:
        raise ValueError(str(defects[0]) if defects else f"unexpected {rest!r}")
    return token.local_part, token.domain


def _check_mailbox(field: str, display_name: str, local: str, domain: str) -> None:
    require_clean(f"{field} display name", display_name)
    require_clean(field, local)
    if not local:
        raise AddressError(
            f"{field}: address {shown(local + '@' + domain)} has an empty local part"
        )
    validate_domain(field, domain)


@dataclass(frozen=True)
class Mailbox:
    """One validated mailbox: what a header shows and what SMTP's MAIL/RCPT carry.

    `addr_spec` is canonical (local part quoted only where RFC 5322 needs it); construction
    validates it again, so a Mailbox built by hand cannot smuggle a line break either.
    """

    display_name: str
    addr_spec: str

    def __post_init__(self) -> None:
        # A display name is a phrase (RFC 5322 3.2.5): runs of blanks mean one space and the
        # ends do not count, so normalise to what every parser reads back.
        require_clean("address display name", self.display_name)
        object.__setattr__(self, "display_name", _BLANKS.sub(" ", self.display_name).strip())
        require_clean("address", self.addr_spec)
        try:
            local, domain = _split_addr_spec(self.addr_spec)
        except ValueError as err:
            raise AddressError(f"invalid address {shown(self.addr_spec)}: {err}") from err
        _check_mailbox("address", self.display_name, local, domain)

    @property
    def local_part(self) -> str:
        """The local part, unquoted."""
        return _split_addr_spec(self.addr_spec)[0]

    @property
    def domain(self) -> str:
        """The domain as given (U-labels stay Unicode)."""
        return _split_addr_spec(self.addr_spec)[1]

    def address(self) -> Address:
        """This mailbox as an email.headerregistry.Address (for assigning to a header)."""
        local, domain = _split_addr_spec(self.addr_spec)
        return Address(display_name=self.display_name, username=local, domain=domain)

    def formatted(self) -> str:
        """Render for a header: the display name quoted where RFC 5322 3.4 needs it."""
        return str(self.address())

    @property
    def needs_smtputf8(self) -> bool:
        """True when the local part is non-ASCII: RFC 6531 allows that only with SMTPUTF8."""
        return not self.local_part.isascii()

    def envelope_address(self, *, smtputf8: bool) -> str:
        """The address for MAIL FROM / RCPT TO.

        Without SMTPUTF8 the domain is IDNA-encoded (RFC 5891) and a non-ASCII local part is
        refused with AddressError, since it has no ASCII form.
        """
        local, domain = _split_addr_spec(self.addr_spec)
        if smtputf8:
            return self.addr_spec
        if not local.isascii():
            raise AddressError(
                f"address {shown(self.addr_spec)} has a non-ASCII local part",
                hint="the server must offer SMTPUTF8 (RFC 6531)",
            )
        local_text = self.addr_spec[: len(self.addr_spec) - len(domain) - 1]
        return f"{local_text}@{to_ascii_domain(domain)}"


def _count_at_signs(value: str) -> int:
    """Count '@' outside quoted strings: each real address has exactly one there.

    A comment, a stray bracket or a second address hiding in a display name shows up as an
    extra '@' (CVE-2023-27043: `alice@example.org)<bob@evil>` read as alice by one parser).
    """
    count = 0
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "@" and not quoted:
            count += 1
    return count


def _supports_strict() -> bool:
    try:
        return "strict" in inspect.signature(getaddresses).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        return False


_HAS_STRICT: Final = _supports_strict()


def _strip_quoted(value: str) -> str:
    """Remove quoted strings (with backslash escapes): the part commas and parens count in."""
    out: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted:
            out.append(char)
    return "".join(out)


def _balanced_parens(value: str) -> bool:
    depth = 0
    for char in _strip_quoted(value):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _legacy_strict(value: str) -> list[tuple[str, str]]:
    """email.utils.getaddresses(strict=True), or the same checks where Python lacks them.

    Older patch releases (3.11.7 here) have no `strict=`: apply the checks CPython added for
    CVE-2023-27043 (balanced parentheses, one address per comma outside quotes, no '[' left
    in a result), so the outcome does not depend on the interpreter's patch level.
    """
    call: Callable[..., list[tuple[str, str]]] = getaddresses
    if _HAS_STRICT:
        return call([value], strict=True)
    if not _balanced_parens(value):
        return [("", "")]
    result = call([value])
    expected = 1 + _strip_quoted(value).count(",")
    if len(result) != expected or any("[" in addr for _, addr in result):
        return [("", "")]
    return result


def _legacy_lenient(value: str) -> list[tuple[str, str]]:
    call: Callable[..., list[tuple[str, str]]] = getaddresses
    pairs = call([value], strict=False) if _HAS_STRICT else call([value])
    return [pair for pair in pairs if pair[1]]


def _canonical(addr: str) -> str | None:
    try:
        local, domain = _split_addr_spec(addr)
    except ValueError:
        return None
    return Address(username=local, domain=domain).addr_spec


def _parse(field: str, value: str, *, user: bool) -> tuple[Mailbox, ...]:
    """Parse an address list with two parsers and accept it only when they agree.

    `user=True` (command-line input) also refuses groups and display names that look like a
    different address; `user=False` (headers of a message being sent as is) allows groups.
    """
    require_clean(field, value)
    text = value.strip()
    if not text:
        if user:
            raise AddressError(f"{field} is empty")
        return ()
    if user and "@" not in text:
        raise AddressError(f"{field}: {shown(value)} is not an email address (no '@')")
    try:
        header: Any = _REGISTRY("to", text)
    except Exception as err:  # the parser raises IndexError and friends on odd input
        raise AddressError(f"{field}: cannot parse address {shown(value)}") from err
    defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
    if defects:
        raise AddressError(f"{field}: invalid address {shown(value)}: {defects[0]}")
    groups: tuple[Group, ...] = header.groups
    if user and any(group.display_name is not None for group in groups):
        raise AddressError(f"{field}: group syntax is not allowed in {shown(value)}")
    addresses = [address for group in groups for address in group.addresses]
    modern = [address.addr_spec for address in addresses]

    # The legacy parser (email.utils) must find the same addresses, in the same order, and
    # every '@' outside quotes must belong to one of them: otherwise two readers of this
    # header could deliver to different people.
    legacy_pairs = _legacy_strict(text) if user else _legacy_lenient(text)
    legacy = [_canonical(addr) for _, addr in legacy_pairs]
    if legacy != modern or _count_at_signs(text) != len(modern):
        raise AddressError(
            f"{field}: ambiguous address {shown(value)}",
            hint="check quotes, angle brackets, parentheses and commas",
        )

    mailboxes: list[Mailbox] = []
    for address in addresses:
        _check_mailbox(field, address.display_name, address.username, address.domain)
        display = address.display_name
        if user and "@" in display and display.strip().lower() != address.addr_spec.lower():
            # `"ceo@example.com" <attacker@evil>` shows the reader an address nobody sent from.
            raise AddressError(
                f"{field}: display name {shown(display)} looks like an address "
                f"other than {shown(address.addr_spec)}"
            )
        mailboxes.append(Mailbox(display, address.addr_spec))
    return tuple(mailboxes)


def parse_mailbox(field: str, value: str) -> Mailbox:
    """Parse exactly one mailbox ("a@x" or "Name <a@x>") given for `field` (e.g. "--from").

    Raises HeaderInjectionError for CR/LF/NUL, AddressError for anything invalid,
    ambiguous, or not exactly one address.
    """
    found = _parse(field, value, user=True)
    if len(found) != 1:
        raise AddressError(f"{field} takes exactly one address, got {len(found)} in {shown(value)}")
    return found[0]


def parse_mailbox_list(field: str, values: Iterable[str]) -> tuple[Mailbox, ...]:
    """Parse repeated option values, each possibly a comma list ("a@x, B <b@y>").

    Raises HeaderInjectionError or AddressError naming `field`.
    """
    out: list[Mailbox] = []
    for value in values:
        out.extend(_parse(field, value, user=True))
    return tuple(out)


def parse_address_header(field: str, value: str) -> tuple[Mailbox, ...]:
    """Parse one unfolded address header value of a message (groups allowed, may be empty).

    Same two-parser agreement as for options; raises AddressError naming `field`.
    """
    return _parse(field, value, user=False)


# --------------------------------------------------------------------------- other headers


def is_msg_id(value: str) -> bool:
    """True if `value` is one msg-id, `<left@right>` (RFC 5322 3.6.4)."""
    return len(value) <= MAX_MSG_ID_LENGTH and _MSG_ID.fullmatch(value) is not None


def parse_msg_ids(field: str, value: str) -> str:
    """Validate one or more whitespace-separated msg-ids; return them joined by one space.

    Raises HeaderInjectionError for line breaks, InputDataError for anything else.
    """
    require_clean(field, value)
    if not _MSG_ID_LIST.fullmatch(value):
        raise InputDataError(
            f"{field}: {shown(value)} is not a list of message ids",
            hint="each id looks like <id@host>, angle brackets included",
        )
    ids = _MSG_ID.findall(value)
    if any(len(item) > MAX_MSG_ID_LENGTH for item in ids):
        raise InputDataError(f"{field}: a message id is longer than {MAX_MSG_ID_LENGTH} characters")
    return " ".join(ids)


def check_extra_header(name: str, value: str) -> tuple[str, str]:
    """Validate a custom header for compose; return (name, value) with the value trimmed.

    Policy: names must be RFC 5322 field names; headers compose builds from the parts
    (Content-Type, Content-Transfer-Encoding, MIME-Version, Content-Disposition, Content-ID)
    and those with their own option (From, To, Cc, Bcc, Reply-To, Subject, In-Reply-To,
    References) are refused, as are Resent-*, Orig-Date and Return-Path (added by servers,
    RFC 5321 4.4).
    Date and Message-ID may be given and then replace the generated ones, after validation;
    Sender must be exactly one mailbox.
    Raises HeaderInjectionError for line breaks and bad names, InputDataError otherwise.
    """
    require_clean("--header name", name)
    if not _FIELD_NAME.fullmatch(name):
        raise HeaderInjectionError(
            f"--header name {shown(name)} is not a valid header field name",
            hint="RFC 5322 2.2: printable ASCII without spaces or ':'",
        )
    field = f"--header {name}"
    require_clean(field, value)
    value = value.strip(" \t")
    key = name.lower()
    if key in _STRUCTURAL:
        raise InputDataError(
            f"--header {name}: this header is set by mailctl from the message parts",
            hint="use --text, --html and attachments instead",
        )
    if key in _DEDICATED:
        raise InputDataError(
            f"--header {name}: use {_DEDICATED[key]} instead",
            hint="Bcc is never written into the message" if key == "bcc" else None,
        )
    if key.startswith("resent-") or key in {"return-path", "orig-date"}:
        raise InputDataError(f"--header {name}: this header cannot be set by mailctl")
    if key == "date":
        try:
            parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError) as err:
            raise InputDataError(
                f"{field}: {shown(value)} is not an RFC 5322 date",
                hint="for example 'Tue, 07 Jan 2025 10:00:00 +0100'",
            ) from err
    elif key == "message-id":
        if not is_msg_id(value):
            raise InputDataError(
                f"{field}: {shown(value)} is not a message id", hint="it looks like <id@host>"
            )
    elif key == "sender":
        value = parse_mailbox(field, value).formatted()
    return name, value


def parse_header_option(raw: str) -> tuple[str, str]:
    """Split a --header "Name: value" argument and validate both halves.

    Raises HeaderInjectionError for line breaks or a bad field name, InputDataError for a
    missing colon or a header mailctl manages itself (see check_extra_header).
    """
    require_clean("--header", raw)
    name, colon, value = raw.partition(":")
    if not colon:
        raise InputDataError(
            f"--header {shown(raw)} has no ':'", hint="write it as --header 'Name: value'"
        )
    return check_extra_header(name, value)


def validate_ehlo_name(value: str) -> str:
    """Validate the name sent with EHLO (RFC 5321 4.1.1.1); return its ASCII form.

    Accepts a host name (U-labels are IDNA-encoded, '_' tolerated) or an address literal
    like [192.0.2.1] or [IPv6:2001:db8::1]. Raises HeaderInjectionError for line breaks,
    InputDataError otherwise.
    """
    require_clean("EHLO name", value)
    if value.startswith("[") and value.endswith("]"):
        inner = value[1:-1]
        try:
            if inner[:5].lower() == "ipv6:":
                ipaddress.IPv6Address(inner[5:])
            else:
                ipaddress.IPv4Address(inner)
        except ValueError as err:
            raise InputDataError(
                f"EHLO name {shown(value)} is not a valid address literal"
            ) from err
        return value
    try:
        ascii_name = to_ascii_domain(value)
    except UnicodeError as err:
        raise InputDataError(f"EHLO name {shown(value)} is not a valid host name") from err
    labels = ascii_name.split(".")
    if not value or len(ascii_name) > 253 or not all(_EHLO_LABEL.fullmatch(x) for x in labels):
        raise InputDataError(
            f"EHLO name {shown(value)} is not a valid host name",
            hint="letters, digits, '-' and '.' only",
        )
    return ascii_name


# --------------------------------------------------------------------------- wire policy

_PLAIN_ASCII: Final = re.compile(r"[\x20-\x7e\t]*")
_PLAIN_UTF8: Final = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]*")
_FOLD_TOKEN: Final = re.compile(r"[ \t]*[^ \t]+(?:[ \t]+$)?")
_ENCODED_WORD: Final = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_ADDRESS_HEADERS: Final = frozenset({"from", "sender", "to", "cc", "bcc", "reply-to"})
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


def _non_ascii_names(header: AddressHeader) -> bool:
    return any(not a.display_name.isascii() for g in header.groups for a in g.addresses)


class WirePolicy(_PolicyBase):
    """policy.SMTP with corrections of how the email package folds headers.

    1. Unstructured and msg-id values that need no encoding (ASCII, or anything printable
       with utf8) are folded only at whitespace (RFC 5322 2.2.3), never turned into RFC 2047
       encoded words: CPython encodes any token longer than a line, which breaks
       References, In-Reply-To, Message-ID, Content-ID and List-Unsubscribe.
    2. Without utf8, an address whose domain is non-ASCII gets the IDNA A-label (RFC 5890):
       CPython would put an encoded word inside the domain. A non-ASCII local part has no
       ASCII form and raises AddressError (RFC 6531).
    3. Non-ASCII display names are written by `_fold_addresses` (CPython loses spaces where
       it splits a phrase into encoded words), and if CPython's folding glues an encoded word
       to a neighbouring word (RFC 2047 5), the value is written again as encoded words.
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
        if isinstance(value, (UnstructuredHeader, MessageIDHeader)):
            plain = self._plain_fold(name, str(value))
            if plain is not None:
                return plain
        value = self._ascii_addresses(name, value)
        if isinstance(value, AddressHeader) and not self.utf8 and _non_ascii_names(value):
            # CPython's folder drops the space where it splits a phrase into two encoded
            # words (RFC 2047 6.2 makes decoders ignore it): write the phrases ourselves.
            rewritten = self._fold_addresses(name, value)
            if rewritten is not None:
                return rewritten
        folded = str(super().fold(name, value))
        if _encoded_words_separated(folded):
            return folded
        if isinstance(value, AddressHeader):
            return self._fold_addresses(name, value) or folded
        if isinstance(value, UnstructuredHeader):
            return self._fold_tokens(name, [(" ", word) for word in _encoded_words(str(value))])
        return folded  # pragma: no cover - other structured headers hold no encoded words

    def _plain_fold(self, name: str, text: str) -> str | None:
        pattern = _PLAIN_UTF8 if self.utf8 else _PLAIN_ASCII
        # "=?" could be read as an encoded word on the way back: let the email package decide.
        if "=?" in text or not pattern.fullmatch(text):
            return None
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
        """Write an address list as `phrase <addr-spec>` items, phrases as encoded words."""
        pieces: list[tuple[str, str]] = []
        for group in header.groups:
            if group.display_name is not None:
                return None  # pragma: no cover - compose never writes groups
            for address in group.addresses:
                spec = Address(username=address.username, domain=address.domain).addr_spec
                glue = ", " if pieces else " "
                if not address.display_name:
                    pieces.append((glue, spec))
                    continue
                for word in _encoded_words(address.display_name):
                    pieces.append((glue, word))
                    glue = " "
                pieces.append((" ", f"<{spec}>"))
        return self._fold_tokens(name, pieces)

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
                        f"header {name}: {shown(address.addr_spec)} has a non-ASCII local part",
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
