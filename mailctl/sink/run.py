"""Run a sink in the foreground until a signal, --max-messages or --duration stops it."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import json
import math
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from mailctl.hosts import endpoint
from mailctl.serialize import SKIP, JsonAttrs, meta
from mailctl.sink.config import SinkConfig
from mailctl.sink.server import SinkServer
from mailctl.sink.stats import SinkStats
from mailctl.store.outputs import write_output

# Seconds between two "out of descriptors" warnings: asyncio retries accept() every second
# while connections wait in the listen queue, and would log a traceback each time.
_EXHAUSTED_WARNING_INTERVAL = 10.0


class LoopKind(StrEnum):
    AUTO = "auto"  # uvloop when importable (a dependency except on Windows), else asyncio
    ASYNCIO = "asyncio"
    UVLOOP = "uvloop"


@dataclass(frozen=True)
class SinkRun:
    """What one foreground run reports: where it listened, what stopped it, the counters
    (flattened into the same JSON object)."""

    stats: SinkStats = field(metadata=meta(flatten=True))
    ready: dict[str, Any] = field(metadata=SKIP)  # the --ready-file content
    loop: str
    stopped_by: str

    JSON_ATTRS: ClassVar[JsonAttrs] = ("listen", "security")

    @property
    def listen(self) -> str:
        return endpoint(self.ready["host"], self.ready["port"])

    @property
    def security(self) -> str:
        return str(self.ready["security"])


def run_sink(
    config: SinkConfig,
    *,
    ready_file: Path | None = None,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[SinkStats], None] | None = None,
    progress_interval: float = 0.5,
    loop: LoopKind = LoopKind.AUTO,
    on_warning: Callable[[str], None] | None = None,
) -> SinkRun:
    """Serve until SIGINT/SIGTERM, --max-messages or --duration; return the counters.

    The soft descriptor limit is raised to the hard one first (each connection is one);
    running out anyway is one `on_warning` line every few seconds, never a traceback per
    refused accept(). Raises ListenError (cannot bind), CantCreateError (store or ready
    file), UsageError (uvloop asked for but not installed).
    """
    _raise_descriptor_limit()
    factory, loop_name = _loop_factory(loop)
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.get_loop().set_exception_handler(_exhaustion_handler(on_warning))
        return runner.run(
            _serve(
                config,
                ready_file=ready_file,
                on_ready=on_ready,
                progress=progress,
                progress_interval=progress_interval,
                loop_name=loop_name,
            )
        )


def _raise_descriptor_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit, as servers do; never raises."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if resource.RLIM_INFINITY not in (hard, soft) and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _descriptor_limit() -> str:
    try:
        import resource

        return str(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    except (ImportError, ValueError, OSError):  # pragma: no cover - not POSIX
        return "?"


def _exhaustion_handler(
    on_warning: Callable[[str], None] | None,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """A loop exception handler: EMFILE/ENFILE on accept() become one warning now and then
    (the connection waits in the listen queue and asyncio retries); the rest as usual."""
    last = -math.inf

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        nonlocal last
        error = context.get("exception")
        if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
            now = loop.time()
            if now - last >= _EXHAUSTED_WARNING_INTERVAL:
                last = now
                if on_warning is not None:
                    on_warning(
                        f"out of file descriptors (ulimit -n {_descriptor_limit()}): new "
                        "connections wait until others close; raise the limit or cap them "
                        "with --max-connections"
                    )
            return
        loop.default_exception_handler(context)

    return handle


def _loop_factory(kind: LoopKind) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    if kind is LoopKind.ASYNCIO:
        return None, "asyncio"
    try:
        uvloop = importlib.import_module("uvloop")  # absent on Windows
    except ImportError:
        if kind is LoopKind.UVLOOP:
            from mailctl.errors import UsageError

            raise UsageError(
                "--loop uvloop: uvloop is not installed",
                hint="pip install uvloop, or use --loop asyncio",
            ) from None
        return None, "asyncio"
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory, "uvloop"


async def _serve(
    config: SinkConfig,
    *,
    ready_file: Path | None,
    on_ready: Callable[[dict[str, Any]], None] | None,
    progress: Callable[[SinkStats], None] | None,
    progress_interval: float,
    loop_name: str,
) -> SinkRun:
    loop = asyncio.get_running_loop()
    server = SinkServer(config)
    stopped_by = "max-messages or duration"
    signalled = asyncio.Event()

    def on_signal(name: str) -> None:
        nonlocal stopped_by
        stopped_by = name
        signalled.set()
        server.stop_requested.set()

    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig.name)
            installed.append(sig)
    try:
        await server.start()
        try:
            ready = server.ready_info()
            if ready_file is not None:
                write_output(
                    ready_file, (json.dumps(ready) + "\n").encode(), mode=0o600, what="ready file"
                )
            if on_ready is not None:
                on_ready(ready)
            waiter = asyncio.ensure_future(server.stop_requested.wait())
            while not waiter.done():
                await asyncio.wait([waiter], timeout=progress_interval if progress else None)
                if progress is not None:
                    progress(server.stats)
            if not signalled.is_set():
                limit = config.max_messages
                reached = limit is not None and server.stats.messages >= limit
                stopped_by = "max-messages" if reached else "duration"
        finally:
            stats = await server.stop()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    return SinkRun(stats=stats, ready=ready, loop=loop_name, stopped_by=stopped_by)
