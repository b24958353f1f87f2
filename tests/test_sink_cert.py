"""The sink's kept certificate: reused across runs, renewed when unusable, `--ca-out`."""

from __future__ import annotations

import datetime
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.sink.certs import stable_certificate


def _run_sink(tmp_path: Path, *args: str) -> tuple[dict[str, Any], bytes]:
    """Start `mailctl sink --starttls`, read its ready-file, stop it; return (info, stderr)."""
    ready = tmp_path / "ready.json"
    ready.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "mailctl", "sink", "--starttls", "--listen", "127.0.0.1:0",
         "--ready-file", str(ready), "--quiet", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        info = json.loads(ready.read_text()) if ready.exists() else {}
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=15)
    assert info, err.decode()
    return info, err


def test_the_certificate_is_kept_and_reused_across_runs(tmp_path: Path) -> None:
    first, _ = _run_sink(tmp_path)
    cert = Path(first["cert_file"])
    state = Path(os.environ["XDG_STATE_HOME"])
    assert cert == state / "mailctl" / "sink" / "cert.pem"
    pem = cert.read_bytes()  # still there once the sink stopped
    assert stat.S_IMODE(cert.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((cert.parent / "key.pem").stat().st_mode) == 0o600
    second, _ = _run_sink(tmp_path)
    assert second["cert_file"] == first["cert_file"] and cert.read_bytes() == pem


def test_ca_out_writes_the_certificate_clients_trust(tmp_path: Path) -> None:
    out = tmp_path / "ca" / "sink-ca.pem"
    out.parent.mkdir()
    info, _ = _run_sink(tmp_path, "--ca-out", str(out))
    assert out.read_bytes() == Path(info["cert_file"]).read_bytes()
    assert (
        x509.load_pem_x509_certificate(out.read_bytes())
        .extensions.get_extension_for_class(x509.BasicConstraints)
        .value.ca
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--ca-out", "x.pem"], "--ca-out needs --tls or --starttls"),
        (["--starttls", "--cert", "c.pem", "--key", "k.pem", "--ca-out", "x.pem"], "--cert"),
    ],
)
def test_ca_out_refusals(
    args: list[str], needle: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["sink", "--listen", "127.0.0.1:0", *args])
    assert result.exit_code == 64, result.output
    assert needle in result.output
    assert not (tmp_path / "x.pem").exists()


def test_a_damaged_or_expiring_pair_is_replaced(tmp_path: Path) -> None:
    directory = tmp_path / "sink"
    cert, key = stable_certificate(directory)
    pem = cert.read_bytes()
    assert stable_certificate(directory) == (cert, key) and cert.read_bytes() == pem

    cert.write_bytes(b"not a certificate")
    stable_certificate(directory)
    renewed = cert.read_bytes()
    assert renewed != pem and renewed.startswith(b"-----BEGIN CERTIFICATE-----")

    key.write_bytes(b"")  # unreadable key: a new pair, never a certificate without its key
    stable_certificate(directory)
    assert cert.read_bytes() != renewed and key.read_bytes().startswith(b"-----BEGIN")

    # A pair whose certificate ends within the renewal window is replaced before it expires.
    import mailctl.sink.certs as certs

    soon = certs._make_pair(days=3, label="kept")
    certs.write_atomic(key, soon[1])
    certs.write_atomic(cert, soon[0])
    stable_certificate(directory)
    kept = x509.load_pem_x509_certificate(cert.read_bytes())
    left = kept.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert left > datetime.timedelta(days=300)


def test_a_wide_state_directory_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "sink"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    stable_certificate(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_sinks_starting_at_once_share_one_matching_pair(tmp_path: Path) -> None:
    """The lock keeps two first runs from leaving one's key beside the other's certificate."""
    directory = tmp_path / "shared"
    code = (
        "import sys; from pathlib import Path; from mailctl.sink.certs import stable_certificate;"
        "print(stable_certificate(Path(sys.argv[1]))[0].read_text())"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(directory)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    seen = set()
    for child in children:
        out, err = child.communicate(timeout=30)
        assert child.returncode == 0, err
        seen.add(out)
    assert len(seen) == 1  # the first made it, the others reused it
    import mailctl.sink.certs as certs

    assert certs._usable_pair(directory / "cert.pem", directory / "key.pem")


def test_an_unwritable_state_directory_falls_back_to_a_throwaway_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be\n")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    info, err = _run_sink(tmp_path)
    assert b"throwaway certificate" in err and str(blocker).encode() in err
    assert not Path(info["cert_file"]).exists()  # deleted with the sink, as before
    refused = CliRunner().invoke(
        app, ["sink", "--starttls", "--listen", "127.0.0.1:0", "--ca-out", str(tmp_path / "ca")]
    )
    assert refused.exit_code == 73, refused.output
    assert str(blocker) in refused.stderr
