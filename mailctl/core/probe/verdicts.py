"""Facts -> findings: one rule per problem, each with its stable code, severity and fix.

Codes (README "Probing a server"): connect.failed, connect.busy, protocol.error,
smtp.no_esmtp, imap.preauth, starttls.missing, starttls.failed, starttls.injection,
auth.before_tls, tls.handshake_failed, tls.expired, tls.not_yet_valid, tls.expires_soon,
cert.name_mismatch, cert.untrusted, cert.self_signed, cert.verify_failed, cert.weak_key,
cert.weak_signature, tls.version.tls10, tls.version.tls11, tls.version.no_tls13,
tls.version.no_modern, tls.version.untested.
"""

from __future__ import annotations

from collections.abc import Iterator

from mailctl.core.probe.findings import Finding, Severity
from mailctl.core.probe.models import ProbeProtocol, Target, VersionCheck
from mailctl.errors import ConnectError, HostNotFoundError, MailctlError
from mailctl.protocols.handshake import HandshakeFacts, name_matches
from mailctl.protocols.probe import DialogueFacts

# OpenSSL X509_V_ERR_* (include/openssl/x509_vfy.h).
_EXPIRED = 10
_NOT_YET_VALID = 9
_SELF_SIGNED = frozenset({18, 19})  # DEPTH_ZERO_SELF_SIGNED_CERT, SELF_SIGNED_CERT_IN_CHAIN
_UNTRUSTED = frozenset({2, 20, 21, 27})  # no local issuer, unable to verify leaf, untrusted
_NAME = frozenset({62, 64})  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
EXPIRY_WARNING_DAYS = 21
_WEAK_SIGNATURES = ("md5", "sha1")


def dialogue_findings(target: Target, facts: DialogueFacts) -> Iterator[Finding]:
    """What the connection and pre-login dialogue showed."""
    subject = target.where
    protocol = target.protocol
    if facts.error is not None and not facts.connected:
        yield _connect_failed(subject, facts.error)
        return
    if facts.busy:
        yield Finding(
            Severity.WARNING,
            "connect.busy",
            subject,
            f"the server sent the probe away: {facts.banner or 'no greeting text'}",
            "if it lasts, check the server's connection limits and load; probe again later",
        )
    if facts.preauth:
        yield Finding(
            Severity.ERROR,
            "imap.preauth",
            subject,
            "the IMAP server greets with PREAUTH: anyone connecting is logged in",
            "disable pre-authenticated sessions on this port",
        )
    if not facts.esmtp:
        yield Finding(
            Severity.WARNING,
            "smtp.no_esmtp",
            subject,
            "the server refuses EHLO: no ESMTP, so no STARTTLS, SIZE or 8BITMIME",
            "enable ESMTP (EHLO) on the server",
        )
    yield from _auth_before_tls(target, facts)
    if facts.starttls_offered is False and not protocol.implicit_tls:
        severity = Severity.WARNING if protocol is ProbeProtocol.SMTP else Severity.ERROR
        yield Finding(
            severity,
            "starttls.missing",
            subject,
            f"the server does not offer {_starttls_word(protocol)}: "
            "everything on this port travels in clear text",
            "install a certificate and enable STARTTLS on this port "
            "(Postfix: smtpd_tls_security_level = may; Dovecot: ssl = yes)",
        )
    refused = facts.starttls_reply is not None and facts.error is None
    if facts.starttls_offered and facts.tls is None and facts.handshake_error is None and refused:
        yield Finding(
            Severity.ERROR,
            "starttls.failed",
            subject,
            f"{_starttls_word(protocol)} is offered but refused: {facts.starttls_reply}",
            "check the server's TLS certificate and key settings and its log",
        )
    if facts.injected is not None:
        yield Finding(
            Severity.ERROR,
            "starttls.injection",
            subject,
            "the server sent data after its 'ready to start TLS' reply, before the TLS "
            f"handshake: {facts.injected!r} (STARTTLS response injection, CVE-2011-0411)",
            "upgrade the server software, or remove the middlebox that rewrites the session",
        )
    if facts.handshake_error is not None:
        yield Finding(
            Severity.ERROR,
            "tls.handshake_failed",
            subject,
            f"the TLS handshake failed: {facts.handshake_reason}",
            "check the server's certificate, key and allowed TLS versions and ciphers",
        )
    if facts.error is not None:
        yield Finding(
            Severity.ERROR,
            "protocol.error",
            subject,
            facts.error.message,
            "the server is broken, overloaded or hostile: check its configuration and log",
        )


