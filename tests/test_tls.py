"""TLS: client contexts, the certificate matrix against real servers, and error mapping."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from servers.smtp_server import (
    TEST_PASSWORD,
    CertKind,
    ServerCertificates,
    SmtpServerFactory,
    SmtpTestServer,
)

from mailctl.errors import (
    CertificateError,
    ConfigError,
    ExitCode,
    NoInputError,
    TlsError,
)
from mailctl.models import Security
from mailctl.protocols.smtp import SessionOptions, SmtpSession
from mailctl.protocols.tls import client_context, map_ssl_error, tls_info
from mailctl.serialize import to_data


def test_client_context_verifies_by_default() -> None:
    context = client_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_client_context_insecure_only_when_asked() -> None:
    context = client_context(verify=False)
    assert context.verify_mode is ssl.CERT_NONE
    assert context.check_hostname is False
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_client_context_ca_file_replaces_system_store(smtp_ca_file: Path) -> None:
    context = client_context(ca_file=smtp_ca_file)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert len(context.get_ca_certs()) == 1


def test_missing_ca_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(NoInputError, match=r"nope\.pem"):
        client_context(ca_file=missing)


def test_garbage_ca_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"bad\.pem"):
        client_context(ca_file=bad)


def test_map_ssl_error_of_a_non_ssl_error_is_a_one_line_tls_error() -> None:
    error = map_ssl_error(OSError("boom\nsecond line"), host="mx.example:465")
    assert isinstance(error, TlsError)
    assert "\n" in "boom\nsecond line" and "\n" not in error.message
    assert "mx.example:465" in error.message


# -- the certificate matrix against real servers ------------------------------------------

REFUSALS = [
    (CertKind.UNTRUSTED, "untrusted certificate authority"),
    (CertKind.WRONG_HOST, "is not valid for the IP address '127.0.0.1'"),
    (CertKind.EXPIRED, "has expired"),
]


async def _open(server: SmtpTestServer, **overrides: object) -> SmtpSession:
    return await SmtpSession.open(
        SessionOptions(settings=server.settings(**overrides), secret=lambda: TEST_PASSWORD)
    )


@pytest.mark.parametrize("security", [Security.STARTTLS, Security.TLS])
@pytest.mark.parametrize(("kind", "reason"), REFUSALS)
async def test_bad_certificates_are_refused_by_default(
    smtp_server_factory: SmtpServerFactory, security: Security, kind: CertKind, reason: str
) -> None:
    server = smtp_server_factory(security=security, cert=kind)
    with pytest.raises(CertificateError) as caught:
        await _open(server)
    error = caught.value
    assert reason in error.message
    assert f"127.0.0.1:{server.port}" in error.message
    assert "\n" not in error.one_line()
    # Issue 8: the hint offers only what was not tried. The CA file was given (the fixture
    # trusts the test CA), so it is not offered again; a wrong name offers tls_name. Without
    # a command, fixes read as config keys (cli/hints.py words them as flags).
    hint = error.hint or ""
    assert "ca_file =" not in hint and "--" not in hint, hint
    if kind is CertKind.WRONG_HOST:
        assert 'tls_name = "NAME"' in hint, hint
    elif kind is CertKind.UNTRUSTED:
        assert "CA file" in hint, hint
    else:
        assert "verify = false" in hint, hint
    assert error.exit_code is ExitCode.PROTOCOL
    assert isinstance(error.__cause__, BaseException)  # chained, not swallowed
    # Refused before AUTH: the server never saw credentials.
    assert server.auth_attempts == []


async def test_system_store_does_not_trust_the_test_ca(smtp_server: SmtpTestServer) -> None:
    """Proves ca_file is what makes the trusted cases work, not a lax context."""
    with pytest.raises(CertificateError, match="untrusted"):
        await _open(smtp_server, ca_file=None)


async def test_untrusted_issuer_accepted_with_its_ca_file(
    smtp_server_factory: SmtpServerFactory, smtp_certificates: ServerCertificates
) -> None:
    server = smtp_server_factory(security=Security.STARTTLS, cert=CertKind.UNTRUSTED)
    async with await _open(server, ca_file=smtp_certificates.untrusted_ca_file) as session:
        assert session.info.tls is not None
        assert session.info.auth_mechanism == "PLAIN"


@pytest.mark.parametrize("kind", [CertKind.WRONG_HOST, CertKind.EXPIRED])
async def test_ca_file_does_not_excuse_host_or_date(
    smtp_server_factory: SmtpServerFactory, kind: CertKind
) -> None:
    server = smtp_server_factory(security=Security.TLS, cert=kind)
    with pytest.raises(CertificateError):
        await _open(server)  # settings() already passes the right CA file


@pytest.mark.parametrize("security", [Security.STARTTLS, Security.TLS])
@pytest.mark.parametrize("kind", list(CertKind))
async def test_insecure_accepts_every_certificate(
    smtp_server_factory: SmtpServerFactory, security: Security, kind: CertKind
) -> None:
    server = smtp_server_factory(security=security, cert=kind)
    async with await _open(server, verify=False, ca_file=None) as session:
        info = session.info.tls
        assert info is not None
        assert info.version in ("TLSv1.2", "TLSv1.3")
        # Even unverified, the peer is described (from the DER certificate).
        assert info.peer_issuer is not None
        assert info.not_after is not None
    assert server.auth_attempts[0].tls is True


async def test_tls_info_of_a_verified_session(smtps_server: SmtpTestServer) -> None:
    async with await _open(smtps_server) as session:
        info = session.info.tls
        assert info is not None
        assert info.cipher and info.bits and info.bits >= 128
        assert info.peer_issuer is not None and "mailctl test CA" in info.peer_issuer
        assert info.not_after is not None and info.not_after.startswith("3000-")
        assert to_data(info)["version"] == info.version
    assert tls_info(None) is None


async def test_implicit_tls_against_a_plain_server_is_a_tls_error(
    plain_smtp_server: SmtpTestServer,
) -> None:
    with pytest.raises(TlsError) as caught:
        await _open(plain_smtp_server, security=Security.TLS, username=None)
    assert not isinstance(caught.value, CertificateError)
    assert f"127.0.0.1:{plain_smtp_server.port}" in caught.value.message
