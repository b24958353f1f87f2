"""`run_probe`: probe each target politely (a connection budget, spacing, backoff, a deadline).

Per host: one dialogue connection (banner, capabilities before and after STARTTLS, the
handshake's facts read without verifying), then each TLS version on its own connection
with a verifying context pinned to that version: a handshake that completes, or fails
only on the certificate, proves the version is offered, and the verifying handshake of
the version the dialogue negotiated gives the verification verdict. A certificate problem
is a finding; the probe never falls back to plaintext and never authenticates.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field, replace

from mailctl.core.probe.findings import Finding
from mailctl.core.probe.models import (
    HostReport,
    Politeness,
    ProbeRequest,
    ProbeResult,
    Target,
    VersionCheck,
)
from mailctl.core.probe.verdicts import certificate_findings, dialogue_findings, version_findings
from mailctl.errors import ConnectionLostError
from mailctl.protocols.handshake import HandshakeFacts
from mailctl.protocols.probe import DialogueFacts, LinkLimits, converse
from mailctl.protocols.tls import client_context

# Newest first: the versions that matter most are tried while the budget is fresh.
_VERSIONS = (
    ("TLSv1.3", ssl.TLSVersion.TLSv1_3),
    ("TLSv1.2", ssl.TLSVersion.TLSv1_2),
    ("TLSv1.1", ssl.TLSVersion.TLSv1_1),
    ("TLSv1", ssl.TLSVersion.TLSv1),
)
# OpenSSL reasons meaning "we could not even offer this version here" (not the server's doing).
_LOCAL_REASONS = frozenset({"NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE"})


def run_probe(request: ProbeRequest) -> ProbeResult:
    """Probe every target in turn; failures are findings, never raised.

    Raises NoInputError/ConfigError only for an unusable --ca-file (before any connection).
    """
    contexts = _Contexts(request)
    ehlo = request.ehlo_name
    hosts = tuple(_probe_host(target, request, contexts, ehlo) for target in request.targets)
    return ProbeResult(hosts=hosts, fail_on=request.fail_on)


class _Contexts:
    """The run's SSL contexts, built once: the dialogue's (no verification, any version the
    local OpenSSL has, to read what is presented) and one verifying context per version."""

    def __init__(self, request: ProbeRequest) -> None:
        self.dialogue = client_context(verify=False, minimum=ssl.TLSVersion.TLSv1)
        self.pinned: dict[str, ssl.SSLContext | str] = {}
        for name, version in _VERSIONS:
            try:
                self.pinned[name] = client_context(
                    verify=True, ca_file=request.ca_file, minimum=version, maximum=version
                )
            except (ValueError, ssl.SSLError) as err:  # this OpenSSL cannot do it at all
                self.pinned[name] = f"the local OpenSSL cannot try it ({err})"


@dataclass
class _Budget:
    """Connections left, the host deadline, and the spacing between connections."""

    politeness: Politeness
    deadline: float
    used: int = 0
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

    def busy(self) -> None:
        """The server sent us away (421): wait longer before the next connection (doubling)."""
        self.backoff = self.politeness.backoff if self.backoff == 0 else self.backoff * 2


def _probe_host(
    target: Target, request: ProbeRequest, contexts: _Contexts, ehlo: str | None
) -> HostReport:
    politeness = request.politeness
    budget = _Budget(politeness, deadline=time.monotonic() + politeness.deadline)
    limits = LinkLimits(
        reply_seconds=politeness.reply_seconds, connect_seconds=politeness.reply_seconds
    )
    server_hostname = target.tls_name or target.host

    def connect(context: ssl.SSLContext, *, tls_only: bool) -> DialogueFacts | str:
        while True:
            refused = budget.take()
            if refused is not None:
                return refused
            facts = converse(
                target.protocol.family,
                target.host,
                target.port,
                implicit_tls=target.protocol.implicit_tls,
                context=context,
                server_hostname=server_hostname,
                ehlo_name=ehlo,
                limits=limits,
                deadline=budget.deadline,
                tls_only=tls_only,
                injection_grace=0.0 if tls_only else 0.03,
            )
            if not facts.busy or budget.used >= politeness.connections:
                return facts
            budget.busy()  # 421 / BYE: back off, then try again within the budget

    started = time.perf_counter()
    dialogue = connect(contexts.dialogue, tls_only=False)
    if isinstance(dialogue, str):  # cannot happen on the first connection; keep types honest
        dialogue = DialogueFacts()
    findings: list[Finding] = list(dialogue_findings(target, dialogue))
    timings = dict(dialogue.timings)
    if not dialogue.connected:
        return HostReport(
            host=target.host,
            port=target.port,
            protocol=target.protocol,
            probed=False,
            findings=tuple(findings),
            connections=budget.used,
            timings=timings,
        )
    tls = dialogue.tls
    versions: tuple[VersionCheck, ...] = ()
    can_tls = target.protocol.implicit_tls or bool(dialogue.starttls_offered)
    if can_tls and not dialogue.busy:
        scan_started = time.perf_counter()
        wanted = [
            (name, pinned)
            for name, pinned in contexts.pinned.items()
            if request.scan_versions or (tls is not None and name == tls.version)
        ]
        checks: list[VersionCheck] = []
        verdicts: dict[str, DialogueFacts] = {}
        for name, pinned in wanted:
            if isinstance(pinned, str):
                checks.append(VersionCheck(name, None, reason=pinned))
                continue
            outcome = connect(pinned, tls_only=True)
            if isinstance(outcome, str):
                checks.append(VersionCheck(name, None, reason=outcome))
                continue
            verdicts[name] = outcome
            checks.append(_version_check(name, outcome))
        versions = tuple(checks)
        timings["scan"] = time.perf_counter() - scan_started
        if tls is not None:
            tls = _with_verdict(tls, verdicts.get(tls.version))
        findings += version_findings(target, versions)
    if tls is not None:
        findings += certificate_findings(target, tls)
    timings["total"] = time.perf_counter() - started
    return HostReport(
        host=target.host,
        port=target.port,
        protocol=target.protocol,
        probed=True,
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


def _version_check(name: str, facts: DialogueFacts) -> VersionCheck:
    """Offered when the handshake completed or failed only on the certificate (the version
    was agreed before the certificate was judged)."""
    seconds = sum(facts.timings.values())
    if facts.tls is not None:
        return VersionCheck(name, True, cipher=facts.tls.cipher, elapsed=seconds)
    err = facts.handshake_error
    if isinstance(err, ssl.SSLCertVerificationError):
        return VersionCheck(name, True, reason="offered; certificate refused", elapsed=seconds)
    if err is not None:
        reason = str(err.reason or type(err).__name__)
        if reason in _LOCAL_REASONS:
            return VersionCheck(name, None, reason="the local OpenSSL cannot offer it")
        return VersionCheck(name, False, reason=reason.replace("_", " ").lower(), elapsed=seconds)
    if facts.error is not None:
        # A server that hangs up on a ClientHello it does not like refuses the version; a
        # timeout or a limit says nothing about it.
        lost = isinstance(facts.error, ConnectionLostError) and facts.connected
        return VersionCheck(
            name,
            False if lost else None,
            reason=facts.error.message,
            elapsed=seconds,
        )
    return VersionCheck(name, None, reason="the server did not start TLS", elapsed=seconds)


def _with_verdict(tls: HandshakeFacts, facts: DialogueFacts | None) -> HandshakeFacts:
    """The dialogue's facts (read without verifying) with the verdict of the verifying
    handshake of the same version; unchanged (verified None) when there was none."""
    if facts is None:
        return tls
    if facts.tls is not None:
        return replace(tls, verified=True)
    err = facts.handshake_error
    if isinstance(err, ssl.SSLCertVerificationError):
        return replace(
            tls, verified=False, verify_code=err.verify_code, verify_message=err.verify_message
        )
    return tls


def _unique(findings: list[Finding]) -> tuple[Finding, ...]:
    seen: set[tuple[str, str, str]] = set()
    out: list[Finding] = []
    for finding in findings:
        key = (finding.code, finding.subject, finding.message)
        if key not in seen:
            seen.add(key)
            out.append(finding)
    return tuple(out)
