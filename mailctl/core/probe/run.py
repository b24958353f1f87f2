"""`run_probe`: probe each target politely (a connection budget, spacing, backoff, a deadline).

Per host: one dialogue connection (banner, capabilities before and after STARTTLS, the
handshake's facts read without verifying), then each TLS version on its own connection
with a verifying context pinned to that version: a handshake that completes, or fails
only on the certificate, proves the version is offered, and the verifying handshake of
the version the dialogue negotiated gives the verification verdict. A certificate problem
is a finding; the probe never falls back to plaintext and never authenticates.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mailctl.core.probe.findings import Finding, Severity
from mailctl.core.probe.models import (
    HostReport,
    Politeness,
    ProbeRequest,
    ProbeResult,
    Target,
    VersionCheck,
)
from mailctl.core.probe.mx import dane, dns_options, plan_mx, split_nameserver
from mailctl.core.probe.verdicts import certificate_findings, dialogue_findings, version_findings
from mailctl.errors import HostNotFoundError, MailctlError, TimeoutFailure
from mailctl.protocols.probe import DialogueFacts, LinkLimits, converse
from mailctl.protocols.probe.scan import (
    ScanContexts,
    TlsContext,
    version_outcome,
    with_verdict,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from mailctl.protocols.dnslookup import Resolver


def run_probe(request: ProbeRequest) -> ProbeResult:
    """Probe every target in turn; failures are findings, never raised.

    Raises NoInputError/ConfigError only for an unusable --ca-file (before any connection).
    """
    # One set of contexts per CA file: --account's blocks may each name their own.
    scan: dict[Path | None, ScanContexts] = {}
    for ca_file in (request.ca_file, *(t.ca_file for t in request.targets if t.ca_file)):
        if ca_file not in scan:
            scan[ca_file] = ScanContexts(ca_file)
    ehlo = request.ehlo_name
    targets = request.targets
    domain_findings: tuple[Finding, ...] = ()
    options = None
    if request.mx_domain is not None:
        options = dns_options(request)
        plan = plan_mx(request, options)
        targets += plan.targets
        domain_findings = plan.findings
    resolver = _resolver(request)
    hosts: list[HostReport] = []
    for target in targets:
        contexts = scan[target.ca_file or request.ca_file]
        report = _probe_host(target, request, contexts, ehlo, resolver)
        if target.mx_name is not None and report.tls is not None:
            # RFC 7672: DANE for SMTP, the TLSA records of the MX name and port.
            chain = [cert.der for cert in report.tls.chain]
            extra = tuple(dane(target, chain, options))
            report = replace(report, findings=report.findings + extra)
        hosts.append(report)
    return ProbeResult(hosts=tuple(hosts), findings=domain_findings, fail_on=request.fail_on)


def _resolver(request: ProbeRequest) -> Resolver | None:
    """--nameserver's resolver for the host names probed (None: the system's)."""
    if request.nameserver is None:
        return None
    from mailctl.protocols.dnslookup import Resolver

    host, port = split_nameserver(request.nameserver)
    return Resolver(nameserver=host, port=port, timeout=min(request.politeness.reply_seconds, 10))


def _lookup(
    target: Target, resolver: Resolver | None, seconds: float
) -> tuple[tuple[str, ...], float | None, MailctlError | None]:
    """The addresses to try for `target`, the DNS phase's time (None: no lookup, the host
    is an address) and, with no address, the error that says why: a name that does not
    resolve (HostNotFoundError) or a resolver that did not answer in time (TimeoutFailure)."""
    if target.dns_seconds is not None:  # --mx: looked up with the MX set
        return (target.host,), target.dns_seconds, None
    try:
        ipaddress.ip_address(target.host)
    except ValueError:
        pass
    else:
        return (target.host,), None, None
    from mailctl.protocols.dnslookup import host_addresses

    started = time.perf_counter()
    addresses, why, timed_out = host_addresses(target.host, resolver=resolver, timeout=seconds)
    elapsed = time.perf_counter() - started
    if addresses:
        return addresses, elapsed, None
    if timed_out:
        return (
            (),
            elapsed,
            TimeoutFailure(
                f"cannot connect to {target.where}: {why}",
                hint="check the name servers (/etc/resolv.conf or --nameserver) and the network",
                details={"phase": "dns"},
            ),
        )
    return (
        (),
        elapsed,
        HostNotFoundError(
            f"cannot connect to {target.where}: host not found ({why})", hint="check the host name"
        ),
    )


@dataclass
class _Budget:
    """Connections left, the host deadline, and the spacing between connections."""

    politeness: Politeness
    deadline: float
    used: int = 0
    sent_away: int = 0  # busy greetings (421, BYE, -ERR) seen
    backoff: float = 0.0
    _last: float = field(default=0.0)

    def take(self) -> str | None:
        """Wait for the next connection slot; None when granted, else why not."""
        if self.used >= self.politeness.connections:
            return "no connection budget left"
        wait = self._last + self.politeness.spacing + self.backoff - time.monotonic()
        if time.monotonic() + max(wait, 0.0) >= self.deadline:
            return "the per-host deadline passed"
        if wait > 0:
            time.sleep(wait)
        self.backoff = 0.0
        self.used += 1
        self._last = time.monotonic()
        return None

    def refund(self) -> None:
        """A TCP connection that never opened (the next address of the name is tried) does
        not count against the server's budget."""
        self.used -= 1

    def busy(self) -> None:
        """The server sent us away (421): wait longer before the next connection, doubling
        with each refusal (1 s, 2 s, 4 s ... by default)."""
        self.sent_away += 1
        self.backoff = self.politeness.backoff * 2 ** (self.sent_away - 1)


