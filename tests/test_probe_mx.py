"""`probe --mx`: the MX hosts from a local authoritative DNS server, probed in preference
order at the addresses it gave, with the domain's policy and DANE (branch i11-dns's
core/probe/dns_policy.py and tests/servers/dns.py; skipped in a tree without them)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mailctl.core.probe.dns_policy")

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
)
from dns_zone import GOOD_POLICY, good_zone

from mailctl.core.probe import ProbeRequest, run_probe


def _both_cas(probe_certs: Any, policy_server: Any, tmp_path: Path) -> Path:
    """--ca-file replaces the system store for the SMTP checks and the policy fetch alike."""
    path = tmp_path / "cas.pem"
    path.write_bytes(probe_certs.ca.cert_pem.bytes() + policy_server.ca.cert_pem.bytes())
    return path


def _spki_sha256(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def test_mx_hosts_are_probed_in_preference_order_with_policy_and_dane(
    dns_server: Any, policy_server: Any, probe_server: Any, probe_certs: Any, tmp_path: Path
) -> None:
    from servers.dns import PolicyReply

    dns_server.set_records(good_zone())
    policy_server.policies["mta-sts.good.test"] = PolicyReply(GOOD_POLICY)
    smtp = probe_server(cert="names:mx1.good.test,a.mail.good.test")
    request = ProbeRequest(
        mx_domain="good.test",
        nameserver=f"127.0.0.1:{dns_server.port}",
        ca_file=_both_cas(probe_certs, policy_server, tmp_path),
        mx_port=smtp.port,
    )
    result = run_probe(request)
    assert [(h.mx_name, h.host, h.probed) for h in result.hosts] == [
        ("mx1.good.test", "127.0.0.1", True),
        ("a.mail.good.test", "127.0.0.1", True),
    ]
    for host in result.hosts:
        assert host.tls is not None and host.tls.verified is True
        codes = {f.code for f in host.findings}
        assert "cert.name_mismatch" not in codes, host.findings
        assert all(f.subject.startswith(host.mx_name or "?") for f in host.findings)
    assert not [f for f in result.findings if f.severity.label == "error"], result.findings
    assert not {"AUTH", "MAIL", "RCPT", "DATA"} & set(smtp.verbs)

    # DANE: a TLSA record (3 1 1) for the leaf's key matches; a wrong one is an error.
    leaf = result.hosts[0].tls.chain[0].der  # type: ignore[union-attr]
    dns_server.set_records(
        {
            f"_{smtp.port}._tcp.mx1.good.test": [f"TLSA 3 1 1 {_spki_sha256(leaf)}"],
            f"_{smtp.port}._tcp.a.mail.good.test": ["TLSA 3 1 1 " + "00" * 32],
        }
    )
    again = run_probe(request)
    first, second = ({f.code: f.severity.label for f in h.findings} for h in again.hosts)
    assert not any(code.startswith("dane.") and level == "error" for code, level in first.items())
    assert second.get("dane.mismatch") == "error", second
