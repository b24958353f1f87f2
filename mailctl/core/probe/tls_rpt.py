"""SMTP TLS Reporting (RFC 8460): one `v=TLSRPTv1` record at `_smtp._tls.DOMAIN`."""

from __future__ import annotations

import re
from collections.abc import Sequence

from mailctl.core.probe.findings import Finding, Severity
from mailctl.text import quote

# RFC 8460 3: rua = a comma-separated list of mailto: or https: URIs.
_RUA_URI = re.compile(r"(mailto:[^\s,;]+@[^\s,;]+|https://[^\s,;]+)", re.IGNORECASE)


def rpt_records(texts: Sequence[str]) -> list[str]:
    """RFC 8460 3: records not starting "v=TLSRPTv1;" are discarded."""
    return [t for t in texts if re.match(r"v=TLSRPTv1\s*;", t)]


def parse_tls_rpt(record: str) -> tuple[tuple[str, ...], str | None]:
    """The rua URIs of one record, and the first problem or None."""
    rua: tuple[str, ...] = ()
    for part in [p.strip() for p in record.split(";")][1:]:
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep:
            return rua, f"{quote(part)} is not field=value"
        if name.strip() == "rua" and not rua:
            uris = tuple(u.strip() for u in value.split(","))
            bad = [u for u in uris if not _RUA_URI.fullmatch(u)]
            if bad:
                return rua, f"rua {quote(bad[0])} is not a mailto: or https: URI"
            rua = uris
    if not rua:
        return rua, "the record has no rua= field"
    return rua, None


def check_tls_rpt(domain: str, texts: Sequence[str]) -> list[Finding]:
    """Findings for the TXT records at `_smtp._tls.DOMAIN`."""
    name = f"_smtp._tls.{domain}"
    records = rpt_records(texts)
    if not records:
        return [
            Finding(
                Severity.INFO,
                "tls_rpt.missing",
                domain,
                f"{name} has no TLS-RPT record: senders cannot report TLS failures to {domain}",
                f'publish a TXT record at {name}: "v=TLSRPTv1; rua=mailto:tlsrpt@{domain}"',
            )
        ]
    if len(records) > 1:
        return [
            Finding(
                Severity.WARNING,
                "tls_rpt.invalid",
                domain,
                f"{name} has {len(records)} TLS-RPT records; RFC 8460 3 then uses none",
                "keep one v=TLSRPTv1 record",
            )
        ]
    _, problem = parse_tls_rpt(records[0])
    if problem is not None:
        return [
            Finding(
                Severity.WARNING,
                "tls_rpt.invalid",
                domain,
                f"the TLS-RPT record at {name} does not parse: {problem}",
                "fix the record (RFC 8460 section 3)",
            )
        ]
    return []
