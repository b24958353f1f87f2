"""`mailctl probe` resolves each host name once, times it (`dns`), and connects to the address
while the certificate is still checked for the name; `--account` trusts each block's own
`ca_file`.

Real servers on loopback: the local authoritative DNS server (tests/servers/dns.py), the probe's
SMTP server, and Dovecot for the account's IMAP block.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from servers.dovecot import DovecotServer
from typer.testing import CliRunner

from mailctl.cli.app import app

runner = CliRunner()


def probe(*args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["probe", *args, "--json"], env={"NO_COLOR": "1"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, json.loads(result.stdout)


def test_a_host_name_is_resolved_through_the_nameserver_and_checked_as_a_name(
    dns_server: Any, probe_server: Any, probe_certs: Any
) -> None:
    # The "good" certificate is for mx.probe.test: it verifies only if the name (not the
    # address) is what the handshake checks and sends as SNI.
    dns_server.set_records({"mx.probe.test": ["A 127.0.0.1"]})
    server = probe_server(cert="good")
    code, envelope = probe(
        f"mx.probe.test:{server.port}",
        "-p",
        "submission",
        "--nameserver",
        f"127.0.0.1:{dns_server.port}",
        "--ca-file",
        str(probe_certs.ca_file),
    )
    assert code == 0, envelope
    host = envelope["data"]["hosts"][0]
    assert (host["host"], host["address"], host["probed"]) == ("mx.probe.test", "127.0.0.1", True)
    assert host["tls"]["verified"] is True
    assert list(host["timings_ms"])[:2] == ["dns", "connect"], host["timings_ms"]
    assert ("mx.probe.test", "A") in dns_server.queries()
    assert host["connections"] == server.connections == 5  # one lookup, then the address


def test_the_next_address_is_tried_when_the_first_refuses(
    dns_server: Any, probe_server: Any, probe_certs: Any
) -> None:
    server = probe_server(cert="good")
    # 127.0.0.9 listens on nothing: refused, then 127.0.0.1 answers; the refused attempt
    # does not count against the server's connection budget.
    dns_server.set_records({"mx.probe.test": ["A 127.0.0.9", "A 127.0.0.1"]})
    code, envelope = probe(
        f"mx.probe.test:{server.port}",
        "-p",
        "submission",
        "--nameserver",
        f"127.0.0.1:{dns_server.port}",
        "--ca-file",
        str(probe_certs.ca_file),
    )
    assert code == 0, envelope
    host = envelope["data"]["hosts"][0]
    assert (host["address"], host["probed"]) == ("127.0.0.1", True)
    assert host["connections"] == 5
    assert {v["version"]: v["offered"] for v in host["versions"]}["TLSv1.3"] is True


def test_a_name_that_does_not_resolve_is_a_connect_finding(
    dns_server: Any, probe_server: Any
) -> None:
    server = probe_server(cert="good")
    code, envelope = probe(
        f"nowhere.probe.test:{server.port}",
        f"127.0.0.1:{server.port}",
        "-p",
        "submission",
        "--nameserver",
        f"127.0.0.1:{dns_server.port}",
    )
    assert code == 0, envelope  # one host was probed: the other is a finding, not exit 74
    missing, found = envelope["data"]["hosts"]
    assert (missing["probed"], missing["address"]) == (False, None)
    assert "dns" in missing["timings_ms"] and "connect" not in missing["timings_ms"]
    finding = next(f for f in missing["findings"] if f["code"] == "connect.failed")
    assert "host not found (no such name)" in finding["message"], finding
    assert finding["fix"] == "check the host name and its DNS records"
    # An address needs no lookup: no dns phase.
    assert found["probed"] and "dns" not in found["timings_ms"]


def test_the_system_resolver_answers_without_a_nameserver(probe_server: Any) -> None:
    server = probe_server(cert="good")
    code, envelope = probe(f"localhost:{server.port}", "-p", "submission")
    assert code == 0, envelope
    host = envelope["data"]["hosts"][0]
    assert host["probed"] and host["address"] in ("127.0.0.1", "::1"), host
    assert "dns" in host["timings_ms"]


def test_each_account_block_trusts_its_own_ca_file(
    probe_server: Any, probe_certs: Any, dovecot: DovecotServer, tmp_path: Path
) -> None:
    server = probe_server(cert="good")
    assert dovecot.imaps_port is not None
    config = tmp_path / "cfg" / "config.toml"
    config.parent.mkdir(mode=0o700)
    config.write_text(
        "[accounts.h.smtp]\n"
        f'host = "localhost"\nport = {server.port}\nsecurity = "starttls"\n'
        f'ca_file = "{probe_certs.ca_file}"\n'
        "[accounts.h.imap]\n"
        f'host = "127.0.0.1"\nport = {dovecot.imaps_port}\nsecurity = "tls"\n'
        f'ca_file = "{dovecot.ca_pem}"\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    code, envelope = probe("--config", str(config), "--account", "h")
    assert code == 0, envelope
    smtp, imap = envelope["data"]["hosts"]
    assert (smtp["protocol"], imap["protocol"]) == ("submission", "imaps")
    # Two CAs that know nothing of each other: each block verifies only with its own.
    assert smtp["tls"]["verified"] is True, smtp["findings"]
    assert imap["tls"]["verified"] is True, imap["findings"]

    # --ca-file replaces them all: the IMAP block's certificate is then untrusted.
    code, envelope = probe(
        "--config", str(config), "--account", "h", "--ca-file", str(probe_certs.ca_file)
    )
    imap = envelope["data"]["hosts"][1]
    assert imap["tls"]["verified"] is False
    assert "cert.untrusted" in {f["code"] for f in imap["findings"]}


@pytest.mark.parametrize("value", ["example.org", "127.0.0.1:0"])
def test_a_bad_nameserver_is_a_usage_error(value: str) -> None:
    result = runner.invoke(
        app, ["probe", "127.0.0.1:25", "--nameserver", value], env={"NO_COLOR": "1"}
    )
    assert result.exit_code == 64, result.output


def test_mx_port_needs_mx() -> None:
    result = runner.invoke(app, ["probe", "127.0.0.1:25", "--mx-port", "2525"])
    assert result.exit_code == 64 and "--mx-port" in result.output, result.output
