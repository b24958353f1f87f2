"""Issue 8, "Hints that lead somewhere": every hint names a flag the command has or the key
of the account block the server came from, and says what was checked.

Real servers on 127.0.0.1: aiosmtpd (tests/servers/smtp_server.py), Dovecot, Postfix.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from servers.dovecot import DovecotServer
from servers.smtp_server import (
    TEST_PASSWORD,
    TEST_USER,
    CertKind,
    SmtpServerFactory,
    SmtpTestServer,
)
from typer.testing import CliRunner, Result

from mailctl.cli.app import app
from mailctl.models import Protocol, Security
from mailctl.protocols.checks import connect_reason

MESSAGE = ["--from", "a@example.org", "--body", "x"]
ROOT = Path(__file__).resolve().parent.parent


def invoke(args: list[str], tmp_path: Path, config: Path | None = None) -> Result:
    env = {
        "MAILCTL_CONFIG": str(config or tmp_path / "none.toml"),
        "NO_COLOR": "1",
        "MAILCTL_PASSWORD": TEST_PASSWORD,
    }
    return CliRunner().invoke(app, args, env=env)


def error_of(result: Result) -> dict[str, Any]:
    [error] = json.loads(result.stdout)["errors"]
    return error  # type: ignore[no-any-return]


def sendmail(config: Path, recipients: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "MAILCTL_PASSWORD": TEST_PASSWORD}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "mailctl", "sendmail", "-C", str(config), "-i", *recipients],
        input="From: a@example.org\nSubject: hi\n\nbody\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def smtp_config(path: Path, server: SmtpTestServer, *lines: str, user: bool = False) -> Path:
    body = [
        'default_account = "main"',
        "[accounts.main]",
        'from = "a@example.org"',
        "[accounts.main.smtp]",
        'host = "127.0.0.1"',
        f"port = {server.port}",
        f"ca_file = {json.dumps(str(server.ca_file))}",
        *([f'username = "{TEST_USER}"'] if user else []),
        *lines,
    ]
    path.write_text("\n".join(body) + "\n")
    path.chmod(0o600)
    return path


def mail_config(path: Path, dovecot: DovecotServer, protocol: Protocol, *lines: str) -> Path:
    body = [
        'default_account = "d"',
        "[accounts.d]",
        f"[accounts.d.{protocol.value}]",
        f'host = "{dovecot.host}"',
        f"ca_file = {json.dumps(str(dovecot.ca_pem))}",
        f'username = "{dovecot.user}"',
        *lines,
    ]
    path.write_text("\n".join(body) + "\n")
    path.chmod(0o600)
    return path


def account_test(tmp_path: Path, config: Path, password: str) -> Result:
    env = {"MAILCTL_CONFIG": str(config), "NO_COLOR": "1", "MAILCTL_PASSWORD": password}
    return CliRunner().invoke(app, ["account", "test", "--json"], env=env)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- 1. a server without STARTTLS: the real flags, or the account's key --------------------


def test_no_starttls_with_server_flags_names_no_tls_and_tls(
    plain_smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    server = f"--server=127.0.0.1:{plain_smtp_server.port}"
    result = invoke(["send", *MESSAGE, "--to", "b@example.org", server, "--json"], tmp_path)
    assert result.exit_code == 76, result.stdout
    hint = error_of(result)["hint"]
    assert "--no-tls" in hint and "--tls" in hint and "--security" not in hint, hint
    assert "security =" not in hint, hint  # the server came from flags, not an account


def test_no_starttls_from_an_account_names_the_block_key(
    plain_smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    config = smtp_config(tmp_path / "c.toml", plain_smtp_server, 'security = "starttls"')
    result = invoke(["send", *MESSAGE, "--to", "b@example.org", "--json"], tmp_path, config)
    assert result.exit_code == 76, result.stdout
    hint = error_of(result)["hint"]
    assert "mailctl account set main --smtp-security none (or --no-tls for one run)" in hint, hint
    assert "mailctl account set main --smtp-security tls" in hint, hint


def test_no_starttls_in_sendmail_mode_names_no_flag(
    plain_smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    config = smtp_config(tmp_path / "c.toml", plain_smtp_server, 'security = "starttls"')
    proc = sendmail(config, ["b@example.org"])
    assert proc.returncode == 76, proc.stderr
    assert "mailctl account set main --smtp-security none" in proc.stderr
    # sendmail mode has no flags of its own: only the account command's are named
    assert " --" not in re.sub(r"mailctl account set main --smtp-security \w+", "", proc.stderr)
    assert "for one run" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3])
def test_no_starttls_imap_pop3_names_the_block_key(
    dovecot_plain: DovecotServer, tmp_path: Path, protocol: Protocol
) -> None:
    port = dovecot_plain.port(protocol, Security.NONE)
    config = mail_config(
        tmp_path / "c.toml", dovecot_plain, protocol, f"port = {port}", 'security = "starttls"'
    )
    result = account_test(tmp_path, config, dovecot_plain.password)
    assert result.exit_code == 76, result.stdout
    hint = error_of(result)["hint"]
    assert f"mailctl account set d --{protocol.value}-security none" in hint, hint
    assert f"mailctl account set d --{protocol.value}-security tls" in hint, hint
    # account test has no server flags: only the account command's are named
    rest = re.sub(rf"mailctl account set d --{protocol.value}-security \w+", "", hint)
    assert "--" not in rest and "use security tls" not in hint, hint


# -- 3. connect failures in msmtp's words ------------------------------------------------


def test_refused_connection_says_connection_refused_smtp(tmp_path: Path) -> None:
    port = closed_port()
    result = invoke(
        ["send", *MESSAGE, "--to", "b@example.org", f"--server=127.0.0.1:{port}"], tmp_path
    )
    assert result.exit_code == 74, result.stderr
    assert f"cannot connect to 127.0.0.1:{port}: connection refused" in result.stderr
    assert "Connect call failed" not in result.stderr


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3])
def test_refused_connection_says_connection_refused_imap_pop3(
    tmp_path: Path, protocol: Protocol
) -> None:
    port = closed_port()
    config = tmp_path / "c.toml"
    config.write_text(
        f'default_account = "d"\n[accounts.d]\n[accounts.d.{protocol.value}]\n'
        f'host = "127.0.0.1"\nport = {port}\nsecurity = "tls"\n'
    )
    config.chmod(0o600)
    result = account_test(tmp_path, config, "x")
    assert result.exit_code == 74, result.stdout
    message = error_of(result)["message"]
    assert message.endswith(f"127.0.0.1:{port}: connection refused"), message


def test_connect_reasons_are_words_not_python_text() -> None:
    assert connect_reason(OSError(errno.ECONNREFUSED, "Connect call failed ('x', 1)")) == (
        "connection refused"
    )
    assert connect_reason(OSError(errno.EHOSTUNREACH, "x")) == "no route to host"
    assert connect_reason(OSError(errno.ENETUNREACH, "x")) == "network unreachable"
    assert connect_reason(TimeoutError()) == "timed out"


def test_unknown_host_says_host_not_found(tmp_path: Path) -> None:
    result = invoke(
        ["send", *MESSAGE, "--to", "b@example.org", "--server=no-such-host.invalid:25"], tmp_path
    )
    assert result.exit_code == 68, result.stderr
    assert "cannot connect to no-such-host.invalid:25: host not found" in result.stderr


# -- 5. the wrong security for the port: name the other flag -------------------------------


def test_starttls_against_implicit_tls_names_tls(
    smtps_server: SmtpTestServer, tmp_path: Path
) -> None:
    started = time.monotonic()
    result = invoke(
        ["send", *MESSAGE, "--to", "b@example.org", f"--server=127.0.0.1:{smtps_server.port}",
         "--starttls", "--connect-timeout", "1", "--json"],
        tmp_path,
    )  # fmt: skip
    assert time.monotonic() - started < 10
    assert result.exit_code == 75, result.stdout
    hint = error_of(result)["hint"]
    assert "implicit TLS" in hint and "--tls" in hint, hint


def test_tls_against_a_starttls_port_names_starttls(
    smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    result = invoke(
        ["send", *MESSAGE, "--to", "b@example.org", f"--server=127.0.0.1:{smtp_server.port}",
         "--tls", "--ca-file", str(smtp_server.ca_file), "--json"],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 76, result.stdout
    error = error_of(result)
    assert "clear text" in error["message"], error
    assert "--starttls" in error["hint"] and "--no-tls" in error["hint"], error


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3])
def test_imap_pop3_wrong_security_for_the_port_names_the_other(
    dovecot: DovecotServer, tmp_path: Path, protocol: Protocol
) -> None:
    name = protocol.value
    implicit = dovecot.port(protocol, Security.TLS)
    config = mail_config(
        tmp_path / "a.toml", dovecot, protocol, f"port = {implicit}", 'security = "starttls"',
        "connect_timeout = 1",
    )  # fmt: skip
    result = account_test(tmp_path, config, dovecot.password)
    assert result.exit_code == 74, result.stdout
    assert f"mailctl account set d --{name}-security tls" in error_of(result)["hint"]

    plain = dovecot.port(protocol, Security.STARTTLS)
    config = mail_config(
        tmp_path / "b.toml", dovecot, protocol, f"port = {plain}", 'security = "tls"'
    )
    result = account_test(tmp_path, config, dovecot.password)
    assert result.exit_code == 76, result.stdout
    assert f"mailctl account set d --{name}-security starttls" in error_of(result)["hint"]


# -- 2. a certificate for another name: say what was checked; --tls-name -------------------


@pytest.mark.parametrize("security", [Security.STARTTLS, Security.TLS])
def test_wrong_name_says_what_was_checked_and_offers_tls_name(
    smtp_server_factory: SmtpServerFactory, tmp_path: Path, security: Security
) -> None:
    server = smtp_server_factory(security=security, cert=CertKind.WRONG_HOST, auth=False)
    base = ["send", *MESSAGE, "--to", "b@example.org", f"--server=127.0.0.1:{server.port}",
            f"--{security.value}", "--ca-file", str(server.ca_file)]  # fmt: skip
    result = invoke([*base, "--json"], tmp_path)
    assert result.exit_code == 76, result.stdout
    error = error_of(result)
    assert "is not valid for the IP address '127.0.0.1'" in error["message"], error
    assert error["message"].endswith("it lists 'wrong-host.example'"), error
    assert "--tls-name NAME" in error["hint"] and "--ca-file" not in error["hint"], error
    assert "((" not in error["message"] + error["hint"]

    result = invoke([*base, "--tls-name", "wrong-host.example"], tmp_path)
    assert result.exit_code == 0, result.stderr
    assert len(server.messages) == 1

    result = invoke([*base, "--tls-name", "mail.test", "--json"], tmp_path)
    assert result.exit_code == 76
    assert "is not valid for the host name 'mail.test'" in error_of(result)["message"]


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3])
@pytest.mark.parametrize("security", [Security.TLS, Security.STARTTLS])
def test_tls_name_account_key_imap_pop3(
    dovecot: DovecotServer, tmp_path: Path, protocol: Protocol, security: Security
) -> None:
    """Dovecot's certificate names 127.0.0.1 and localhost: tls_name checks another name
    while connecting to the address."""
    port = dovecot.port(protocol, security)
    lines = [f"port = {port}", f'security = "{security.value}"']
    config = mail_config(tmp_path / "a.toml", dovecot, protocol, *lines, 'tls_name = "localhost"')
    result = account_test(tmp_path, config, dovecot.password)
    assert result.exit_code == 0, result.stdout

    config = mail_config(tmp_path / "b.toml", dovecot, protocol, *lines, 'tls_name = "mail.test"')
    result = account_test(tmp_path, config, dovecot.password)
    assert result.exit_code == 76, result.stdout
    error = error_of(result)
    assert "is not valid for the host name 'mail.test'" in error["message"], error
    assert error["message"].endswith("it lists '127.0.0.1', 'localhost'"), error
    assert f"mailctl account set d --{protocol.value}-tls-name NAME" in error["hint"], error


@pytest.mark.parametrize("value", ['"a\\nb"', '"bad name"', '""', "3"])
def test_tls_name_key_is_validated(tmp_path: Path, value: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[accounts.a.smtp]\nhost = "127.0.0.1"\n' + f"tls_name = {value}\n", encoding="utf-8"
    )
    config.chmod(0o600)
    result = invoke(["account", "show", "a"], tmp_path, config)
    assert result.exit_code == 78, result.stderr
    assert "tls_name" in result.stderr


def test_tls_name_flag_is_validated(tmp_path: Path) -> None:
    result = invoke(
        ["send", *MESSAGE, "--to", "b@example.org", "--server=127.0.0.1:1", "--tls-name", "a\rb"],
        tmp_path,
    )
    assert result.exit_code == 65, result.stderr
    assert "--tls-name" in result.stderr


# -- 4. refused for not logging in: say so ----------------------------------------------


def test_policy_refusal_without_login_says_log_in(
    smtp_server_factory: SmtpServerFactory, tmp_path: Path
) -> None:
    server = smtp_server_factory(security=Security.STARTTLS, require_auth=True)
    result = invoke(
        ["send", *MESSAGE, "--to", "b@example.org", f"--server=127.0.0.1:{server.port}",
         "--ca-file", str(server.ca_file), "--json"],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 69, result.stdout
    hint = error_of(result)["hint"]
    assert "did not log in" in hint and "--user NAME" in hint, hint


def test_postfix_submission_without_login_says_log_in(postfix: Any, tmp_path: Path) -> None:
    result = invoke(
        ["send", *MESSAGE, "--to", "bob@example.org",
         f"--server={postfix.host}:{postfix.submission_port}", "--starttls",
         "--ca-file", str(postfix.ca_pem), "--json"],
        tmp_path,
    )  # fmt: skip
    assert result.exit_code == 69, result.stdout
    error = error_of(result)
    assert "Access denied" in error["message"], error
    assert "did not log in" in error["hint"] and "--user NAME" in error["hint"], error
    assert "refused addresses" not in error["hint"], error


# -- 6. hints depend on the command and on what was given ----------------------------------


def test_partial_hint_only_where_it_helps(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    smtp_server.reject("bad@example.org")
    config = smtp_config(tmp_path / "c.toml", smtp_server, 'security = "starttls"', user=True)
    both = ["--to", "good@example.org", "--to", "bad@example.org"]
    result = invoke(["send", *MESSAGE, *both, "--json"], tmp_path, config)
    assert result.exit_code == 69, result.stdout
    assert "--allow-partial" in error_of(result)["hint"]

    result = invoke(
        ["send", *MESSAGE, "--to", "bad@example.org", "--allow-partial", "--json"], tmp_path, config
    )
    assert result.exit_code == 69, result.stdout
    assert "allow-partial" not in (error_of(result)["hint"] or "")

    proc = sendmail(config, ["good@example.org", "bad@example.org"])
    assert proc.returncode == 69, proc.stderr
    assert "allow" not in proc.stderr and " --" not in proc.stderr, proc.stderr
    assert smtp_server.messages == []


def test_listed_names_are_quoted_and_bounded() -> None:
    from mailctl.errors import CertificateError
    from mailctl.protocols.tls import certificate_names, with_names

    cert = {"subjectAltName": [("DNS", f"h{i}.example") for i in range(50)] + [("DNS", "a\nb")]}
    names = certificate_names(cert)
    error = with_names(CertificateError("x", details={"verify_code": 62}), names)
    assert error.message.endswith("and 45 more") and "\n" not in error.one_line()
    [odd] = certificate_names({"subjectAltName": [("DNS", "x" * 500 + "\n")]})
    assert len(with_names(CertificateError("x"), (odd,)).message) < 120
    assert certificate_names({}) == ()


def test_bench_target_unknown_host_says_host_not_found() -> None:
    from mailctl.errors import HostNotFoundError
    from mailctl.protocols.resolve import resolve_addresses

    with pytest.raises(HostNotFoundError) as caught:
        resolve_addresses("no-such-host.invalid", 25)
    assert caught.value.message == "cannot connect to 'no-such-host.invalid': host not found"


@pytest.mark.parametrize("protocol", [Protocol.IMAP, Protocol.POP3])
def test_account_test_takes_tls_name_for_one_run(
    dovecot: DovecotServer, tmp_path: Path, protocol: Protocol
) -> None:
    port = dovecot.port(protocol, Security.TLS)
    config = mail_config(tmp_path / "a.toml", dovecot, protocol, f"port = {port}")
    env = {"MAILCTL_CONFIG": str(config), "NO_COLOR": "1", "MAILCTL_PASSWORD": dovecot.password}
    runner = CliRunner()
    ok = runner.invoke(app, ["account", "test", "--tls-name", "localhost", "--json"], env=env)
    assert ok.exit_code == 0, ok.stdout
    bad = runner.invoke(app, ["account", "test", "--tls-name", "mail.test", "--json"], env=env)
    assert bad.exit_code == 76, bad.stdout
    assert "'mail.test'" in error_of(bad)["message"]
    assert "--tls-name NAME for one run" in error_of(bad)["hint"]


def test_account_add_and_set_take_a_tls_name_per_block(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """`--imap-tls-name` on add and set writes the block's tls_name, checked as the file's key
    is; `-` clears it; the stored name is what account test checks the certificate against."""
    config = tmp_path / "cfg.toml"
    env = {"MAILCTL_CONFIG": str(config), "NO_COLOR": "1", "MAILCTL_PASSWORD": dovecot.password}
    runner = CliRunner()
    port = str(dovecot.port(Protocol.IMAP, Security.TLS))
    added = runner.invoke(
        app,
        ["account", "add", "d", "--imap-host", dovecot.host, "--imap-port", port,
         "--imap-user", dovecot.user, "--imap-tls-name", "localhost",
         "--ca-file", str(dovecot.ca_pem)],
        env=env,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert 'tls_name = "localhost"' in config.read_text()
    assert runner.invoke(app, ["account", "test", "--json"], env=env).exit_code == 0

    changed = runner.invoke(
        app, ["account", "set", "d", "--imap-tls-name", "mail.test", "--json"], env=env
    )
    assert changed.exit_code == 0, changed.output
    assert json.loads(changed.stdout)["data"]["changed"] == ["imap.tls_name"]
    bad = runner.invoke(app, ["account", "test", "--json"], env=env)
    assert bad.exit_code == 76, bad.stdout
    assert "'mail.test'" in error_of(bad)["message"]

    refused = runner.invoke(app, ["account", "set", "d", "--imap-tls-name", "bad name"], env=env)
    assert refused.exit_code == 64, refused.output
    assert "--imap-tls-name" in refused.output
    assert 'tls_name = "mail.test"' in config.read_text()  # nothing written

    cleared = runner.invoke(app, ["account", "set", "d", "--imap-tls-name", "-"], env=env)
    assert cleared.exit_code == 0, cleared.output
    assert "tls_name" not in config.read_text()
    assert runner.invoke(app, ["account", "test", "--json"], env=env).exit_code == 0