def _connect_failed(subject: str, error: MailctlError) -> Finding:
    fix = (
        "check the host name and its DNS records"
        if isinstance(error, HostNotFoundError)
        else "check the host, the port, the firewall and that the server is running"
    )
    if not isinstance(error, ConnectError | HostNotFoundError):
        fix = "the server is slow or unreachable; check it and probe again"
    if error.details.get("phase") == "dns":  # the name servers, not the mail server
        fix = error.hint or fix
    return Finding(Severity.ERROR, "connect.failed", subject, error.message, fix)


def _starttls_word(protocol: ProbeProtocol) -> str:
    return "STLS (STARTTLS)" if protocol.family == "pop3" else "STARTTLS"


def _auth_before_tls(target: Target, facts: DialogueFacts) -> Iterator[Finding]:
    """RFC 8314 and RFC 3207 5: a password must never cross the network in clear text."""
    if target.protocol.implicit_tls:
        return
    before = tuple(c.upper() for c in facts.before)
    family = target.protocol.family
    offered: list[str] = []
    if family == "smtp":
        offered = [c for c in before if c.startswith("AUTH ") or c.startswith("AUTH=")]
    elif family == "imap":
        offered = [c for c in before if c.startswith("AUTH=")]
        if "LOGINDISABLED" not in before:
            offered.append("LOGIN")  # RFC 3501 6.2.3: LOGIN works unless LOGINDISABLED
    else:
        offered = [c for c in before if c.startswith("SASL") or c == "USER"]
    if not offered:
        return
    severity = Severity.WARNING if target.protocol is ProbeProtocol.SMTP else Severity.ERROR
    yield Finding(
        severity,
        "auth.before_tls",
        target.where,
        f"the server offers authentication before TLS ({', '.join(offered)}): a client "
        "may send its password in clear text",
        "offer AUTH only after STARTTLS (Postfix: smtpd_tls_auth_only = yes; "
        "Dovecot: disable_plaintext_auth = yes, ssl = required)",
    )


def certificate_findings(
    target: Target, tls: HandshakeFacts, *, mx_name: str | None = None
) -> Iterator[Finding]:
    """The verdict (OpenSSL's) and the checks on the leaf mailctl does itself, so a
    certificate that is both expired and for the wrong name shows both."""
    subject = target.where
    leaf = tls.leaf
    code = tls.verify_code
    yield from _verify_findings(subject, tls)
    if leaf is None:
        return
    days = leaf.days_left
    if (days is not None and days < 0) or code == _EXPIRED:
        yield Finding(
            Severity.ERROR,
            "tls.expired",
            subject,
            f"the certificate expired on {leaf.not_after}",
            "renew the certificate and reload the server",
        )
    elif code == _NOT_YET_VALID:
        yield Finding(
            Severity.ERROR,
            "tls.not_yet_valid",
            subject,
            f"the certificate is not valid before {leaf.not_before}",
            "check the server's clock, or the certificate's start date",
        )
    elif days is not None and days < EXPIRY_WARNING_DAYS:
        yield Finding(
            Severity.WARNING,
            "tls.expires_soon",
            subject,
            f"the certificate expires in {days} days ({leaf.not_after})",
            "renew the certificate now (automate renewal, e.g. certbot)",
        )
    names = [target.tls_name or target.host]
    if mx_name is not None and mx_name not in names:
        names.append(mx_name)
    for name in names:
        if not name_matches(name, leaf.sans):
            listed = ", ".join(leaf.sans[:6]) or "no subject alternative name"
            yield Finding(
                Severity.ERROR,
                "cert.name_mismatch",
                subject,
                f"the certificate is not valid for {name!r}; it lists {listed}",
                f"get a certificate that lists {name}, or probe by a name it lists (--tls-name)",
            )
    if leaf.key_type == "RSA" and leaf.key_bits is not None and leaf.key_bits < 2048:
        yield Finding(
            Severity.WARNING,
            "cert.weak_key",
            subject,
            f"the certificate's RSA key has only {leaf.key_bits} bits",
            "issue a new certificate with an RSA key of at least 2048 bits, or ECDSA",
        )
    algorithm = (leaf.signature_algorithm or "").lower()
    if any(algorithm.startswith(weak) for weak in _WEAK_SIGNATURES):
        yield Finding(
            Severity.WARNING,
            "cert.weak_signature",
            subject,
            f"the certificate is signed with {leaf.signature_algorithm}",
            "reissue the certificate with a SHA-256 (or stronger) signature",
        )


