"""One bounded HTTPS GET to an address we resolved ourselves (the MTA-STS policy fetch).

Not urllib: it would resolve the host with the system resolver (a chosen nameserver must apply to
the policy host too), follow redirects (RFC 8461 3.3 forbids it) and read without a total
deadline or size cap. Here the caller gives the address, the whole exchange has one deadline,
and head and body each have a byte cap.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

from mailctl.errors import ConnectError, ProtocolError, ResponseLimitError, TimeoutFailure
from mailctl.hosts import endpoint
from mailctl.protocols.tls import client_context, map_ssl_error

HEAD_LIMIT = 16 * 1024
_READ = 16 * 1024


@dataclass(frozen=True)
class HttpsReply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names, first value kept
    body: bytes = b""


class HttpsClient:
    """Verifying GETs: the system CAs, or only those of `ca_file` (built once, so a bad CA
    file is an error before any lookup: NoInputError, NotRegularFileError, ConfigError)."""

    def __init__(self, *, ca_file: Path | None) -> None:
        self._context = client_context(ca_file=ca_file)

    def get(
        self, host: str, address: str, path: str, *, timeout: float, max_body: int, port: int = 443
    ) -> HttpsReply:
        """See `https_get`."""
        return https_get(
            host,
            address,
            path,
            context=self._context,
            timeout=timeout,
            max_body=max_body,
            port=port,
        )


def https_get(
    host: str,
    address: str,
    path: str,
    *,
    context: ssl.SSLContext,
    timeout: float,
    max_body: int,
    port: int = 443,
) -> HttpsReply:
    """GET https://`host``path` from `address`, verifying the certificate for `host`.

    Raises ConnectError (refused, unreachable), CertificateError/TlsError (handshake),
    TimeoutFailure (the whole exchange past `timeout`), ResponseLimitError (head over
    HEAD_LIMIT or body over `max_body`), ProtocolError (not HTTP/1.x).
    """
    where = endpoint(host, port)
    deadline = time.monotonic() + timeout
    try:
        raw = socket.create_connection((address, port), timeout=timeout)
    except TimeoutError as err:
        raise TimeoutFailure(
            f"{where} ({address}) did not accept a connection in {timeout:g} s"
        ) from err
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConnectError(f"cannot connect to {where} ({address}): {reason}") from err
    try:
        with raw:
            _settle(raw, deadline, where, timeout)  # the handshake gets what is left
            try:
                tls = context.wrap_socket(raw, server_hostname=host)
            except TimeoutError as err:
                raise TimeoutFailure(f"TLS handshake with {where} took over {timeout:g} s") from err
            except (ssl.SSLError, ssl.CertificateError) as err:
                raise map_ssl_error(err, host=where) from err
            with tls:
                request = (
                    f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mailctl\r\n"
                    "Accept: text/plain\r\nConnection: close\r\n\r\n"
                )
                _settle(tls, deadline, where, timeout)
                tls.sendall(request.encode("ascii"))
                return _read_reply(tls, deadline, where, timeout, max_body)
    except (ssl.SSLError, ConnectionError) as err:
        raise ProtocolError(f"{where} broke the connection: {type(err).__name__}") from err


def _too_much(message: str) -> ResponseLimitError:
    return ResponseLimitError(
        message, hint="the server sends more than mailctl reads: check what it serves at that URL"
    )


def _settle(sock: socket.socket, deadline: float, where: str, timeout: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutFailure(f"{where} did not answer in {timeout:g} s")
    sock.settimeout(left)


def _read_reply(
    sock: socket.socket, deadline: float, where: str, timeout: float, max_body: int
) -> HttpsReply:
    buffer = bytearray()
    reply: _Partial | None = None
    while True:
        _settle(sock, deadline, where, timeout)
        try:
            chunk = sock.recv(_READ)
        except TimeoutError as err:
            raise TimeoutFailure(f"{where} did not answer in {timeout:g} s") from err
        if chunk:
            buffer += chunk
            # Chunk framing adds a few bytes per chunk; twice the body is a generous cap.
            if len(buffer) > HEAD_LIMIT + 2 * max_body + 64:
                raise _too_much(f"{where} sent over {max_body} bytes of body")
        if reply is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > HEAD_LIMIT:
                    raise _too_much(f"{where} sent an HTTP head over {HEAD_LIMIT} bytes")
                if not chunk:
                    raise ProtocolError(f"{where} closed the connection before a full HTTP head")
                continue
            if end > HEAD_LIMIT:
                raise _too_much(f"{where} sent an HTTP head over {HEAD_LIMIT} bytes")
            reply = _parse_head(bytes(buffer[:end]), where)
            del buffer[: end + 4]
        body = reply.body(buffer, done=not chunk, where=where, max_body=max_body)
        if body is not None:
            return HttpsReply(reply.status, reply.headers, body)
        if not chunk:
            raise ProtocolError(f"{where} closed the connection in the middle of the body")


@dataclass
class _Partial:
    status: int
    headers: dict[str, str]

    def body(self, buffer: bytearray, *, done: bool, where: str, max_body: int) -> bytes | None:
        """The whole body once `buffer` holds it, None while more is to come."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            return _dechunk(bytes(buffer), where, max_body)
        length = self.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise ProtocolError(f"{where} sent a bad Content-Length")
            if int(length) > max_body:
                raise _too_much(f"{where} announced a body of {length} bytes (cap {max_body})")
            return bytes(buffer[: int(length)]) if len(buffer) >= int(length) else None
        if len(buffer) > max_body:
            raise _too_much(f"{where} sent a body over {max_body} bytes")
        return bytes(buffer) if done else None


def _parse_head(head: bytes, where: str) -> _Partial:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"{where} did not answer HTTP/1.x")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    return _Partial(int(parts[1]), headers)


def _dechunk(data: bytes, where: str, max_body: int) -> bytes | None:
    """Decode a chunked body (RFC 9112 7.1) held whole in `data`; None if it is not complete."""
    body = bytearray()
    position = 0
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            if len(data) - position > 64:
                raise ProtocolError(f"{where} sent a bad chunk size line")
            return None
        size_text = data[position:line_end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"{where} sent a bad chunk size") from None
        if size == 0:
            return bytes(body)
        if len(body) + size > max_body:
            raise _too_much(f"{where} sent a body over {max_body} bytes")
        start = line_end + 2
        if len(data) < start + size + 2:
            return None
        body += data[start : start + size]
        position = start + size + 2
