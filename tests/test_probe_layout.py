"""The human report of `mailctl probe` at 80 and 120 columns: the per-host summary is a table
only when every cell fits whole, else one indented line per host; no line is wider than the
terminal and no cell is cut (rich's ellipsis)."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from mailctl.cli.app import app

runner = CliRunner()
LONG = "a-rather-long-mail-host-name-for-the-layout.probe.test"
HEADER = ["HOST", "PROTOCOL", "TLS", "CERTIFICATE", "ERRORS", "WARNINGS", "INFO"]


def report(columns: int, *args: str) -> str:
    result = runner.invoke(
        app, ["probe", *args], env={"NO_COLOR": "1", "COLUMNS": str(columns), "MAILCTL_CONFIG": ""}
    )
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def two_hosts(dns_server: Any, probe_server: Any, probe_certs: Any) -> list[str]:
    """A host known by a long name (its certificate is for another name) and one by address."""
    dns_server.set_records({LONG: ["A 127.0.0.1"]})
    server = probe_server(cert="good")
    return [
        f"{LONG}:{server.port}",
        f"127.0.0.1:{server.port}",
        "-p",
        "submission",
        "--nameserver",
        f"127.0.0.1:{dns_server.port}",
        "--ca-file",
        str(probe_certs.ca_file),
    ]


def _fits(text: str, columns: int) -> None:
    lines = text.splitlines()
    assert all(len(line) <= columns for line in lines), [x for x in lines if len(x) > columns]
    assert "…" not in text


def test_at_120_columns_the_summary_is_a_table(two_hosts: list[str]) -> None:
    text = report(120, *two_hosts)
    _fits(text, 120)
    lines = text.splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith("HOST "))
    assert lines[at].split() == HEADER
    rows = {line.split()[0]: line.split()[1:] for line in lines[at + 1 : at + 3]}
    port = two_hosts[1].rsplit(":", 1)[1]
    # The long name: verified for nothing it is called (cert.name_mismatch, an error).
    assert rows[f"{LONG}:{port}"][:3] == ["submission", "TLS", "1.3"]
    assert rows[f"{LONG}:{port}"][3:] == ["NOT", "verified", "1", "0", "0"]
    assert rows[f"127.0.0.1:{port}"][3:] == ["verified", "0", "0", "0"]
    # The name probed, and the address it resolved to, head the host's section.
    assert f"submission {LONG}:{port} (127.0.0.1): 5 connection(s)" in text
    assert "  timings     dns " in text


def test_at_80_columns_the_summary_is_one_line_per_host(two_hosts: list[str]) -> None:
    text = report(80, *two_hosts)
    _fits(text, 80)
    assert not any(line.startswith("HOST ") for line in text.splitlines())
    port = two_hosts[1].rsplit(":", 1)[1]
    counts = "1 error(s), 0 warning(s), 0 info"
    assert f"{LONG}:{port}\n  submission, TLS 1.3, NOT verified: {counts}" in text
    assert "  cert.name_mismatch" in text or "ERROR   cert.name_mismatch" in text
    assert "fix: " in text


def test_one_host_has_no_summary(probe_server: Any, probe_certs: Any) -> None:
    server = probe_server(cert="good")
    text = report(
        120, f"127.0.0.1:{server.port}", "-p", "submission", "--ca-file", str(probe_certs.ca_file)
    )
    assert not any(line.startswith("HOST ") for line in text.splitlines())
    assert "Findings: 0 errors, 0 warnings, 0 info; 1 of 1 host(s) probed." in text
