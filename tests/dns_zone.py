"""Shared zone data and helpers of the probe --mx tests (test_dns_policy, test_dns_hostile)."""

from __future__ import annotations

from pathlib import Path

from servers.dns import DnsServer

from mailctl.core.probe.dns_policy import DnsOptions, DomainPolicy
from mailctl.core.probe.findings import Severity

GOOD_POLICY = (
    b"version: STSv1\r\nmode: enforce\r\n"
    b"mx: mx1.good.test\r\nmx: *.mail.good.test\r\nmax_age: 604800\r\n"
)


def good_zone(domain: str = "good.test") -> dict[str, list[str]]:
    """A domain with every record right: MX, MTA-STS, TLS-RPT, SPF, DMARC."""
    return {
        domain: ["MX 10 mx1.good.test.", "MX 20 a.mail.good.test.", 'TXT "v=spf1 mx -all"'],
        "mx1.good.test": ["A 127.0.0.1"],
        "a.mail.good.test": ["A 127.0.0.1"],
        f"_mta-sts.{domain}": ['TXT "v=STSv1; id=20240101"'],
        f"mta-sts.{domain}": ["A 127.0.0.1"],
        f"_smtp._tls.{domain}": ['TXT "v=TLSRPTv1; rua=mailto:tlsrpt@good.test"'],
        f"_dmarc.{domain}": ['TXT "v=DMARC1; p=reject; rua=mailto:d@good.test"'],
    }


def options(server: DnsServer, ca_file: Path | None = None, timeout: float = 3.0) -> DnsOptions:
    return DnsOptions(nameserver="127.0.0.1", port=server.port, timeout=timeout, ca_file=ca_file)


def codes(policy: DomainPolicy) -> dict[str, Severity]:
    return {f.code: f.severity for f in policy.findings}
