"""A real Postfix on 127.0.0.1 for tests: its own config directory in a temp dir, nothing leaves.

Fixture ``postfix`` (session-scoped; a start takes ~1 s, a stop well under 10 s) gives a
:class:`PostfixServer` with three smtpd services, each on a free port:

``submission_port``
    STARTTLS required (``smtpd_tls_security_level = encrypt``; certificate from a per-run
    trustme CA, ``ca_pem``), AUTH PLAIN/LOGIN after STARTTLS only, through an auth-only
    Dovecot (``user`` / ``password``). Unauthenticated mail is refused even from
    127.0.0.1 (``permit_sasl_authenticated, reject``), although loopback is in mynetworks.
``plain_port``
    No TLS, no AUTH (loopback relays through mynetworks), ``smtpd_hard_error_limit = 3``:
    the third error reply comes with ``421 4.7.0 ... Error: too many errors`` in the same
    TCP segment, then Postfix closes. The soft limit (10) stays above the hard one on
    purpose: past the soft limit Postfix sleeps ``smtpd_error_sleep_time`` (1 s) before each
    error reply and flushes after it, which slows tests and splits that segment in two
    (``add_service(smtpd_soft_error_limit=2)`` gives that behaviour).
``ratelimit_port``
    Like ``plain_port`` plus ``smtpd_client_connection_rate_limit = RATE_LIMIT`` per
    ``anvil_rate_time_unit`` (60 s), loopback not exempt
    (``smtpd_client_event_limit_exceptions`` empty). The budget is shared by the whole
    session: a test that needs a fresh one calls ``server.add_service(...)``.

Every service answers RCPT with the codes in :data:`REFUSED` (``check_recipient_access``
on a texthash map): ``reject@refused.test`` gets ``554 5.7.1``, ``unknown@refused.test``
``550 5.1.1``, ``later@refused.test`` ``450 4.2.0``, any other ``@refused.test`` address
``554 5.7.1`` (the map's domain entry). Any other recipient is accepted. Refusals later on:
the sender :data:`DATA_REFUSED_SENDER` gets ``554 5.7.1`` to DATA
(``smtpd_data_restrictions``), and a message with the header :data:`REJECT_HEADER` gets
``550 5.7.1`` after the final dot (``header_checks``).

Every transport is ``discard:`` and master.cf has no smtp/lmtp/local service, so accepted
mail is thrown away inside the machine. ``maillog()`` returns Postfix's log (``maillog_file``
through postlogd); ``log_mark()`` / ``wait_log(pattern, since=mark)`` let a test look only at
its own lines, e.g. assert that no ``lost connection after`` line follows a session;
``quiet_mark()`` first waits until the sessions before have logged their end.

``add_service(**overrides) -> port`` appends an smtpd service (plain, with the plain port's
restrictions, then ``-o name=value`` for each override) and reloads Postfix.

Never touches /etc/postfix or the system's Postfix: ``postfix -c DIR start-fg`` with
``queue_directory``/``data_directory`` under DIR, run as root (Postfix's master needs it; CI
runs as root). Without a postfix binary, or not as root, the fixture skips, unless
``MAILCTL_REQUIRE_POSTFIX=1`` (CI) turns that into a failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from servers.dovecot import (
    DovecotServer,
    find_dovecot,
    free_ports,
    start_dovecot,
    stop_dovecot,
)
from servers.logfile import LogFile

HOST = "127.0.0.1"
START_TIMEOUT = 15.0  # seconds until every port listens
STOP_TIMEOUT = 10.0  # seconds for a clean stop before SIGKILL
LOG_TIMEOUT = 5.0  # seconds wait_log waits for a line by default
MAIL_OWNER = "postfix"  # created by the Debian package; Postfix refuses root here
SETGID_GROUP = "postdrop"
MYHOSTNAME = "postfix.mailctl.test"
RATE_LIMIT = 20  # connections per anvil_rate_time_unit on ratelimit_port
SOFT_ERROR_LIMIT = 10  # above the hard limit: no error sleep, see the module docstring
HARD_ERROR_LIMIT = 3
USER = "mailer"
# Distinctive, so a test can search any output for it; no ':' (Dovecot passwd-file).
PASSWORD = "Pf-s3cret!pw#5120"

# RCPT TO address -> (reply code, enhanced code) on every service (check_recipient_access).
REFUSED: dict[str, tuple[int, str]] = {
    "reject@refused.test": (554, "5.7.1"),
    "unknown@refused.test": (550, "5.1.1"),
    "later@refused.test": (450, "4.2.0"),
}
REFUSED_DOMAIN = "refused.test"  # every other address here: 554 5.7.1
DATA_REFUSED_SENDER = "data-refused@example.org"  # MAIL FROM this: DATA gets 554 5.7.1
REJECT_HEADER = "X-Mailctl-Test: reject"  # a message with this header: 550 5.7.1 after the dot


_SESSION_LINE = re.compile(r"smtpd\[(\d+)\]: (connect|disconnect) from ")


def find_postfix() -> str | None:
    """The postfix command: PATH first, then /usr/sbin (not on PATH for non-root users)."""
    found = shutil.which("postfix")
    if found:
        return found
    for candidate in ("/usr/sbin/postfix", "/usr/local/sbin/postfix"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class PostfixServer:
    """A running Postfix and the auth-only Dovecot behind its SASL."""

    host: str
    submission_port: int
    plain_port: int
    ratelimit_port: int
    ca_pem: Path  # trust this (--ca-file) to verify the submission certificate
    root: Path  # holds etc/ (config_directory), queue/, data/, log/ and the SASL socket
    binary: str
    dovecot: DovecotServer
    user: str = USER
    password: str = PASSWORD
    rate_limit: int = RATE_LIMIT
    soft_error_limit: int = SOFT_ERROR_LIMIT
    hard_error_limit: int = HARD_ERROR_LIMIT
    process: subprocess.Popen[bytes] | None = None
    extra_services: list[str] = field(default_factory=list)

    @property
    def config_directory(self) -> Path:
        return self.root / "etc"

    @property
    def maillog_path(self) -> Path:
        return self.root / "log" / "maillog"

    def maillog(self) -> str:
        """Everything Postfix logged so far (maillog_file), plus the master's stderr."""
        parts = []
        for path in (self.maillog_path, self.root / "master.stderr"):
            if path.exists():
                parts.append(path.read_text(encoding="utf-8", errors="replace"))
        return "".join(parts)

    def log_mark(self) -> int:
        """The current end of the maillog: pass it to ``log_since``/``wait_log`` as `since`."""
        return self._logfile.mark()

    @property
    def _logfile(self) -> LogFile:
        return LogFile(self.maillog_path, "Postfix")

    def quiet_mark(self, timeout: float = LOG_TIMEOUT) -> int:
        """``log_mark()`` once every smtpd session so far has logged its disconnect.

        Postfix logs a session's end a moment after the client left; a test that looks
        for "its" disconnect line must not see the one of the test before.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            open_sessions: dict[str, int] = {}
            for pid, kind in _SESSION_LINE.findall(self.maillog()):
                open_sessions[pid] = open_sessions.get(pid, 0) + (1 if kind == "connect" else -1)
            if not any(open_sessions.values()):
                break
            time.sleep(0.05)
        return self.log_mark()

    def log_since(self, mark: int) -> str:
        """Maillog text written after `mark` (from ``log_mark()``)."""
        return self._logfile.since(mark)

    def wait_log(
        self, pattern: str, *, since: int = 0, count: int = 1, timeout: float = LOG_TIMEOUT
    ) -> str:
        """Wait until `pattern` (a regex) matched `count` lines after `since`; return that text.

        Postfix logs a session's ``disconnect from`` line after the client closed, through
        postlogd, so it arrives a moment after the client returned. Raises AssertionError
        with the log on timeout.
        """
        return self._logfile.wait(pattern, since=since, count=count, timeout=timeout)

    def add_service(self, **overrides: str | int) -> int:
        """Add a plain smtpd service with ``-o name=value`` overrides, reload; return its port.

        E.g. ``add_service(smtpd_client_connection_rate_limit=5)`` for a fresh rate budget.
        """
        port = free_ports(1)[0]
        options = {**_PLAIN_OPTIONS, **{name: str(value) for name, value in overrides.items()}}
        self.extra_services.append(_smtpd_line(port, options))
        _write_master_cf(self)
        subprocess.run(
            [self.binary, "-c", str(self.config_directory), "reload"],
            check=True,
            capture_output=True,
            timeout=STOP_TIMEOUT,
        )
        _wait_listening([port], self.process)
        return port


# -- configuration ------------------------------------------------------------------------

# Restrictions of the plain services: loopback relays (mynetworks), the REFUSED map answers.
_PLAIN_OPTIONS = {
    "syslog_name": "postfix/plain",
    "smtpd_tls_security_level": "none",
    "smtpd_sasl_auth_enable": "no",
    "smtpd_soft_error_limit": str(SOFT_ERROR_LIMIT),
    "smtpd_hard_error_limit": str(HARD_ERROR_LIMIT),
}


def _main_cf(config: Path, *, sasl_socket: Path) -> str:
    root = config.parent
    return f"""# Written by tests/servers/postfix.py for one test run.