def _verify_findings(subject: str, tls: HandshakeFacts) -> Iterator[Finding]:
    """OpenSSL's verdict on the chain (name and dates are checked on the leaf instead)."""
    code = tls.verify_code
    if tls.verified is not False or code is None:
        return
    if code in _SELF_SIGNED:
        yield Finding(
            Severity.ERROR,
            "cert.self_signed",
            subject,
            "the certificate is self-signed: no client can verify it",
            "use a certificate from a public CA (e.g. Let's Encrypt), "
            "or pass --ca-file for a private CA",
        )
    elif code in _UNTRUSTED:
        yield Finding(
            Severity.ERROR,
            "cert.untrusted",
            subject,
            f"the certificate chain does not lead to a trusted CA ({tls.verify_message})",
            "serve the full chain (leaf and intermediates) from a public CA, "
            "or pass --ca-file if the server uses a private CA",
        )
    elif code not in _NAME and code not in (_EXPIRED, _NOT_YET_VALID):
        yield Finding(
            Severity.ERROR,
            "cert.verify_failed",
            subject,
            f"the certificate failed verification ({tls.verify_message})",
            "replace the certificate with a valid one from a trusted CA",
        )


def version_findings(target: Target, versions: tuple[VersionCheck, ...]) -> Iterator[Finding]:
    """RFC 8996: TLS 1.0 and 1.1 are deprecated; RFC 8446: TLS 1.3 is current."""
    subject = target.where
    offered = {v.version: v.offered for v in versions}
    for version, code in (("TLSv1", "tls.version.tls10"), ("TLSv1.1", "tls.version.tls11")):
        if offered.get(version):
            shown = "TLS 1.0" if version == "TLSv1" else "TLS 1.1"
            yield Finding(
                Severity.WARNING,
                code,
                subject,
                f"the server still accepts {shown} (deprecated by RFC 8996)",
                "allow TLS 1.2 and 1.3 only (Postfix: smtpd_tls_protocols = >=TLSv1.2; "
                "Dovecot: ssl_min_protocol = TLSv1.2)",
            )
    if offered.get("TLSv1.2") is False and offered.get("TLSv1.3") is False:
        yield Finding(
            Severity.ERROR,
            "tls.version.no_modern",
            subject,
            "the server accepts neither TLS 1.2 nor TLS 1.3",
            "enable TLS 1.2 and 1.3 on the server",
        )
    elif offered.get("TLSv1.3") is False:
        yield Finding(
            Severity.INFO,
            "tls.version.no_tls13",
            subject,
            "the server does not offer TLS 1.3",
            "enable TLS 1.3 (OpenSSL 1.1.1 or later on the server)",
        )
    untested = [v for v in versions if v.offered is None]
    if untested:
        yield Finding(
            Severity.INFO,
            "tls.version.untested",
            subject,
            "not tried: " + "; ".join(f"{v.version} ({v.reason or 'not tried'})" for v in untested),
            None,
        )
