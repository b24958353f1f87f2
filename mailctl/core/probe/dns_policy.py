"""A domain's DNS mail policy, for the probe of its MX hosts: its MX set, MTA-STS (TXT and
policy file), TLS-RPT, SPF, DMARC and the TLSA records of its MX hosts, as findings.

Every lookup goes to `DnsOptions.nameserver` (the system resolver when None), the MTA-STS
policy host's address included, and each is bounded by `DnsOptions.timeout`; the RFC rules
live in `mta_sts`, `tls_rpt`, `spf`, `dmarc` and `dane`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mailctl.core.probe.dmarc import (
    check_dmarc,
    check_inherited,
    check_walk_missing,
    dmarc_records,
    tree_walk_names,
)
from mailctl.core.probe.findings import Finding, Severity
from mailctl.core.probe.mta_sts import StsPolicy, sts_records
from mailctl.core.probe.policy_fetch import check_mta_sts
from mailctl.core.probe.spf import check_spf, spf_records
from mailctl.core.probe.spf_tree import follow_spf
from mailctl.core.probe.tls_rpt import check_tls_rpt, rpt_records
from mailctl.errors import HeaderInjectionError, InputDataError, TemporaryError, TimeoutFailure
from mailctl.hosts import tls_name_problem, to_ascii_domain
from mailctl.protocols.dnslookup import TXT_LIMIT, Answer, Resolver, Status
from mailctl.protocols.httpsget import HttpsClient
from mailctl.text import quote

__all__ = [
    "DnsOptions",
    "DomainPolicy",
    "MxHost",
    "PolicyRecord",
    "StsPolicy",
    "domain_policy",
    "raise_on_failure",
    "resolve_mx",
    "resolver_for",
]

T = TypeVar("T")
R = TypeVar("R")
# The four TXT lookups, and the address lookups of the MX hosts, run side by side: a domain
# then costs about one timeout, not one per lookup, when a server does not answer.
_WORKERS = 16
# Following an SPF record's includes may take this many DNS timeouts in all (one per level of
# the tree at worst; a tree deeper than that is cut with `spf.lookup_failed`).
SPF_BUDGET_TIMEOUTS = 3


@dataclass(frozen=True)
class DnsOptions:
    """Where and how long to look: `nameserver` (an IP address; None = the system's) on
    `port` for every lookup, `timeout` seconds each; `ca_file` replaces the system CAs for
    the MTA-STS policy fetch."""

    nameserver: str | None = None
    port: int = 53
    timeout: float = 5.0
    ca_file: Path | None = None


@dataclass(frozen=True)
class MxHost:
    """One host to deliver to, in preference order.

    `implicit`: no MX record, the domain itself (RFC 5321 5.1). `null`: the domain's null
    MX (RFC 7505), name ".". `addresses` were looked up through the same nameserver; a host
    without any carries a finding saying why and cannot be probed. `ad`: the AD bit of the
    MX answer.
    """

    preference: int
    name: str
    addresses: tuple[str, ...] = ()
    ad: bool = False
    implicit: bool = False
    null: bool = False
    findings: tuple[Finding, ...] = ()
    lookup_seconds: float | None = None  # the address lookup's time (the probe's "dns" phase)


@dataclass(frozen=True)
class PolicyRecord:
    """One TXT lookup of the policy: what was asked, how it ended, the records of that kind
    found (text, each at most 4096 bytes), and the AD bit as the resolver gave it."""

    name: str
    status: str
    records: tuple[str, ...] = ()
    ad: bool = False


@dataclass(frozen=True)
class DomainPolicy:
    domain: str
    mta_sts: PolicyRecord
    mta_sts_policy: StsPolicy | None
    tls_rpt: PolicyRecord
    spf: PolicyRecord
    dmarc: PolicyRecord
    findings: tuple[Finding, ...]


def mail_domain(value: str, *, what: str = "domain") -> str:
    """`value` as a lower-case A-label domain name, or InputDataError/HeaderInjectionError.

    Names reach DNS questions, the policy URL and its Host header: no controls, no spaces,
    no IP address.
    """
    problem = tls_name_problem(value)
    if problem is not None and problem.startswith("contains"):
        raise HeaderInjectionError(f"{what} {quote(value)} {problem}", hint="give one domain")
    if problem is not None or value.replace(".", "").isdigit() or ":" in value:
        raise InputDataError(
            f"{what} {quote(value)} is not a domain name", hint="give a domain such as example.org"
        )
    return to_ascii_domain(value.rstrip(".")).lower()


def resolver_for(options: DnsOptions) -> Resolver:
    """The one resolver of a run (UsageError when `nameserver` is not an IP address)."""
    return Resolver(nameserver=options.nameserver, port=options.port, timeout=options.timeout)


def resolve_mx(domain: str, options: DnsOptions) -> list[MxHost]:
    """The hosts that receive mail for `domain`, best preference first, with addresses.

    A null MX (RFC 7505) is one `MxHost(null=True)` with the `mx.null` finding; no MX record
    gives the domain itself (RFC 5321 5.1) with `mx.none`. Raises TimeoutFailure or
    TemporaryError when the MX question itself gets no usable answer: no host list can be
    honest then. Raises InputDataError for a `domain` that is not a domain name.
    """
    domain = mail_domain(domain)
    resolver = resolver_for(options)
    answer = resolver.mx(domain)
    raise_on_failure(answer, "MX")
    if answer.status is Status.NXDOMAIN or not answer.values:
        return [_implicit(domain, answer, resolver)]
    real = sorted({(v.preference, v.exchange.lower()) for v in answer.values if v.exchange != "."})
    hosts: list[MxHost] = []
    if len(real) < len(answer.values):
        hosts.append(_null_mx(domain, answer, mixed=bool(real)))
    bad = [item for item in real if tls_name_problem(item[1]) is not None]
    real = [item for item in real if item not in bad]
    looked_up = _parallel(lambda item: _timed(resolver.addresses, item[1]), real)
    hosts.extend(_bad_name(preference, name, domain) for preference, name in bad)
    for (preference, name), (addresses, seconds) in zip(real, looked_up, strict=True):
        hosts.append(
            MxHost(
                preference,
                name,
                addresses.values,
                answer.ad,
                findings=_address_findings(name, addresses, domain),
                lookup_seconds=seconds,
            )
        )
    hosts.sort(key=lambda host: (host.preference, not host.null, host.name))
    return hosts


def domain_policy(domain: str, mx_names: Sequence[str], options: DnsOptions) -> DomainPolicy:
    """MTA-STS (checked against `mx_names`), TLS-RPT, SPF and DMARC of `domain`.

    Raises ConfigError/NoInputError only for an unusable `options.ca_file` and UsageError
    for a bad `nameserver`, InputDataError for a `domain` that is not a domain name;
    everything about the domain is a finding.
    """
    domain = mail_domain(domain)
    client = HttpsClient(ca_file=options.ca_file)
    resolver = resolver_for(options)
    names = [f"_mta-sts.{domain}", f"_smtp._tls.{domain}", domain, f"_dmarc.{domain}"]
    answers = _parallel(resolver.txt, names)
    found: list[list[Finding]] = [[], [], [], []]
    records: list[PolicyRecord] = []
    checks: list[Callable[[str, Sequence[str]], list[Finding]]] = [
        lambda d, t: [],  # MTA-STS: below, it needs the policy fetch
        check_tls_rpt,
        check_spf,
        check_dmarc,
    ]
    kinds = [sts_records, rpt_records, spf_records, dmarc_records]
    usable: list[list[str] | None] = []
    for index, (answer, check, kind) in enumerate(zip(answers, checks, kinds, strict=True)):
        texts, problem = _texts(answer)
        if problem is not None:
            found[index].append(problem)
        usable.append(texts)
        records.append(
            PolicyRecord(answer.name, answer.status.value, tuple(kind(texts or [])), answer.ad)
        )
        if texts is not None:
            found[index].extend(check(domain, texts))
    # The SPF tree and the DMARC tree walk run beside the MTA-STS policy fetch.
    with ThreadPoolExecutor(max_workers=2) as pool:
        spf_tree = pool.submit(_spf_tree, domain, records[2].records, found[2], resolver, options)
        dmarc_walk = pool.submit(_dmarc_walk, domain, usable[3], found[3], resolver)
        policy = None
        if usable[0] is not None:
            real_mx = [name for name in mx_names if name.rstrip(".") not in ("", ".")]
            policy, found[0] = check_mta_sts(
                domain,
                usable[0],
                real_mx,
                resolver=resolver,
                client=client,
                timeout=options.timeout,
            )
        found[2] += spf_tree.result()
        found[3] = dmarc_walk.result()
    findings = [finding for part in found for finding in part]
    return DomainPolicy(
        domain, records[0], policy, records[1], records[2], records[3], tuple(findings)
    )


def _spf_tree(
    domain: str,
    records: Sequence[str],
    found: Sequence[Finding],
    resolver: Resolver,
    options: DnsOptions,
) -> list[Finding]:
    """`follow_spf` for the one SPF record `check_spf` found sound (no error about it)."""
    if len(records) != 1 or any(f.severity is Severity.ERROR for f in found):
        return []

    def fetch(question: str, name: str, timeout: float) -> Answer[Any]:
        if question == "TXT":
            return resolver.txt(name, timeout=timeout)
        if question == "MX":
            return resolver.mx(name, timeout=timeout)
        return resolver.addresses(name, timeout=timeout)

    return follow_spf(
        domain,
        records[0],
        fetch,
        timeout=options.timeout,
        budget=SPF_BUDGET_TIMEOUTS * options.timeout,
    )


def _dmarc_walk(
    domain: str, texts: list[str] | None, found: list[Finding], resolver: Resolver
) -> list[Finding]:
    """`found` for `_dmarc.DOMAIN`, or, when it has no DMARC record, what the DMARCbis tree
    walk finds above it: the names asked side by side (one timeout in all), the nearest one
    with exactly one record applies (several are discarded, as the draft says)."""
    parents = tree_walk_names(domain)
    if texts is None or dmarc_records(texts) or not parents:
        return found
    answers = _parallel(resolver.txt, [f"_dmarc.{parent}" for parent in parents])
    for parent, answer in zip(parents, answers, strict=True):
        parent_texts, problem = _texts(answer)
        if problem is not None:
            return [problem]  # what applies is unknown, not missing
        records = dmarc_records(parent_texts or [])
        if len(records) == 1:
            return check_inherited(domain, parent, records[0])
    return [check_walk_missing(domain, parents)]


def _texts(answer: Answer[bytes]) -> tuple[list[str] | None, Finding | None]:
    """The TXT records as text, or None with a `dns.*` finding when the lookup is unusable
    (then the check is skipped: a timeout is not a missing record)."""
    if answer.status in (Status.TIMEOUT, Status.FAILED):
        code = "dns.timeout" if answer.status is Status.TIMEOUT else "dns.failed"
        return None, Finding(
            Severity.WARNING,
            code,
            answer.name,
            f"TXT lookup of {answer.name} failed: {answer.detail or answer.status.value}; "
            "not checked",
            "check the domain's name servers",
        )
    if any(len(v) > TXT_LIMIT for v in answer.values):
        return None, Finding(
            Severity.WARNING,
            "dns.oversized",
            answer.name,
            f"a TXT record at {answer.name} is over {TXT_LIMIT} bytes; not checked",
            "keep mail policy records short",
        )
    return [v.decode("utf-8", "replace") for v in answer.values], None


def raise_on_failure(answer: Answer[Any], what: str) -> None:
    """A lookup that timed out or failed as an error: never read as "no records"."""
    if answer.status is Status.TIMEOUT:
        raise TimeoutFailure(f"{what} lookup of {answer.name} timed out: {answer.detail}")
    if answer.status is Status.FAILED:
        raise TemporaryError(f"{what} lookup of {answer.name} failed: {answer.detail}")


def _implicit(domain: str, answer: Answer[Any], resolver: Resolver) -> MxHost:
    """RFC 5321 5.1: without MX records the domain itself is the mail host."""
    if answer.status is Status.NXDOMAIN:
        finding = Finding(
            Severity.ERROR,
            "mx.none",
            domain,
            f"{domain} does not exist in DNS (NXDOMAIN): no mail can be delivered to it",
            "check the domain's spelling and its delegation",
        )
        return MxHost(0, domain, (), answer.ad, implicit=True, findings=(finding,))
    addresses, seconds = _timed(resolver.addresses, domain)
    if addresses.found:
        finding = Finding(
            Severity.WARNING,
            "mx.none",
            domain,
            f"{domain} has no MX record: senders fall back to its own address (RFC 5321 5.1)",
            f"publish an MX record for {domain}",
        )
    else:
        finding = Finding(
            Severity.ERROR,
            "mx.none",
            domain,
            f"{domain} has no MX record and no address: no mail can be delivered to it",
            f"publish an MX record for {domain} (or a null MX if it takes no mail)",
        )
    return MxHost(
        0,
        domain,
        addresses.values,
        answer.ad,
        implicit=True,
        findings=(finding,),
        lookup_seconds=seconds,
    )


def _timed(function: Callable[[str], R], name: str) -> tuple[R, float]:
    """`function(name)` and how long it took (seconds)."""
    started = time.perf_counter()
    return function(name), time.perf_counter() - started


def _null_mx(domain: str, answer: Answer[Any], *, mixed: bool) -> MxHost:
    if mixed:
        # RFC 7505 3: a domain with a null MX must not publish other MX records.
        finding = Finding(
            Severity.ERROR,
            "mx.null",
            domain,
            f"{domain} publishes a null MX beside other MX records (RFC 7505 3 forbids it)",
            "remove the null MX (0 .) or the other MX records",
        )
    else:
        finding = Finding(
            Severity.WARNING,
            "mx.null",
            domain,
            f"{domain} publishes a null MX (RFC 7505): it accepts no mail",
            f"if {domain} should receive mail, replace the null MX with real MX records",
        )
    return MxHost(0, ".", (), answer.ad, null=True, findings=(finding,))


def _bad_name(preference: int, name: str, domain: str) -> MxHost:
    finding = Finding(
        Severity.ERROR,
        "mx.invalid_name",
        domain,
        f"{domain} has an MX record naming {quote(name)}, which is not a host name",
        f"point {domain}'s MX at a host name",
    )
    return MxHost(preference, name, findings=(finding,))


def _address_findings(name: str, answer: Answer[str], domain: str) -> tuple[Finding, ...]:
    if answer.found:
        return ()
    why = {
        Status.NXDOMAIN: "does not exist",
        Status.NODATA: "has no A or AAAA record",
    }.get(answer.status, f"could not be looked up ({answer.detail or answer.status.value})")
    return (
        Finding(
            Severity.ERROR,
            "mx.unresolvable",
            name,
            f"MX host {name} of {domain} {why}",
            f"point {domain}'s MX at a host with an address record",
        ),
    )


def _parallel(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(_WORKERS, len(items))) as pool:
        return list(pool.map(function, items))
