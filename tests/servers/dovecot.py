"""A real Dovecot (IMAP + POP3) on 127.0.0.1 for tests, everything in a temp dir.

Fixtures (session-scoped; a start takes ~0.1 s, a clean stop ~1 s):

- ``dovecot``: IMAP (STARTTLS) / IMAPS / POP3 (STLS) / POP3S with a certificate from a
  per-run trustme CA (``server.ca_pem``), one passwd-file user (``server.user`` /
  ``server.password``), Maildirs you can seed (``server.seed(...)``).
- ``dovecot_plain``: a second instance with ``ssl = no``: plain IMAP and POP3 only, so
  neither STARTTLS nor STLS is offered.

``start_dovecot(auth_socket=PATH, auth_socket_user=NAME)`` starts an auth-only instance
(``protocols = none``) whose only listener is that UNIX socket: the SASL backend of the
Postfix fixture (tests/servers/postfix.py, ``smtpd_sasl_type = dovecot``).

The server is shared by the whole session: a test that needs an empty or private
mailbox calls ``server.add_user()`` and uses that user.

Import both into a test module (``from servers.dovecot import dovecot``) or list
this module in the root conftest's ``pytest_plugins``. Without a ``dovecot`` binary the
fixtures skip, unless ``MAILCTL_REQUIRE_DOVECOT=1`` (CI) turns that into a failure.
"""

from __future__ import annotations

import contextlib
import grp
import itertools
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trustme

from mailctl.models import Protocol, Security, ServerSettings

if TYPE_CHECKING:
    from servers.logfile import LogFile

LOG_TIMEOUT = 10.0
# Every connection's last line, logged in or not ("imap-login: Info: Disconnected: ...",
# "pop3(user)<pid><id>: Info: Disconnected: Logged out ...").
DISCONNECTED = r"Info: Disconnected"

HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds until every port accepts connections
STOP_TIMEOUT = 10.0  # seconds for a clean shutdown before SIGKILL
DEFAULT_USER = "alice"
# Distinctive, so a test can search any output for it; ':' would break the passwd-file.
DEFAULT_PASSWORD = "Dv-s3cret!pw#8472"

_counter = itertools.count()


def find_dovecot() -> str | None:
    """The dovecot binary: PATH first, then /usr/sbin (not on PATH for non-root users)."""
    found = shutil.which("dovecot")
    if found:
        return found
    for candidate in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass(frozen=True)
class DovecotUser:
    name: str
    password: str
    home: Path

    @property
    def maildir(self) -> Path:
        """The user's INBOX Maildir (``cur``, ``new``, ``tmp``); folders are ``.Name`` inside."""
        return self.home / "Maildir"


