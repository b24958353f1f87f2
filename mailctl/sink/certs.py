"""The sink's self-signed certificate for 127.0.0.1 and localhost: throwaway, or kept and reused.

`write_self_signed` makes a throwaway pair (bench, tests); `stable_certificate` keeps one pair
in a directory (`mailctl sink` uses the XDG state directory) so that an account trusting it
as its CA file keeps working from one run of the sink to the next.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import stat
from pathlib import Path
from typing import Final

from mailctl.store.files import write_atomic

CERT_NAME: Final = "cert.pem"
KEY_NAME: Final = "key.pem"
DIR_MODE: Final = 0o700
# A kept certificate lives a year and is replaced once less than a week is left, so a sink
# never starts with one that expires while it runs (a week is longer than any test session).
STABLE_DAYS: Final = 365
RENEW_BEFORE: Final = datetime.timedelta(days=7)
THROWAWAY_DAYS: Final = 2


def write_self_signed(directory: Path) -> tuple[Path, Path]:
    """Write cert.pem and key.pem (0600) into `directory`; return their paths.

    The certificate is its own CA (basicConstraints CA:TRUE with key identifiers), so a
    client can trust it by passing cert.pem as its CA file. EC P-256 keeps generation ~1 ms.
    """
    cert_bytes, key_bytes = _make_pair(days=THROWAWAY_DAYS, label="throwaway")
    cert_path = directory / CERT_NAME
    key_path = directory / KEY_NAME
    cert_path.write_bytes(cert_bytes)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    return cert_path, key_path


def stable_certificate(directory: Path) -> tuple[Path, Path]:
    """Return cert.pem and key.pem kept in `directory`, making them first when needed.

    A pair is reused while both files parse, belong together and the certificate is valid
    for at least RENEW_BEFORE more; otherwise a new pair replaces it. The directory is made
    0700, the key written 0600, each file atomically (store/files.py), and the whole check
    runs under an exclusive lock on `directory/.lock` so two sinks starting at once never
    leave one's key beside the other's certificate. Raises CantCreateError naming the path.
    """
    import fcntl

    from mailctl.errors import CantCreateError

    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    try:
        _make_private_dir(directory)
        lock = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise CantCreateError(
            f"{directory}: cannot keep the sink's certificate there: "
            f"{err.strerror or type(err).__name__}",
            hint="check its permissions, or set XDG_STATE_HOME to a writable directory",
            details={"file": str(directory)},
        ) from err
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _usable_pair(cert_path, key_path):
            cert_bytes, key_bytes = _make_pair(days=STABLE_DAYS, label="kept")
            # The key first: a pair read between the two renames fails _usable_pair's match
            # check and is never loaded, and readers take the lock anyway.
            write_atomic(key_path, key_bytes, mode=0o600, what="sink key")
            write_atomic(cert_path, cert_bytes, mode=0o644, what="sink certificate")
    finally:
        os.close(lock)  # closing the descriptor releases the flock
    return cert_path, key_path


def _make_private_dir(directory: Path) -> None:
    """Create `directory` (and missing parents) 0700; tighten it if it exists wider."""
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if directory.stat().st_mode & 0o077:
        os.chmod(directory, DIR_MODE)  # mkdir's mode is filtered by the umask


def _usable_pair(cert_path: Path, key_path: Path) -> bool:
    """True when both files read, parse, match, and the certificate is not near its end."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from mailctl.inputs import PEM_LIMIT

    try:
        for path in (cert_path, key_path):
            info = path.lstat()  # a FIFO would block the read; a symlink is not ours
            if not stat.S_ISREG(info.st_mode) or info.st_size > PEM_LIMIT:
                return False
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    now = datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc - RENEW_BEFORE:
        return False
    with contextlib.suppress(ValueError):
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        encoding = serialization.Encoding.DER
        return bool(
            cert.public_key().public_bytes(encoding, public)
            == key.public_key().public_bytes(encoding, public)
        )
    return False


def _make_pair(*, days: int, label: str) -> tuple[bytes, bytes]:
    """A new self-signed CA:TRUE certificate and its key, both PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"mailctl sink ({label})")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_bytes
