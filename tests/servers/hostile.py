"""Hostile IMAP/POP3 servers for tests: one connection each, bounded in time and bytes sent.

A test writes the conversation as a function of a `Peer` (read a command, flood, trickle,
stall); `HostileServer` runs it in a thread on 127.0.0.1 port 0, optionally behind implicit
TLS, and records what happened: the lines received and whether (and when) the client closed
the connection. Every loop here stops at `MAX_SEND` bytes, at the server's lifetime, or
when the client goes away, whichever comes first.

`run_mailctl` runs `python -m mailctl` in a child process under an address-space limit (so a
regression cannot take the machine's memory with it) and reports its exit code, output,
wall time and peak RSS (from wait4 in a small wrapper process, for mailctl alone).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_SEND = 50 * 1024 * 1024  # what any hostile server sends at most, then it closes
LIFETIME = 30.0  # seconds a hostile server lives at most
CHILD_ADDRESS_SPACE = 1 << 30  # RLIMIT_AS for the mailctl child: 1 GiB


class PeerGone(Exception):
    """The client closed the connection (or the server's budget ran out)."""


class Peer:
    """The server side of one connection, as the conversation script sees it."""

    def __init__(self, conn: socket.socket, server: HostileServer) -> None:
        self._conn = conn
        self._server = server
        self._pending = b""

    def send(self, data: bytes) -> None:
        """Send everything or raise PeerGone (client closed, budget or lifetime used up)."""
        server = self._server
        if server.sent + len(data) > MAX_SEND or time.monotonic() > server.ends:
            raise PeerGone("budget used up")
        try:
            self._conn.sendall(data)
        except TimeoutError as err:  # the client stopped reading: did it hang up (FIN)?
            if self._fin_received():
                server.mark_closed()
            raise PeerGone("client stopped reading") from err
        except OSError as err:
            server.mark_closed()
            raise PeerGone("client closed") from err
        server.sent += len(data)

    def line(self) -> bytes:
        """One line from the client (CRLF stripped); PeerGone at EOF."""
        while b"\n" not in self._pending:
            chunk = self._recv()
            if chunk is None:
                continue
            if not chunk:
                self._server.mark_closed()
                raise PeerGone("client closed")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        text = line.rstrip(b"\r")
        self._server.received.append(text)
        return text

    def has_pending(self, wait: float = 0.0) -> bool:
        """Whether the client sent more than was read (checking up to `wait` seconds)."""
        if self._pending:
            return True
        deadline = time.monotonic() + wait
        while True:
            chunk = self._recv_within(max(0.0, deadline - time.monotonic()))
            if chunk:
                self._pending += chunk
                return True
            if chunk == b"" or time.monotonic() >= deadline:
                return False

    def _recv_within(self, seconds: float) -> bytes | None:
        previous = self._conn.gettimeout()
        self._conn.settimeout(max(seconds, 0.001))
        try:
            return self._recv()
        finally:
            self._conn.settimeout(previous)

    def command(self) -> tuple[bytes, bytes]:
        """(tag, upper-case command name) of the next IMAP command line."""
        tag, _, rest = self.line().partition(b" ")
        return tag, rest.split(b" ", 1)[0].upper()

    def flood(self, unit: bytes) -> None:
        """Send `unit` again and again until the client goes away or the budget is used."""
        chunk = unit * max(1, 65536 // len(unit))
        while True:
            self.send(chunk)

    def trickle(self, data: bytes, *, interval: float, repeat: bool = False) -> None:
        """Send `data` one byte every `interval` seconds (forever with `repeat`)."""
        while True:
            for value in data:
                self.send(bytes([value]))
                time.sleep(interval)
            if not repeat:
                return

    def stall(self) -> None:
        """Say nothing; return when the client closes or the server's lifetime ends."""
        while True:
            chunk = self._recv()
            if chunk == b"":
                self._server.mark_closed()
                return

    def trickle_tls_handshake(self, context: ssl.SSLContext, *, interval: float) -> None:
        """Be the server side of a TLS handshake, sending our half one byte per `interval`."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)
        while True:
            with contextlib.suppress(ssl.SSLWantReadError):
                tls.do_handshake()
            for value in outgoing.read():
                self.send(bytes([value]))
                time.sleep(interval)
            chunk = self._recv()
            if chunk == b"":
                self._server.mark_closed()
                return
            if chunk:
                incoming.write(chunk)

    def _fin_received(self) -> bool:
        if isinstance(self._conn, ssl.SSLSocket):
            return False  # no MSG_PEEK through TLS
        try:
            return self._conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.close()

    def start_tls(self, context: ssl.SSLContext) -> None:
        """Switch this connection to TLS (the server side of STARTTLS/STLS)."""
        self._conn = context.wrap_socket(self._conn, server_side=True)
        self._conn.settimeout(1.0)

    def _recv(self) -> bytes | None:
        """Bytes received, b"" at EOF, None when nothing came within the socket timeout."""
        if time.monotonic() > self._server.ends:
            raise PeerGone("lifetime over")
        try:
            return self._conn.recv(65536)
        except TimeoutError:
            return None
        except OSError:
            return b""


Script = Callable[[Peer], None]


class HostileServer:
    """Accept one connection on 127.0.0.1 and run `script` on it in a thread."""

    def __init__(
        self, script: Script, *, tls: ssl.SSLContext | None = None, lifetime: float = LIFETIME
    ) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self._listener.settimeout(lifetime)
        self.port: int = self._listener.getsockname()[1]
        self.ends = time.monotonic() + lifetime
        self.sent = 0
        self.received: list[bytes] = []
        self.closed_at: float | None = None
        self.error: BaseException | None = None
        self._closed = threading.Event()
        self._script = script
        self._tls = tls
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def mark_closed(self) -> None:
        if self.closed_at is None:
            self.closed_at = time.monotonic()
        self._closed.set()

    def wait_closed(self, timeout: float) -> bool:
        """True once the client closed its side of the connection (within `timeout`)."""
        return self._closed.wait(timeout)

    def _run(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        with contextlib.ExitStack() as stack:
            stack.callback(conn.close)
            conn.settimeout(1.0)
            try:
                if self._tls is not None:
                    conn = self._tls.wrap_socket(conn, server_side=True)
                    stack.callback(conn.close)
                peer = Peer(conn, self)
                stack.callback(peer.close)  # the socket it ends with (TLS after STARTTLS)
                self._script(peer)
            except PeerGone:
                pass
            except (OSError, ssl.SSLError):
                self.mark_closed()
            except BaseException as err:  # a bug in the script: let the test see it
                self.error = err

    def close(self) -> None:
        self.ends = 0.0
        self._listener.close()
        self._thread.join(LIFETIME)


@contextlib.contextmanager
def hostile(script: Script, **kwargs: object) -> Iterator[HostileServer]:
    server = HostileServer(script, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.close()
    if server.error is not None:
        raise server.error


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mib: float


# The wrapper forks mailctl and reports the child's own peak RSS. Measured from pytest
# directly, ru_maxrss would include pytest's: Linux carries the high-water mark of the
# address space a child was (v)forked from across exec.
_LIMITED_EXEC = """
import os, resource, sys
limit, report, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.execv(sys.executable, [sys.executable, "-m", "mailctl", *args])
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as out:
    out.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
os._exit(code if code >= 0 else 128 - code)
"""


def run_mailctl(*args: str, env: dict[str, str], timeout: float = 60.0) -> Run:
    """Run mailctl in a child with a 1 GiB address-space cap; measure its time and peak RSS."""
    # No secret from the environment: a test decides where a password could come from.
    inherited = {key: value for key, value in os.environ.items() if key != "MAILCTL_PASSWORD"}
    full_env = {**inherited, "NO_COLOR": "1", **env}
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as scratch,
    ):
        report = Path(scratch) / "maxrss"
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-c", _LIMITED_EXEC, str(CHILD_ADDRESS_SPACE), str(report), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=full_env,
            start_new_session=True,  # one process group: a timeout kills mailctl too
        )
        try:
            returncode = process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise AssertionError(f"mailctl did not finish within {timeout} s") from None
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return Run(
            returncode=returncode,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            seconds=seconds,
            max_rss_mib=int(report.read_text()) / 1024,  # Linux: KiB
        )


def write_config(path: Path, protocol: str, **block: object) -> Path:
    """A config file with one account `h` holding one server block; mode 0600 in a 0700 dir."""
    lines = [f"[accounts.h.{protocol}]"]
    for key, value in block.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        else:
            escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{key} = "{escaped}"')
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path
