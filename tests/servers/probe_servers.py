"""Deliberately broken SMTP servers for `mailctl probe` tests, with certificates made per run.

`ProbeSmtpServer` is a small threaded SMTP server on 127.0.0.1 port 0 that answers EHLO,
STARTTLS and QUIT (everything else: 502) and records every command line it received, so
tests can assert that the probe never sent AUTH, MAIL, RCPT or DATA. Knobs: implicit TLS,
STARTTLS offered or not, AUTH advertised before TLS, bytes injected after "220 Ready to
start TLS", the TLS versions the server allows, a 421 greeting for the first N
connections, and hostile greetings (a 10 MB banner, endless "250-" lines, one byte a
minute). Every connection is bounded in time; `stop()` closes everything.

`ProbeCerts`: per run, a trusted CA (trustme) and server certificates: good, expired, for
the wrong name, from an unknown CA, self-signed (made with cryptography), and
"names:a.test,b.test" for given names from the trusted CA.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailctl.protocols.tls import set_versions

LIFETIME = 30.0  # no connection of a test server lives longer


class ProbeCerts:
    """Certificates generated for this run, and the CA file that trusts the good ones."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca = trustme.CA(organization_name="probe test CA")
        self._unknown_ca = trustme.CA(organization_name="unknown CA")
        now = datetime.datetime.now(datetime.UTC)
        self._certs: dict[str, trustme.LeafCert] = {
            "good": self.ca.issue_cert("127.0.0.1", "localhost", "mx.probe.test"),
            "expired": self.ca.issue_cert(
                "127.0.0.1",
                "localhost",
                not_before=now - datetime.timedelta(days=60),
                not_after=now - datetime.timedelta(days=2),
            ),
            "wrong-name": self.ca.issue_cert("wrong-host.example"),
            "unknown-ca": self._unknown_ca.issue_cert("127.0.0.1", "localhost"),
            "soon": self.ca.issue_cert(
                "127.0.0.1", "localhost", not_after=now + datetime.timedelta(days=5)
            ),
        }
        self.ca_file = directory / "probe-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self._self_signed = _self_signed(directory)

    def context(
        self,
        kind: str,
        *,
        minimum: ssl.TLSVersion | None = None,
        maximum: ssl.TLSVersion | None = None,
    ) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if kind == "self-signed":
            context.load_cert_chain(*self._self_signed)
        elif kind.startswith("names:"):  # "names:mx1.example.test,mx2.example.test"
            self.ca.issue_cert(*kind[6:].split(",")).configure_cert(context)
        else:
            self._certs[kind].configure_cert(context)
        if minimum is not None or maximum is not None:
            # mailctl's own rule for TLS 1.0/1.1 (their DeprecationWarning caught there only,
            # security level 0 so OpenSSL 3 agrees to them).
            set_versions(
                context,
                minimum or ssl.TLSVersion.MINIMUM_SUPPORTED,
                maximum or ssl.TLSVersion.MAXIMUM_SUPPORTED,
            )
        return context


