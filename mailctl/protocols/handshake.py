"""What a TLS handshake showed (`HandshakeFacts`, `CertificateFacts`), read from a live session.

One typed result for `send`, `account test` and `probe`: the negotiated version and cipher,
the verification verdict beside the facts (a probe records a bad certificate and goes on;
a session refuses it before any fact is read, so its facts say `verified=True`), and the
chain the server presented. What the `ssl` module cannot tell (the key-exchange group, an
OCSP staple) stays None, read as "unknown".
"""

from __future__ import annotations

import hashlib
import ipaddress
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mailctl.serialize import SKIP

# A hostile server may send any number of certificates; a report shows the first few.
CHAIN_LIMIT = 10
# RFC 5280 names can be long and many (a shared host lists hundreds of SANs): keep a bounded view.
_NAMES_KEPT = 100
_NAME_LIMIT = 255


@dataclass(frozen=True)
class CertificateFacts:
    """One certificate of the presented chain (leaf first), decoded from its DER bytes."""

    subject: str | None
    sans: tuple[str, ...]
    issuer: str | None
    not_before: str | None  # ISO 8601, UTC
    not_after: str | None
    days_left: int | None  # whole days until not_after (negative: expired)
    key_type: str | None  # RSA, EC, Ed25519, Ed448, DSA
    key_bits: int | None
    signature_algorithm: str | None  # e.g. sha256WithRSAEncryption
    sha256: str  # fingerprint of the DER bytes, lower-case hex
    self_signed: bool  # subject equals issuer
    # The certificate itself, for checks that need it (DANE TLSA matching); never in JSON.
    der: bytes = field(default=b"", repr=False, metadata=SKIP)


@dataclass(frozen=True)
class HandshakeFacts:
    """What one TLS handshake negotiated and what the server presented.

    `peer_subject`, `peer_issuer` and `not_after` describe the leaf (kept for the JSON
    contract of `send` and `account test`); `chain` holds every certificate the server
    sent (leaf first, at most CHAIN_LIMIT), empty when not read. `verified` is True when
    the chain and name were verified, False when verification failed (`verify_code` and
    `verify_message` from OpenSSL say why), None when it was not attempted (--insecure).
    `group` and `ocsp_stapled` are None: the ssl module does not expose them.
    """

    version: str
    cipher: str
    bits: int | None
    peer_subject: str | None
    peer_issuer: str | None
    not_after: str | None  # ISO 8601, UTC
    verified: bool | None = None
    verify_code: int | None = None
    verify_message: str | None = None
    group: str | None = None
    ocsp_stapled: bool | None = None
    chain: tuple[CertificateFacts, ...] = ()

    @property
    def leaf(self) -> CertificateFacts | None:
        return self.chain[0] if self.chain else None


