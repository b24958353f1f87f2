"""DANE for SMTP (RFC 6698, 7671, 7672): TLSA records matched against a presented chain."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailctl.core.probe.findings import Finding, Severity

USAGES = {0: "PKIX-TA", 1: "PKIX-EE", 2: "DANE-TA", 3: "DANE-EE"}
_MATCHING: dict[int, Callable[[bytes], bytes]] = {
    0: lambda data: data,  # Full: the whole selected content
    1: lambda data: hashlib.sha256(data).digest(),
    2: lambda data: hashlib.sha512(data).digest(),
}

if TYPE_CHECKING:
    from cryptography.x509 import Certificate


@dataclass(frozen=True)
class TlsaRecord:
    """One TLSA record (RFC 6698 2.1); `association` is the data in lower-case hex."""

    usage: int
    selector: int
    matching: int
    association: str

    @property
    def usable(self) -> bool:
        """RFC 7672 2.2: records with unknown parameters are unusable (and ignored)."""
        return self.usage in USAGES and self.selector in (0, 1) and self.matching in _MATCHING

    def __str__(self) -> str:
        short = self.association[:16] + ("..." if len(self.association) > 16 else "")
        return f"{self.usage} {self.selector} {self.matching} {short}"


def tlsa_name(host: str, port: int) -> str:
    """RFC 6698 3: _PORT._tcp.HOST."""
    return f"_{port}._tcp.{host.rstrip('.')}"


@dataclass(frozen=True)
class TlsaBase:
    """Where the TLSA records of MX host `host` were looked up (RFC 7672 2.2.2).

    `expanded`: the fully CNAME-expanded name when `host` is an alias (None when it is not),
    `secure`: whether that expansion was DNSSEC-validated (the address answer's AD bit as
    the resolver gave it). `name`, the TLSA base domain, is `expanded` when the expansion is
    secure and has TLSA records, else `host`.
    """

    host: str
    name: str
    expanded: str | None = None
    secure: bool = False

    @property
    def reference_names(self) -> tuple[str, ...]:
        """The names a DANE-TA server certificate may carry (RFC 7672 3.2.2): the MX host
        name, and its CNAME expansion when that is secure."""
        if self.secure and self.expanded is not None:
            return (self.host, self.expanded)
        return (self.host,)

    def describe(self, port: int) -> str:
        """`_PORT._tcp.NAME`, saying how an alias decided it."""
        where = tlsa_name(self.name, port)
        if self.expanded is None:
            return where
        if self.name != self.host:
            return f"{where} (the CNAME target of {self.host})"
        target = tlsa_name(self.expanded, port)
        if self.secure:
            return f"{where} (none at {target}, its CNAME target's name)"
        return (
            f"{where} ({self.host} is an alias of {self.expanded}, not DNSSEC-validated: "
            f"{target} does not count)"
        )


def dane_check(
    host: str,
    port: int,
    tlsa: Sequence[TlsaRecord],
    chain_der: Sequence[bytes],
    *,
    ad: bool | None = None,
    base: TlsaBase | None = None,
) -> list[Finding]:
    """Findings from matching `tlsa` against `chain_der` (leaf first) as presented by
    `host`:`port`.

    `ad` is the AD bit of the TLSA answer (None: not known); records a resolver did not
    validate are ignored by DANE senders (RFC 7672 2.2), which is `dane.no_dnssec`. `base`
    says where the records were found when `host` is an alias (None: at `host`).
    """
    subject = f"{host}:{port}"
    base = base or TlsaBase(host, host)
    name = base.describe(port)
    if not tlsa:
        return [Finding(Severity.INFO, "dane.missing", subject, f"{name} has no TLSA records")]
    found: list[Finding] = []
    if ad is False:
        found.append(
            Finding(
                Severity.WARNING,
                "dane.no_dnssec",
                subject,
                f"the TLSA records at {name} were not DNSSEC-validated (the resolver did "
                "not set AD): DANE senders ignore them",
                "sign the zone with DNSSEC, or check through a validating resolver",
            )
        )
    usable = [r for r in tlsa if r.usable]
    if len(usable) < len(tlsa):
        found.append(
            Finding(
                Severity.WARNING,
                "dane.unusable",
                subject,
                f"{len(tlsa) - len(usable)} TLSA record(s) at {name} use unknown "
                "parameters and are ignored",
                "use usage 2 or 3, selector 0 or 1, matching type 0, 1 or 2",
            )
        )
    if any(r.usage in (0, 1) for r in usable):
        found.append(
            Finding(
                Severity.WARNING,
                "dane.pkix_usage",
                subject,
                f"{name} has PKIX-TA/PKIX-EE (usage 0/1) records, which RFC 7672 3.1.3 "
                "says SMTP servers should not publish",
                "publish DANE-EE (3 1 1) or DANE-TA (2 1 1) records instead",
            )
        )
    if not usable:
        return found
    if not chain_der:
        found.append(
            Finding(
                Severity.INFO,
                "dane.no_chain",
                subject,
                f"no certificate chain from {subject} to match the TLSA records against",
            )
        )
        return found
    found.append(_verdict(base.reference_names, subject, name, usable, chain_der))
    return found


def _verdict(
    names: Sequence[str],
    subject: str,
    name: str,
    usable: Sequence[TlsaRecord],
    chain_der: Sequence[bytes],
) -> Finding:
    from cryptography import x509

    try:
        chain = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError:
        return Finding(
            Severity.ERROR,
            "dane.mismatch",
            subject,
            f"{subject} presented a certificate that does not parse",
            "check the server's certificate chain",
        )
    reasons: list[str] = []
    for record in usable:
        reason = _match(record, names, chain)
        if reason is None:
            return Finding(
                Severity.INFO,
                "dane.match",
                subject,
                f"TLSA {record} ({USAGES[record.usage]}) at {name} matches the certificate "
                f"of {subject}",
            )
        reasons.append(f"{record}: {reason}")
    return Finding(
        Severity.ERROR,
        "dane.mismatch",
        subject,
        f"no TLSA record at {name} matches the chain of {subject} ({'; '.join(reasons[:3])}): "
        "DANE senders will not deliver",
        "publish TLSA records for the certificate in use (or roll the certificate back)",
    )


def _selected(cert: Certificate, selector: int) -> bytes:
    from cryptography.hazmat.primitives import serialization

    if selector == 0:
        return cert.public_bytes(serialization.Encoding.DER)
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _matches(record: TlsaRecord, cert: Certificate) -> bool:
    digest = _MATCHING[record.matching](_selected(cert, record.selector))
    return digest.hex() == record.association.lower()


def _match(record: TlsaRecord, names: Sequence[str], chain: list[Certificate]) -> str | None:
    """None when `record` matches `chain` by its usage's rule, else why not."""
    if record.usage in (1, 3):
        # End-entity usages match the server's own certificate (RFC 6698 2.1.1). DANE-EE
        # ignores names and dates (RFC 7672 3.1.1); PKIX-EE also needs the TLS layer's
        # PKIX verdict, reported by the handshake, not here.
        return None if _matches(record, chain[0]) else "not the server certificate"
    for index in range(1, len(chain)):
        if _matches(record, chain[index]):
            broken = _broken_link(chain[: index + 1])
            if broken is not None:
                return broken
            return _name_problem(names, chain[0])
    if record.selector == 0 and record.matching == 0:
        # A full trust-anchor certificate in DNS need not be in the chain (RFC 7671 5.2.2).
        anchor = _anchor(record)
        if anchor is not None and _broken_link([*chain, anchor]) is None:
            return _name_problem(names, chain[0])
    return "no certificate in the chain matches"


def _anchor(record: TlsaRecord) -> Certificate | None:
    from cryptography import x509

    try:
        return x509.load_der_x509_certificate(bytes.fromhex(record.association))
    except ValueError:
        return None


def _broken_link(path: Sequence[Certificate]) -> str | None:
    """Why `path` (leaf first) is not a chain of signatures, or None."""
    from cryptography.exceptions import InvalidSignature

    for child, parent in itertools.pairwise(path):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            return f"{child.subject.rfc4514_string()} is not signed by the matched anchor"
    return None


def _name_problem(hosts: Sequence[str], leaf: Certificate) -> str | None:
    """RFC 7672 3.2.2: with DANE-TA the server certificate must carry the MX host name, or
    its CNAME expansion when that is secure (`hosts`: the names allowed)."""
    from cryptography import x509

    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    for host in hosts:
        wanted = host.rstrip(".").lower()
        for name in names:
            pattern = name.rstrip(".").lower()
            if pattern == wanted:
                return None
            if pattern.startswith("*.") and wanted.partition(".")[2] == pattern[2:]:
                return None
    return f"the certificate does not name {' or '.join(hosts)}"
