"""A scripted SMTP server on 127.0.0.1, port 0: each reply is whatever the test says.

For what aiosmtpd will not do: several replies in one TCP segment (``550`` and ``421``
together, as Postfix sends at its hard error limit), unsolicited replies, a reply held
back after the final dot. One thread, one connection at a time, every wait bounded.

``ScriptedSmtpServer(respond)``: ``respond(line)`` gets each command line (without CRLF;
``"."`` for the end of the message data) and returns the bytes to send in ONE write, or
``b""`` to send nothing and keep reading, or None to close the connection (after a
``221`` for QUIT), or a tuple of bytes and floats: writes with pauses (seconds) between
them, e.g. ``(b"250 Ok\r\n", 0.3, b"421 4.4.2 idle\r\n")`` for an unsolicited 421. Replies
containing a ``421`` line close the connection after the write, as RFC 5321 3.8 says,
unless ``linger_after_421`` (then the server keeps reading, to see what the client sends
after a 421). With ``tls`` (a server ``ssl.SSLContext``), a reply to STARTTLS that starts
with ``220`` is followed by the TLS handshake (whatever else that write held went out in
clear text first, like an injection on the path); the plain-text input is discarded.
:func:`standard_reply` answers everything like a plain server.

Attributes: ``port``, ``lines`` (every command line received, all connections), ``events``
(``threading.Event`` per command verb, set on receipt, plus ``"."`` for the end of data),
``stop()``. Use the ``scripted_smtp`` fixture factory, which stops its servers at the end.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest

HOST = "127.0.0.1"
LIFETIME = 30.0  # seconds a server lives at most, whatever the test does
IDLE_TIMEOUT = 15.0  # seconds a connection may stay silent before the server drops it

Reply = bytes | tuple[bytes | float, ...] | None
Respond = Callable[[str], Reply]


def standard_reply(line: str) -> Reply:
    """What a plain, accepting server says (no extensions beyond 8BITMIME and SIZE)."""
    verb = line.split(" ", 1)[0].upper()
    if verb == "EHLO":
        return b"250-scripted.test\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n"
    if verb == "DATA":
        return b"354 go ahead\r\n"
    if line == ".":
        return b"250 2.0.0 Ok: queued as SCRIPTED1\r\n"
    if verb == "QUIT":
        return None  # handled by the server: 221 then close
    return b"250 2.0.0 Ok\r\n"


class ScriptedSmtpServer:
    def __init__(
        self,
        respond: Respond = standard_reply,
        *,
        banner: bytes = b"220 scripted.test ESMTP\r\n",
        linger_after_421: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.respond = respond
        self.tls = tls
        self.banner = banner
        self.linger_after_421 = linger_after_421
        self.lines: list[str] = []
        self.events: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self._listener = socket.socket()
        self._listener.bind((HOST, 0))
        self._listener.listen(4)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()

    def _serve(self) -> None:
        deadline = time.monotonic() + LIFETIME
        while not self._stopping.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, contextlib.suppress(OSError, ssl.SSLError):
                self._converse(conn, deadline, greet=True)

    def _converse(self, conn: socket.socket, deadline: float, *, greet: bool) -> None:
        conn.settimeout(0.2)
        if greet:
            conn.sendall(self.banner)
        buffer = b""
        in_data = False
        idle_since = time.monotonic()
        while not self._stopping.is_set() and time.monotonic() < deadline:
            if b"\r\n" not in buffer:
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    if time.monotonic() - idle_since > IDLE_TIMEOUT:
                        return
                    continue
                if not chunk:
                    return
                idle_since = time.monotonic()
                buffer += chunk
                continue
            raw, buffer = buffer.split(b"\r\n", 1)
            line = raw.decode("utf-8", "replace")
            if in_data:
                if line != ".":
                    continue
                in_data = False
            self.lines.append(line)
            verb = line.split(" ", 1)[0].upper()
            reply = self.respond(line)
            self.events["." if line == "." else verb].set()
            if reply is None:
                if verb == "QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            chunks = reply if isinstance(reply, tuple) else (reply,)
            sent = b""
            for chunk in chunks:
                if isinstance(chunk, float):
                    time.sleep(chunk)
                elif chunk:
                    conn.sendall(chunk)
                    sent += chunk
            if verb == "DATA" and sent.startswith(b"354"):
                in_data = True
            if verb == "STARTTLS" and sent.startswith(b"220") and self.tls is not None:
                # RFC 3207 4.2: the server discards plain-text input; go on over TLS.
                conn.settimeout(5)
                tls_conn = self.tls.wrap_socket(conn, server_side=True)
                try:
                    self._converse(tls_conn, deadline, greet=False)
                finally:
                    tls_conn.close()
                return
            if b"\n421 " in b"\n" + sent and not self.linger_after_421:
                return


ScriptedFactory = Callable[..., ScriptedSmtpServer]


@pytest.fixture(name="scripted_smtp")
def scripted_smtp_fixture() -> Iterator[ScriptedFactory]:
    """``scripted_smtp(respond, **options) -> ScriptedSmtpServer``; stopped at the end."""
    servers: list[ScriptedSmtpServer] = []

    def factory(respond: Respond = standard_reply, **options: object) -> ScriptedSmtpServer:
        server = ScriptedSmtpServer(respond, **options)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()