def chain_der(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    """The DER bytes of every certificate the peer sent, leaf first (at most CHAIN_LIMIT).

    Python 3.13 exposes `get_unverified_chain()` on the public objects; 3.11 and 3.12 only
    on the private `_sslobj` (an `_ssl.Certificate` list). Without either, the leaf alone.
    """
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    found: list[bytes] = []
    raw: Any = getter() if getter is not None else None
    for item in list(raw or ())[:CHAIN_LIMIT]:
        if isinstance(item, bytes):
            found.append(item)
        else:  # _ssl.Certificate (3.11, 3.12); 2 is _ssl.ENCODING_DER
            found.append(item.public_bytes(2))
    if not found:
        leaf = ssl_object.getpeercert(binary_form=True)
        if leaf:
            found.append(leaf)
    return found


def describe_certificate(der: bytes, *, now: datetime | None = None) -> CertificateFacts:
    """Decode one DER certificate into CertificateFacts (fields it cannot read stay None)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    digest = hashlib.sha256(der).hexdigest()
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return CertificateFacts(
            None, (), None, None, None, None, None, None, None, digest, False, der
        )
    moment = now or datetime.now(UTC)
    not_after = cert.not_valid_after_utc
    key_type: str | None = None
    key_bits: int | None = None
    try:
        key = cert.public_key()
    except (ValueError, TypeError):  # an unsupported key algorithm
        key = None
    if isinstance(key, rsa.RSAPublicKey):
        key_type, key_bits = "RSA", key.key_size
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key_type, key_bits = f"EC {key.curve.name}", key.key_size
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key_type, key_bits = "Ed25519", 256
    elif isinstance(key, ed448.Ed448PublicKey):
        key_type, key_bits = "Ed448", 456
    elif isinstance(key, dsa.DSAPublicKey):
        key_type, key_bits = "DSA", key.key_size
    try:
        signature: str | None = cert.signature_algorithm_oid._name
    except (ValueError, AttributeError):
        signature = None
    subject = _rfc4514(cert.subject)
    issuer = _rfc4514(cert.issuer)
    return CertificateFacts(
        subject=subject,
        sans=_sans(cert),
        issuer=issuer,
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=not_after.isoformat(),
        days_left=(not_after - moment).days,
        key_type=key_type,
        key_bits=key_bits,
        signature_algorithm=signature,
        sha256=digest,
        self_signed=cert.subject == cert.issuer,
        der=der,
    )


def _rfc4514(name: Any) -> str | None:
    try:
        text: str = name.rfc4514_string()
    except ValueError:
        return None
    return text[:_NAME_LIMIT] or None


def _sans(cert: Any) -> tuple[str, ...]:
    from cryptography import x509

    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (x509.ExtensionNotFound, ValueError):
        return ()
    names = [str(name)[:_NAME_LIMIT] for name in extension.value.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in extension.value.get_values_for_type(x509.IPAddress)]
    return tuple(names[:_NAMES_KEPT])


def name_matches(name: str, sans: tuple[str, ...]) -> bool:
    """Whether `name` (a host name or IP address) is one the certificate lists.

    RFC 6125 6.4: DNS names compare case-insensitively, a wildcard only as the whole
    left-most label and matching exactly one label; an IP address only matches an IP SAN.
    """
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        return any(_same_ip(address, san) for san in sans)
    wanted = name.rstrip(".").lower()
    for san in sans:
        pattern = san.rstrip(".").lower()
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted:
            label, rest = wanted.split(".", 1)
            if label and rest == pattern[2:] and "*" not in rest:
                return True
    return False


def _same_ip(address: ipaddress.IPv4Address | ipaddress.IPv6Address, san: str) -> bool:
    try:
        return ipaddress.ip_address(san) == address
    except ValueError:
        return False


def handshake_facts(
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None,
    *,
    verified: bool | None,
    with_chain: bool = False,
    verify_code: int | None = None,
    verify_message: str | None = None,
) -> HandshakeFacts | None:
    """Describe an established TLS session; None when there is none.

    `verified`: what the caller's context did (True: the handshake verified chain and name;
    None: it did not try). `with_chain` decodes every certificate the server sent
    (imports cryptography: asked for by `account test` and `probe`, not by `send`).
    """
    if ssl_object is None:
        return None
    version = ssl_object.version() or "unknown"
    cipher_tuple = ssl_object.cipher()
    cipher = cipher_tuple[0] if cipher_tuple else "unknown"
    bits = cipher_tuple[2] if cipher_tuple else None
    chain: tuple[CertificateFacts, ...] = ()
    if with_chain:
        chain = tuple(describe_certificate(der) for der in chain_der(ssl_object))
    subject, issuer, not_after = _leaf_names(ssl_object, chain)
    return HandshakeFacts(
        version=version,
        cipher=cipher,
        bits=bits,
        peer_subject=subject,
        peer_issuer=issuer,
        not_after=not_after,
        verified=verified,
        verify_code=verify_code,
        verify_message=verify_message,
        chain=chain,
    )


def _leaf_names(
    ssl_object: ssl.SSLObject | ssl.SSLSocket, chain: tuple[CertificateFacts, ...]
) -> tuple[str | None, str | None, str | None]:
    """Subject, issuer and expiry of the leaf: from the decoded chain, else the stdlib's dict
    (only filled after a verifying handshake), else the DER bytes."""
    if chain:
        return chain[0].subject, chain[0].issuer, chain[0].not_after
    try:
        cert = ssl_object.getpeercert()
    except ValueError:  # handshake not done
        return None, None, None
    if cert:
        raw_not_after = cert.get("notAfter")
        return (
            _format_name(cert.get("subject", ())),
            _format_name(cert.get("issuer", ())),
            _iso_time(raw_not_after) if isinstance(raw_not_after, str) else None,
        )
    # With verification off (--insecure) Python hands out only the DER bytes.
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None, None, None
    leaf = describe_certificate(der)
    return leaf.subject, leaf.issuer, leaf.not_after


# X.509 attribute names as ssl.getpeercert() spells them -> the RFC 4514 short forms.
_SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "emailAddress": "emailAddress",
}


def _format_name(rdns: Any) -> str | None:
    parts: list[str] = []
    for rdn in rdns:
        for key, value in rdn:
            parts.append(f"{_SHORT_NAMES.get(key, key)}={value}")
    return ",".join(parts) or None


def _iso_time(openssl_time: str) -> str | None:
    try:
        seconds = ssl.cert_time_to_seconds(openssl_time)
    except ValueError:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()