compatibility_level = 3.6
queue_directory = {root / "queue"}
data_directory = {root / "data"}
mail_owner = {MAIL_OWNER}
setgid_group = {SETGID_GROUP}
myhostname = {MYHOSTNAME}
mydomain = mailctl.test
myorigin = $myhostname
inet_interfaces = {HOST}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# Nothing is local, nothing leaves: every address class goes to discard (master.cf has no
# smtp, lmtp or local service to fall back on).
mydestination =
relay_domains =
default_transport = discard:
relay_transport = discard:
local_transport = discard:
virtual_transport = discard:
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtputf8_enable = yes
maillog_file = {root / "log" / "maillog"}
maillog_file_prefixes = {root / "log"}

smtpd_banner = $myhostname ESMTP mailctl test Postfix
smtpd_recipient_restrictions = check_recipient_access texthash:{config / "recipient_access"}
smtpd_data_restrictions = check_sender_access texthash:{config / "data_access"}
header_checks = regexp:{config / "header_checks"}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
# Rate limits skip loopback unless the exceptions are emptied (FACTS.md).
smtpd_client_event_limit_exceptions =

smtpd_tls_cert_file = {config / "server.pem"}
smtpd_tls_key_file = {config / "server.key"}
smtpd_tls_session_cache_database =
smtpd_tls_loglevel = 0
smtpd_sasl_type = dovecot
smtpd_sasl_path = {sasl_socket}
"""


def _recipient_access() -> str:
    lines = [
        f"{address} {code} {enhanced} refused by the mailctl test policy\n"
        for address, (code, enhanced) in REFUSED.items()
    ]
    lines.append(f"{REFUSED_DOMAIN} 554 5.7.1 refused by the mailctl test policy\n")
    return "".join(lines)


def _smtpd_line(port: int, options: dict[str, str]) -> str:
    line = f"{HOST}:{port} inet n - n - - smtpd\n"
    return line + "".join(f"  -o {name}={value}\n" for name, value in options.items())


def _submission_options() -> dict[str, str]:
    return {
        "syslog_name": "postfix/submission",
        "smtpd_tls_security_level": "encrypt",
        "smtpd_tls_auth_only": "yes",
        "smtpd_sasl_auth_enable": "yes",
        # Loopback is in mynetworks: without this it could relay unauthenticated.
        "smtpd_relay_restrictions": "permit_sasl_authenticated,reject",
        "smtpd_recipient_restrictions": "check_recipient_access,"
        "texthash:$config_directory/recipient_access,permit_sasl_authenticated,reject",
    }


# chroot "n" everywhere: the SASL socket is an absolute path outside any jail.
_INTERNAL_SERVICES = """\
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _write_master_cf(server: PostfixServer) -> None:
    ratelimit = {
        **_PLAIN_OPTIONS,
        "syslog_name": "postfix/ratelimit",
        "smtpd_client_connection_rate_limit": str(RATE_LIMIT),
    }
    text = (
        "# Written by tests/servers/postfix.py for one test run. No smtp/lmtp/local.\n"
        + _smtpd_line(server.submission_port, _submission_options())
        + _smtpd_line(server.plain_port, _PLAIN_OPTIONS)
        + _smtpd_line(server.ratelimit_port, ratelimit)
        + "".join(server.extra_services)
        + _INTERNAL_SERVICES
    )
    (server.config_directory / "master.cf").write_text(text, encoding="utf-8")


