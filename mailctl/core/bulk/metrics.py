"""bulk-send's Prometheus metrics: a file for the textfile collector, and an HTTP endpoint.

A private `CollectorRegistry` (never the process-global one, so nothing else of the process
is exported and two runs in one process do not share counters) holds:

- `mailctl_bulk_rows_total{status, code}`: rows settled, by journal state and SMTP reply code;
- `mailctl_bulk_row_latency_seconds`: time from a row's transaction start to its reply;
- `mailctl_bulk_connections`: SMTP connections open now.

Label values are bounded: `status` is one of the journal's states, `code` a three-digit
reply code (or "none"); a server's reply text never becomes a label, so a hostile or chatty
server cannot grow the series without bound (Prometheus keeps every label set forever).

The file is rewritten atomically (temp + fsync + rename, `store.outputs`' rule for a
user-named path) at most every `interval` seconds and once at the end, as node_exporter's
textfile collector expects (it reads `*.prom` files whole, and must never see half of one).
The HTTP endpoint listens on 127.0.0.1 only (never 0.0.0.0, prometheus-client's default): the
run's volume and reply codes are nobody else's business; a scraper elsewhere goes through a
proxy the user sets up.

prometheus-client is imported when a `BulkMetrics` is made, never at start-up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from mailctl.errors import ConnectError, UsageError
from mailctl.store.outputs import write_output

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry, Counter

__all__ = ["LOOPBACK", "BulkMetrics", "MetricsListenError", "MetricsServer"]

LOOPBACK: Final = "127.0.0.1"
# The states a row can settle in (the journal's RowState values); anything else is "other".
_STATES: Final = frozenset(
    {"pending", "in_flight", "sent", "failed", "deferred", "unknown", "duplicate", "invalid"}
)
# From a loopback sink (~0.1 ms) to a slow remote server (tens of seconds).
_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
_FILE_MODE: Final = 0o644  # node_exporter runs as its own user; the file holds no secret


class MetricsListenError(ConnectError):
    """The metrics endpoint could not listen (port in use, permission denied)."""

    code = "listen_failed"


def _status_label(state: object) -> str:
    value = str(getattr(state, "value", state))
    return value if value in _STATES else "other"


def _code_label(code: int | None) -> str:
    if code is None:
        return "none"
    return str(code) if isinstance(code, int) and 100 <= code <= 599 else "other"


class MetricsServer:
    """The running HTTP endpoint: `address` (host, port) and `close()`."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.address: tuple[str, int] = (str(host), int(port))

    @property
    def port(self) -> int:
        return self.address[1]

    def close(self) -> None:
        """Stop serving and release the port (bounded: a stuck scrape is not waited for)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


class BulkMetrics:
    """The metrics of one bulk run; the engine calls `row_done`, `connections` and `write`."""

    def __init__(
        self,
        *,
        path: Path | None = None,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        if interval < 0:
            raise UsageError(f"the metrics interval must be 0 or more seconds, not {interval}")
        self.path = path
        self.interval = interval
        self._clock = clock
        self._last_write: float | None = None
        self._server: MetricsServer | None = None
        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)
        self._rows = Counter(
            "mailctl_bulk_rows",
            "Rows settled by bulk-send, by journal state and SMTP reply code.",
            ("status", "code"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "mailctl_bulk_row_latency_seconds",
            "Seconds from a row's transaction start to the server's final reply.",
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._connections = Gauge(
            "mailctl_bulk_connections",
            "SMTP connections open now.",
            registry=self.registry,
        )
        # labels() takes a lock and a dict lookup per call: keep the children by key.
        self._children: dict[tuple[str, str], Counter] = {}

    def row_done(self, state: object, code: int | None, latency_s: float | None) -> None:
        """Count a settled row (`state` a RowState or its value) and its latency, if known."""
        key = (_status_label(state), _code_label(code))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._rows.labels(*key)
        child.inc()
        if latency_s is not None and latency_s >= 0:
            self._latency.observe(latency_s)

    def connections(self, n: int) -> None:
        """Set the number of SMTP connections open now."""
        self._connections.set(max(0, n))

    def render(self) -> bytes:
        """The metrics in the Prometheus text format (what the file and the endpoint hold)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def write(self, *, force: bool = False) -> bool:
        """Rewrite the metrics file if `interval` seconds passed since the last write (or
        `force`); True when written. Raises CantCreateError (73) naming the path."""
        if self.path is None:
            return False
        now = self._clock()
        if not force and self._last_write is not None and now - self._last_write < self.interval:
            return False
        write_output(self.path, self.render(), mode=_FILE_MODE, what="metrics file")
        self._last_write = now
        return True

    def serve(self, port: int) -> MetricsServer:
        """Serve the metrics over HTTP on 127.0.0.1:`port` (0: any free port), in a daemon
        thread until `close()`. Raises UsageError for a port out of range,
        MetricsListenError (74) when it cannot listen."""
        from prometheus_client import start_http_server

        if not 0 <= port <= 65535:
            raise UsageError(f"metrics port {port}: must be 0..65535")
        if self._server is not None:
            return self._server
        try:
            server, thread = start_http_server(port, addr=LOOPBACK, registry=self.registry)
        except OSError as err:
            raise MetricsListenError(
                f"cannot serve metrics on {LOOPBACK}:{port}: {err.strerror or err}",
                hint="choose another metrics port (one nothing else listens on)",
                details={"port": port},
            ) from err
        self._server = MetricsServer(server, thread)
        return self._server

    def close(self) -> None:
        """The final file write and the endpoint stopped; safe to call twice."""
        try:
            self.write(force=True)
        finally:
            if self._server is not None:
                self._server.close()
                self._server = None

    def __enter__(self) -> BulkMetrics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
