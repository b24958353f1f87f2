"""DANE's DNS side for one MX host (RFC 7672 2.2, 2.2.2): where its TLSA records are (the
CNAME expansion when secure, else the MX name), and the findings of matching them against
the chain the host presented (`dane.dane_check`). A failed lookup is a finding, never "no
DANE": DANE senders defer mail then.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailctl.core.probe.dane import TlsaBase, TlsaRecord, dane_check, tlsa_name
from mailctl.core.probe.dns_policy import DnsOptions, mail_domain, raise_on_failure, resolver_for
from mailctl.core.probe.findings import Finding, Severity
from mailctl.errors import InputDataError, TemporaryError, TimeoutFailure
from mailctl.protocols.dnslookup import Resolver

__all__ = ["TlsaBase", "TlsaRecord", "dane_findings", "lookup_tlsa", "lookup_tlsa_base"]


def lookup_tlsa(host: str, port: int, options: DnsOptions) -> tuple[list[TlsaRecord], bool]:
    """The TLSA records at _PORT._tcp.HOST (RFC 6698 3) and the AD bit of the answer.

    No records (NXDOMAIN or NODATA) is an empty list. Raises TimeoutFailure or
    TemporaryError when the lookup fails: RFC 7672 2.2 has senders defer delivery then, so
    the caller reports it rather than taking it for "no DANE".
    """
    host = mail_domain(host, what="host")
    return _tlsa_at(host, port, resolver_for(options))


def lookup_tlsa_base(
    host: str, port: int, options: DnsOptions
) -> tuple[list[TlsaRecord], bool, TlsaBase]:
    """The TLSA records of MX host `host` where RFC 7672 2.2.2 puts them, the AD bit of
    their answer, and where that was (`TlsaBase`).

    When `host` is an alias, its address lookup gives the fully CNAME-expanded name: if that
    answer is DNSSEC-secure (AD, as the resolver gave it), the records at the expanded name
    are used, and those at `host` only when the expanded name has none; if it is insecure,
    only `host` counts. Raises TimeoutFailure or TemporaryError when the address lookup (a
    CNAME loop included) or a TLSA lookup fails, as `lookup_tlsa` does.
    """
    host = mail_domain(host, what="host")
    resolver = resolver_for(options)
    address = resolver.addresses(host)
    raise_on_failure(address, "address")
    expanded = _expanded_name(host, address.canonical)
    if expanded is None:
        records, ad = _tlsa_at(host, port, resolver)
        return records, ad, TlsaBase(host, host)
    base = TlsaBase(host, host, expanded, secure=address.ad)
    if base.secure:
        records, ad = _tlsa_at(expanded, port, resolver)
        if records:
            return records, ad, TlsaBase(host, expanded, expanded, secure=True)
    records, ad = _tlsa_at(host, port, resolver)
    return records, ad, base


def dane_findings(
    host: str, port: int, chain_der: Sequence[bytes], options: DnsOptions
) -> list[Finding]:
    """`lookup_tlsa_base` then `dane_check`, with a failed lookup as `dane.lookup_failed` (an
    error: RFC 7672 2.2 has DANE senders defer mail when the TLSA lookup fails)."""
    try:
        records, ad, base = lookup_tlsa_base(host, port, options)
    except (TimeoutFailure, TemporaryError) as err:
        return [
            Finding(
                Severity.ERROR,
                "dane.lookup_failed",
                f"{host}:{port}",
                str(err),
                "check the DNS servers of the MX host's zone",
            )
        ]
    return dane_check(host, port, records, chain_der, ad=ad, base=base)


def _tlsa_at(host: str, port: int, resolver: Resolver) -> tuple[list[TlsaRecord], bool]:
    answer = resolver.tlsa(tlsa_name(host, port))
    raise_on_failure(answer, "TLSA")
    records = [TlsaRecord(v.usage, v.selector, v.matching, v.data.hex()) for v in answer.values]
    return records, answer.ad


def _expanded_name(host: str, canonical: str | None) -> str | None:
    """The CNAME expansion of `host` when it is an alias to a usable host name, else None."""
    if canonical is None or canonical.rstrip(".").lower() == host:
        return None
    try:
        return mail_domain(canonical, what="CNAME target")
    except InputDataError:  # HeaderInjectionError included
        return None
