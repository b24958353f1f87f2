"""A session-pool feed over a fixed list of jobs, for the pool tests."""

from __future__ import annotations

from mailctl.core.pool import Job


class ListFeed:
    def __init__(self, items: list[Job]) -> None:
        self._items = iter(items)
        self._done = False

    def take(self) -> Job | None:
        found = next(self._items, None)
        self._done = found is None
        return found

    def exhausted(self) -> bool:
        return self._done
