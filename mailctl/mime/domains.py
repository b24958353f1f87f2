"""Address domains: host names after the '@', checked and turned into IDNA A-labels.

EHLO names and the A-label conversion itself are mailctl.hosts' rules (below config, which
checks the `ehlo` key with them).
"""

from __future__ import annotations

import re
from typing import Final

from mailctl.errors import AddressError
from mailctl.hosts import to_ascii_domain
from mailctl.mime.header_safety import require_clean
from mailctl.text import quote

__all__ = ["validate_domain"]

# RFC 1035 2.3.1 / RFC 5321 4.1.2: letters, digits, hyphen; no hyphen at either end.
_LDH_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# Domains found valid, with their A-labels (the answer depends on the domain alone): bounded.
_VALID: dict[str, str] = {}
_VALID_MAX: Final = 1024


def validate_domain(field: str, domain: str) -> str:
    """Check a host name (U-labels allowed) and return its A-label form.

    Raises AddressError naming `field` for empty labels, bad characters or lengths.
    """
    known = _VALID.get(domain)
    if known is not None:  # bulk-send checks the same few domains on every row
        return known
    ascii_domain = _validate(field, domain)
    if len(_VALID) >= _VALID_MAX:
        _VALID.clear()
    _VALID[domain] = ascii_domain
    return ascii_domain


def _validate(field: str, domain: str) -> str:
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
