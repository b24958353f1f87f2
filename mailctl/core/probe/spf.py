"""SPF (RFC 7208) grammar: one `v=spf1` record per domain, every term parseable, and which
terms ask DNS (`lookup_terms`). Following them over the tree is `spf_tree`'s job."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from mailctl.core.probe.findings import Finding, Severity
from mailctl.text import quote

# RFC 7208 4.6.4: at most 10 terms that cause DNS lookups per evaluation. `check_spf` counts
# the top record's own terms; `spf_tree.follow_spf` counts them over the include:/redirect= tree.
LOOKUP_LIMIT = 10
_LOOKUP_TERMS = frozenset({"include", "a", "mx", "ptr", "exists", "redirect"})
_MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
# RFC 7208 12: name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." )
_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9._-]*)=(.*)", re.DOTALL)
# RFC 7208 7.1: a macro is %{letter digits? r? delimiters*}, or %%, %_, %-.
_MACRO = re.compile(r"%(\{[slodiphcrtvSLODIPHCRTV][0-9]*[rR]?[.\-+,/_=]*\}|[%_-])")
_DUAL_CIDR = re.compile(r"(?P<spec>.*?)(?:/(?P<v4>[0-9]{1,2}))?(?://(?P<v6>[0-9]{1,3}))?")


def spf_records(texts: Sequence[str]) -> list[str]:
    """The SPF records among a name's TXT records (RFC 7208 4.5: "v=spf1" then a space or
    the end, case-insensitive)."""
    return [t for t in texts if re.match(r"(?i)v=spf1( |$)", t)]


def check_spf(domain: str, texts: Sequence[str]) -> list[Finding]:
    """Findings for `domain`'s TXT records as SPF: missing, several, unparseable, +all."""
    records = spf_records(texts)
    if not records:
        return [
            Finding(
                Severity.WARNING,
                "spf.missing",
                domain,
                f"{domain} publishes no SPF record: receivers cannot tell which hosts "
                "may send as it",
                f'publish a TXT record at {domain} such as "v=spf1 mx -all"',
            )
        ]
    if len(records) > 1:
        # RFC 7208 4.5: more than one record is a permerror: receivers treat SPF as broken.
        return [
            Finding(
                Severity.ERROR,
                "spf.multiple",
                domain,
                f"{domain} publishes {len(records)} SPF records; RFC 7208 4.5 makes that an error",
                "merge them into one v=spf1 TXT record",
            )
        ]
    problem, lookups, all_qualifier = parse_spf(records[0])
    if problem is not None:
        return [
            Finding(
                Severity.ERROR,
                "spf.invalid",
                domain,
                f"{domain}'s SPF record does not parse: {problem}",
                "fix the record's syntax (RFC 7208 section 5 and 6)",
            )
        ]
    found: list[Finding] = []
    if lookups > LOOKUP_LIMIT:
        found.append(
            Finding(
                Severity.ERROR,
                "spf.too_many_lookups",
                domain,
                f"{domain}'s SPF record needs {lookups} DNS lookups; RFC 7208 4.6.4 allows 10",
                "flatten include: terms into ip4:/ip6: ranges",
            )
        )
    if all_qualifier == "+":
        found.append(
            Finding(
                Severity.WARNING,
                "spf.pass_all",
                domain,
                f"{domain}'s SPF record ends in +all: every host on the Internet may send as it",
                "end the record with -all or ~all",
            )
        )
    return found


def parse_spf(record: str) -> tuple[str | None, int, str | None]:
    """Parse one record: (problem or None, DNS-lookup terms, the qualifier of `all` or None)."""
    terms = record.split(" ")[1:]
    lookups = 0
    all_qualifier = None
    seen_modifiers: set[str] = set()
    for term in terms:
        if not term:
            continue  # RFC 7208 4.6.1: terms are separated by one or more spaces
        modifier = _MODIFIER.fullmatch(term)
        if modifier is not None and modifier.group(1).lower() not in _MECHANISMS:
            name = modifier.group(1).lower()
            if name in ("redirect", "exp"):
                # RFC 7208 6: redirect and exp MUST NOT appear more than once.
                if name in seen_modifiers:
                    return f"{name}= appears twice", lookups, all_qualifier
                seen_modifiers.add(name)
                if not _domain_spec(modifier.group(2)):
                    return f"{quote(term)}: {name}= needs a domain", lookups, all_qualifier
                lookups += name == "redirect"
            elif not _macro_string(modifier.group(2)):
                return f"{quote(term)}: bad macro", lookups, all_qualifier
            continue
        qualifier = term[0] if term[0] in "+-~?" else "+"
        body = term[1:] if term[0] in "+-~?" else term
        problem = _mechanism(body)
        if problem is not None:
            return f"{quote(term)}: {problem}", lookups, all_qualifier
        name = re.split(r"[:/]", body, maxsplit=1)[0].lower()
        lookups += name in _LOOKUP_TERMS
        if name == "all":
            all_qualifier = qualifier
    return None, lookups, all_qualifier


