"""A small asyncio TCP server in its own thread on 127.0.0.1:0, bounded in lifetime.

Tests that need a server saying exactly what they script (a tarpit, a throttling SMTP
server) give it a handler; the server counts connections, aborts each one when its handler
returns, and stops by itself after `lifetime` seconds at the latest.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class ThreadedServer:
    """An asyncio server in a thread, on 127.0.0.1:0, that lives at most `lifetime` seconds."""

    def __init__(self, handler: Handler, lifetime: float = 60.0) -> None:
        self.accepted = 0
        self.port = 0
        self._handler = handler
        self._lifetime = lifetime
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the test server did not start"

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                with contextlib.suppress(
                    OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.CancelledError
                ):
                    await self._handler(reader, writer)
            finally:
                writer.transport.abort()
                tasks.discard(task)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), self._lifetime)
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