def _probe_host(
    target: Target,
    request: ProbeRequest,
    contexts: ScanContexts,
    ehlo: str | None,
    resolver: Resolver | None,
) -> HostReport:
    politeness = request.politeness
    budget = _Budget(politeness, deadline=time.monotonic() + politeness.deadline)
    limits = LinkLimits(
        reply_seconds=politeness.reply_seconds, connect_seconds=politeness.reply_seconds
    )
    server_hostname = target.tls_name or target.host
    started = time.perf_counter()
    timings: dict[str, float] = {}
    # Resolve once, time it, and connect to the address; the name stays the SNI and the name
    # the certificate is checked for.
    addresses, dns_seconds, no_address = _lookup(target, resolver, politeness.reply_seconds)
    if dns_seconds is not None:
        timings["dns"] = dns_seconds

    def connect(context: TlsContext, *, tls_only: bool, address: str) -> DialogueFacts | str:
        """One connection's dialogue; after a 421 (or BYE, -ERR) greeting, back off and try
        again while the budget and the deadline allow. The last answer, or why none."""
        last: DialogueFacts | None = None
        while True:
            refused = budget.take()
            if refused is not None:
                return last if last is not None else refused
            facts = converse(
                target.protocol.family,
                address,
                target.port,
                implicit_tls=target.protocol.implicit_tls,
                context=context,
                server_hostname=server_hostname,
                ehlo_name=ehlo,
                limits=limits,
                deadline=budget.deadline,
                tls_only=tls_only,
                injection_grace=0.0 if tls_only else 0.03,
                where=target.where,
            )
            if not facts.busy:
                return facts
            last = facts
            budget.busy()

    dialogue, address = _first_dialogue(
        addresses, lambda at: connect(contexts.dialogue, tls_only=False, address=at), budget
    )
    if no_address is not None:
        dialogue.error = no_address
    findings: list[Finding] = list(dialogue_findings(target, dialogue))
    if budget.sent_away and not dialogue.busy:
        findings.append(
            Finding(
                Severity.INFO,
                "connect.busy",
                target.where,
                f"the server sent the probe away {budget.sent_away} time(s) before answering",
                None,
            )
        )
    timings.update(dialogue.timings)
    if not dialogue.connected:
        return HostReport(
            host=target.host,
            address=address,
            port=target.port,
            protocol=target.protocol,
            probed=False,
            mx_name=target.mx_name,
            findings=tuple(findings),
            connections=budget.used,
            timings=timings,
        )
    tls = dialogue.tls
    versions: tuple[VersionCheck, ...] = ()
    # Scan only where TLS started (or its handshake failed): a STARTTLS that was refused or
    # never reached would be refused again on every connection.
    started_tls = dialogue.tls is not None or dialogue.handshake_error is not None
    can_tls = target.protocol.implicit_tls or started_tls
    if can_tls and not dialogue.busy:
        scan_started = time.perf_counter()
        wanted = [
            (name, pinned)
            for name, pinned in contexts.pinned.items()
            if request.scan_versions or (tls is not None and name == tls.version)
        ]
        versions, verdicts = _scan(
            wanted, lambda pinned: connect(pinned, tls_only=True, address=address or "")
        )
        timings["scan"] = time.perf_counter() - scan_started
        if tls is not None:
            tls = with_verdict(tls, verdicts.get(tls.version))
        findings += version_findings(target, versions)
    if tls is not None:
        findings += certificate_findings(target, tls)
    timings["total"] = time.perf_counter() - started
    return HostReport(
        host=target.host,
        address=address,
        port=target.port,
        protocol=target.protocol,
        probed=True,
        mx_name=target.mx_name,
        banner=dialogue.banner,
        esmtp=dialogue.esmtp if target.protocol.family == "smtp" else None,
        capabilities_before_tls=dialogue.before,
        capabilities_after_tls=dialogue.after,
        starttls_offered=dialogue.starttls_offered,
        tls=tls,
        versions=versions,
        findings=_unique(findings),
        commands_sent=tuple(dialogue.sent),
        connections=budget.used,
        timings=timings,
    )


