"""The TLS version scan's contexts and verdicts: one verifying context pinned to each version.

A handshake that completes, or fails only on the certificate, proves the version was
agreed (the certificate is judged after the versions are); any other failure means the
server refused it, unless OpenSSL here could not even offer it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, replace
from pathlib import Path

from mailctl.errors import ConnectionLostError
from mailctl.protocols.handshake import HandshakeFacts
from mailctl.protocols.probe.dialogue import DialogueFacts
from mailctl.protocols.tls import client_context

# Newest first: the versions that matter most are tried while the budget is fresh.
VERSIONS = (
    ("TLSv1.3", ssl.TLSVersion.TLSv1_3),
    ("TLSv1.2", ssl.TLSVersion.TLSv1_2),
    ("TLSv1.1", ssl.TLSVersion.TLSv1_1),
    ("TLSv1", ssl.TLSVersion.TLSv1),
)
# The context type, named here so core can annotate with it without importing ssl.
TlsContext = ssl.SSLContext
# OpenSSL reasons meaning "we could not even offer this version here" (not the server's doing).
_LOCAL_REASONS = frozenset({"NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE"})


class ScanContexts:
    """The run's SSL contexts, built once: the dialogue's (no verification, any version the
    local OpenSSL has, to read what is presented) and a verifying context per version
    (`pinned[name]` is a str saying why when this OpenSSL cannot make one).

    Raises NoInputError/ConfigError for an unusable `ca_file`.
    """

    def __init__(self, ca_file: Path | None) -> None:
        self.dialogue = client_context(verify=False, minimum=ssl.TLSVersion.TLSv1)
        self.pinned: dict[str, ssl.SSLContext | str] = {}
        for name, version in VERSIONS:
            try:
                self.pinned[name] = client_context(
                    verify=True, ca_file=ca_file, minimum=version, maximum=version
                )
            except (ValueError, ssl.SSLError) as err:  # this OpenSSL cannot do it at all
                self.pinned[name] = f"the local OpenSSL cannot try it ({err})"


@dataclass(frozen=True)
class VersionOutcome:
    offered: bool | None  # None: nothing learned (local limits, timeouts)
    cipher: str | None
    reason: str | None


def version_outcome(facts: DialogueFacts) -> VersionOutcome:
    """What one pinned connection says about its version."""
    if facts.tls is not None:
        return VersionOutcome(True, facts.tls.cipher, None)
    if facts.busy:
        return VersionOutcome(None, None, f"the server sent the probe away: {facts.banner}")
    err = facts.handshake_error
    if err is not None:
        return _refusal(err)
    if facts.error is not None:
        # A server that hangs up on a ClientHello it does not like refuses the version; a
        # timeout or a limit says nothing about it.
        lost = isinstance(facts.error, ConnectionLostError) and facts.connected
        return VersionOutcome(False if lost else None, None, facts.error.message)
    return VersionOutcome(None, None, "the server did not start TLS")


def _refusal(err: ssl.SSLError) -> VersionOutcome:
    if isinstance(err, ssl.SSLCertVerificationError):
        return VersionOutcome(True, None, "offered; certificate refused")
    reason = str(err.reason or type(err).__name__)
    if reason in _LOCAL_REASONS:
        return VersionOutcome(None, None, "the local OpenSSL cannot offer it")
    return VersionOutcome(False, None, reason.replace("_", " ").lower())


def with_verdict(tls: HandshakeFacts, facts: DialogueFacts | None) -> HandshakeFacts:
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
