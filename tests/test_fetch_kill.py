"""kill -9 between keeping a message and changing the server loses nothing (real Dovecot,
a real `python -m mailctl fetch` child process).

A small plain-text proxy between the child and Dovecot forwards everything until the
child sends the first command that changes the server (IMAP STORE/EXPUNGE/MOVE/COPY,
POP3 DELE/QUIT); it holds that command, the test kills the child with SIGKILL, and the
message must be both in the Maildir and still on the server. A second run with --new
--delete then removes it (the state says it is kept) without fetching it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.dovecot import DovecotServer, DovecotUser

from mailctl.models import Protocol, Security
from mailctl.protocols.imap import ImapSession
from mailctl.protocols.pop3 import Pop3Session

ROOT = Path(__file__).resolve().parents[1]
CHANGES = {
    Protocol.IMAP: (b" STORE ", b" EXPUNGE", b" MOVE ", b" COPY "),
    Protocol.POP3: (b"DELE ", b"QUIT"),
}
MESSAGE = (
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: precious\r\n"
    b"Message-ID: <precious@example.org>\r\n\r\nkeep me\r\n"
)


class HoldingProxy:
    """Forward one connection to `target`; hold the first server-changing command."""

    def __init__(self, target: tuple[str, int], changes: tuple[bytes, ...]) -> None:
        self.target = target
        self.changes = changes
        self.held = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(30)
        self.port = self.listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self.listener]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            client, _ = self.listener.accept()
            upstream = socket.create_connection(self.target, timeout=30)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()
            self._pipe(client, upstream, True)

    def _pipe(self, source: socket.socket, sink: socket.socket, inspect: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if inspect and any(word in chunk.upper() for word in self.changes):
                    self.held.set()
                    return  # never forwarded
                sink.sendall(chunk)

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@contextlib.contextmanager
def proxy(dovecot: DovecotServer, protocol: Protocol) -> Iterator[HoldingProxy]:
    held = HoldingProxy((dovecot.host, dovecot.port(protocol, Security.NONE)), CHANGES[protocol])
    try:
        yield held
    finally:
        held.close()


def fetch_args(port: int, user: DovecotUser, box: Path, protocol: Protocol) -> list[str]:
    args = [
        sys.executable, "-m", "mailctl", "fetch", "--server", f"127.0.0.1:{port}", "--no-tls",
        "--allow-plaintext-auth", "--user", user.name, "--new", "--maildir", str(box),
        "--delete", "--json",
    ]  # fmt: skip
    return [*args, "--pop3"] if protocol is Protocol.POP3 else args


def on_server(dovecot: DovecotServer, user: DovecotUser, protocol: Protocol) -> int:
    settings = dovecot.settings(protocol, Security.TLS, user=user.name)
    if protocol is Protocol.POP3:
        with Pop3Session.open(settings, secret=lambda: user.password) as pop:
            return pop.stat()[0]
    with ImapSession.open(settings, secret=lambda: user.password) as imap:
        return imap.select("INBOX").exists


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3], ids=["imap", "pop3"])
def test_kill_9_between_keeping_and_deleting_loses_nothing(
    dovecot: DovecotServer, tmp_path: Path, protocol: Protocol
) -> None:
    user = dovecot.add_user()
    dovecot.seed(MESSAGE, user=user.name)
    box = tmp_path / "Mail"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MAILCTL_PASSWORD": user.password,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "MAILCTL_CONFIG": str(tmp_path / "none.toml"),
    }
    with proxy(dovecot, protocol) as held:
        child = subprocess.Popen(
            fetch_args(held.port, user, box, protocol),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert held.held.wait(30), child.communicate(timeout=5)
            # The child sent its first server change: the message must be on disk already.
            [kept] = (box / "new").iterdir()
            assert kept.read_bytes() == MESSAGE
            child.send_signal(signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            child.communicate(timeout=10)
        assert child.returncode == -signal.SIGKILL
    assert on_server(dovecot, user, protocol) == 1  # still there

    # Again, straight to Dovecot: nothing fetched twice, the kept message now removed.
    port = dovecot.port(protocol, Security.NONE)
    again = subprocess.run(
        fetch_args(port, user, box, protocol), env=env, capture_output=True, timeout=60
    )
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)["data"]
    assert data["fetched"] == 0 and data["already_fetched"] == 1 and data["deleted"] == 1
    assert len(list((box / "new").iterdir())) == 1
    assert on_server(dovecot, user, protocol) == 0


def test_ctrl_c_during_watch_keeps_what_was_fetched(dovecot: DovecotServer, tmp_path: Path) -> None:
    """SIGINT while waiting in IDLE: exit 130, the messages kept are in the state (a next
    --new run fetches nothing again), nothing deleted."""
    user = dovecot.add_user()
    dovecot.seed(MESSAGE, user=user.name)
    box = tmp_path / "Mail"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MAILCTL_PASSWORD": user.password,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "MAILCTL_CONFIG": str(tmp_path / "none.toml"),
    }
    port = dovecot.port(Protocol.IMAP, Security.TLS)
    args = [
        sys.executable, "-m", "mailctl", "fetch", "--server", f"127.0.0.1:{port}", "--tls",
        "--ca-file", str(dovecot.ca_pem), "--user", user.name, "--new", "--maildir", str(box),
        "--watch", "--json",
    ]  # fmt: skip
    child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (box / "new").is_dir() or not any((box / "new").iterdir()):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.05)
        time.sleep(0.5)  # into IDLE
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate(timeout=10)
    assert child.returncode == 130, err
    data = json.loads(out)
    assert data["data"]["fetched"] == 1 and data["data"]["interrupted"] is True
    again = subprocess.run([*args[:-2], "--json"], env=env, capture_output=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["data"]["already_fetched"] == 1
    assert on_server(dovecot, user, Protocol.IMAP) == 1
