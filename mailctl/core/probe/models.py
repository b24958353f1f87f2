"""The probe's request and result: which hosts to probe how, and what each one showed."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from mailctl.core.probe.findings import Finding, Severity
from mailctl.errors import ExitCode
from mailctl.serialize import SECONDS, SKIP, JsonAttrs, meta

if TYPE_CHECKING:
    from mailctl.protocols.handshake import HandshakeFacts


class ProbeProtocol(StrEnum):
    """What a port speaks: the protocol family, and TLS from the first byte or by STARTTLS."""

    SMTP = "smtp"  # port 25, MTA to MTA, STARTTLS opportunistic (RFC 3207)
    SUBMISSION = "submission"  # port 587, STARTTLS (RFC 6409)
    SMTPS = "smtps"  # port 465, implicit TLS (RFC 8314)
    IMAP = "imap"  # 143, STARTTLS
    IMAPS = "imaps"  # 993
    POP3 = "pop3"  # 110, STLS
    POP3S = "pop3s"  # 995

    @property
    def family(self) -> str:
        """smtp, imap or pop3: which dialogue the port speaks."""
        return {"submission": "smtp", "smtps": "smtp", "imaps": "imap", "pop3s": "pop3"}.get(
            self.value, self.value
        )

    @property
    def implicit_tls(self) -> bool:
        return self in (ProbeProtocol.SMTPS, ProbeProtocol.IMAPS, ProbeProtocol.POP3S)

    @property
    def port(self) -> int:
        """The well-known port (RFC 6409, RFC 8314 7.3, IANA)."""
        return _PORTS[self]

    @classmethod
    def for_port(cls, port: int) -> ProbeProtocol | None:
        """The protocol a well-known port speaks; None for any other port."""
        return next((protocol for protocol, number in _PORTS.items() if number == port), None)


_PORTS = {
    ProbeProtocol.SMTP: 25,
    ProbeProtocol.SUBMISSION: 587,
    ProbeProtocol.SMTPS: 465,
    ProbeProtocol.IMAP: 143,
    ProbeProtocol.IMAPS: 993,
    ProbeProtocol.POP3: 110,
    ProbeProtocol.POP3S: 995,
}


@dataclass(frozen=True)
class Target:
    """One host and port to probe, and what it speaks."""

    host: str
    port: int
    protocol: ProbeProtocol
    tls_name: str | None = None  # the name the certificate must match (default: host)
    mx_name: str | None = None  # --mx: the MX host's name (`host` is its address)
    # --mx: how long the MX host's address lookup took (it is done with the MX set).
    dns_seconds: float | None = None
    ca_file: Path | None = None  # --account: this block's CA file (else the request's)

    @property
    def where(self) -> str:
        """How findings name it: the MX name when probed by address for --mx."""
        if self.mx_name is not None:
            return f"{self.mx_name}:{self.port}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Politeness:
    """How hard a probe may knock: per host, at most `connections` connections (one per
    TLS version plus the dialogue, and one spare for a retry after 421), `spacing` seconds
    apart, `backoff` seconds (doubling) after a 421 or a busy greeting, and everything within
    `deadline` seconds so a tarpit cannot hold the run."""

    connections: int = 6
    spacing: float = 0.02
    backoff: float = 1.0
    deadline: float = 30.0
    reply_seconds: float = 10.0


@dataclass(frozen=True)
class ProbeRequest:
    """What `mailctl probe` was asked. `mx_domain`/`nameserver` (--mx, --nameserver) are
    resolved into targets by the DNS policy part (core/probe/dns_policy.py)."""

    targets: tuple[Target, ...] = ()
    mx_domain: str | None = None
    nameserver: str | None = None
    ca_file: Path | None = None
    fail_on: Severity | None = None
    ehlo_name: str | None = None
    politeness: Politeness = Politeness()
    mx_port: int = 25  # where --mx probes each MX host (RFC 5321: 25; --mx-port for tests)
    scan_versions: bool = True


@dataclass(frozen=True)
class FindingView:
    """A Finding as JSON shows it: the severity as its word (info, warning, error)."""

    severity: str
    code: str
    subject: str
    message: str
    fix: str | None


def views(findings: tuple[Finding, ...]) -> tuple[FindingView, ...]:
    return tuple(
        FindingView(f.severity.label, f.code, f.subject, f.message, f.fix) for f in findings
    )


@dataclass(frozen=True)
class VersionCheck:
    """One TLS version tried on its own connection."""

    version: str  # TLSv1, TLSv1.1, TLSv1.2, TLSv1.3 (as OpenSSL names them)
    offered: bool | None  # None: not tried (the local OpenSSL cannot, or no budget left)
    cipher: str | None = None
    reason: str | None = None  # why not offered / not tried
    elapsed: float = field(default=0.0, metadata=SECONDS)  # its connection, all phases


@dataclass(frozen=True)
class HostReport:
    """What probing one host showed; `probed` is False when no dialogue happened at all."""

    host: str
    port: int
    protocol: ProbeProtocol
    probed: bool
    mx_name: str | None = None
    address: str | None = None  # the address connected to (`host` resolved once)
    banner: str | None = None
    esmtp: bool | None = None
    capabilities_before_tls: tuple[str, ...] = ()
    capabilities_after_tls: tuple[str, ...] = ()
    starttls_offered: bool | None = None
    tls: HandshakeFacts | None = None
    versions: tuple[VersionCheck, ...] = ()
    findings: tuple[Finding, ...] = field(default=(), metadata=SKIP)
    commands_sent: tuple[str, ...] = ()  # every verb sent, to show what the probe did
    connections: int = 0
    timings: dict[str, float] = field(default_factory=dict, metadata=SECONDS)

    JSON_ATTRS: ClassVar[JsonAttrs] = ("worst", ("finding_views", meta(key="findings")))

    @property
    def finding_views(self) -> tuple[FindingView, ...]:
        return views(self.findings)

    @property
    def worst(self) -> str | None:
        """The most severe finding's level (info, warning, error), None without findings."""
        if not self.findings:
            return None
        return max(f.severity for f in self.findings).label


