"""bulk-send's Prometheus metrics (mailctl/core/bulk/metrics.py).

The endpoint is scraped for real over HTTP on loopback, the textfile is parsed with
prometheus-client's own parser (what node_exporter's textfile collector reads), and the
module stays out of start-up: prometheus-client is imported only when metrics are made.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailctl.core.bulk.metrics import BulkMetrics, MetricsListenError
from mailctl.errors import ExitCode, UsageError


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def feed(metrics: BulkMetrics) -> None:
    metrics.connections(4)
    for _ in range(3):
        metrics.row_done("sent", 250, 0.002)
    metrics.row_done("failed", 550, 0.004)
    metrics.row_done("deferred", 451, 1.5)
    metrics.row_done("unknown", None, None)


def check(text: str) -> None:
    got = samples(text)
    assert got[("mailctl_bulk_rows_total", (("code", "250"), ("status", "sent")))] == 3
    assert got[("mailctl_bulk_rows_total", (("code", "550"), ("status", "failed")))] == 1
    assert got[("mailctl_bulk_rows_total", (("code", "451"), ("status", "deferred")))] == 1
    assert got[("mailctl_bulk_rows_total", (("code", "none"), ("status", "unknown")))] == 1
    assert got[("mailctl_bulk_connections", ())] == 4
    assert got[("mailctl_bulk_row_latency_seconds_count", ())] == 5
    assert got[("mailctl_bulk_row_latency_seconds_bucket", (("le", "0.0025"),))] == 3
    assert got[("mailctl_bulk_row_latency_seconds_bucket", (("le", "2.5"),))] == 5
    assert got[("mailctl_bulk_row_latency_seconds_sum", ())] == pytest.approx(1.51)


def test_http_endpoint_is_scraped_on_loopback() -> None:
    with BulkMetrics() as metrics:
        server = metrics.serve(0)
        assert server.address[0] == "127.0.0.1"
        feed(metrics)
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
            check(response.read().decode())
        # counters move between scrapes
        metrics.row_done("sent", 250, 0.001)
        with urllib.request.urlopen(url, timeout=5) as response:
            got = samples(response.read().decode())
        assert got[("mailctl_bulk_rows_total", (("code", "250"), ("status", "sent")))] == 4
        # only this run's registry: nothing of the process-global one (python_gc_*, process_*)
        assert not any(name.startswith(("python_", "process_")) for name, _ in got)
        port = server.port
    # closed with the run: the port no longer answers
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_endpoint_is_not_on_other_addresses() -> None:
    """Bound to 127.0.0.1, not the wildcard: another loopback address (127.0.0.2, still
    this host) is refused, as any external address would be."""
    with BulkMetrics() as metrics:
        port = metrics.serve(0).port
        with pytest.raises(OSError), socket.create_connection(("127.0.0.2", port), timeout=2):
            pass


def test_port_in_use_is_one_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        metrics = BulkMetrics()
        with pytest.raises(MetricsListenError) as caught:
            metrics.serve(port)
    assert caught.value.exit_code == ExitCode.IOERR
    assert f"127.0.0.1:{port}" in caught.value.message
    with pytest.raises(UsageError):
        metrics.serve(70000)


def test_textfile_is_rewritten_atomically_at_most_every_interval(tmp_path: Path) -> None:
    now = [100.0]
    path = tmp_path / "bulk.prom"
    metrics = BulkMetrics(path=path, interval=10.0, clock=lambda: now[0])
    feed(metrics)
    assert metrics.write()
    check(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    metrics.row_done("sent", 250, 0.001)
    now[0] += 5.0
    assert not metrics.write()  # too soon: unchanged
    check(path.read_text())
    now[0] += 5.0
    assert metrics.write()
    got = samples(path.read_text())
    assert got[("mailctl_bulk_rows_total", (("code", "250"), ("status", "sent")))] == 4
    metrics.row_done("sent", 250, 0.001)
    now[0] += 1.0
    metrics.close()  # the end of the run always writes
    got = samples(path.read_text())
    assert got[("mailctl_bulk_rows_total", (("code", "250"), ("status", "sent")))] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bulk.prom"]  # no temp file left


def test_textfile_to_a_directory_is_refused(tmp_path: Path) -> None:
    from mailctl.errors import CantCreateError

    metrics = BulkMetrics(path=tmp_path)
    with pytest.raises(CantCreateError):
        metrics.write(force=True)


def test_label_values_are_bounded() -> None:
    """Whatever a server answers, `code` is a reply code or one of two words and `status` a
    journal state or "other": the series stay few."""
    metrics = BulkMetrics()
    for code in range(-5, 2000):
        metrics.row_done("failed", code, 0.01)
    metrics.row_done("evil\nstatus", 250, 0.01)
    got = samples(metrics.render().decode())
    codes = {dict(labels)["code"] for name, labels in got if name == "mailctl_bulk_rows_total"}
    assert codes <= {str(code) for code in range(100, 600)} | {"other", "none"}
    assert len(codes) == 501
    statuses = {dict(labels)["status"] for name, labels in got if name == "mailctl_bulk_rows_total"}
    assert statuses == {"failed", "other"}


def test_two_runs_do_not_share_counters() -> None:
    first, second = BulkMetrics(), BulkMetrics()
    first.row_done("sent", 250, 0.001)
    got = samples(second.render().decode())
    assert ("mailctl_bulk_rows_total", (("code", "250"), ("status", "sent"))) not in got


def test_importing_the_module_does_not_import_prometheus_client() -> None:
    code = "import sys, mailctl.core.bulk.metrics; print('prometheus_client' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "False"
