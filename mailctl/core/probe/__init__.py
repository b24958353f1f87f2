"""`mailctl probe`: a mail server's TLS, STARTTLS, AUTH and DNS mail policy in one report."""

from mailctl.core.probe.findings import Finding, Severity
from mailctl.core.probe.models import (
    HostReport,
    Politeness,
    ProbeProtocol,
    ProbeRequest,
    ProbeResult,
    Target,
    VersionCheck,
)
from mailctl.core.probe.run import run_probe
from mailctl.protocols.handshake import CertificateFacts, HandshakeFacts

__all__ = [
    "CertificateFacts",
    "Finding",
    "HandshakeFacts",
    "HostReport",
    "Politeness",
    "ProbeProtocol",
    "ProbeRequest",
    "ProbeResult",
    "Severity",
    "Target",
    "VersionCheck",
    "run_probe",
]