def _mechanism(body: str) -> str | None:  # noqa: PLR0911 (one return per mechanism)
    name, colon, value = body.partition(":")
    name = name.lower()
    if name == "all":
        return None if not colon else "all takes no value"
    if name in ("include", "exists"):
        return None if colon and _domain_spec(value) else f"{name}: needs a domain"
    if name == "ptr":
        return None if not colon or _domain_spec(value) else "ptr: bad domain"
    if name in ("ip4", "ip6"):
        return _network(name, value) if colon else f"{name}: needs an address"
    bare, _, _ = body.partition("/")
    if bare.lower() in ("a", "mx"):
        return _dual_cidr(body[len(bare) :]) if not colon else None
    if name in ("a", "mx"):
        match = _DUAL_CIDR.fullmatch(value)
        if match is None or not _domain_spec(match.group("spec")):
            return f"{name}: bad domain"
        return _cidr_limits(match.group("v4"), match.group("v6"))
    return "unknown mechanism"


def _dual_cidr(text: str) -> str | None:
    match = _DUAL_CIDR.fullmatch(text)
    if match is None or match.group("spec"):
        return "bad CIDR length"
    return _cidr_limits(match.group("v4"), match.group("v6"))


def _cidr_limits(v4: str | None, v6: str | None) -> str | None:
    if v4 is not None and int(v4) > 32:
        return "IPv4 prefix over 32"
    if v6 is not None and int(v6) > 128:
        return "IPv6 prefix over 128"
    return None


def _network(kind: str, value: str) -> str | None:
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"{quote(value)} is not an {'IPv4' if kind == 'ip4' else 'IPv6'} network"
    if network.version != (4 if kind == "ip4" else 6):
        return f"{quote(value)} is not an {'IPv4' if kind == 'ip4' else 'IPv6'} network"
    return None


def _macro_string(text: str) -> bool:
    """RFC 7208 7.1: every '%' starts a macro; other characters are visible ASCII."""
    rest = _MACRO.sub("", text)
    return "%" not in rest and all(0x21 <= ord(c) <= 0x7E for c in rest)


def _domain_spec(text: str) -> bool:
    """RFC 7208 7.1: domain-spec = macro-string domain-end (a name, or ending in a macro)."""
    if not text or not _macro_string(text):
        return False
    if text.endswith("}"):
        return True
    labels = text.rstrip(".").split(".")
    return (
        len(labels) >= 2 and all(labels) and re.fullmatch(r"[A-Za-z0-9-]+", labels[-1]) is not None
    )


def lookup_terms(record: str) -> tuple[list[tuple[str, str | None]], bool]:
    """The DNS-querying terms of a record that parses, in order, as (term name, its domain or
    None for the current domain), and whether the record has an `all` mechanism."""
    found: list[tuple[str, str | None]] = []
    has_all = False
    for term in record.split(" ")[1:]:
        if not term:
            continue
        modifier = _MODIFIER.fullmatch(term)
        if modifier is not None and modifier.group(1).lower() not in _MECHANISMS:
            if modifier.group(1).lower() == "redirect":
                found.append(("redirect", modifier.group(2)))
            continue
        body = term[1:] if term[0] in "+-~?" else term
        head, colon, value = body.partition(":")
        name = head.split("/", 1)[0].lower()
        if name == "all":
            has_all = True
        elif name in _LOOKUP_TERMS:
            target: str | None = value if colon else None
            if target is not None and name in ("a", "mx"):
                match = _DUAL_CIDR.fullmatch(target)
                target = match.group("spec") if match is not None else target
            found.append((name, target or None))
    return found, has_all
