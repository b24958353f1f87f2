"""One rule per value, checked once at the edge: the same input gives the same outcome through
every entry point (send flags, the config file with send/sendmail/account test, account add
flags, bench flags).

Values covered: the EHLO name, the default security of a port, and host:port as shown to people
(IPv6 literals in brackets). Each test runs mailctl as a process and asserts on what the server
received or what the user sees.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from servers.smtp_server import TEST_PASSWORD, TEST_USER, SmtpServerFactory, SmtpTestServer

from mailctl.models import Security

MESSAGE = b"From: main@example.org\nTo: bob@example.org\nSubject: rule\n\nhello\n"
SEND = ["send", "--from", "main@example.org", "--to", "bob@example.org", "--body", "x"]


def mailctl(
    args: Sequence[str], config: Path, *, stdin: bytes = b"", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MAILCTL_CONFIG": str(config),
        "MAILCTL_PASSWORD": TEST_PASSWORD,
        "NO_COLOR": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "mailctl", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=timeout,
    )
    out = subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )
    assert TEST_PASSWORD not in out.stdout + out.stderr
    return out


def write_config(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(['default_account = "main"', "[accounts.main]", *lines]) + "\n")
    path.chmod(0o600)
    return path


def smtp_block(server: SmtpTestServer) -> tuple[str, ...]:
    return (
        "[accounts.main.smtp]",
        'host = "127.0.0.1"',
        f"port = {server.port}",
        'security = "starttls"',
        f'username = "{TEST_USER}"',
        f"ca_file = {json.dumps(str(server.ca_file))}",
    )


def server_flags(server: SmtpTestServer) -> list[str]:
    return [
        "--server", f"127.0.0.1:{server.port}", "--starttls",
        "--ca-file", str(server.ca_file), "--user", TEST_USER,
    ]  # fmt: skip


# --------------------------------------------------------------------------- EHLO name

# (value, what the server receives): '_' is tolerated in labels (real host names carry it),
# U-labels go out as their IDNA A-label, address literals as they are.
ACCEPTED = [
    ("my_host.example.com", "my_host.example.com"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("[127.0.0.1]", "[127.0.0.1]"),
]
# Refused before any connection, whatever the entry point.
REFUSED = ["host.", "-bad.example", "[300.1.1.1]", "two words", "a..b"]

ENTRY_POINTS = [
    "send-flag",
    "send-config",
    "sendmail-config",
    "account-test",
    "account-add",
    "bench",
    "bench-config",
]


def _through(entry: str, value: str, server: SmtpTestServer, tmp_path: Path) -> Any:
    """Run mailctl with EHLO name `value` given through `entry`; return the process."""
    config = tmp_path / "config.toml"
    if entry == "send-flag":
        write_config(config)  # an empty account; --server stands alone
        return mailctl([*SEND, *server_flags(server), "--ehlo", value], config)
    if entry == "bench":
        write_config(config)
        args = ["bench", "-n", "1", "-c", "1", "--mode", "reuse", "--ehlo", value]
        return mailctl([*args, *server_flags(server)], config)
    if entry == "account-add":
        add = mailctl(
            [
                "account", "add", "main", "--ehlo", value, "--from", "main@example.org",
                "--smtp-host", "127.0.0.1", "--smtp-port", str(server.port),
                "--smtp-security", "starttls", "--smtp-user", TEST_USER,
                "--ca-file", str(server.ca_file),
            ],
            config,
        )  # fmt: skip
        if add.returncode != 0:
            return add
        return mailctl(SEND, config)
    write_config(config, f"ehlo = {json.dumps(value)}", *smtp_block(server))
    if entry == "send-config":
        return mailctl(SEND, config)
    if entry == "bench-config":  # bench --account used to leave the account's ehlo out
        return mailctl(["bench", "-n", "1", "-c", "1", "--mode", "reuse", "-A", "main"], config)
    if entry == "sendmail-config":
        return mailctl(["sendmail", "-i", "bob@example.org"], config, stdin=MESSAGE)
    assert entry == "account-test"
    return mailctl(["account", "test", "--protocol", "smtp"], config)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(("value", "sent"), ACCEPTED)
def test_an_ehlo_name_accepted_anywhere_is_sent_the_same_everywhere(
    smtp_server: SmtpTestServer, tmp_path: Path, entry: str, value: str, sent: str
) -> None:
    proc = _through(entry, value, smtp_server, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert smtp_server.ehlo_names, "no EHLO reached the server"
    assert set(smtp_server.ehlo_names) == {sent}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("value", REFUSED)
def test_an_ehlo_name_refused_anywhere_is_refused_everywhere_before_connecting(
    smtp_server: SmtpTestServer, tmp_path: Path, entry: str, value: str
) -> None:
    proc = _through(entry, value, smtp_server, tmp_path)
    # 65 for a command-line value of send/bench, 64 for account add's flags (all of its flag
    # values are usage errors), 78 for the config file: the value is refused at each edge.
    assert proc.returncode in (64, 65, 78), proc.stderr
    assert "ehlo" in proc.stderr.lower(), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert smtp_server.connections == 0


# --------------------------------------------------------------------------- security of a port

# (protocol, port, security written, expected security). An explicit security always wins;
# without one, the implicit-TLS ports mean TLS, the others required STARTTLS (SMTP) or the
# protocol's default (RFC 8314: implicit TLS for IMAP/POP3 when no port says otherwise).
PORT_CASES = [
    ("smtp", 465, None, "tls"),
    ("smtp", 587, None, "starttls"),
    ("smtp", 25, None, "starttls"),
    ("smtp", 2526, None, "starttls"),
    ("smtp", 465, "starttls", "starttls"),
    ("smtp", 587, "tls", "tls"),
    ("imap", 993, None, "tls"),
    ("imap", 143, None, "starttls"),
    ("imap", 143, "tls", "tls"),
    ("pop3", 995, None, "tls"),
    ("pop3", 110, None, "starttls"),
]


def _block(protocol: str, port: int, security: str | None) -> tuple[str, ...]:
    lines = [f"[accounts.main.{protocol}]", 'host = "127.0.0.1"', f"port = {port}"]
    if security is not None:
        lines.append(f'security = "{security}"')
    # A second of waiting at most: nothing listens on these ports here.
    lines += ["connect_timeout = 2.0", "command_timeout = 2.0"]
    return tuple(lines)


@pytest.mark.parametrize(("protocol", "port", "security", "expected"), PORT_CASES)
def test_the_config_file_and_account_add_give_a_port_the_same_security(
    tmp_path: Path, protocol: str, port: int, security: str | None, expected: str
) -> None:
    from_file = write_config(tmp_path / "file.toml", *_block(protocol, port, security))
    shown = mailctl(["account", "show", "--json"], from_file)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["data"][protocol]["security"] == expected

    added = tmp_path / "added.toml"
    flags = [f"--{protocol}-host", "127.0.0.1", f"--{protocol}-port", str(port)]
    if security is not None:
        flags += [f"--{protocol}-security", security]
    add = mailctl(["account", "add", "main", *flags], added)
    assert add.returncode == 0, add.stderr
    shown = mailctl(["account", "show", "--json"], added)
    assert json.loads(shown.stdout)["data"][protocol]["security"] == expected

    tested = mailctl(["account", "test", "--json"], from_file)
    check = json.loads(tested.stdout)["data"]["checks"][0]
    assert (check["port"], check["security"]) == (port, expected)


SMTP_CASES = [case for case in PORT_CASES if case[0] == "smtp"]


@pytest.mark.parametrize(("protocol", "port", "security", "expected"), SMTP_CASES)
def test_flags_config_and_sendmail_connect_a_port_with_the_same_security(
    tmp_path: Path, protocol: str, port: int, security: str | None, expected: str
) -> None:
    """What the transcript says before connecting: `connecting to HOST:PORT (SECURITY)`."""
    line = f"connecting to 127.0.0.1:{port} ({expected})"
    empty = write_config(tmp_path / "empty.toml")
    flag = {None: [], "tls": ["--tls"], "starttls": ["--starttls"]}[security]
    timeouts = ["--connect-timeout", "2", "--timeout", "2"]
    by_flags = mailctl([*SEND, "--server", f"127.0.0.1:{port}", *flag, *timeouts, "--trace"], empty)
    assert line in by_flags.stderr, by_flags.stderr

    config = write_config(tmp_path / "c.toml", *_block(protocol, port, security))
    by_config = mailctl([*SEND, "--trace"], config)
    assert line in by_config.stderr, by_config.stderr
    by_sendmail = mailctl(["sendmail", "-v", "-i", "bob@example.org"], config, stdin=MESSAGE)
    assert line in by_sendmail.stderr, by_sendmail.stderr


def test_default_security_of_a_port() -> None:
    """The rule itself, which account add's terminal prompt also offers as its default."""
    from mailctl.hosts import default_security
    from mailctl.models import Protocol

    assert default_security(Protocol.SMTP, 465) is Security.TLS
    assert default_security(Protocol.SMTP, None) is Security.STARTTLS
    assert default_security(Protocol.IMAP, 143) is Security.STARTTLS
    assert default_security(Protocol.POP3, None) is Security.TLS