@dataclass
class DovecotServer:
    """A running Dovecot. Ports are None when the instance has no such listener."""

    host: str
    imap_port: int  # IMAP; offers STARTTLS when `tls`
    pop3_port: int  # POP3; offers STLS when `tls`
    imaps_port: int | None  # implicit TLS
    pop3s_port: int | None  # implicit TLS
    tls: bool
    ca_pem: Path  # trust this (ServerSettings.ca_file) to verify the server certificate
    root: Path
    user: str = DEFAULT_USER
    password: str = DEFAULT_PASSWORD
    mail_uid: int = field(default_factory=os.getuid)
    mail_gid: int = field(default_factory=os.getgid)
    auth_uid: int = field(default_factory=os.getuid)  # the auth process reads passwd.d/
    auth_gid: int = field(default_factory=os.getgid)
    process: subprocess.Popen[bytes] | None = None
    users: dict[str, DovecotUser] = field(default_factory=dict)

    # -- connection settings -------------------------------------------------------------

    def port(self, protocol: Protocol, security: Security) -> int:
        """The port serving `protocol` with `security` (STARTTLS and NONE share one)."""
        if protocol is Protocol.IMAP:
            port = self.imaps_port if security is Security.TLS else self.imap_port
        elif protocol is Protocol.POP3:
            port = self.pop3s_port if security is Security.TLS else self.pop3_port
        else:
            raise ValueError(f"Dovecot does not serve {protocol}")
        if port is None:
            raise ValueError(f"this Dovecot has no {protocol.value} listener for {security}")
        return port

    def settings(
        self, protocol: Protocol, security: Security, *, user: str | None = None, **overrides: Any
    ) -> ServerSettings:
        """ServerSettings for this server, trusting its CA, logging in as `user` (default user).

        Pass ``username=None`` to skip the login, any other ServerSettings field to override.
        """
        base = ServerSettings(
            host=self.host,
            port=self.port(protocol, security),
            security=security,
            username=user or self.user,
            ca_file=self.ca_pem,
        )
        return replace(base, **overrides)

    # -- users and mail ------------------------------------------------------------------

    def passwd_file(self, user: str) -> Path:
        # One file per user: Dovecot re-checks a shared passwd-file at most once a
        # second, so a user added right after a login would stay unknown for a while.
        return self.root / "passwd.d" / user

    def add_user(self, name: str | None = None, password: str | None = None) -> DovecotUser:
        """Create a user (unique name by default) with an empty INBOX; usable immediately."""
        name = name or f"user{next(_counter)}-{secrets.token_hex(3)}"
        password = password or f"pw-{secrets.token_urlsafe(12)}"
        if name.startswith(".") or not all(ch.isalnum() or ch in "._-" for ch in name):
            raise ValueError(f"test user names are limited to [A-Za-z0-9._-]: {name!r}")
        if any(ch in password for ch in ":\r\n\0"):
            raise ValueError("a passwd-file password cannot contain ':', CR, LF or NUL")
        user = DovecotUser(name=name, password=password, home=self.root / "mail" / name)
        for sub in ("cur", "new", "tmp"):
            self._mkdir(user.maildir / sub)
        passwd = self.passwd_file(name)
        if not passwd.parent.exists():
            passwd.parent.mkdir(mode=0o700)
            self._chown(passwd.parent, self.auth_uid, self.auth_gid)
        passwd.write_text(f"{name}:{{PLAIN}}{password}::::::\n", encoding="utf-8")
        self._chown(passwd, self.auth_uid, self.auth_gid)
        self.users[name] = user
        return user

    def maildir(self, user: str | None = None, folder: str = "INBOX") -> Path:
        """The Maildir holding IMAP folder `folder` of `user`.

        Maildir++ layout: the hierarchy separator is ``.`` (``Archive.2024``), a folder
        lives in ``.Archive.2024`` below the INBOX Maildir.
        """
        base = self.users[user or self.user].maildir
        if folder.upper() == "INBOX":
            return base
        if not folder.isascii() or "/" in folder or folder.startswith("."):
            raise ValueError(f"seed folders are ASCII names like 'Archive.2024': {folder!r}")
        return base / f".{folder}"

    def seed(
        self,
        message: bytes,
        *,
        user: str | None = None,
        folder: str = "INBOX",
        flags: str = "",
    ) -> Path:
        """Deliver `message` (raw bytes, stored as given) into a Maildir folder; return its path.

        With no `flags` the message is new (unseen, in ``new/``); otherwise it goes to
        ``cur/`` with Maildir flags, e.g. ``"S"`` seen, ``"FS"`` flagged and seen.
        Written to ``tmp/`` and renamed, as Maildir delivery requires.
        """
        target = self.maildir(user, folder)
        if not (target / "cur").is_dir():
            for sub in ("cur", "new", "tmp"):
                self._mkdir(target / sub)
            (target / "maildirfolder").touch()
            self._chown(target / "maildirfolder")
        now = time.time()
        base = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(_counter)}.mailctl-test"
        temporary = target / "tmp" / base
        temporary.write_bytes(message)
        self._chown(temporary)
        if flags:
            final = target / "cur" / f"{base}:2,{''.join(sorted(set(flags)))}"
        else:
            final = target / "new" / base
        temporary.rename(final)
        return final

    def log(self) -> str:
        """Everything Dovecot logged so far (for assertion messages)."""
        parts = []
        for name in ("dovecot.log", "dovecot.stderr"):
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
        return "".join(parts)

    def log_mark(self) -> int:
        """The current end of dovecot.log: pass it to ``log_since``/``wait_log`` as `since`."""
        return self._logfile.mark()

    def log_since(self, mark: int) -> str:
        """dovecot.log text written after `mark` (from ``log_mark()``)."""
        return self._logfile.since(mark)

    def wait_log(
        self, pattern: str, *, since: int = 0, count: int = 1, timeout: float = LOG_TIMEOUT
    ) -> str:
        """Wait until `pattern` (a regex) matched `count` times after `since`; return that text.

        Dovecot's processes log through its log process, so a line (a login, a disconnect)
        lands a moment after the client saw the server's answer: reading the log at once
        races it. A test that asserts a line is *absent* waits for the connection's
        ``Disconnected`` line first (``DISCONNECTED``), so its check can fail.
        Raises AssertionError with the log on timeout.
        """
        return self._logfile.wait(pattern, since=since, count=count, timeout=timeout)

    @property
    def _logfile(self) -> LogFile:
        # Imported here: the README runs this file as a script (`python tests/servers/dovecot.py`),
        # where the `servers` package is not importable and no test reads the log.
        from servers.logfile import LogFile

        return LogFile(self.root / "dovecot.log", "Dovecot")

    def _mkdir(self, path: Path) -> None:
        missing = []
        current = path
        while not current.exists():
            missing.append(current)
            current = current.parent
        path.mkdir(parents=True, exist_ok=True)
        for created in missing:
            self._chown(created)

    def _chown(self, path: Path, uid: int | None = None, gid: int | None = None) -> None:
        """As root, give `path` to the mail user (or `uid`/`gid`): Dovecot workers are not root."""
        if os.geteuid() == 0:
            os.chown(
                path,
                self.mail_uid if uid is None else uid,
                self.mail_gid if gid is None else gid,
            )