@dataclass(frozen=True)
class ProbeResult:
    hosts: tuple[HostReport, ...]
    # About domains (--mx DNS policy), not one host.
    findings: tuple[Finding, ...] = field(default=(), metadata=SKIP)
    fail_on: Severity | None = field(default=None, metadata=SKIP)

    JSON_ATTRS: ClassVar[JsonAttrs] = (
        ("finding_views", meta(key="findings")),
        ("fail_on_level", meta(key="fail_on")),
        "worst",
    )

    @property
    def finding_views(self) -> tuple[FindingView, ...]:
        return views(self.findings)

    @property
    def fail_on_level(self) -> str | None:
        return self.fail_on.label if self.fail_on is not None else None

    def all_findings(self) -> tuple[Finding, ...]:
        return self.findings + tuple(f for host in self.hosts for f in host.findings)

    @property
    def worst(self) -> str | None:
        found = self.all_findings()
        return max(f.severity for f in found).label if found else None

    @property
    def exit_code(self) -> ExitCode:
        """74 when no host could be probed; 1 when a finding at or above `fail_on` exists
        (like grep and linters: "found something"); else 0."""
        if self.hosts and not any(host.probed for host in self.hosts):
            return ExitCode.IOERR
        if self.fail_on is not None and any(
            f.severity >= self.fail_on for f in self.all_findings()
        ):
            return ExitCode.FOUND
        return ExitCode.OK

    @property
    def status(self) -> str:
        """ok (exit 0), error (no host probed), partial (probed, but findings trip --fail-on)."""
        code = self.exit_code
        if code is ExitCode.OK:
            return "ok"
        return "error" if code is ExitCode.IOERR else "partial"
