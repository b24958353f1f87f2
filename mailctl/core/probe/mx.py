"""`probe --mx DOMAIN`: the domain's MX hosts as probe targets, its DNS mail policy as findings.

The DNS side is `core/probe/dns_policy.py` (MX, MTA-STS, TLS-RPT, SPF, DMARC, DANE); this
module only turns its answers into what `run_probe` needs. An MX host is probed at the
address the same nameserver gave (a test zone's names resolve nowhere else), its certificate
checked for the MX name (also sent as SNI), and DANE matched against the chain it presented.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mailctl.core.probe.findings import Finding
from mailctl.core.probe.models import ProbeProtocol, ProbeRequest, Target
from mailctl.errors import UsageError


@dataclass(frozen=True)
class MxPlan:
    """The MX hosts to probe (preference order) and the findings about the domain."""

    targets: tuple[Target, ...]
    findings: tuple[Finding, ...]


def dns_options(request: ProbeRequest) -> Any:
    """The DnsOptions of a run: --nameserver IP[:PORT], the reply timeout, --ca-file (the
    MTA-STS policy fetch trusts what the SMTP checks trust). Raises UsageError."""
    try:
        from mailctl.core.probe.dns_policy import DnsOptions
    except ImportError as err:  # pragma: no cover - only in a build without the DNS part
        raise UsageError("--mx is not available in this build of mailctl") from err
    host, port = split_nameserver(request.nameserver)
    return DnsOptions(
        nameserver=host,
        port=port,
        timeout=min(request.politeness.reply_seconds, 10.0),
        ca_file=request.ca_file,
    )


def split_nameserver(value: str | None) -> tuple[str | None, int]:
    """`IP`, `IP:PORT`, `[V6]:PORT` -> (address, port). Raises UsageError."""
    if value is None:
        return None, 53
    text = value.strip()
    port_text = None
    if text.startswith("[") and "]" in text:
        host, rest = text[1:].split("]", 1)
        port_text = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host = text
    if port_text is None:
        return host, 53
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"--nameserver {value!r}: port must be 1-65535", hint="write IP:PORT")
    return host, int(port_text)


def plan_mx(request: ProbeRequest, options: Any) -> MxPlan:
    """Resolve the MX set of `request.mx_domain` and read its policy.

    Raises what `resolve_mx` raises when the MX question gets no usable answer
    (TimeoutFailure, TemporaryError), InputDataError for a bad domain, UsageError for a bad
    nameserver; everything about the domain itself is a finding.
    """
    from mailctl.core.probe.dns_policy import domain_policy, resolve_mx

    domain = request.mx_domain or ""
    hosts: Sequence[Any] = resolve_mx(domain, options)
    findings: list[Finding] = []
    targets: list[Target] = []
    for host in hosts:
        findings += host.findings
        addresses = host.addresses
        if host.null or not addresses:
            continue
        targets.append(
            Target(
                addresses[0],
                request.mx_port,
                ProbeProtocol.SMTP,
                tls_name=host.name,
                mx_name=host.name,
                dns_seconds=host.lookup_seconds,
            )
        )
    names = [t.mx_name for t in targets if t.mx_name is not None]
    policy = domain_policy(domain, names, options)
    findings += policy.findings
    return MxPlan(tuple(targets), tuple(findings))


def dane(target: Target, chain_der: Sequence[bytes], options: Any) -> list[Finding]:
    """DANE (RFC 7672) for one probed MX host: its TLSA records against the chain it sent."""
    from mailctl.core.probe.dane_lookup import dane_findings

    name = target.mx_name or target.host
    found: list[Finding] = dane_findings(name, target.port, list(chain_der), options)
    return found