# -- starting and stopping ----------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """Ports the kernel considers free now (all bound at once, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _accounts() -> dict[str, str]:
    """Which system users run which Dovecot processes.

    As root: the master as root; auth and anvil as the ``dovecot`` user, as Debian runs
    them (not root, so that the auth-penalty socket can be closed to them, see
    _config); login processes as ``dovenull`` (Dovecot refuses root there); mail
    processes as ``nobody`` (Dovecot refuses uid 0 from the userdb). Not root:
    everything runs as the current user.
    """
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.getuid())
        return {
            "internal_user": me.pw_name,
            "internal_group": grp.getgrgid(os.getgid()).gr_name,
            "login_user": me.pw_name,
            "mail_uid": str(me.pw_uid),
            "mail_gid": str(os.getgid()),
        }
    internal = pwd.getpwnam("root")
    with contextlib.suppress(KeyError):
        internal = pwd.getpwnam("dovecot")
    login_user = "nobody"
    with contextlib.suppress(KeyError):
        login_user = pwd.getpwnam("dovenull").pw_name
    nobody = pwd.getpwnam("nobody")
    return {
        "internal_user": internal.pw_name,
        "internal_group": grp.getgrgid(internal.pw_gid).gr_name,
        "login_user": login_user,
        "mail_uid": str(nobody.pw_uid),
        "mail_gid": str(nobody.pw_gid),
    }


def _auth_listener(path: Path, user: str) -> str:
    """The auth service's UNIX listener for an SMTP server's SASL (Postfix smtpd_sasl_path)."""
    group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
    return (
        "service auth {\n"
        f"  unix_listener {path} {{\n"
        f"    mode = 0660\n    user = {user}\n    group = {group}\n"
        "  }\n}\n"
    )


