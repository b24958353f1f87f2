"""TLS client contexts, handshake facts, and ssl errors turned into one-line mailctl errors."""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path
from typing import Any

from mailctl.errors import (
    CertificateError,
    ConfigError,
    Fix,
    MailctlError,
    NoInputError,
    TlsError,
)
from mailctl.hosts import DEFAULT_PORTS
from mailctl.inputs import PEM_LIMIT, check_regular_file
from mailctl.models import Protocol, Security, ServerSettings
from mailctl.protocols.handshake import HandshakeFacts, handshake_facts
from mailctl.text import quote

# OpenSSL X509_V_ERR_* codes (include/openssl/x509_vfy.h) we explain in words.
_UNTRUSTED_CODES = frozenset({2, 18, 19, 20, 21, 24, 27})
_FIXED_REASONS = {
    10: "has expired",  # X509_V_ERR_CERT_HAS_EXPIRED
    9: "is not yet valid (check the clock)",  # X509_V_ERR_CERT_NOT_YET_VALID
    23: "has been revoked",  # X509_V_ERR_CERT_REVOKED
}
_HOSTNAME_MISMATCH = 62
_IP_MISMATCH = 64


def plaintext_auth_fixes(protocol: Protocol) -> list[Fix]:
    """What to do instead of sending a password in clear text (RFC 8314: use TLS)."""
    name = protocol.value
    return [
        Fix("security", "tls", "use implicit TLS", name),
        Fix("security", "starttls", "or STARTTLS", name),
        Fix("allow_plaintext_auth", "true", "on a trusted network only", name),
    ]


def security_fixes(protocol: Protocol, *, tried: Security, seen: str) -> list[Fix]:
    """The other securities to try when `tried` met a server speaking another one.

    `seen` is what happened: "no STARTTLS" (the server does not offer it), "silence" (no
    greeting: an implicit-TLS port waits for our ClientHello), "plaintext" (a TLS handshake
    met a greeting in clear text: OpenSSL's "wrong version number"). The fixes are worded
    for the command by its context (cli/hints.py): a flag or the account block's key.
    """
    ports = DEFAULT_PORTS[protocol]
    name = protocol.value
    tls = Fix(
        "security", "tls", f"if it speaks implicit TLS, usually port {ports[Security.TLS]}", name
    )
    starttls = Fix(
        "security",
        "starttls",
        f"if it offers STARTTLS, usually port {ports[Security.STARTTLS]}",
        name,
    )
    none = Fix("security", "none", "if it speaks no TLS at all, like a local test sink", name)
    if seen == "no STARTTLS":
        return [none, tls]
    if seen == "silence":
        return [tls] if tried is not Security.TLS else []
    return [starttls, none] if tried is Security.TLS else []


