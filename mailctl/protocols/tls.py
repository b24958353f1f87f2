"""TLS client contexts, handshake facts, and ssl errors turned into one-line mailctl errors."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailctl.errors import (
    CertificateError,
    ConfigError,
    MailctlError,
    NoInputError,
    TlsError,
)
from mailctl.inputs import PEM_LIMIT, check_regular_file

# What a user can do about a certificate mailctl refused; names the real flags.
CERT_HINT = (
    "if the server uses a private CA, pass its certificate with --ca-file (ca_file in the "
    "account); --insecure (verify = false) skips verification (only for testing)"
)

# OpenSSL X509_V_ERR_* codes (include/openssl/x509_vfy.h) we explain in words.
_UNTRUSTED_CODES = frozenset({2, 18, 19, 20, 21, 24, 27})
_FIXED_REASONS = {
    10: "has expired",  # X509_V_ERR_CERT_HAS_EXPIRED
    9: "is not yet valid (check the clock)",  # X509_V_ERR_CERT_NOT_YET_VALID
    23: "has been revoked",  # X509_V_ERR_CERT_REVOKED
}
_HOSTNAME_MISMATCH = 62
_IP_MISMATCH = 64

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


def client_context(*, verify: bool = True, ca_file: Path | None = None) -> ssl.SSLContext:
    """Build the one SSLContext every mailctl client connection uses.

    TLS 1.2 is the floor (RFC 8996 deprecates 1.0/1.1; RFC 8314 4.1 asks mail clients
    for current TLS). With `verify`, the hostname is checked and either the system CAs
    or only `ca_file` are trusted. `verify=False` exists solely for --insecure.

    Raises NoInputError if `ca_file` cannot be read, NotRegularFileError/InputTooLargeError
    if it is not a regular file of at most PEM_LIMIT bytes, ConfigError if it holds no
    usable PEM certificate.
    """
    if not verify:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        # Order matters: check_hostname must be off before verify_mode can be CERT_NONE.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_file is not None:
        # A private CA replaces the system store: trusting both would let any public
        # CA vouch for a host the user pinned to their own CA.
        context = _context_with_ca_file(ca_file)
    else:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if verify:
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _context_with_ca_file(ca_file: Path) -> ssl.SSLContext:
    """Return a verifying context that trusts only the certificates in `ca_file`."""
    # PROTOCOL_TLS_CLIENT: check_hostname and CERT_REQUIRED, and no system CAs loaded.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # OpenSSL opens the file by name: a FIFO would block it, /dev/zero or a huge file be parsed.
    check_regular_file(ca_file, what="CA file", limit=PEM_LIMIT)
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except FileNotFoundError as err:
        raise NoInputError(
            f"CA file {ca_file} does not exist", hint="check the --ca-file / ca_file path"
        ) from err
    except PermissionError as err:
        raise NoInputError(f"CA file {ca_file} is not readable") from err
    except IsADirectoryError as err:
        raise NoInputError(f"CA file {ca_file} is a directory, not a PEM file") from err
    except (ssl.SSLError, ValueError) as err:
        raise ConfigError(
            f"CA file {ca_file} holds no usable PEM certificate",
            hint="it must contain one or more '-----BEGIN CERTIFICATE-----' blocks",
        ) from err
    return context


@dataclass(frozen=True)
class TlsInfo:
    """What was negotiated, for probe output and transcripts."""

    version: str
    cipher: str
    bits: int | None
    peer_subject: str | None
    peer_issuer: str | None
    not_after: str | None  # ISO 8601, UTC


def tls_info(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> TlsInfo | None:
    """Describe an established TLS session; None when there is none."""
    if ssl_object is None:
        return None
    version = ssl_object.version() or "unknown"
    cipher_tuple = ssl_object.cipher()
    cipher = cipher_tuple[0] if cipher_tuple else "unknown"
    bits = cipher_tuple[2] if cipher_tuple else None
    subject: str | None = None
    issuer: str | None = None
    not_after: str | None = None
    try:
        cert = ssl_object.getpeercert()
    except ValueError:  # handshake not done
        cert = None
    if cert:
        subject = _format_name(cert.get("subject", ()))
        issuer = _format_name(cert.get("issuer", ()))
        raw_not_after = cert.get("notAfter")
        if isinstance(raw_not_after, str):
            not_after = _iso_time(raw_not_after)
    else:
        # With verification off (--insecure) Python hands out only the DER bytes.
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            subject, issuer, not_after = _describe_der(der)
    return TlsInfo(
        version=version,
        cipher=cipher,
        bits=bits,
        peer_subject=subject,
        peer_issuer=issuer,
        not_after=not_after,
    )


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


def _describe_der(der: bytes) -> tuple[str | None, str | None, str | None]:
    """Best-effort subject/issuer/expiry from DER when the stdlib will not decode it.

    `cryptography` is optional here (it is not a mailctl dependency); without it the
    fields stay None rather than pulling a heavy import into every run.
    """
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover - depends on the environment
        return None, None, None
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None, None, None
    return (
        cert.subject.rfc4514_string() or None,
        cert.issuer.rfc4514_string() or None,
        cert.not_valid_after_utc.isoformat(),
    )


def _find_ssl_error(err: BaseException) -> ssl.SSLError | None:
    """Walk the cause/context chain: aiosmtplib wraps ssl errors in its own types."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return current
        current = current.__cause__ or current.__context__
    return None


def map_ssl_error(err: BaseException, *, host: str) -> MailctlError:
    """Turn an ssl failure (possibly wrapped) into CertificateError or TlsError.

    `host` is what the message names, usually "host:port". The message is one line
    saying why (expired, wrong host name, untrusted issuer, ...), never the raw
    OpenSSL error string with its file/line noise.
    """
    found = _find_ssl_error(err)
    if isinstance(found, ssl.SSLCertVerificationError):
        return CertificateError(
            f"TLS certificate of {host} {_certificate_reason(found)}",
            hint=CERT_HINT,
            details={"verify_code": found.verify_code, "verify_message": found.verify_message},
        )
    if found is not None:
        reason = (found.reason or type(found).__name__).replace("_", " ").lower()
        return TlsError(
            f"TLS handshake with {host} failed: {reason}",
            hint='check that the port matches the security: implicit TLS (--tls, security = "tls") '
            'on 465, 993, 995; STARTTLS (--starttls, security = "starttls") on 587, 143, 110',
        )
    text = " ".join(str(err).split()) or type(err).__name__
    return TlsError(f"TLS with {host} failed: {text}")


def _certificate_reason(err: ssl.SSLCertVerificationError) -> str:
    code = err.verify_code
    message = " ".join(str(err.verify_message or "").split())
    fixed = _FIXED_REASONS.get(code)
    if fixed is not None:
        return fixed
    if code == _HOSTNAME_MISMATCH:
        return f"does not match the host name ({message})"
    if code == _IP_MISMATCH:
        return f"does not match the IP address ({message})"
    if code in _UNTRUSTED_CODES:
        return f"is issued by an untrusted certificate authority ({message})"
    return f"failed verification ({message or 'unknown reason'})"
