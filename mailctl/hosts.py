"""Where mailctl connects and what it calls itself: one rule each, below every layer.

The EHLO name, a host's A-label form, `host:port` as people read it and the security a port
implies are checked or derived here and nowhere else, so the command-line flags, the config
file (whose validation sits below mime and protocols) and the protocol layer agree on every
value. A leaf beside `models` and `errors`: stdlib only.
"""

from __future__ import annotations

import re
from typing import Final

from mailctl.errors import HeaderInjectionError, InputDataError
from mailctl.models import Protocol, Security
from mailctl.text import quote

__all__ = [
    "DEFAULT_PORTS",
    "DEFAULT_SECURITY",
    "default_port",
    "default_security",
    "ehlo_name",
    "ehlo_problem",
    "endpoint",
    "tls_name",
    "tls_name_problem",
    "to_ascii_domain",
]

# The standard port of each protocol for each security (RFC 8314 3.3, RFC 6409, RFC 3207).
DEFAULT_PORTS: Final[dict[Protocol, dict[Security, int]]] = {
    Protocol.SMTP: {Security.TLS: 465, Security.STARTTLS: 587, Security.NONE: 25},
    Protocol.IMAP: {Security.TLS: 993, Security.STARTTLS: 143, Security.NONE: 143},
    Protocol.POP3: {Security.TLS: 995, Security.STARTTLS: 110, Security.NONE: 110},
}
# Used when neither a security nor a standard port says otherwise: RFC 8314 prefers implicit
# TLS for IMAP and POP3; submission on 587 with STARTTLS is what most providers document first.
DEFAULT_SECURITY: Final[dict[Protocol, Security]] = {
    Protocol.SMTP: Security.STARTTLS,
    Protocol.IMAP: Security.TLS,
    Protocol.POP3: Security.TLS,
}

# RFC 5321 4.1.2 sub-domain (letters, digits, inner hyphens), widened to '_', which real host
# names carry (Windows machines, some DNS zones) and which Postfix and Exim accept after EHLO.
_EHLO_LABEL: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# What can end a line for someone, or move a terminal's cursor: refused in any EHLO name.
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def default_port(protocol: Protocol, security: Security) -> int:
    """The standard port of `protocol` for `security` (465/587/25, 993/143, 995/110)."""
    return DEFAULT_PORTS[protocol][security]


def default_security(protocol: Protocol, port: int | None = None) -> Security:
    """The security a server block means when it names none (an explicit one always wins).

    The implicit-TLS ports (465, 993, 995) mean TLS; the other standard ports (587, 25, 143,
    110) mean STARTTLS, required, never plain text by default; any other port, or none, the
    protocol's default (DEFAULT_SECURITY).
    """
    ports = DEFAULT_PORTS[protocol]
    if port == ports[Security.TLS]:
        return Security.TLS
    if port in (ports[Security.STARTTLS], ports[Security.NONE]):
        return Security.STARTTLS
    return DEFAULT_SECURITY[protocol]


def endpoint(host: str, port: int) -> str:
    """`host:port` as messages show it; an IPv6 literal in brackets (`[::1]:25`, RFC 3986)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def to_ascii_domain(domain: str) -> str:
    """Return the A-label (IDNA, RFC 3490/5891) form of `domain`; ASCII passes unchanged.

    Raises UnicodeError for labels IDNA cannot encode. Uses the stdlib codec (IDNA 2003),
    because the project does not depend on the `idna` package.
    """
    if domain.isascii():
        return domain
    return domain.encode("idna").decode("ascii")


def ehlo_problem(value: str) -> str | None:
    """Why `value` cannot be the name sent with EHLO, or None when it can.

    RFC 5321 4.1.1.1: a host name (U-labels allowed: they go out as A-labels; '_' tolerated)
    or an address literal, [192.0.2.1] or [IPv6:2001:db8::1] (4.1.3).
    """
    problem = _character_problem(value)
    if problem is not None:
        return problem
    if value.startswith("[") and value.endswith("]"):
        return _literal_problem(value[1:-1])
    try:
        ascii_name = to_ascii_domain(value)
    except UnicodeError:
        return "is not a valid host name"
    labels = ascii_name.split(".")
    if not value or len(ascii_name) > 253 or not all(_EHLO_LABEL.fullmatch(x) for x in labels):
        return "is not a valid host name"
    return None


def _character_problem(value: str) -> str | None:
    """Text no command line may carry: bytes that were not UTF-8, line breaks, controls."""
    if _SURROGATE.search(value):
        return "is not valid UTF-8 text"
    control = _CONTROL.search(value)
    if control is None:
        return None
    char = control.group()
    if char in "\r\n":
        return "contains a line break"
    if char == "\x00":
        return "contains a NUL character"
    return f"contains the control character U+{ord(char):04X}"


def _literal_problem(inner: str) -> str | None:
    import ipaddress  # here: a few ms of start-up that only address literals need

    try:
        if inner[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(inner[5:])
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        return "is not a valid address literal"
    return None


def ehlo_name(value: str, *, field: str = "EHLO name") -> str:
    """Return what EHLO sends for `value`: its ASCII form (see ehlo_problem for the rule).

    Raises HeaderInjectionError naming `field` for a line break, NUL or other control
    character (it would end the command there), InputDataError for anything else refused.
    """
    problem = ehlo_problem(value)
    if problem is None:
        return value if value.startswith("[") else to_ascii_domain(value)
    if problem.startswith("contains"):
        raise HeaderInjectionError(f"{field} {problem}", hint="an EHLO name is a single word")
    raise InputDataError(
        f"{field} {quote(value)} {problem}",
        hint="a host name (letters, digits, '-', '_' and '.') or an address literal "
        "such as [192.0.2.1]",
    )


def tls_name_problem(value: str) -> str | None:
    """Why `value` cannot be the name a certificate is checked against (--tls-name, tls_name).

    The TLS handshake's server_hostname: a DNS name (sent as SNI and matched against the
    certificate's DNS SANs, RFC 6125) or an IP address (matched against its IP SANs; no SNI,
    RFC 6066 3). No line breaks or controls: the value reaches messages and logs.
    """
    problem = _character_problem(value)
    if problem is not None:
        return problem
    if _ip_address(value) is not None:
        return None
    try:
        ascii_name = to_ascii_domain(value.rstrip(".") if value != "." else value)
    except UnicodeError:
        return "is not a DNS name or IP address"
    labels = ascii_name.split(".")
    if not value or len(ascii_name) > 253 or not all(_EHLO_LABEL.fullmatch(x) for x in labels):
        return "is not a DNS name or IP address"
    return None


def tls_name(value: str, *, field: str = "--tls-name") -> str:
    """Return the server_hostname for `value`: an IP address as written (without brackets),
    a DNS name in its A-label form. Raises HeaderInjectionError (line break, NUL or other
    control character) or InputDataError naming `field`."""
    problem = tls_name_problem(value)
    if problem is not None:
        if problem.startswith("contains"):
            raise HeaderInjectionError(f"{field} {problem}", hint="give one host name")
        raise InputDataError(
            f"{field} {quote(value)} {problem}",
            hint="give the name the certificate is issued for, e.g. mail.example.com",
        )
    address = _ip_address(value)
    return address if address is not None else to_ascii_domain(value.rstrip("."))


def _ip_address(value: str) -> str | None:
    """`value` as an IP address (brackets around IPv6 allowed), or None for anything else."""
    import ipaddress  # here: a few ms of start-up that only addresses need

    inner = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None
