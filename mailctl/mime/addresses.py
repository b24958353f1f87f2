"""Mailboxes: address lists read by two parsers that must agree (CVE-2023-27043), and Mailbox."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email import _header_value_parser as hvp
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import Address, Group, HeaderRegistry
from email.utils import getaddresses
from typing import Any, Final

from mailctl.errors import AddressError
from mailctl.hosts import to_ascii_domain
from mailctl.mime.domains import validate_domain
from mailctl.mime.header_safety import require_clean
from mailctl.text import quote

__all__ = ["Mailbox", "parse_address_header", "parse_mailbox", "parse_mailbox_list"]

_REGISTRY: Final = HeaderRegistry()
_BLANKS: Final = re.compile(r"[ \t]+")


# The common shapes, which both parsers read one way only (tests/test_bulk_template_props.py
# checks that against the full parsers): a dot-atom local part (RFC 5322 3.4.1) and LDH
# labels, and a list of `addr`, `atom words <addr>` or `"quoted words" <addr>`. Anything else
# ("=?", comments, escapes, '@' in a name, non-ASCII outside a quoted name, Unicode blanks,
# groups) takes the full parsers' path.
_ATOM: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SIMPLE_SPEC: Final = rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*"
_SIMPLE_ADDR: Final = re.compile(_SIMPLE_SPEC)
_SIMPLE_ITEM: Final = re.compile(
    rf"[ \t]*(?:({_SIMPLE_SPEC})|(?:({_ATOM}(?:[ \t]+{_ATOM})*)|\"([^\"\\@\x00-\x1f\x7f]*)\")"
    rf"[ \t]*<({_SIMPLE_SPEC})>)[ \t]*(,|$)"
)


def _split_addr_spec(addr_spec: str) -> tuple[str, str]:
    """Parse an addr-spec with the policy.default parser; (local_part, domain), or ValueError."""
    if "=?" not in addr_spec and _SIMPLE_ADDR.fullmatch(addr_spec):
        local, _, domain = addr_spec.rpartition("@")
        return local, domain
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
            f"{field}: address {quote(local + '@' + domain)} has an empty local part"
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
            raise AddressError(f"invalid address {quote(self.addr_spec)}: {err}") from err
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
                f"address {quote(self.addr_spec)} has a non-ASCII local part",
                hint="the server must offer SMTPUTF8 (RFC 6531)",
            )
        local_text = self.addr_spec[: len(self.addr_spec) - len(domain) - 1]
        return f"{local_text}@{to_ascii_domain(domain)}"


def mailbox_key(address: str) -> str:
    """The key two addresses name the same mailbox by (RFC 5321 2.4: the local part may be
    case-sensitive, the domain is not)."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def _count_at_signs(value: str) -> int:
    """Count '@' outside quoted strings: each real address has exactly one there.

    A comment, a stray bracket or a second address hiding in a display name shows up as an
    extra '@' (CVE-2023-27043: `alice@example.org)<bob@evil>` read as alice by one parser).
    """
    return _strip_quoted(value).count("@")


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
    simple = _parse_simple(field, text) if user else None
    if simple is not None:
        return simple
    if user and "@" not in text:
        raise AddressError(f"{field}: {quote(value)} is not an email address (no '@')")
    try:
        header: Any = _REGISTRY("to", text)
    except Exception as err:  # the parser raises IndexError and friends on odd input
        raise AddressError(f"{field}: cannot parse address {quote(value)}") from err
    defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
    if defects:
        raise AddressError(f"{field}: invalid address {quote(value)}: {defects[0]}")
    groups: tuple[Group, ...] = header.groups
    if user and any(group.display_name is not None for group in groups):
        raise AddressError(f"{field}: group syntax is not allowed in {quote(value)}")
    addresses = [address for group in groups for address in group.addresses]
    modern = [address.addr_spec for address in addresses]

    # The legacy parser (email.utils) must find the same addresses, in the same order, and
    # every '@' outside quotes must belong to one of them: otherwise two readers of this
    # header could deliver to different people.
    legacy_pairs = _legacy_strict(text) if user else _legacy_lenient(text)
    legacy = [_canonical(addr) for _, addr in legacy_pairs]
    if legacy != modern or _count_at_signs(text) != len(modern):
        raise AddressError(
            f"{field}: ambiguous address {quote(value)}",
            hint="check quotes, angle brackets, parentheses and commas",
        )

    mailboxes: list[Mailbox] = []
    for address in addresses:
        _check_mailbox(field, address.display_name, address.username, address.domain)
        display = address.display_name
        if user and "@" in display and display.strip().lower() != address.addr_spec.lower():
            # `"ceo@example.com" <attacker@evil>` shows the reader an address nobody sent from.
            raise AddressError(
                f"{field}: display name {quote(display)} looks like an address "
                f"other than {quote(address.addr_spec)}"
            )
        mailboxes.append(Mailbox(display, address.addr_spec))
    return tuple(mailboxes)


def _plain_unicode(text: str) -> bool:
    """Non-ASCII only as printable non-blank characters (in a quoted display name)."""
    return all(c.isascii() or (c.isprintable() and not c.isspace()) for c in text)


def _parse_simple(field: str, text: str) -> tuple[Mailbox, ...] | None:
    """The mailboxes of a list in only the common shapes (see _SIMPLE_ITEM), else None.

    ~5 us instead of ~130 us a mailbox: bulk-send parses the addresses of every row.
    """
    if "=?" in text:
        return None
    if not text.isascii() and not _plain_unicode(text):
        return None
    out: list[Mailbox] = []
    position = 0
    while position < len(text):
        match = _SIMPLE_ITEM.match(text, position)
        if match is None:
            return None
        bare, words, quoted, spec = match.group(1, 2, 3, 4)
        display = words if words is not None else quoted or ""
        addr_spec = bare or spec
        try:  # Mailbox checks the rest: label and domain lengths, the name's characters
            out.append(Mailbox(display, addr_spec))
        except AddressError as err:
            raise AddressError(f"{field}: {err.message}", hint=err.note) from None
        position = match.end()
        if match.group(5) == "," and position == len(text):
            return None  # a trailing comma: let the full parsers name the problem
    return tuple(out)


def parse_mailbox(field: str, value: str) -> Mailbox:
    """Parse exactly one mailbox ("a@x" or "Name <a@x>") given for `field` (e.g. "--from").

    Raises HeaderInjectionError for CR/LF/NUL, AddressError for anything invalid,
    ambiguous, or not exactly one address.
    """
    found = _parse(field, value, user=True)
    if len(found) != 1:
        raise AddressError(f"{field} takes exactly one address, got {len(found)} in {quote(value)}")
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
