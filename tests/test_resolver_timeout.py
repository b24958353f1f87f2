"""Every lookup through the system resolver ends within the command's own time budget.

getaddrinfo has no timeout of its own: a name server that never answers holds it for
resolv.conf's ``timeout:`` x ``attempts:`` (30 s here). Each command runs in a private mount
namespace whose /etc/resolv.conf names a silent UDP "name server" on loopback, so the real
glibc resolver is the one that hangs; mailctl must give up at its own deadline, say why in
one line and exit 75 (try again later), or for probe report it as a finding.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailctl.protocols.resolve import (
    ResolverTimeout,
    connect_within,
    lookup,
    resolve_addresses,
)

# Its own loopback address per run (all of 127/8 is loopback): runs side by side never meet.
SILENT_NAMESERVER = f"127.77.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}"
GLIBC_WAIT = 30  # resolv.conf below: one try of 30 s
BUDGET = 2.0  # what each command is given
HOST = "mail.silent.test"


def _can_unshare() -> str | None:
    if os.geteuid() != 0:
        return "needs root to bind-mount a private /etc/resolv.conf"
    if shutil.which("unshare") is None:
        return "needs unshare(1) (util-linux)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    if probe.returncode != 0:
        return f"unshare --mount is not allowed here: {probe.stderr.decode(errors='replace')}"
    return None


pytestmark = pytest.mark.skipif(bool(why := _can_unshare()), reason=why or "")


@pytest.fixture(scope="module")
def silent_resolv_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A resolv.conf whose only name server takes the query and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        server.bind((SILENT_NAMESERVER, 53))  # bound, so no ICMP "unreachable" ends it early
    except OSError:
        server.close()
        raise
    conf = tmp_path_factory.mktemp("resolv") / "resolv.conf"
    conf.write_text(
        f"nameserver {SILENT_NAMESERVER}\noptions timeout:{GLIBC_WAIT} attempts:1\n",
        encoding="ascii",
    )
    try:
        yield conf
    finally:
        server.close()


def in_namespace(conf: Path, tmp_path: Path, *argv: str) -> tuple[int, str, str, float]:
    """Run `argv` with `conf` as /etc/resolv.conf (this namespace only): rc, out, err, seconds."""
    env = os.environ | {
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(sys.path),
        "COLUMNS": "200",
    }
    script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
    started = time.monotonic()
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(conf), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=GLIBC_WAIT + 30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def mailctl(conf: Path, tmp_path: Path, *args: str) -> tuple[int, str, str, float]:
    return in_namespace(conf, tmp_path, sys.executable, "-m", "mailctl", *args)


def assert_in_time(seconds: float) -> None:
    # Python's start-up plus the budget; glibc alone would take GLIBC_WAIT.
    assert seconds < BUDGET + 8 < GLIBC_WAIT, seconds


def test_the_namespace_really_hangs_getaddrinfo(silent_resolv_conf: Path) -> None:
    """The premise: without mailctl's bound, the lookup outlasts every budget below."""
    code = (
        "import socket, sys\ntry:\n    socket.getaddrinfo(sys.argv[1], 25)\nexcept OSError: pass\n"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(
            [
                "unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(silent_resolv_conf),
                sys.executable, "-c", code, HOST,
            ],
            timeout=BUDGET + 8,
            check=False,
            capture_output=True,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("command", "what"),
    [
        (
            ["send", "--server", f"{HOST}:2525", "--no-tls", "--from", "a@example.org",
             "--to", "b@example.org", "--subject", "s", "--body", "b"],
            f"cannot connect to {HOST}:2525",
        ),
        (
            ["fetch", "--server", f"{HOST}:993", "--user", "someone"],
            f"cannot connect to IMAP server {HOST}:993",
        ),
        (
            ["fetch", "--server", f"{HOST}:995", "--pop3", "--user", "someone"],
            f"cannot connect to POP3 server {HOST}:995",
        ),
        (
            ["bench", "--server", f"{HOST}:2525", "--no-tls", "-n", "1"],
            f"cannot connect to {HOST!r}",
        ),
    ],
    ids=["send-smtp", "fetch-imap", "fetch-pop3", "bench-loopback-check"],
)  # fmt: skip
def test_a_silent_resolver_is_a_timeout_within_the_budget(
    silent_resolv_conf: Path, tmp_path: Path, command: list[str], what: str
) -> None:
    rc, out, err, seconds = mailctl(
        silent_resolv_conf, tmp_path, *command, "--connect-timeout", f"{BUDGET:g}"
    )
    assert rc == 75, (out, err)
    [line] = err.strip().splitlines()
    assert line.startswith(f"mailctl: {what}: the system resolver gave no answer for {HOST}")
    assert "/etc/resolv.conf" in line
    assert_in_time(seconds)


def test_send_json_says_timeout(silent_resolv_conf: Path, tmp_path: Path) -> None:
    rc, out, err, seconds = mailctl(
        silent_resolv_conf, tmp_path, "--json", "send", "--server", f"{HOST}:2525",
        "--no-tls", "--from", "a@example.org", "--to", "b@example.org", "--subject", "s",
        "--body", "b", "--connect-timeout", f"{BUDGET:g}",
    )  # fmt: skip
    assert rc == 75, (out, err)
    document = json.loads(out)
    assert document["exit_code"] == 75
    [error] = document["errors"]
    assert error["code"] == "timeout", document
    assert error["message"].endswith(f"the system resolver gave no answer for {HOST} in 2 s")
    assert_in_time(seconds)


def test_probe_reports_the_resolver_not_the_host(silent_resolv_conf: Path, tmp_path: Path) -> None:
    rc, out, err, seconds = mailctl(
        silent_resolv_conf, tmp_path, "probe", f"{HOST}:25", "--timeout", f"{BUDGET:g}", "--json"
    )
    assert rc == 74, (out, err)  # no host could be probed
    [host] = json.loads(out)["data"]["hosts"]
    [finding] = [f for f in host["findings"] if f["code"] == "connect.failed"]
    assert "the system resolver gave no answer" in finding["message"], finding
    assert "host not found" not in finding["message"], finding
    assert "name servers" in finding["fix"], finding
    assert host["timings_ms"]["dns"] == pytest.approx(BUDGET * 1000, abs=500)
    assert_in_time(seconds)


LIBRARY = """
import sys, time
from mailctl.protocols.resolve import lookup, connect_within, resolve_addresses, ResolverTimeout
from mailctl.errors import TimeoutFailure
import asyncio
from mailctl.protocols.resolve import lookup_async
results = []
for name, call in [
    ("lookup", lambda: lookup(sys.argv[1], 25, 1.0)),
    ("connect_within", lambda: connect_within(sys.argv[1], 25, 1.0)),
    ("lookup_async", lambda: asyncio.run(lookup_async(sys.argv[1], 25, 1.0))),
]:
    started = time.monotonic()
    try:
        call()
    except ResolverTimeout as err:
        results.append(f"{name} {time.monotonic() - started:.1f} {err.seconds:g}")
try:
    resolve_addresses(sys.argv[1], 25, 1.0)
except TimeoutFailure as err:
    results.append("resolve_addresses " + err.code)
print("\\n".join(results))
"""


def test_every_lookup_helper_gives_up_and_the_process_exits(
    silent_resolv_conf: Path, tmp_path: Path
) -> None:
    """The helpers end at their budget, and the lookup thread left behind does not hold
    the interpreter's exit (asyncio's own getaddrinfo would: its executor is joined)."""
    rc, out, err, seconds = in_namespace(
        silent_resolv_conf, tmp_path, sys.executable, "-c", LIBRARY, HOST
    )
    assert rc == 0, err
    lines = out.split("\n")
    assert [line.split()[0] for line in lines if line] == [
        "lookup",
        "connect_within",
        "lookup_async",
        "resolve_addresses",
    ], out
    for line in lines[:3]:
        _, took, budget = line.split()
        assert float(took) == pytest.approx(1.0, abs=0.3) and budget == "1"
    assert lines[3] == "resolve_addresses timeout"
    assert seconds < 4 + 8 < GLIBC_WAIT, seconds


# -- without the namespace: what a lookup that works still does ---------------------------


def test_an_address_needs_no_thread_and_no_resolver() -> None:
    [info, *_] = lookup("127.0.0.1", 25, 0.0)  # a zero budget: no lookup was needed
    assert info[4] == ("127.0.0.1", 25)
    assert resolve_addresses("[::1]", 25, 0.0) == ("::1",)


def test_localhost_still_resolves_and_connects() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        assert ("127.0.0.1", port) in [info[4][:2] for info in lookup("localhost", port, 5.0)]
        with connect_within("localhost", port, 5.0) as sock:
            assert sock.getpeername()[1] == port
    finally:
        server.close()


def test_resolver_timeout_words() -> None:
    err = ResolverTimeout("mx.example", 1.5)
    assert isinstance(err, socket.gaierror) and err.errno == socket.EAI_AGAIN
    assert err.strerror == "the system resolver gave no answer for mx.example in 1.5 s"
