"""The sink's server: listening, the TLS context, the store, idle sweeps and stopping.

Each accepted connection is a `SinkConnection` (`connection.py`), which holds the hot loop and
knows this server only as a `SinkHost` (`host.py`); what the sink says is in `replies.py`,
where accepted messages go in `storage.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailctl.errors import ConnectError
from mailctl.hosts import endpoint
from mailctl.inputs import PEM_LIMIT, check_regular_file
from mailctl.models import Security
from mailctl.sink.config import TEST_PASSWORD, TEST_USERNAME, SinkConfig
from mailctl.sink.connection import SinkConnection
from mailctl.sink.faults import Faults
from mailctl.sink.host import Connection
from mailctl.sink.replies import TLS_HANDSHAKE_TIMEOUT, banner, ehlo_replies
from mailctl.sink.stats import SinkStats
from mailctl.sink.storage import MessageStore, open_store


class ListenError(ConnectError):
    """The sink could not listen (address in use, not on this host, permission denied)."""

    code = "listen_failed"


class SinkServer:
    """A running sink: `await start()`, then `host`/`port`, `stats`, and `await stop()`.

    Usable as an async context manager. `stop_requested` is set by --max-messages and
    --duration; `run_sink` (and tests) wait on it.
    """

    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        self.stats = SinkStats()
        self.faults = Faults(config.faults)
        self.stop_requested = asyncio.Event()
        self.host = config.host
        self.port = config.port
        self.cert_file: Path | None = config.cert_file
        self.connections: set[Connection] = set()
        self.ssl_context: ssl.SSLContext | None = None
        self.store: MessageStore | None = None
        self._server: asyncio.Server | None = None
        self._temp_dir: Path | None = None
        self._closers: list[Callable[[], None]] = []
        self._timers: list[asyncio.TimerHandle] = []
        self._sweep_timer: asyncio.TimerHandle | None = None
        self.ehlo_plain, self.ehlo_tls = ehlo_replies(config)
        self.banner = banner(config)

    @property
    def security(self) -> Security:
        return self.config.security

    def ready_info(self) -> dict[str, Any]:
        """What `--ready-file` holds (the contract `mailctl bench` reads)."""
        return {
            "host": self.host,
            "port": self.port,
            "pid": os.getpid(),
            "security": self.config.security.value,
            "cert_file": str(self.cert_file) if self.cert_file else None,
            "auth": {"username": TEST_USERNAME, "password": TEST_PASSWORD}
            if self.config.auth
            else None,
        }

    async def start(self) -> None:
        """Open the store, make the certificate, and listen; raise ListenError/CantCreateError."""
        config = self.config
        try:
            self._open_store()
            if config.security is not Security.NONE:
                self.ssl_context = self._make_ssl_context()
            loop = asyncio.get_running_loop()
            try:
                self._server = await loop.create_server(
                    lambda: SinkConnection(self),
                    host=config.host,
                    port=config.port,
                    ssl=self.ssl_context if config.security is Security.TLS else None,
                    ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT
                    if config.security is Security.TLS
                    else None,
                    reuse_address=True,
                    backlog=1024,
                )
            except OSError as err:
                raise ListenError(
                    f"cannot listen on {endpoint(config.host, config.port)}: {err.strerror or err}",
                    hint="pick another port with --listen HOST:PORT (port 0: any free port)",
                ) from err
        except BaseException:
            self._cleanup()
            raise
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]
        self.stats = SinkStats()
        if config.duration is not None:
            self._timers.append(loop.call_later(config.duration, self.stop_requested.set))
        self._sweep_timer = loop.call_later(self._sweep_interval(), self._sweep)

    async def stop(self) -> SinkStats:
        """Stop listening, flush and close every connection, close the store; return the stats."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.shutdown()
        deadline = asyncio.get_running_loop().time() + 2.0
        while self.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        for connection in list(self.connections):
            connection.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self.stats.stopped is None:
            self.stats.stopped = time.monotonic()
        self._cleanup()
        return self.stats

    async def __aenter__(self) -> SinkServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def message_done(self) -> None:
        """Called after each accepted message: --max-messages stops the sink."""
        limit = self.config.max_messages
        if limit is not None and self.stats.messages >= limit:
            self.stop_requested.set()

    # ------------------------------------------------------------------ internals

    def _make_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        cert, key = self.config.cert_file, self.config.key_file
        if cert is None or key is None:
            from mailctl.sink.certs import write_self_signed

            self._temp_dir = Path(tempfile.mkdtemp(prefix="mailctl-sink-"))
            cert, key = write_self_signed(self._temp_dir)
            self.cert_file = cert
        else:
            # OpenSSL opens them by name: a FIFO would block it (SIGTERM included).
            check_regular_file(cert, what="--cert", limit=PEM_LIMIT)
            check_regular_file(key, what="--key", limit=PEM_LIMIT)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as err:
            raise ListenError(
                f"cannot load the certificate {cert} / key {key}: {err}",
                hint="give PEM files: --cert CERT.pem --key KEY.pem",
            ) from err
        return context

    def _open_store(self) -> None:
        self.store, close = open_store(self.config)
        if close is not None:
            self._closers.append(close)

    def _cleanup(self) -> None:
        for close in self._closers:
            with contextlib.suppress(OSError):
                close()
        self._closers.clear()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def _sweep_interval(self) -> float:
        return max(min(self.config.idle_timeout / 4, 30.0), 0.05)

    def _sweep(self) -> None:
        """Close connections idle longer than idle_timeout (one timer for all connections)."""
        loop = asyncio.get_running_loop()
        interval = self._sweep_interval()
        for connection in list(self.connections):
            # A flag set per read is cheaper than reading a clock per read on the hot path.
            if connection.active:
                connection.active = False
                connection.idle_for = 0.0
            else:
                connection.idle_for += interval
                if connection.idle_for >= self.config.idle_timeout:
                    connection.idle_out()
        self._sweep_timer = loop.call_later(self._sweep_interval(), self._sweep)
