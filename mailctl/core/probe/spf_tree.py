"""SPF's include:/redirect= tree (RFC 7208 4.6.4, 5.2, 6.1): every record a receiver would
evaluate, fetched and counted against the lookup and void-lookup limits (`follow_spf`).

Bounded whatever the records say: at most MAX_NAMES questions, each within the DNS timeout,
all within one overall budget; a level of the tree is asked side by side.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mailctl.core.probe.findings import Finding, Severity
from mailctl.core.probe.spf import LOOKUP_LIMIT, lookup_terms, parse_spf, spf_records
from mailctl.protocols.dnslookup import TXT_LIMIT, Answer, Status

# RFC 7208 4.6.4: more than 2 lookups of a term that find nothing is a permerror.
VOID_LIMIT = 2
# The most distinct (type, name) questions one `follow_spf` asks, whatever the records say.
MAX_NAMES = 20
# What `follow_spf` asks about a term's name: the record of include:/redirect=, the addresses
# of a/exists (A then AAAA: a void lookup is one with neither), the MX set of mx.
_QUESTION = {"include": "TXT", "redirect": "TXT", "a": "A/AAAA", "exists": "A/AAAA", "mx": "MX"}
_FOLLOWED = ("include", "redirect")
# `fetch(question, name, timeout)`: one lookup of the kind named in _QUESTION.
Fetch = Callable[[str, str, float], Answer[Any]]


@dataclass
class _Node:
    """One record of the tree: its domain, the term that led here, the names above it."""

    domain: str
    via: str
    path: tuple[str, ...]
    own: int = 0  # its DNS-querying terms
    children: list[_Node] = field(default_factory=list)

    def cost(self) -> int:
        return self.own + sum(child.cost() for child in self.children)


@dataclass
class _Walk:
    domain: str
    total: int = 0
    complete: bool = True  # every term within the limit was followed
    voids: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def follow_spf(
    domain: str, record: str, fetch: Fetch, *, timeout: float, budget: float
) -> list[Finding]:
    """Findings for the SPF tree below `domain`'s `record` (one that parses).

    Level by level, the lookups of one level side by side: include:/redirect= targets get
    their TXT records (parsed like the top one), a/mx/exists their addresses or MX set to
    count void lookups. Terms are counted over every record fetched (`spf.too_many_lookups`
    past 10; the top record alone is `check_spf`'s); following stops once the count is over
    10. Bounds: MAX_NAMES questions, each within `timeout`, all within `budget` seconds; what
    could not be followed is `spf.lookup_failed`. Names with macros are not followed (they
    need a message); ptr needs the client's address and is only counted.
    """
    walk = _Walk(domain)
    top = _Node(domain, "", (domain,))
    deadline = time.monotonic() + budget
    asked: dict[tuple[str, str], Answer[Any]] = {}
    level = [(top, record)]
    while level:
        jobs = _terms_of(level, walk)
        if walk.total > LOOKUP_LIMIT:
            # Only an include:/redirect= not followed could add terms to the count.
            walk.complete = not any(kind in _FOLLOWED for _, kind, _ in jobs)
            break
        if not jobs:
            break
        wanted = list(dict.fromkeys((_QUESTION[kind], name) for _, kind, name in jobs))
        wanted = [q for q in wanted if q not in asked]
        room = MAX_NAMES - len(asked)
        left = deadline - time.monotonic()
        if len(wanted) > room or left <= 0:
            why = f"over {MAX_NAMES} names" if left > 0 else f"over the {budget:g} s budget"
            walk.failed.append(f"following stopped: {why}")
            wanted = wanted[: max(0, room)] if left > 0 else []
        each = min(timeout, left)
        answers = _parallel(lambda q: fetch(q[0], q[1], each), wanted)  # noqa: B023
        asked.update(zip(wanted, answers, strict=True))
        level = _answers_of(jobs, asked, walk)
    return _tree_findings(walk, top)


def _terms_of(level: list[tuple[_Node, str]], walk: _Walk) -> list[tuple[_Node, str, str]]:
    """Count the terms of this level's records; the lookups they need as (node, term, name)."""
    jobs: list[tuple[_Node, str, str]] = []
    for node, text in level:
        terms, has_all = lookup_terms(text)
        for kind, target in terms:
            if kind == "redirect" and has_all:
                walk.findings.append(_redirect_ignored(walk.domain, node, target or ""))
                continue  # RFC 7208 6.1: never looked up
            walk.total += 1
            node.own += 1
            name = (target or node.domain).rstrip(".").lower()
            if kind == "ptr":
                continue  # needs the client's address
            if "%" in name:
                if kind in _FOLLOWED:
                    walk.findings.append(_macro_skipped(walk.domain, node, kind, name))
                continue
            if kind in _FOLLOWED and name in node.path:
                walk.findings.append(_loop(walk.domain, node, kind, name))
                continue
            jobs.append((node, kind, name))
    return jobs


def _answers_of(
    jobs: list[tuple[_Node, str, str]], asked: dict[tuple[str, str], Answer[Any]], walk: _Walk
) -> list[tuple[_Node, str]]:
    """Void lookups, failures and broken targets of this level; the next level's records."""
    following: list[tuple[_Node, str]] = []
    for node, kind, name in jobs:
        term = f"{kind}={name}" if kind == "redirect" else f"{kind}:{name}"
        answer = asked.get((_QUESTION[kind], name))
        if answer is None or answer.status in (Status.TIMEOUT, Status.FAILED):
            if answer is not None:
                walk.failed.append(f"{term}: {answer.detail or answer.status.value}")
            walk.complete = walk.complete and kind not in _FOLLOWED
            continue
        if not answer.values:
            walk.voids.append(term)
        if kind not in _FOLLOWED:
            continue
        if any(len(v) > TXT_LIMIT for v in answer.values):
            walk.failed.append(f"{term}: a TXT record over {TXT_LIMIT} bytes")
            walk.complete = False
            continue
        records = spf_records([v.decode("utf-8", "replace") for v in answer.values])
        problem = parse_spf(records[0])[0] if len(records) == 1 else None
        if len(records) != 1 or problem is not None:
            walk.findings.append(_broken_target(walk.domain, node, term, records, problem))
            continue
        child = _Node(name, term, (*node.path, name))
        node.children.append(child)
        following.append((child, records[0]))
    return following


def _tree_findings(walk: _Walk, top: _Node) -> list[Finding]:
    domain = walk.domain
    found = walk.findings
    if walk.total > LOOKUP_LIMIT and top.own <= LOOKUP_LIMIT:
        chain, cost = _costliest(top)
        found.append(
            Finding(
                Severity.ERROR,
                "spf.too_many_lookups",
                domain,
                f"{domain}'s SPF record needs {'' if walk.complete else 'at least '}"
                f"{walk.total} DNS lookups with its includes; RFC 7208 4.6.4 allows 10 "
                f"(the costliest chain, {chain}, takes {cost})",
                "flatten include: terms into ip4:/ip6: ranges, or drop includes not needed",
            )
        )
    if len(walk.voids) > VOID_LIMIT:
        found.append(
            Finding(
                Severity.ERROR,
                "spf.too_many_void_lookups",
                domain,
                f"{domain}'s SPF record looks up {len(walk.voids)} names that do not exist or "
                f"have no records ({', '.join(walk.voids)}); RFC 7208 4.6.4 allows 2",
                "remove the terms that name nothing",
            )
        )
    if walk.failed:
        found.append(
            Finding(
                Severity.WARNING,
                "spf.lookup_failed",
                domain,
                f"{domain}'s SPF record could not be followed in full: "
                f"{'; '.join(walk.failed)}; the rest is not checked",
                "check the name servers of the included domains",
            )
        )
    return list(dict.fromkeys(found))


def _costliest(top: _Node) -> tuple[str, int]:
    """The chain of includes from the top that costs the most lookups, and its cost (the
    first term included)."""
    first = max(top.children, key=_Node.cost)
    chain = [first.via]
    node = first
    while node.children:
        node = max(node.children, key=_Node.cost)
        chain.append(node.via)
    return " -> ".join(chain), 1 + first.cost()


def _where(node: _Node) -> str:
    return "its SPF record" if len(node.path) == 1 else f"the record of {node.domain}"


def _redirect_ignored(domain: str, node: _Node, target: str) -> Finding:
    # A warning, not info: whoever wrote redirect= meant it to apply, and it never does.
    return Finding(
        Severity.WARNING,
        "spf.redirect_ignored",
        domain,
        f"{domain}: {_where(node)} has both an `all` mechanism and redirect={target}; "
        "RFC 7208 6.1 ignores the redirect then",
        "remove the all mechanism or the redirect= modifier",
    )


def _macro_skipped(domain: str, node: _Node, kind: str, name: str) -> Finding:
    term = f"{kind}={name}" if kind == "redirect" else f"{kind}:{name}"
    return Finding(
        Severity.INFO,
        "spf.macro_skipped",
        domain,
        f"{domain}: {term} in {_where(node)} holds a macro, which needs a message to expand: "
        "not followed, counted as one lookup",
    )


def _loop(domain: str, node: _Node, kind: str, name: str) -> Finding:
    chain = " -> ".join((*node.path, name))
    return Finding(
        Severity.ERROR,
        "spf.include_loop",
        domain,
        f"{domain}'s SPF records {kind} each other in a loop ({chain}): receivers stop at "
        "the lookup limit with a permerror",
        f"remove the {kind} of {name} from {node.domain}'s record",
    )


def _broken_target(
    domain: str, node: _Node, term: str, records: list[str], problem: str | None
) -> Finding:
    """RFC 7208 5.2 (include) and 6.1 (redirect): a target without exactly one SPF record
    that parses is a permerror."""
    if not records:
        code, what = "spf.include_missing", "publishes no SPF record"
    elif len(records) > 1:
        code, what = "spf.include_multiple", f"publishes {len(records)} SPF records"
    else:
        code, what = "spf.include_invalid", f"has an SPF record that does not parse: {problem}"
    kind, target = re.split(r"[:=]", term, maxsplit=1)
    return Finding(
        Severity.ERROR,
        code,
        domain,
        f"{domain}: {term} in {_where(node)}, but {target} {what}; RFC 7208 "
        f"{'6.1' if term.startswith('redirect') else '5.2'} makes that a permerror",
        f"fix {target}'s SPF record or remove the {kind} term",
    )


def _parallel(function: Callable[[Any], Answer[Any]], items: list[Any]) -> list[Answer[Any]]:
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return list(pool.map(function, items))
