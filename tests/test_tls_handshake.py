"""The TLS layer issue 11 reshaped: versions per context, the facts of a certificate, names."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
import trustme

from mailctl.protocols.handshake import describe_certificate, name_matches
from mailctl.protocols.tls import client_context, set_versions


def test_a_context_for_tls_1_0_only_is_made_without_a_warning_escaping() -> None:
    """The suite turns warnings into errors: set_versions is where TLS 1.0/1.1's
    DeprecationWarning is expected, and caught."""
    context = client_context(
        verify=False, minimum=ssl.TLSVersion.TLSv1, maximum=ssl.TLSVersion.TLSv1
    )
    assert context.minimum_version == context.maximum_version == ssl.TLSVersion.TLSv1


def test_the_deprecation_warning_is_caught_only_there() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with pytest.raises(DeprecationWarning):
        context.minimum_version = ssl.TLSVersion.TLSv1_1
    set_versions(context, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1)  # no warning here
    assert context.maximum_version == ssl.TLSVersion.TLSv1_1


def test_the_default_floor_is_still_tls_1_2() -> None:
    assert client_context().minimum_version == ssl.TLSVersion.TLSv1_2
    assert client_context(minimum=ssl.TLSVersion.TLSv1_3).minimum_version == (
        ssl.TLSVersion.TLSv1_3
    )


def _der(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


def test_certificate_facts(tmp_path: Path) -> None:
    ca = trustme.CA()
    now = datetime.datetime.now(datetime.UTC)
    leaf = ca.issue_cert(
        "mx.example.org",
        "*.example.net",
        "192.0.2.7",
        not_before=now - datetime.timedelta(days=10),
        not_after=now + datetime.timedelta(days=3, hours=1),
    )
    facts = describe_certificate(_der(leaf))
    assert facts.sans == ("mx.example.org", "*.example.net", "192.0.2.7")
    assert facts.days_left == 3 and facts.not_after is not None and facts.not_before is not None
    assert facts.key_type == "EC secp256r1" and facts.key_bits == 256
    assert facts.signature_algorithm == "ecdsa-with-SHA256"
    assert facts.self_signed is False and len(facts.sha256) == 64
    assert facts.issuer is not None and "Testing CA" in facts.issuer
    expired = ca.issue_cert(
        "x.test",
        not_before=now - datetime.timedelta(days=10),
        not_after=now - datetime.timedelta(days=2, hours=1),
    )
    assert describe_certificate(_der(expired)).days_left == -3


def test_garbage_der_gives_facts_not_a_crash() -> None:
    facts = describe_certificate(b"\x30\x03not a certificate")
    assert facts.subject is None and facts.sans == () and len(facts.sha256) == 64


@pytest.mark.parametrize(
    ("name", "matches"),
    [
        ("mx.example.org", True),
        ("MX.Example.ORG.", True),
        ("a.example.net", True),  # RFC 6125 6.4.3: the wildcard is one whole label
        ("a.b.example.net", False),
        ("example.net", False),
        ("192.0.2.7", True),
        ("[192.0.2.7]", True),
        ("192.0.2.8", False),
        ("other.example.org", False),
    ],
)
def test_name_matches(name: str, matches: bool) -> None:
    sans = ("mx.example.org", "*.example.net", "192.0.2.7")
    assert name_matches(name, sans) is matches


def test_an_ip_san_does_not_match_a_dns_name_spelled_like_it() -> None:
    assert not name_matches("192.0.2.7", ("192.0.2.7.example",))