def _config(
    root: Path,
    *,
    tls: bool,
    ports: dict[str, int],
    accounts: dict[str, str],
    auth_socket: Path | None = None,
    auth_socket_user: str = "",
) -> str:
    non_root = os.geteuid() != 0
    imap_listeners = f"  inet_listener imap {{\n    port = {ports['imap']}\n  }}\n"
    pop3_listeners = f"  inet_listener pop3 {{\n    port = {ports['pop3']}\n  }}\n"
    if tls:
        imap_listeners += (
            f"  inet_listener imaps {{\n    port = {ports['imaps']}\n    ssl = yes\n  }}\n"
        )
        pop3_listeners += (
            f"  inet_listener pop3s {{\n    port = {ports['pop3s']}\n    ssl = yes\n  }}\n"
        )
    # chroot needs root; an unprivileged master must not try it.
    chroot = "  chroot =\n" if non_root else ""
    ssl_lines = (
        f"ssl = yes\nssl_cert = <{root / 'server.pem'}\nssl_key = <{root / 'server.key'}\n"
        "ssl_min_protocol = TLSv1.2\n"
        if tls
        else "ssl = no\n"
    )
    protocols = "imap pop3"
    services = f"""service imap-login {{
{imap_listeners}{chroot}}}
service pop3-login {{
{pop3_listeners}{chroot}}}
"""
    if auth_socket is not None:
        # Auth only: no IMAP/POP3 listener, the SASL socket is the whole server.
        protocols = "none"
        services = _auth_listener(auth_socket, auth_socket_user)
    return f"""# Written by tests/servers/dovecot.py for one test run.
protocols = {protocols}
listen = {HOST}
base_dir = {root / "run"}
state_dir = {root / "state"}
instance_name = mailctl-test-{root.name}
log_path = {root / "dovecot.log"}
info_log_path = {root / "dovecot.log"}
debug_log_path = {root / "dovecot.log"}
auth_verbose = yes

default_internal_user = {accounts["internal_user"]}
default_internal_group = {accounts["internal_group"]}
default_login_user = {accounts["login_user"]}
mail_uid = {accounts["mail_uid"]}
mail_gid = {accounts["mail_gid"]}
first_valid_uid = 1
first_valid_gid = 0

{ssl_lines}
# Loopback counts as secure to Dovecot anyway (FACTS.md); say so explicitly.
disable_plaintext_auth = no
auth_mechanisms = plain login
# Dovecot delays every failed login by 2 s; tests of wrong passwords need no tarpit.
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root / "passwd.d"}/%u
}}
userdb {{
  driver = static
  args = home={root / "mail"}/%u
}}
mail_location = maildir:~/Maildir
mail_fsync = never

{services}service anvil {{
{chroot}  # Dovecot delays every login from an IP that failed before (up to 15 s); the
  # auth process skips that when it cannot open this socket. Tests fail logins on purpose.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def _wait_ready(process: subprocess.Popen[bytes], ports: list[int]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    pending = list(ports)
    while pending:
        if process.poll() is not None:
            raise RuntimeError(f"dovecot exited with {process.returncode} while starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"dovecot ports {pending} not listening after {START_TIMEOUT} s")
        try:
            with socket.create_connection((HOST, pending[0]), timeout=0.5):
                pass
        except OSError:
            time.sleep(0.05)
        else:
            pending.pop(0)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the master (it stops its children), then SIGKILL its process group if stuck."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # start_new_session=True made the master a group leader: this group is ours.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)


def _wait_socket(process: subprocess.Popen[bytes], path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not path.is_socket():
        if process.poll() is not None:
            raise RuntimeError(f"dovecot exited with {process.returncode} while starting")
        if time.monotonic() > deadline:
            raise RuntimeError(f"dovecot socket {path} not there after {START_TIMEOUT} s")
        time.sleep(0.02)


def start_dovecot(
    *, tls: bool = True, auth_socket: Path | None = None, auth_socket_user: str | None = None
) -> DovecotServer:
    """Start a Dovecot in a fresh temp dir and wait until it listens; stop it with stop_dovecot.

    With `auth_socket`, an auth-only instance (no IMAP/POP3 ports; `tls` ignored) serving
    SASL on that UNIX socket, owned by `auth_socket_user` (default: the current user).
    Raises RuntimeError (with the Dovecot log) if it does not come up.
    """
    if auth_socket is not None:
        tls = False
    binary = find_dovecot()
    if binary is None:
        raise FileNotFoundError("dovecot")
    # Not pytest's tmp_path: as root the mail processes run as nobody and must reach
    # their Maildirs, and UNIX socket paths under base_dir must stay short.
    root = Path(tempfile.mkdtemp(prefix="mailctl-dovecot-"))
    root.chmod(0o755)
    accounts = _accounts()
    ca = trustme.CA()  # also for the plain instance: clients still build a valid context
    ca_pem = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    if tls:
        cert = ca.issue_cert(HOST, "localhost")
        cert.cert_chain_pems[0].write_to_path(str(root / "server.pem"))
        cert.private_key_pem.write_to_path(str(root / "server.key"))
        (root / "server.key").chmod(0o600)
    names = ["imap", "pop3", "imaps", "pop3s"] if tls else ["imap", "pop3"]
    server = DovecotServer(
        host=HOST,
        imap_port=0,
        pop3_port=0,
        imaps_port=None,
        pop3s_port=None,
        tls=tls,
        ca_pem=ca_pem,
        root=root,
        mail_uid=int(accounts["mail_uid"]),
        auth_uid=pwd.getpwnam(accounts["internal_user"]).pw_uid,
        auth_gid=grp.getgrnam(accounts["internal_group"]).gr_gid,
        mail_gid=int(accounts["mail_gid"]),
    )
    server._mkdir(root / "mail")
    (root / "mail").chmod(0o700)
    server.add_user(DEFAULT_USER, DEFAULT_PASSWORD)
    config_path = root / "dovecot.conf"
    last_error: Exception | None = None
    for _attempt in range(3):  # another process may grab a port between probe and bind
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        server.imap_port, server.pop3_port = ports["imap"], ports["pop3"]
        server.imaps_port, server.pop3s_port = ports.get("imaps"), ports.get("pop3s")
        config_path.write_text(
            _config(
                root,
                tls=tls,
                ports=ports,
                accounts=accounts,
                auth_socket=auth_socket,
                auth_socket_user=auth_socket_user or pwd.getpwuid(os.getuid()).pw_name,
            )
        )
        with (root / "dovecot.stderr").open("ab") as stderr:
            process = subprocess.Popen(
                [binary, "-F", "-c", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        try:
            if auth_socket is not None:
                _wait_socket(process, auth_socket)
            else:
                _wait_ready(process, list(ports.values()))
        except RuntimeError as err:
            _stop(process)
            last_error = err
            if "Address already in use" not in server.log():
                break
            continue
        server.process = process
        return server
    log = server.log()
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"{last_error}\n--- dovecot log ---\n{log}")


def stop_dovecot(server: DovecotServer) -> None:
    """Stop the server (bounded) and remove its temp dir."""
    if server.process is not None:
        _stop(server.process)
    shutil.rmtree(server.root, ignore_errors=True)


def _require_binary() -> None:
    if find_dovecot() is None:
        reason = "dovecot binary not found (apt-get install dovecot-imapd dovecot-pop3d)"
        if os.environ.get("MAILCTL_REQUIRE_DOVECOT") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """Dovecot with IMAP+STARTTLS, IMAPS, POP3+STLS and POP3S, certificate from a trustme CA."""
    _require_binary()
    server = start_dovecot(tls=True)
    try:
        yield server
    finally:
        stop_dovecot(server)


@pytest.fixture(scope="session")
def dovecot_plain() -> Iterator[DovecotServer]:
    """Dovecot with ``ssl = no``: plain IMAP and POP3 that offer neither STARTTLS nor STLS."""
    _require_binary()
    server = start_dovecot(tls=False)
    try:
        yield server
    finally:
        stop_dovecot(server)


# -- a throwaway Dovecot for the README's "Fetching mail" walk-through ---------------------

_DEMO_MESSAGES = (
    b"From: Alice <alice@example.org>\r\nTo: you@example.org\r\nSubject: Lunch?\r\n"
    b"Message-ID: <lunch@example.org>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\n"
    b"Noon at the usual place?\r\n",
    b"From: =?utf-8?q?Bj=C3=B6rn?= <bjorn@example.org>\r\nTo: you@example.org\r\n"
    b"Subject: =?utf-8?q?R=C3=A9sum=C3=A9_attached?=\r\nMessage-ID: <cv@example.org>\r\n"
    b"Date: Fri, 27 Nov 2026 11:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nSee the attachment.\r\n--b1\r\n"
    b'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="cv.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJWZha2UK\r\n--b1--\r\n",
    b"From: News <news@example.org>\r\nTo: you@example.org\r\nSubject: Weekly digest\r\n"
    b"Message-ID: <digest@example.org>\r\nDate: Fri, 27 Nov 2026 12:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello</p>\r\n",
)


def _demo(env_file: Path) -> None:
    """Start a Dovecot, seed the demo mail, write its settings as shell variables to
    `env_file`, then run until SIGTERM or Ctrl-C."""
    server = start_dovecot(tls=True)
    try:
        for raw in _DEMO_MESSAGES:
            server.seed(raw)
        server.seed(_DEMO_MESSAGES[0].replace(b"lunch@", b"old@"), flags="S")
        lines = [
            f"DOVECOT_IMAPS=127.0.0.1:{server.imaps_port}",
            f"DOVECOT_POP3S=127.0.0.1:{server.pop3s_port}",
            f"DOVECOT_CA={server.ca_pem}",
            f"DOVECOT_USER={server.user}",
            f"MAILCTL_PASSWORD='{server.password}'",
            "export MAILCTL_PASSWORD",
        ]
        temp = env_file.with_name(env_file.name + ".tmp")
        temp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        temp.rename(env_file)  # whole or absent: the walk-through waits for it
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        with contextlib.suppress(KeyboardInterrupt):
            while server.process is not None and server.process.poll() is None:
                time.sleep(0.2)
    finally:
        stop_dovecot(server)


if __name__ == "__main__":
    import sys

    _demo(Path(sys.argv[1] if len(sys.argv) > 1 else "dovecot.env"))