# -- starting and stopping ----------------------------------------------------------------


def _listening(ports: list[int]) -> set[int]:
    """Which of `ports` have a LISTEN socket on 127.0.0.1 (from /proc, without connecting:
    a probe connection would count against the rate limit)."""
    wanted = {f"0100007F:{port:04X}": port for port in ports}
    found = set()
    with open("/proc/net/tcp", encoding="ascii") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[1] in wanted:  # 0A: TCP_LISTEN
                found.add(wanted[fields[1]])
    return found


def _wait_listening(ports: list[int], process: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while len(_listening(ports)) < len(ports):
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"postfix master exited with {process.returncode} while starting")
        if time.monotonic() > deadline:
            missing = set(ports) - _listening(ports)
            raise RuntimeError(
                f"postfix ports {sorted(missing)} not listening after {START_TIMEOUT} s"
            )
        time.sleep(0.05)


def _stop(server: PostfixServer) -> None:
    """`postfix stop` (bounded); SIGKILL the master's process group if it is still there,
    also when the stop itself is interrupted (a second Ctrl-C must not leave a Postfix)."""
    process = server.process
    if process is None or process.poll() is not None:
        return
    try:
        subprocess.run(
            [server.binary, "-c", str(server.config_directory), "stop"],
            capture_output=True,
            timeout=STOP_TIMEOUT,
        )
        process.wait(timeout=STOP_TIMEOUT)
    except (subprocess.TimeoutExpired, OSError):
        pass
    finally:
        if process.poll() is None:
            # start_new_session=True made postfix-script a group leader; the master and
            # its daemons stay in that group: it is all ours.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)


