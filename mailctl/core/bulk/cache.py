"""The messages the validation pass rendered, kept (up to a byte budget) for the send loop.

Every row is rendered once to validate it, before the journal has made its Message-ID; the
send loop would render it again with that ID (DESIGN.md: rendering is the bulk hot path). So
the validation pass renders with a stand-in ID of the same length, and once the journal
has given the row its ID, the one `Message-ID:` header line of the rendered bytes is
rewritten in place: same length, same folding (an unstructured header without spaces is
never folded), nothing else touched. A row whose header does not match exactly once, or
whose ID would change length, is simply not kept: the send loop renders it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailctl.mime.template import RenderedMessage

__all__ = ["DEFAULT_BUDGET", "RenderCache", "stand_in_id"]

DEFAULT_BUDGET = 16 * 2**20  # bytes of messages kept: ~7,500 rows of 2 KB (RSS stays < 100 MB)
_HEADER = b"\r\nMessage-ID: "


def stand_in_id(domain: str) -> str:
    """A Message-ID of the length the journal's will have for `domain` (<32 hex@domain>)."""
    return f"<{'0' * 32}@{domain or 'localhost'}>"


@dataclass(frozen=True, slots=True)
class Kept:
    sender: str
    recipients: tuple[str, ...]
    smtputf8: bool
    data: bytes


class RenderCache:
    """Rendered messages by row identity, at most `budget` bytes of them."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self.size = 0
        self._kept: dict[str, Kept] = {}

    def __len__(self) -> int:
        return len(self._kept)

    def put(self, identity: str, rendered: RenderedMessage, stand_in: str, real: str) -> bool:
        """Keep `rendered` (made with `stand_in` as its Message-ID) under its `real` ID; False
        when it is not kept (no room, a length or header mismatch)."""
        data = rendered.data
        if self.size + len(data) > self.budget or len(stand_in) != len(real):
            return False
        old = _HEADER + stand_in.encode("ascii") + b"\r\n"
        end = data.find(b"\r\n\r\n")
        first = data.find(old)
        if first < 0 or first >= end or data.find(old, first + 1) >= 0:
            return False
        new = _HEADER + real.encode("ascii") + b"\r\n"
        data = data[:first] + new + data[first + len(old) :]
        self._kept[identity] = Kept(
            rendered.sender.addr_spec,
            tuple(m.addr_spec for m in rendered.recipients),
            rendered.smtputf8,
            data,
        )
        self.size += len(data)
        return True

    def pop(self, identity: str) -> Kept | None:
        kept = self._kept.pop(identity, None)
        if kept is not None:
            self.size -= len(kept.data)
        return kept
