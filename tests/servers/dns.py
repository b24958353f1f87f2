"""A small authoritative DNS server (dnspython, UDP and TCP on 127.0.0.1) and an HTTPS server
for MTA-STS policies on 127.0.0.1:443, both serving what the test gives them.

`DnsServer`: records from a dict (`{"example.test": ["MX 10 mx1.example.test.", ...]}`),
CNAMEs chased in its own data like an authoritative server (a loop is written out until a
name repeats), answers over UDP truncated (TC) when larger than the client's EDNS size, so
the client asks again over TCP. Knobs for hostile tests: `silent` names get no answer,
`servfail` names get SERVFAIL, `ad` sets the AD bit. Every query is logged with its transport.

`PolicyServer`: certificates made per run with trustme, one per SNI name, issued by `ca`
(or, for names in `untrusted`, by a CA nobody trusts); replies per host from `policies`.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
import trustme

_CHASE_LIMIT = 20


class DnsServer:
    """An authoritative server for the names in `records`, on 127.0.0.1, UDP and TCP."""

    def __init__(self, records: dict[str, list[str]], *, lifetime: float = 120.0) -> None:
        self.rrsets: dict[tuple[str, int], dns.rrset.RRset] = {}
        self.names: set[str] = set()
        self.set_records(records)
        self.silent: set[str] = set()
        self.servfail: set[str] = set()
        self.ad = False
        self.log: list[tuple[str, str, str]] = []  # (udp|tcp, name, type)
        self._stop = threading.Event()
        self._deadline = time.monotonic() + lifetime
        self.udp, self.tcp = _bind_pair()
        self.port: int = self.udp.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def set_records(self, records: dict[str, list[str]]) -> None:
        for owner, lines in records.items():
            name = _norm(owner)
            self.names.add(name)
            for line in lines:
                rdtype, _, rdata = line.strip().partition(" ")
                key = (name, dns.rdatatype.from_text(rdtype))
                new = dns.rrset.from_text(name + ".", 300, "IN", rdtype, rdata)
                if key in self.rrsets:
                    self.rrsets[key].union_update(new)
                else:
                    self.rrsets[key] = new

    def queries(self, transport: str | None = None) -> list[tuple[str, str]]:
        return [(n, t) for tr, n, t in list(self.log) if transport in (None, tr)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.udp.close()
        self.tcp.close()

    def _serve(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            ready, _, _ = select.select([self.udp, self.tcp], [], [], 0.1)
            for sock in ready:
                if sock is self.udp:
                    with contextlib.suppress(OSError):
                        data, peer = self.udp.recvfrom(65535)
                        wire = self._answer(data, "udp")
                        if wire is not None:
                            self.udp.sendto(wire, peer)
                else:
                    with contextlib.suppress(OSError):
                        conn, _ = self.tcp.accept()
                        threading.Thread(target=self._tcp, args=(conn,), daemon=True).start()

    def _tcp(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn, contextlib.suppress(OSError, ValueError):
            while not self._stop.is_set():
                head = _read_exactly(conn, 2)
                query = _read_exactly(conn, int.from_bytes(head, "big"))
                wire = self._answer(query, "tcp")
                if wire is None:
                    return
                conn.sendall(len(wire).to_bytes(2, "big") + wire)

    def _answer(self, data: bytes, transport: str) -> bytes | None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None
        question = query.question[0]
        qname = _norm(question.name.to_text())
        self.log.append((transport, qname, dns.rdatatype.to_text(question.rdtype)))
        if qname in self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        # RFC 6840 5.7: a resolver sets AD only for a query with AD or DO set.
        if self.ad and (query.flags & dns.flags.AD or query.ednsflags & dns.flags.DO):
            response.flags |= dns.flags.AD
        if qname in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        self._fill(response, qname, question.rdtype)
        limit = 65535 if transport == "tcp" else max(512, query.payload if query.edns >= 0 else 0)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            # RFC 1035 4.2.1 / RFC 7766: too big for UDP -> TC set, the client retries on TCP.
            short = dns.message.make_response(query)
            short.flags |= dns.flags.AA | dns.flags.TC
            return short.to_wire()

    def _fill(self, response: dns.message.Message, qname: str, rdtype: int) -> None:
        seen: set[str] = set()
        name = qname
        for _ in range(_CHASE_LIMIT):
            found = self.rrsets.get((name, rdtype))
            if found is not None:
                response.answer.append(found)
                return
            cname = self.rrsets.get((name, dns.rdatatype.CNAME))
            if cname is None or name in seen:
                break
            seen.add(name)
            response.answer.append(cname)
            name = _norm(next(iter(cname)).target.to_text())
        if name not in self.names and not response.answer:
            response.set_rcode(dns.rcode.NXDOMAIN)


def _norm(name: str) -> str:
    return name.rstrip(".").lower()


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ValueError("closed")
        data += chunk
    return data


def _bind_pair() -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same free port of 127.0.0.1 (a few tries)."""
    for _ in range(20):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(16)
        return udp, tcp
    raise RuntimeError("no free UDP+TCP port pair on 127.0.0.1")


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer({})
    yield server
    server.close()