def client_context(
    *,
    verify: bool = True,
    ca_file: Path | None = None,
    minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
) -> ssl.SSLContext:
    """Build the one SSLContext every mailctl client connection uses.

    TLS 1.2 is the floor (RFC 8996 deprecates 1.0/1.1; RFC 8314 4.1 asks mail clients
    for current TLS); `minimum`/`maximum` change it for one context (`probe` tries each
    version on its own connection, see `set_versions`). With `verify`, the hostname is
    checked and either the system CAs or only `ca_file` are trusted.
    `verify=False` exists solely for --insecure.

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
    set_versions(context, minimum, maximum)
    if verify:
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
    return context


_LEGACY = frozenset({ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1})


def set_versions(context: ssl.SSLContext, minimum: ssl.TLSVersion, maximum: ssl.TLSVersion) -> None:
    """Allow only TLS versions `minimum`..`maximum` on `context`.

    TLS 1.0 and 1.1 (RFC 8996: deprecated) are only ever asked for by `probe`, to report
    that a server still offers them: Python warns when a context names them
    (DeprecationWarning, an error in the test suite) and OpenSSL 3 negotiates them only at
    security level 0 (their handshake signs with SHA-1). The warning is expected here and
    silenced here only, for exactly those two names.
    """
    if minimum not in _LEGACY and maximum not in _LEGACY:
        context.minimum_version = minimum
        context.maximum_version = maximum
        return
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"ssl\.TLSVersion\.TLSv1(_1)? is deprecated",
            category=DeprecationWarning,
        )
        context.minimum_version = minimum
        context.maximum_version = maximum
    context.set_ciphers("DEFAULT:@SECLEVEL=0")


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
            f"CA file {ca_file} does not exist", hint="check the CA file path"
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


def tls_info(
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None,
    *,
    verified: bool | None = True,
    with_chain: bool = False,
) -> HandshakeFacts | None:
    """Describe an established session (protocols.handshake); None when there is none.

    `verified`: True when the context verified chain and name (the handshake would have
    failed otherwise), None with --insecure.
    """
    return handshake_facts(ssl_object, verified=verified, with_chain=with_chain)


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


# OpenSSL's words when a TLS handshake meets a server speaking clear text (an SMTP, IMAP or
# POP3 greeting read as a TLS record): "wrong version number" and its OpenSSL 3 variants.
_PLAINTEXT_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL"}
)


def map_ssl_error(
    err: BaseException,
    *,
    host: str,
    settings: ServerSettings | None = None,
    protocol: Protocol = Protocol.SMTP,
) -> MailctlError:
    """Turn an ssl failure (possibly wrapped) into CertificateError or TlsError.

    `host` is what the message names, usually "host:port"; `settings` (when known) say
    which name was checked, whether a CA file was given and which security was tried, so
    the hint names what would help and nothing already done. The message is one line
    saying why (expired, wrong host name, untrusted issuer, ...), never the raw OpenSSL
    error string with its file/line noise.
    """
    found = _find_ssl_error(err)
    if isinstance(found, ssl.SSLCertVerificationError):
        return _certificate_error(found, host=host, settings=settings, protocol=protocol)
    if found is not None:
        reason_code = found.reason or type(found).__name__
        reason = reason_code.replace("_", " ").lower()
        message = f"TLS handshake with {host} failed: {reason}"
        if settings is not None and reason_code in _PLAINTEXT_REASONS:
            return TlsError(
                f"{message}: the server answered in clear text",
                fixes=security_fixes(protocol, tried=settings.security, seen="plaintext"),
            )
        return TlsError(
            message,
            hint="check that the port matches the security: implicit TLS on "
            "465, 993, 995; STARTTLS on 587, 143, 110",
        )
    text = " ".join(str(err).split()) or type(err).__name__
    return TlsError(f"TLS with {host} failed: {text}")


# A certificate may list hundreds of names (a shared host's); a message shows a few.
_NAMES_SHOWN = 6
_NAME_LIMIT = 80


def name_mismatch(error: BaseException) -> bool:
    """Whether `error` is a certificate refused for its names (not its issuer or dates)."""
    return isinstance(error, CertificateError) and error.details.get("verify_code") in (
        _HOSTNAME_MISMATCH,
        _IP_MISMATCH,
    )


def certificate_names(cert: Any) -> tuple[str, ...]:
    """The subject alternative names (DNS names and IP addresses) of a decoded certificate,
    as `getpeercert()` returns it; empty when it lists none."""
    found: list[str] = []
    for kind, value in (cert or {}).get("subjectAltName", ()):
        if kind in ("DNS", "IP Address") and isinstance(value, str):
            found.append(value.strip())
    return tuple(found)


def with_names(error: CertificateError, names: tuple[str, ...]) -> CertificateError:
    """`error` (a name mismatch) saying which names the certificate does list: quoted, each
    cut at _NAME_LIMIT characters, at most _NAMES_SHOWN of them."""
    shown = ", ".join(quote(name, limit=_NAME_LIMIT) for name in names[:_NAMES_SHOWN])
    if len(names) > _NAMES_SHOWN:
        shown += f" and {len(names) - _NAMES_SHOWN} more"
    listed = f"it lists {shown}" if names else "it lists no subject alternative name"
    details = {**error.details, "certificate_names": list(names[:100])}
    amended = CertificateError(
        f"{error.message}; {listed}", hint=error.note, details=details, fixes=error.fixes
    )
    amended.__cause__ = error.__cause__
    return amended


def _certificate_error(
    err: ssl.SSLCertVerificationError,
    *,
    host: str,
    settings: ServerSettings | None,
    protocol: Protocol,
) -> CertificateError:
    """Say what was checked and offer only what was not tried: a CA file when none was
    given, --tls-name for a name mismatch, --insecure last."""
    details = {"verify_code": err.verify_code, "verify_message": err.verify_message}
    name = protocol.value
    ca_file = settings.ca_file if settings is not None else None
    if err.verify_code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
        checked = (settings.tls_name or settings.host) if settings is not None else None
        what = "IP address" if err.verify_code == _IP_MISMATCH else "host name"
        shown = quote(checked) if checked is not None else "the host"
        message = (
            f"TLS certificate of {host} is not valid for the {what} {shown}: "
            "no subject alternative name of the certificate matches it"
        )
        return CertificateError(
            message,
            hint="connect by a name the certificate lists",
            details=details,
            fixes=[Fix("tls_name", when="or check it against a name it lists", protocol=name)],
        )
    message = f"TLS certificate of {host} {_certificate_reason(err)}"
    if err.verify_code in _UNTRUSTED_CODES and ca_file is not None:
        return CertificateError(
            message,
            hint=f"no certificate in the CA file {quote(str(ca_file))} vouches for it: "
            "check that the file holds the server's CA",
            details=details,
        )
    fixes = [Fix("verify", "false", "only for testing, skip verification", name)]
    if ca_file is None:
        private = "if the server uses a private CA, trust it"
        fixes.insert(0, Fix("ca_file", when=private, protocol=name))
    return CertificateError(message, details=details, fixes=fixes)


def _certificate_reason(err: ssl.SSLCertVerificationError) -> str:
    code = err.verify_code
    message = " ".join(str(err.verify_message or "").split())
    fixed = _FIXED_REASONS.get(code)
    if fixed is not None:
        return fixed
    if code in _UNTRUSTED_CODES:
        return f"is issued by an untrusted certificate authority ({message})"
    return f"failed verification ({message or 'unknown reason'})"