def _self_signed(directory: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "self-signed.pem"
    key_path = directory / "self-signed.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


Greeting = Callable[[socket.socket], None]


def flood_banner(conn: socket.socket) -> None:
    """A 10 MB banner without a line end."""
    chunk = b"220 " + b"x" * (64 * 1024)
    with contextlib.suppress(OSError):
        conn.settimeout(5)
        for _ in range(160):
            conn.sendall(chunk)


def endless_continuation(conn: socket.socket) -> None:
    """'220-' lines for ever (until the client hangs up or the lifetime ends)."""
    end = time.monotonic() + LIFETIME
    with contextlib.suppress(OSError):
        conn.settimeout(5)
        while time.monotonic() < end:
            conn.sendall(b"220-still greeting you\r\n" * 100)


def one_byte_a_minute(conn: socket.socket) -> None:
    """'2', then nothing for a minute (the test's timeout is far shorter)."""
    with contextlib.suppress(OSError):
        conn.sendall(b"2")
        conn.settimeout(60)
        conn.recv(1)  # returns when the client hangs up


@dataclass
class ProbeSmtpServer:
    certs: ProbeCerts
    cert: str = "good"
    implicit_tls: bool = False
    starttls: bool = True
    auth_before_tls: bool = False
    inject: bytes = b""
    minimum: ssl.TLSVersion | None = None
    maximum: ssl.TLSVersion | None = None
    busy_first: int = 0  # answer 421 to this many connections first
    greeting: Greeting | None = None
    received: list[str] = field(default_factory=list)
    connections: int = 0
    handshakes: int = 0
    # Where to listen: another loopback address (127.0.0.2) can share a port number, as the
    # MX hosts of `probe --mx --mx-port` must.
    listen: tuple[str, int] = ("127.0.0.1", 0)

    def __post_init__(self) -> None:
        self._context = self.certs.context(self.cert, minimum=self.minimum, maximum=self.maximum)
        self._listener = socket.create_server(self.listen)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def verbs(self) -> list[str]:
        with self._lock:
            return [line.split(" ", 1)[0].upper() for line in self.received]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn, number), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        opened: list[socket.socket] = [conn]
        try:
            conn.settimeout(LIFETIME)
            if self.greeting is not None:
                self.greeting(conn)
                return
            if number <= self.busy_first:
                conn.sendall(b"421 4.7.0 too many connections, try later\r\n")
                return
            if self.implicit_tls:
                opened.append(self._context.wrap_socket(conn, server_side=True))
                self.handshakes += 1
            self._dialogue(opened)
        except (OSError, ssl.SSLError):
            pass
        finally:
            for sock in reversed(opened):
                with contextlib.suppress(OSError):
                    sock.close()

    def _dialogue(self, opened: list[socket.socket]) -> None:
        """Serve one session on opened[-1] (a new TLS socket is appended on STARTTLS)."""
        sock = opened[-1]
        tls = self.implicit_tls
        reader = sock.makefile("rb")
        sock.sendall(b"220 mx.probe.test ESMTP test\r\n")
        while True:
            raw = reader.readline(4096)
            if not raw:
                reader.close()
                return
            line = raw.decode("ascii", "replace").rstrip("\r\n")
            with self._lock:
                self.received.append(line)
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                keywords = ["SIZE 10240000", "PIPELINING", "8BITMIME", "SMTPUTF8"]
                if self.starttls and not tls and not self.implicit_tls:
                    keywords.append("STARTTLS")
                if tls or self.auth_before_tls:
                    keywords.append("AUTH PLAIN LOGIN")
                lines = ["mx.probe.test", *keywords]
                reply = "".join(f"250-{k}\r\n" for k in lines[:-1]) + f"250 {lines[-1]}\r\n"
                sock.sendall(reply.encode())
            elif verb == "STARTTLS" and self.starttls and not tls:
                sock.sendall(b"220 2.0.0 Ready to start TLS\r\n" + self.inject)
                reader.close()
                sock = self._context.wrap_socket(sock, server_side=True)
                opened.append(sock)
                self.handshakes += 1
                tls = True
                reader = sock.makefile("rb")
            elif verb == "QUIT":
                sock.sendall(b"221 2.0.0 Bye\r\n")
                reader.close()
                return
            else:
                sock.sendall(b"502 5.5.2 not here\r\n")


ProbeServerFactory = Callable[..., ProbeSmtpServer]


@pytest.fixture(scope="session")
def probe_certs(tmp_path_factory: pytest.TempPathFactory) -> ProbeCerts:
    """Certificates made once per test run (see ProbeCerts)."""
    return ProbeCerts(tmp_path_factory.mktemp("probe-certs"))


@pytest.fixture
def probe_server(probe_certs: ProbeCerts) -> Iterator[ProbeServerFactory]:
    """`probe_server(**knobs) -> ProbeSmtpServer`; every server is stopped after the test."""
    started: list[ProbeSmtpServer] = []

    def factory(**knobs: object) -> ProbeSmtpServer:
        server = ProbeSmtpServer(probe_certs, **knobs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