def start_postfix() -> PostfixServer:
    """Start an auth-only Dovecot and a Postfix in fresh temp dirs; wait until they listen.

    Stop both with stop_postfix. Raises RuntimeError (with the Postfix log) on failure.
    """
    binary = find_postfix()
    if binary is None:
        raise FileNotFoundError("postfix")
    # Not pytest's tmp_path: smtpd runs as the postfix user and must reach the SASL socket.
    root = Path(tempfile.mkdtemp(prefix="mailctl-postfix-"))
    root.chmod(0o755)
    config = root / "etc"
    for sub in ("etc", "queue", "data", "log", "sasl"):
        (root / sub).mkdir(mode=0o755)
    owner = pwd.getpwnam(MAIL_OWNER)
    os.chown(root / "data", owner.pw_uid, owner.pw_gid)
    sasl_socket = root / "sasl" / "auth"
    try:
        dovecot = start_dovecot(auth_socket=sasl_socket, auth_socket_user=MAIL_OWNER)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    dovecot.add_user(USER, PASSWORD)
    ca = trustme.CA()
    ca_pem = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    cert = ca.issue_cert(HOST, "localhost", MYHOSTNAME)
    cert.cert_chain_pems[0].write_to_path(str(config / "server.pem"))
    cert.private_key_pem.write_to_path(str(config / "server.key"))
    (config / "server.key").chmod(0o600)
    (config / "main.cf").write_text(_main_cf(config, sasl_socket=sasl_socket), encoding="utf-8")
    (config / "recipient_access").write_text(_recipient_access(), encoding="utf-8")
    (config / "data_access").write_text(
        f"{DATA_REFUSED_SENDER} 554 5.7.1 DATA refused by the mailctl test policy\n",
        encoding="utf-8",
    )
    name, _, value = REJECT_HEADER.partition(": ")
    (config / "header_checks").write_text(
        f"/^{name}: {value}$/ REJECT message refused by the mailctl test policy\n",
        encoding="utf-8",
    )
    submission, plain, ratelimit = free_ports(3)
    server = PostfixServer(
        host=HOST,
        submission_port=submission,
        plain_port=plain,
        ratelimit_port=ratelimit,
        ca_pem=ca_pem,
        root=root,
        binary=binary,
        dovecot=dovecot,
    )
    _write_master_cf(server)
    try:
        with (root / "master.stderr").open("ab") as stderr:
            server.process = subprocess.Popen(
                [binary, "-c", str(config), "start-fg"],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        _wait_listening([submission, plain, ratelimit], server.process)
    except BaseException as err:
        log = server.maillog()
        stop_postfix(server)
        raise RuntimeError(f"{err}\n--- postfix log ---\n{log}") from err
    return server


def stop_postfix(server: PostfixServer) -> None:
    """Stop Postfix and its Dovecot (bounded) and remove the temp dirs."""
    try:
        _stop(server)
    finally:
        stop_dovecot(server.dovecot)
        shutil.rmtree(server.root, ignore_errors=True)


def _require_postfix() -> None:
    reason = None
    if find_postfix() is None:
        reason = "postfix not found (apt-get install postfix)"
    elif find_dovecot() is None:
        reason = "dovecot not found (the Postfix fixture authenticates through it)"
    elif os.geteuid() != 0:
        reason = "a test Postfix needs root (its master starts as root)"
    else:
        try:
            pwd.getpwnam(MAIL_OWNER)
        except KeyError:
            reason = f"no {MAIL_OWNER!r} user for mail_owner (installed with the postfix package)"
    if reason is not None:
        if os.environ.get("MAILCTL_REQUIRE_POSTFIX") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def postfix() -> Iterator[PostfixServer]:
    """Postfix with a STARTTLS+AUTH submission port, a plain port and a rate-limited port."""
    _require_postfix()
    server = start_postfix()
    try:
        yield server
    finally:
        stop_postfix(server)
