"""What a sink connection and its server know of each other: two small `Protocol`s.

`SinkServer` (`server.py`) creates one `SinkConnection` (`connection.py`) per accepted
socket; the connection needs the server's settings, counters and store, and the server needs
to sweep idle connections and close them all at stop. Naming both sides here keeps the
imports one-way (server -> connection -> host): neither module imports the other for types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import ssl

    from mailctl.sink.config import SinkConfig
    from mailctl.sink.faults import Faults
    from mailctl.sink.stats import SinkStats
    from mailctl.sink.storage import MessageStore


class Connection(Protocol):
    """One client connection as the server sees it (sweeps, stop)."""

    active: bool  # set on every read; the idle sweep clears it
    idle_for: float  # seconds without a read, counted by the sweep

    def idle_out(self) -> None:
        """Say 421 (idle timeout) and close."""

    def shutdown(self) -> None:
        """Deliver queued replies, say 421 (server stopping) and close."""

    def abort(self) -> None:
        """Drop the connection at once."""


class SinkHost(Protocol):
    """The server as a connection sees it: settings, counters, the store, the registry."""

    stats: SinkStats
    faults: Faults
    connections: set[Connection]
    store: MessageStore | None
    ssl_context: ssl.SSLContext | None
    banner: bytes
    ehlo_plain: bytes
    ehlo_tls: bytes

    @property
    def config(self) -> SinkConfig: ...

    def message_done(self) -> None:
        """Called after each accepted message (--max-messages)."""