# --- the MTA-STS policy server --------------------------------------------------------------


@dataclass
class PolicyReply:
    """What the policy server answers for one host (`raw` replaces everything when given)."""

    body: bytes = b""
    status: int = 200
    content_type: str = "text/plain"
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False
    drip: float = 0.0  # seconds between bytes of the whole reply: a tarpit
    endless: bool = False  # no length, then body bytes until the client hangs up
    raw: bytes | None = None

    def write(self, conn: ssl.SSLSocket, stop: threading.Event) -> None:
        if self.raw is not None:
            conn.sendall(self.raw)
            return
        head = [f"HTTP/1.1 {self.status} X", f"Content-Type: {self.content_type}"]
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        body = self.body
        if self.chunked:
            head.append("Transfer-Encoding: chunked")
            body = b"".join(b"%x\r\n%s\r\n" % (len(b), b) for b in _pieces(body, 7)) + b"0\r\n\r\n"
        elif not self.endless:
            head.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        if self.drip:
            for byte in data:
                if stop.wait(self.drip):
                    return
                conn.sendall(bytes([byte]))
        else:
            conn.sendall(data)
        while self.endless and not stop.is_set():
            conn.sendall(b"x" * 16384)


def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


class PolicyServer:
    """HTTPS on 127.0.0.1:443, a trustme certificate per SNI name, replies per Host."""

    def __init__(self, ca: trustme.CA, *, port: int = 443, lifetime: float = 600.0) -> None:
        self.ca = ca
        self.rogue = trustme.CA()  # issues for names in `untrusted`
        self.policies: dict[str, PolicyReply] = {}
        self.untrusted: set[str] = set()
        self.stall_handshake = False  # accept, then never answer the ClientHello
        self.requests: list[tuple[str, str]] = []  # (Host, request line)
        self.sni: list[str] = []  # the names clients asked for in their ClientHello
        self._contexts: dict[tuple[str, bool], ssl.SSLContext] = {}
        self._stop = threading.Event()
        self._deadline = time.monotonic() + lifetime
        self.sock = _listen(port)
        self.context = self._context_for("localhost", trusted=True)
        self.context.sni_callback = self._pick
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        self.policies.clear()
        self.untrusted.clear()
        self.stall_handshake = False
        self.requests.clear()
        self.sni.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _context_for(self, name: str, *, trusted: bool) -> ssl.SSLContext:
        key = (name, trusted)
        if key not in self._contexts:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            (self.ca if trusted else self.rogue).issue_cert(name).configure_cert(context)
            self._contexts[key] = context
        return self._contexts[key]

    def _pick(self, conn: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: object) -> None:
        self.sni.append(name or "")
        if name:
            conn.context = self._context_for(name, trusted=name not in self.untrusted)

    def _serve(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if ready:
                with contextlib.suppress(OSError):
                    conn, _ = self.sock.accept()
                    threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        with contextlib.suppress(OSError, ValueError), raw:
            if self.stall_handshake:
                self._stop.wait(30)
                return
            conn = self.context.wrap_socket(raw, server_side=True)
            with conn:
                request = b""
                while b"\r\n\r\n" not in request and len(request) < 16384:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                lines = request.decode("latin-1").split("\r\n")
                host = next(
                    (ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("host:")),
                    "",
                )
                self.requests.append((host, lines[0]))
                reply = self.policies.get(host.lower(), PolicyReply(b"not here", status=404))
                reply.write(conn, self._stop)


def _listen(port: int, *, wait: float = 5.0) -> socket.socket:
    """Listen on 127.0.0.1:`port`; a port another test run holds gets `wait` seconds to free."""
    deadline = time.monotonic() + wait
    while True:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(32)
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        else:
            return sock


@pytest.fixture(scope="session")
def _policy_server_session() -> Iterator[PolicyServer]:
    if os.geteuid() != 0:
        pytest.skip("the MTA-STS policy server needs port 443, which needs root here")
    try:
        server = PolicyServer(trustme.CA())
    except OSError as err:
        pytest.skip(f"127.0.0.1:443 is not free for the MTA-STS policy server: {err}")
    yield server
    server.close()


@pytest.fixture
def policy_server(_policy_server_session: PolicyServer) -> Iterator[PolicyServer]:
    _policy_server_session.reset()
    yield _policy_server_session
    _policy_server_session.reset()
