"""DMARC (RFC 7489): one `v=DMARC1` record at `_dmarc.DOMAIN`, its tags valid (6.3)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from mailctl.core.probe.findings import Finding, Severity
from mailctl.text import quote

_POLICIES = ("none", "quarantine", "reject")
# RFC 7489 6.3 (rua/ruf): a URI with an optional "!size[kmgt]" suffix; mailto: in practice.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s,!]+(![0-9]+[kmgtKMGT]?)?")
_FO = re.compile(r"[01ds](:[01ds])*")
_TAG = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def _uris(value: str) -> bool:
    return all(_URI.fullmatch(part.strip()) for part in value.split(","))


_VALID: dict[str, Callable[[str], bool]] = {
    "p": lambda v: v.lower() in _POLICIES,
    "sp": lambda v: v.lower() in _POLICIES,
    "adkim": lambda v: v.lower() in ("r", "s"),
    "aspf": lambda v: v.lower() in ("r", "s"),
    "pct": lambda v: v.isdigit() and int(v) <= 100,
    "ri": lambda v: v.isdigit() and len(v) <= 10,
    "fo": lambda v: _FO.fullmatch(v) is not None,
    "rf": lambda v: all(re.fullmatch(r"[A-Za-z0-9-]+", p.strip()) for p in v.split(":")),
    "rua": _uris,
    "ruf": _uris,
}


def dmarc_records(texts: Sequence[str]) -> list[str]:
    """Records starting "v=DMARC1" (RFC 7489 6.6.3: the others are discarded)."""
    return [t for t in texts if re.match(r"v=DMARC1\s*(;|$)", t)]


def parse_dmarc(record: str) -> tuple[dict[str, str], str | None]:
    """Tags of one record (names lower-cased) and the first problem, or None (RFC 7489 6.3,
    6.4: v first, p required, unknown tags ignored)."""
    tags: dict[str, str] = {}
    parts = [p.strip() for p in record.split(";")]
    if parts and parts[-1] == "":
        parts.pop()
    for index, part in enumerate(parts):
        name, sep, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not sep or not _TAG.fullmatch(name):
            return tags, f"{quote(part)} is not tag=value"
        if index == 0 and (name != "v" or value != "DMARC1"):
            return tags, "the record must start with v=DMARC1"
        check = _VALID.get(name)
        if check is not None and not check(value):
            return tags, f"{name}={quote(value)} is not a valid value"
        tags.setdefault(name, value)
    if "p" not in tags:
        return tags, "the record has no p= tag (RFC 7489 6.3: required)"
    return tags, None


def check_dmarc(domain: str, texts: Sequence[str]) -> list[Finding]:
    """Findings for the TXT records at `_dmarc.DOMAIN`."""
    name = f"_dmarc.{domain}"
    records = dmarc_records(texts)
    if not records:
        return [
            Finding(
                Severity.WARNING,
                "dmarc.missing",
                domain,
                f"{name} has no DMARC record (a parent organizational domain's may apply)",
                f'publish a TXT record at {name} such as "v=DMARC1; p=none; rua=mailto:..."',
            )
        ]
    if len(records) > 1:
        return [
            Finding(
                Severity.ERROR,
                "dmarc.multiple",
                domain,
                f"{name} has {len(records)} DMARC records; RFC 7489 6.6.3 then applies none",
                "keep one v=DMARC1 record",
            )
        ]
    tags, problem = parse_dmarc(records[0])
    if problem is not None:
        return [
            Finding(
                Severity.ERROR,
                "dmarc.invalid",
                domain,
                f"the DMARC record at {name} does not parse: {problem}",
                "fix the record (RFC 7489 6.3 lists the tags and values)",
            )
        ]
    if tags["p"].lower() == "none":
        return [
            Finding(
                Severity.INFO,
                "dmarc.policy_none",
                domain,
                f"{name} asks receivers to take no action (p=none): reports only",
            )
        ]
    return []


# DMARCbis (draft-ietf-dmarc-dmarcbis, "DNS Tree Walk"): at most 8 queries in all; a name of 8
# labels or more jumps to its last 7, shorter ones lose one label a step.
TREE_WALK_QUERIES = 8
_JUMP_TO = 7


def tree_walk_names(domain: str) -> list[str]:
    """The names whose `_dmarc` record applies to `domain` when it has none of its own,
    nearest first: the DMARCbis tree walk without a Public Suffix List, stopped before the
    top-level domain (at most TREE_WALK_QUERIES - 1 names)."""
    labels = domain.rstrip(".").split(".")
    names: list[str] = []
    while len(names) < TREE_WALK_QUERIES - 1:
        labels = labels[-_JUMP_TO:] if len(labels) > _JUMP_TO else labels[1:]
        if len(labels) < 2:
            break
        names.append(".".join(labels))
    return names


def check_inherited(domain: str, parent: str, record: str) -> list[Finding]:
    """Findings for `domain` without a record of its own whose policy is the one DMARC
    record found at `_dmarc.PARENT`: its sp= (p= without one) applies to a subdomain."""
    name = f"_dmarc.{domain}"
    tags, problem = parse_dmarc(record)
    if problem is not None:
        return [
            Finding(
                Severity.ERROR,
                "dmarc.invalid",
                domain,
                f"no record at {name}; the DMARC record at _dmarc.{parent}, which applies, "
                f"does not parse: {problem}",
                f"fix the record at _dmarc.{parent}, or publish one at {name}",
            )
        ]
    sp = tags.get("sp")
    applied = f"sp={sp}" if sp is not None else f"p={tags['p']}, no sp="
    found = [
        Finding(
            Severity.INFO,
            "dmarc.inherited",
            domain,
            f"no record at {name}; the policy of {parent} applies ({applied})",
        )
    ]
    if (sp or tags["p"]).lower() == "none":
        found.append(
            Finding(
                Severity.INFO,
                "dmarc.policy_none",
                domain,
                f"the policy {parent} gives {domain} asks receivers to take no action "
                f"({applied}): reports only",
            )
        )
    return found


def check_walk_missing(domain: str, parents: Sequence[str]) -> Finding:
    """`dmarc.missing` after a tree walk that found nothing at any of `parents`."""
    asked = ", ".join(f"_dmarc.{p}" for p in parents)
    return Finding(
        Severity.WARNING,
        "dmarc.missing",
        domain,
        f"_dmarc.{domain} has no DMARC record, nor has any name above it ({asked})",
        f"publish a TXT record at _dmarc.{domain} or at _dmarc of its organizational domain, such "
        'as "v=DMARC1; p=none; rua=mailto:..."',
    )