# --------------------------------------------------------------------------- host:port


def _closed_port(family: int, host: str) -> int:
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def test_ipv6_endpoints_are_bracketed_in_every_message(tmp_path: Path) -> None:
    port = _closed_port(socket.AF_INET6, "::1")
    shown = f"[::1]:{port}"
    empty = write_config(tmp_path / "empty.toml")
    timeouts = ["--connect-timeout", "2", "--timeout", "2"]
    send = mailctl([*SEND, "--server", shown, "--insecure", *timeouts], empty)
    assert f"certificate verification is off for {shown}" in send.stderr, send.stderr
    assert f"{shown}" in send.stderr.splitlines()[-1], send.stderr

    bench = mailctl(["bench", "-n", "1", "-c", "1", "--server", shown, "--insecure"], empty)
    assert f"certificate verification is off for {shown}" in bench.stderr, bench.stderr

    config = write_config(
        tmp_path / "c.toml",
        "[accounts.main.smtp]", 'host = "::1"', f"port = {port}", "connect_timeout = 2.0",
    )  # fmt: skip
    tested = mailctl(["account", "test"], config)
    assert f"smtp  {shown} (starttls)" in tested.stdout, tested.stdout


def test_send_reports_an_ipv6_server_in_brackets(
    smtp_server_factory: SmtpServerFactory, tmp_path: Path
) -> None:
    server = smtp_server_factory(security=Security.NONE, auth=False, host="::1")
    empty = write_config(tmp_path / "empty.toml")
    proc = mailctl([*SEND, "--server", f"[::1]:{server.port}", "--no-tls", "--json"], empty)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["data"]["server"] == f"[::1]:{server.port}"
    assert server.messages


def test_the_sink_reports_an_ipv6_listener_in_brackets(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "mailctl", "sink", "--listen", "[::1]:0", "--json",
         "--ready-file", str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        info = json.loads(ready.read_text())
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err.decode()
    assert json.loads(out)["data"]["listen"] == f"[::1]:{info['port']}"

    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = mailctl(["sink", "--listen", f"[::1]:{port}"], tmp_path / "none.toml")
    assert busy.returncode == 74
    assert f"cannot listen on [::1]:{port}" in busy.stderr, busy.stderr
