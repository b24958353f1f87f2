"""DANE (RFC 6698/7672): TLSA records from the local DNS server matched against certificate
chains made per run with trustme; the expected association data computed by the openssl
command, not by the code under test."""

from __future__ import annotations

import hashlib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from servers.dns import DnsServer

from mailctl.core.probe.dane import TlsaRecord, dane_check
from mailctl.core.probe.dane_lookup import dane_findings, lookup_tlsa
from mailctl.core.probe.dns_policy import DnsOptions
from mailctl.core.probe.findings import Finding, Severity

HOST = "mx1.good.test"


class Pki:
    """root -> intermediate -> leaf for HOST, and a stranger's key for mismatches."""

    def __init__(self, tmp: Path) -> None:
        self.root = trustme.CA()
        self.intermediate = self.root.create_child_ca()
        self.leaf = self.intermediate.issue_cert(HOST)
        self.other = trustme.CA().issue_cert(HOST)
        self.tmp = tmp
        pems = [blob.bytes().decode() for blob in self.leaf.cert_chain_pems]
        self.chain = [ssl.PEM_cert_to_DER_cert(pem) for pem in pems]
        self.root_der = ssl.PEM_cert_to_DER_cert(self.root.cert_pem.bytes().decode())

    def spki(self, der: bytes) -> bytes:
        """The SubjectPublicKeyInfo of a certificate, as openssl extracts it."""
        path = self.tmp / "cert.der"
        path.write_bytes(der)
        pem_key = subprocess.run(
            ["openssl", "x509", "-inform", "DER", "-in", str(path), "-pubkey", "-noout"],
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout
        return subprocess.run(
            ["openssl", "pkey", "-pubin", "-outform", "DER"],
            input=pem_key,
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout


def association(selected: bytes, matching: int) -> str:
    if matching == 1:
        return hashlib.sha256(selected).hexdigest()
    if matching == 2:
        return hashlib.sha512(selected).hexdigest()
    return selected.hex()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def record(pki: Pki, usage: int, selector: int, matching: int, der: bytes) -> TlsaRecord:
    selected = der if selector == 0 else pki.spki(der)
    return TlsaRecord(usage, selector, matching, association(selected, matching))


def summary(found: list[Finding]) -> list[tuple[str, Severity]]:
    return [(f.code, f.severity) for f in found]


@pytest.mark.parametrize(("selector", "matching"), [(1, 1), (0, 1), (0, 0), (1, 2), (1, 0)])
def test_dane_ee_matches_the_server_certificate(pki: Pki, selector: int, matching: int) -> None:
    tlsa = [record(pki, 3, selector, matching, pki.chain[0])]
    found = dane_check(HOST, 25, tlsa, pki.chain, ad=True)
    assert summary(found) == [("dane.match", Severity.INFO)]
    assert f"3 {selector} {matching}" in found[0].message and found[0].subject == f"{HOST}:25"


def test_dane_ee_for_another_key_is_a_mismatch(pki: Pki) -> None:
    other = ssl.PEM_cert_to_DER_cert(pki.other.cert_chain_pems[0].bytes().decode())
    found = dane_check(HOST, 25, [record(pki, 3, 1, 1, other)], pki.chain, ad=True)
    assert summary(found) == [("dane.mismatch", Severity.ERROR)]
    assert "_25._tcp.mx1.good.test" in found[0].message


def test_dane_ee_ignores_names(pki: Pki) -> None:
    """RFC 7672 3.1.1: DANE-EE(3) binds the key; the certificate's names do not matter."""
    found = dane_check("other.good.test", 25, [record(pki, 3, 1, 1, pki.chain[0])], pki.chain)
    assert summary(found) == [("dane.match", Severity.INFO)]


def test_dane_ta_matches_the_intermediate(pki: Pki) -> None:
    found = dane_check(HOST, 25, [record(pki, 2, 1, 1, pki.chain[1])], pki.chain, ad=True)
    assert summary(found) == [("dane.match", Severity.INFO)]


def test_dane_ta_full_certificate_not_in_the_chain(pki: Pki) -> None:
    """RFC 7671 5.2.2: a TA published whole (2 0 0) need not be sent by the server."""
    found = dane_check(HOST, 25, [record(pki, 2, 0, 0, pki.root_der)], pki.chain, ad=True)
    assert summary(found) == [("dane.match", Severity.INFO)]
    # The same root published as a digest cannot be checked without the certificate.
    found = dane_check(HOST, 25, [record(pki, 2, 0, 1, pki.root_der)], pki.chain, ad=True)
    assert summary(found) == [("dane.mismatch", Severity.ERROR)]


def test_dane_ta_needs_the_host_name(pki: Pki) -> None:
    """RFC 7672 3.2.2: with DANE-TA the certificate must name the MX host."""
    found = dane_check("mx2.good.test", 25, [record(pki, 2, 1, 1, pki.chain[1])], pki.chain)
    assert summary(found) == [("dane.mismatch", Severity.ERROR)]
    assert "does not name mx2.good.test" in found[0].message


def test_dane_ta_needs_an_unbroken_chain(pki: Pki) -> None:
    """A matching TA beside a leaf it did not sign is no match."""
    stranger = ssl.PEM_cert_to_DER_cert(pki.other.cert_chain_pems[0].bytes().decode())
    chain = [stranger, pki.chain[1]]
    found = dane_check(HOST, 25, [record(pki, 2, 1, 1, pki.chain[1])], chain)
    assert summary(found) == [("dane.mismatch", Severity.ERROR)]
    assert "not signed by" in found[0].message


def test_pkix_usages_are_flagged(pki: Pki) -> None:
    found = dane_check(HOST, 25, [record(pki, 1, 1, 1, pki.chain[0])], pki.chain, ad=True)
    assert summary(found) == [("dane.pkix_usage", Severity.WARNING), ("dane.match", Severity.INFO)]
    found = dane_check(HOST, 25, [record(pki, 0, 1, 1, pki.chain[1])], pki.chain, ad=True)
    assert summary(found) == [("dane.pkix_usage", Severity.WARNING), ("dane.match", Severity.INFO)]


def test_unusable_records_are_ignored(pki: Pki) -> None:
    bad = TlsaRecord(4, 1, 1, "00" * 32)
    assert summary(dane_check(HOST, 25, [bad], pki.chain, ad=True)) == [
        ("dane.unusable", Severity.WARNING)
    ]
    good = record(pki, 3, 1, 1, pki.chain[0])
    assert summary(dane_check(HOST, 25, [bad, TlsaRecord(3, 2, 1, "00"), good], pki.chain)) == [
        ("dane.unusable", Severity.WARNING),
        ("dane.match", Severity.INFO),
    ]


def test_records_without_dnssec_are_flagged(pki: Pki) -> None:
    found = dane_check(HOST, 25, [record(pki, 3, 1, 1, pki.chain[0])], pki.chain, ad=False)
    assert summary(found) == [("dane.no_dnssec", Severity.WARNING), ("dane.match", Severity.INFO)]


def test_no_records_no_chain_bad_chain(pki: Pki) -> None:
    assert summary(dane_check(HOST, 25, [], pki.chain)) == [("dane.missing", Severity.INFO)]
    tlsa = [record(pki, 3, 1, 1, pki.chain[0])]
    assert summary(dane_check(HOST, 25, tlsa, [])) == [("dane.no_chain", Severity.INFO)]
    found = dane_check(HOST, 25, tlsa, [b"\x30\x03junk"])
    assert summary(found) == [("dane.mismatch", Severity.ERROR)]
    assert "does not parse" in found[0].message


def test_lookup_tlsa_from_the_nameserver(dns_server: DnsServer, pki: Pki) -> None:
    wanted = record(pki, 3, 1, 1, pki.chain[0])
    dns_server.set_records(
        {
            f"_25._tcp.{HOST}": [f"TLSA 3 1 1 {wanted.association}", "TLSA 2 1 1 " + "ab" * 32],
            f"_465._tcp.{HOST}": ['TXT "not tlsa"'],
        }
    )
    options = DnsOptions(nameserver="127.0.0.1", port=dns_server.port, timeout=3)
    records, ad = lookup_tlsa(HOST, 25, options)
    assert sorted(records, key=lambda r: r.usage) == [TlsaRecord(2, 1, 1, "ab" * 32), wanted]
    assert ad is False
    dns_server.ad = True
    assert lookup_tlsa(HOST, 25, options)[1] is True
    assert lookup_tlsa(HOST, 465, options) == ([], True)  # NODATA
    assert lookup_tlsa(HOST, 587, options) == ([], False)  # NXDOMAIN
    assert (f"_25._tcp.{HOST}", "TLSA") in dns_server.queries()


@pytest.fixture
def tls_server(pki: Pki) -> Iterator[int]:
    """A TLS server presenting leaf + intermediate, for one handshake at a time."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.leaf.configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.settimeout(10)
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.close()
    thread.join(10)


def test_records_from_dns_match_the_chain_a_server_presents(
    dns_server: DnsServer, pki: Pki, tls_server: int
) -> None:
    wanted = record(pki, 2, 1, 1, pki.chain[1])
    dns_server.set_records({f"_{tls_server}._tcp.{HOST}": [f"TLSA 2 1 1 {wanted.association}"]})
    dns_server.ad = True
    options = DnsOptions(nameserver="127.0.0.1", port=dns_server.port, timeout=3)
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE  # DANE decides here, not the system store
    with (
        socket.create_connection(("127.0.0.1", tls_server), timeout=10) as raw,
        client.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        sslobj = tls._sslobj  # type: ignore[attr-defined]  # public only from Python 3.13
        presented = [
            cert.public_bytes(ssl._ssl.ENCODING_DER) for cert in sslobj.get_unverified_chain()
        ]  # type: ignore[attr-defined]
    records, ad = lookup_tlsa(HOST, tls_server, options)
    assert summary(dane_check(HOST, tls_server, records, presented, ad=ad)) == [
        ("dane.match", Severity.INFO)
    ]


def test_dane_findings_looks_up_and_matches(dns_server: DnsServer, pki: Pki) -> None:
    wanted = record(pki, 3, 1, 1, pki.chain[0])
    dns_server.set_records({f"_25._tcp.{HOST}": [f"TLSA 3 1 1 {wanted.association}"]})
    options = DnsOptions(nameserver="127.0.0.1", port=dns_server.port, timeout=1)
    assert summary(dane_findings(HOST, 25, pki.chain, options)) == [
        ("dane.no_dnssec", Severity.WARNING),
        ("dane.match", Severity.INFO),
    ]
    dns_server.silent.add(f"_25._tcp.{HOST}")
    found = dane_findings(HOST, 25, pki.chain, options)
    assert summary(found) == [("dane.lookup_failed", Severity.ERROR)]
    assert "timed out" in found[0].message and found[0].subject == f"{HOST}:25"


# --- RFC 7672 2.2.2: an MX host name that is an alias (CNAME) --------------------------------

ALIAS = "mail.alias.test"  # CNAME -> HOST, the name the certificates carry
ALIAS_TLSA = f"_25._tcp.{ALIAS}"
TARGET_TLSA = f"_25._tcp.{HOST}"


def alias_zone(dns_server: DnsServer, tlsa: dict[str, list[str]], *, ad: bool) -> DnsOptions:
    dns_server.set_records(
        {ALIAS: [f"CNAME {HOST}."], HOST: ["A 127.0.0.1"], **tlsa},
    )
    dns_server.ad = ad
    return DnsOptions(nameserver="127.0.0.1", port=dns_server.port, timeout=2)


def tlsa_queries(dns_server: DnsServer) -> list[str]:
    return [name for name, rdtype in dns_server.queries() if rdtype == "TLSA"]


def test_answer_carries_the_cname_expanded_name(dns_server: DnsServer) -> None:
    from mailctl.protocols.dnslookup import Resolver

    alias_zone(dns_server, {}, ad=True)
    resolver = Resolver(nameserver="127.0.0.1", port=dns_server.port, timeout=2)
    answer = resolver.addresses(ALIAS)
    assert (answer.values, answer.canonical, answer.ad) == (("127.0.0.1",), HOST, True)
    assert resolver.addresses(HOST).canonical == HOST  # no alias: the name itself
    assert resolver.addresses("gone.alias.test").canonical is None  # NXDOMAIN


def test_secure_alias_uses_the_tlsa_records_of_its_target(dns_server: DnsServer, pki: Pki) -> None:
    """(1) A secure CNAME expansion: the TLSA base domain is the expanded name."""
    wanted = record(pki, 3, 1, 1, pki.chain[0])
    options = alias_zone(dns_server, {TARGET_TLSA: [f"TLSA 3 1 1 {wanted.association}"]}, ad=True)
    found = dane_findings(ALIAS, 25, pki.chain, options)
    assert summary(found) == [("dane.match", Severity.INFO)], found
    assert f"at {TARGET_TLSA} (the CNAME target of {ALIAS})" in found[0].message
    assert found[0].subject == f"{ALIAS}:25"
    assert tlsa_queries(dns_server) == [TARGET_TLSA]


def test_insecure_alias_ignores_the_records_of_its_target(dns_server: DnsServer, pki: Pki) -> None:
    """(2) An expansion the resolver did not validate: only the MX host name counts."""
    wanted = record(pki, 3, 1, 1, pki.chain[0])
    options = alias_zone(dns_server, {TARGET_TLSA: [f"TLSA 3 1 1 {wanted.association}"]}, ad=False)
    found = dane_findings(ALIAS, 25, pki.chain, options)
    assert summary(found) == [("dane.missing", Severity.INFO)], found
    assert found[0].message.startswith(f"{ALIAS_TLSA} ({ALIAS} is an alias of {HOST}, not DNSSEC")
    assert tlsa_queries(dns_server) == [ALIAS_TLSA]


def test_secure_alias_prefers_its_target_over_its_own_name(dns_server: DnsServer, pki: Pki) -> None:
    """(3) Records at both names: the expanded name's are used, the MX name is not asked."""
    wanted = record(pki, 3, 1, 1, pki.chain[0])
    tlsa = {
        TARGET_TLSA: [f"TLSA 3 1 1 {wanted.association}"],
        ALIAS_TLSA: ["TLSA 3 1 1 " + "00" * 32],
    }
    options = alias_zone(dns_server, tlsa, ad=True)
    found = dane_findings(ALIAS, 25, pki.chain, options)
    assert summary(found) == [("dane.match", Severity.INFO)], found
    assert f"(the CNAME target of {ALIAS})" in found[0].message
    assert tlsa_queries(dns_server) == [TARGET_TLSA]
    # The other way round, the target's record decides: a mismatch names the target.
    tlsa = {
        TARGET_TLSA: ["TLSA 3 1 1 " + "11" * 32],
        ALIAS_TLSA: [f"TLSA 3 1 1 {wanted.association}"],
    }
    dns_server.rrsets.clear()
    options = alias_zone(dns_server, tlsa, ad=True)
    found = dane_findings(ALIAS, 25, pki.chain, options)
    assert summary(found) == [("dane.mismatch", Severity.ERROR)], found
    assert f"no TLSA record at {TARGET_TLSA} (the CNAME target of {ALIAS})" in found[0].message


def test_secure_alias_falls_back_to_its_own_name(dns_server: DnsServer, pki: Pki) -> None:
    """(4) No records at the expanded name: those at the MX host name apply."""
    wanted = record(pki, 3, 1, 1, pki.chain[0])
    options = alias_zone(dns_server, {ALIAS_TLSA: [f"TLSA 3 1 1 {wanted.association}"]}, ad=True)
    found = dane_findings(ALIAS, 25, pki.chain, options)
    assert summary(found) == [("dane.match", Severity.INFO)], found
    assert f"at {ALIAS_TLSA} (none at {TARGET_TLSA}" in found[0].message
    assert tlsa_queries(dns_server) == [TARGET_TLSA, ALIAS_TLSA]


def test_cname_loop_of_the_mx_host_is_bounded_and_reported(dns_server: DnsServer) -> None:
    """(5) The MX host name loops: reported as a failed lookup, in a bounded time."""
    dns_server.set_records(
        {"mx.loop.test": ["CNAME mx2.loop.test."], "mx2.loop.test": ["CNAME mx.loop.test."]}
    )
    dns_server.ad = True
    options = DnsOptions(nameserver="127.0.0.1", port=dns_server.port, timeout=2)
    started = time.monotonic()
    found = dane_findings("mx.loop.test", 25, [], options)
    assert time.monotonic() - started < 4
    assert summary(found) == [("dane.lookup_failed", Severity.ERROR)], found
    assert "CNAME chain too long (a loop?)" in found[0].message
    assert found[0].subject == "mx.loop.test:25"
    assert tlsa_queries(dns_server) == []
    assert len(dns_server.queries()) <= 4


def test_dane_ta_accepts_the_expanded_name_of_a_secure_alias(
    dns_server: DnsServer, pki: Pki
) -> None:
    """RFC 7672 3.2.2: with a secure expansion the certificate may name the CNAME target
    (here it names only the target, HOST); with an insecure one only the MX name counts."""
    anchor = record(pki, 2, 1, 1, pki.chain[1])
    options = alias_zone(dns_server, {ALIAS_TLSA: [f"TLSA 2 1 1 {anchor.association}"]}, ad=True)
    found = dane_findings(ALIAS, 25, pki.chain, options)
    assert summary(found) == [("dane.match", Severity.INFO)], found
    dns_server.ad = False
    found = dane_findings(ALIAS, 25, pki.chain, options)
    assert summary(found) == [
        ("dane.no_dnssec", Severity.WARNING),
        ("dane.mismatch", Severity.ERROR),
    ]
    assert f"does not name {ALIAS}" in found[1].message
