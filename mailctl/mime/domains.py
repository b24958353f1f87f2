"""Host names: IDNA A-labels, and validation of address domains and EHLO names."""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from mailctl.errors import AddressError, InputDataError
from mailctl.mime.header_safety import require_clean
from mailctl.text import quote

__all__ = ["to_ascii_domain", "validate_domain", "validate_ehlo_name"]

# RFC 1035 2.3.1 / RFC 5321 4.1.2: letters, digits, hyphen; no hyphen at either end.
_LDH_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# EHLO names are matched the same way but tolerate '_', which real host names carry.
_EHLO_LABEL: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


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
            f"{field}: domain literals such as {quote(domain)} are not supported",
            hint="use a host name",
        )
    try:
        ascii_domain = to_ascii_domain(domain)
    except UnicodeError as err:
        raise AddressError(f"{field}: domain {quote(domain)} is not a valid host name") from err
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or not all(_LDH_LABEL.fullmatch(label) for label in labels):
        raise AddressError(f"{field}: domain {quote(domain)} is not a valid host name")
    return ascii_domain


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
                f"EHLO name {quote(value)} is not a valid address literal"
            ) from err
        return value
    try:
        ascii_name = to_ascii_domain(value)
    except UnicodeError as err:
        raise InputDataError(f"EHLO name {quote(value)} is not a valid host name") from err
    labels = ascii_name.split(".")
    if not value or len(ascii_name) > 253 or not all(_EHLO_LABEL.fullmatch(x) for x in labels):
        raise InputDataError(
            f"EHLO name {quote(value)} is not a valid host name",
            hint="letters, digits, '-' and '.' only",
        )
    return ascii_name