def _first_dialogue(
    addresses: tuple[str, ...],
    connect: Callable[[str], DialogueFacts | str],
    budget: _Budget,
) -> tuple[DialogueFacts, str | None]:
    """The dialogue with the first address that accepts a connection (as a client would try
    them), and that address; no address: an empty DialogueFacts (the caller says why)."""
    for address in addresses:
        dialogue = connect(address)
        if isinstance(dialogue, str):  # cannot happen on a first connection; keep types honest
            dialogue = DialogueFacts()
        if dialogue.connected or address == addresses[-1]:
            return dialogue, address
        budget.refund()
    return DialogueFacts(), None


def _scan(
    wanted: list[tuple[str, TlsContext | str]],
    connect: Callable[[TlsContext], DialogueFacts | str],
) -> tuple[tuple[VersionCheck, ...], dict[str, DialogueFacts]]:
    """Each TLS version on its own connection: what each showed, and each connection's facts
    (for the verdict of the version the dialogue negotiated)."""
    checks: list[VersionCheck] = []
    verdicts: dict[str, DialogueFacts] = {}
    for name, pinned in wanted:
        if isinstance(pinned, str):
            checks.append(VersionCheck(name, None, reason=pinned))
            continue
        outcome = connect(pinned)
        if isinstance(outcome, str):
            checks.append(VersionCheck(name, None, reason=outcome))
            continue
        verdicts[name] = outcome
        found = version_outcome(outcome)
        checks.append(
            VersionCheck(
                name,
                found.offered,
                cipher=found.cipher,
                reason=found.reason,
                elapsed=sum(outcome.timings.values()),
            )
        )
    return tuple(checks), verdicts


def _unique(findings: list[Finding]) -> tuple[Finding, ...]:
    seen: set[tuple[str, str, str]] = set()
    out: list[Finding] = []
    for finding in findings:
        key = (finding.code, finding.subject, finding.message)
        if key not in seen:
            seen.add(key)
            out.append(finding)
    return tuple(out)
