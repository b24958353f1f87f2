"""`mailctl probe --mx` through the CLI, end to end: the local authoritative DNS server
(tests/servers/dns.py), the MTA-STS policy server on 127.0.0.1:443 and two SMTP servers, one
per MX host, on 127.0.0.1 and 127.0.0.2 at the same port (`--mx-port`, for test setups).

The zone is broken on purpose, one problem per policy: the enforce-mode MTA-STS policy leaves
out the second MX host, there is no TLS-RPT record, SPF ends in `+all` and includes a name
without SPF, DMARC is `p=none`, and the second host's TLSA record matches nothing its chain
holds.
"""

from __future__ import annotations

import hashlib
import json
import smtplib
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from typer.testing import CliRunner

from mailctl.cli.app import app

pytest.importorskip("mailctl.core.probe.dns_policy")

runner = CliRunner()
FORBIDDEN = {"AUTH", "MAIL", "RCPT", "DATA", "BDAT", "VRFY", "EXPN"}
POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mx1.broken.test\r\nmax_age: 604800\r\n"


def _leaf_spki_sha256(port: int) -> str:
    """The SHA-256 of the key the server presents after STARTTLS (a TLSA 3 1 1 record)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.starttls(context=context)
        der = smtp.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
    key = x509.load_der_x509_certificate(der).public_key()
    return hashlib.sha256(
        key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    ).hexdigest()


@pytest.fixture
def broken_domain(
    dns_server: Any, policy_server: Any, probe_server: Any, probe_certs: Any, tmp_path: Path
) -> dict[str, Any]:
    from servers.dns import PolicyReply

    names = "names:mx1.broken.test,b.mail.broken.test"
    first = probe_server(cert=names)
    second = probe_server(cert=names, listen=("127.0.0.2", first.port))
    port = first.port
    spki = _leaf_spki_sha256(port)
    first.received.clear()
    dns_server.ad = True  # as a validating resolver would say; mailctl reports it as given
    dns_server.set_records(
        {
            # Listed worst preference first, and b.mail sorts before mx1 by name: only the
            # preference puts mx1 first.
            "broken.test": [
                "MX 20 b.mail.broken.test.",
                "MX 10 mx1.broken.test.",
                'TXT "v=spf1 mx include:gone.broken.test +all"',
            ],
            "mx1.broken.test": ["A 127.0.0.1"],
            "b.mail.broken.test": ["A 127.0.0.2"],
            "_mta-sts.broken.test": ['TXT "v=STSv1; id=20260101"'],
            "mta-sts.broken.test": ["A 127.0.0.1"],
            "_dmarc.broken.test": ['TXT "v=DMARC1; p=none"'],
            f"_{port}._tcp.mx1.broken.test": [f"TLSA 3 1 1 {spki}"],
            f"_{port}._tcp.b.mail.broken.test": ["TLSA 3 1 1 " + "00" * 32],
        }
    )
    policy_server.policies["mta-sts.broken.test"] = PolicyReply(POLICY)
    cas = tmp_path / "cas.pem"
    cas.write_bytes(probe_certs.ca.cert_pem.bytes() + policy_server.ca.cert_pem.bytes())
    args = [
        "probe",
        "--mx",
        "broken.test",
        "--mx-port",
        str(port),
        "--nameserver",
        f"127.0.0.1:{dns_server.port}",
        "--ca-file",
        str(cas),
        "--fail-on",
        "error",
    ]
    return {"args": args, "servers": (first, second), "port": port, "policy": policy_server}


def test_mx_through_the_cli_reports_each_policy_and_probes_in_preference_order(
    broken_domain: dict[str, Any],
) -> None:
    result = runner.invoke(app, [*broken_domain["args"], "--json"], env={"NO_COLOR": "1"})
    envelope = json.loads(result.stdout)
    assert result.exit_code == 1, envelope  # --fail-on error: the mismatches are errors
    data = envelope["data"]
    port = broken_domain["port"]

    hosts = [(h["mx_name"], h["host"], h["address"], h["port"], h["probed"]) for h in data["hosts"]]
    assert hosts == [
        ("mx1.broken.test", "127.0.0.1", "127.0.0.1", port, True),
        ("b.mail.broken.test", "127.0.0.2", "127.0.0.2", port, True),
    ]
    for host in data["hosts"]:
        # The address lookup of each MX host is its DNS phase.
        assert list(host["timings_ms"])[:2] == ["dns", "connect"], host["timings_ms"]
        assert host["tls"]["verified"] is True
    first, second = broken_domain["servers"]
    for server in (first, second):
        assert server.connections >= 2 and "STARTTLS" in server.verbs
        assert not FORBIDDEN & set(server.verbs), server.verbs

    domain = {f["code"]: f for f in data["findings"]}
    assert domain["mta_sts.mx_mismatch"]["severity"] == "error"
    assert "b.mail.broken.test" in domain["mta_sts.mx_mismatch"]["message"]
    assert domain["tls_rpt.missing"]["severity"] == "info"
    assert domain["spf.pass_all"]["severity"] == "warning"
    # The include was followed through the same nameserver: its target has no SPF record.
    assert domain["spf.include_missing"]["severity"] == "error"
    assert "include:gone.broken.test" in domain["spf.include_missing"]["message"]
    assert domain["dmarc.policy_none"]["severity"] == "info"
    assert all(f["fix"] for f in data["findings"] if f["severity"] != "info")
    assert ("mta-sts.broken.test", "GET /.well-known/mta-sts.txt HTTP/1.1") in broken_domain[
        "policy"
    ].requests

    dane = [{f["code"]: f["severity"] for f in h["findings"]} for h in data["hosts"]]
    assert dane[0].get("dane.match") == "info", dane[0]
    assert "dane.mismatch" not in dane[0]
    assert dane[1].get("dane.mismatch") == "error", dane[1]


def test_mx_human_report_names_each_problem_with_its_fix(broken_domain: dict[str, Any]) -> None:
    result = runner.invoke(app, broken_domain["args"], env={"NO_COLOR": "1", "COLUMNS": "100"})
    assert result.exit_code == 1, result.output
    text = result.stdout
    port = broken_domain["port"]
    # Hosts in preference order, each with its DNS time.
    assert text.index(f"mx1.broken.test:{port}") < text.index(f"b.mail.broken.test:{port}")
    assert text.count("dns ") >= 2, text
    for code in (
        "mta_sts.mx_mismatch",
        "tls_rpt.missing",
        "spf.pass_all",
        "spf.include_missing",
        "dmarc.policy_none",
        "dane.match",
        "dane.mismatch",
    ):
        assert code in text, (code, text)
    assert "fix:" in text or "Fix" in text
    assert "Findings at or above error: exit 1 (--fail-on)." in text


def test_mx_host_behind_a_secure_cname_is_matched_at_its_target(
    dns_server: Any, probe_server: Any, probe_certs: Any, tmp_path: Path
) -> None:
    """RFC 7672 2.2.2 end to end: the MX host is an alias, the resolver set AD, and the TLSA
    record is only at the CNAME target's name; the finding says which name was used."""
    server = probe_server(cert="names:mx.alias.test")
    port = server.port
    spki = _leaf_spki_sha256(port)
    dns_server.ad = True
    dns_server.set_records(
        {
            "alias.test": ["MX 10 mx.alias.test."],
            "mx.alias.test": ["CNAME real.alias.test."],
            "real.alias.test": ["A 127.0.0.1"],
            f"_{port}._tcp.real.alias.test": [f"TLSA 3 1 1 {spki}"],
        }
    )
    cas = tmp_path / "cas.pem"
    cas.write_bytes(probe_certs.ca.cert_pem.bytes())
    args = ["probe", "--mx", "alias.test", "--mx-port", str(port)]
    args += ["--nameserver", f"127.0.0.1:{dns_server.port}", "--ca-file", str(cas), "--json"]
    result = runner.invoke(app, args, env={"NO_COLOR": "1"})
    data = json.loads(result.stdout)["data"]
    (host,) = data["hosts"]
    assert host["mx_name"] == "mx.alias.test" and host["probed"] is True
    dane = {f["code"]: f for f in host["findings"] if f["code"].startswith("dane.")}
    assert list(dane) == ["dane.match"], dane
    assert (
        f"at _{port}._tcp.real.alias.test (the CNAME target of mx.alias.test)"
        in dane["dane.match"]["message"]
    )
