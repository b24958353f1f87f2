"""Where the pipeline takes its next transaction from: a sync or an async iterable."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Iterable, Iterator

from mailctl.protocols.pipeline.prepare import PreparedTransaction

__all__ = ["AsyncSource", "SyncSource"]


class SyncSource:
    def __init__(self, items: Iterable[PreparedTransaction]) -> None:
        self._items: Iterator[PreparedTransaction] = iter(items)

    def poll(self) -> PreparedTransaction | None:
        return next(self._items, None)

    async def next(self) -> PreparedTransaction | None:
        return next(self._items, None)

    async def aclose(self) -> None:
        pass


class AsyncSource:
    """An async source; `poll` returns an item only if one is ready now (for chaining)."""

    def __init__(self, items: AsyncIterable[PreparedTransaction]) -> None:
        self._items = aiter(items)
        self._task: asyncio.Future[PreparedTransaction | None] | None = None

    def poll(self) -> PreparedTransaction | None:
        if self._task is None:
            self._task = asyncio.ensure_future(anext(self._items, None))
        if self._task.done():
            task, self._task = self._task, None
            return task.result()
        return None

    async def next(self) -> PreparedTransaction | None:
        if self._task is None:
            return await anext(self._items, None)
        task, self._task = self._task, None
        return await task

    async def aclose(self) -> None:
        """Cancel a prefetch in progress and wait for it: the caller's generator may then
        be closed (closing it while the prefetch still runs it would fail)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
