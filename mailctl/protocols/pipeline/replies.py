"""Replies of a pipelined connection as `Reply` objects: a small cache and the one-line form."""

from __future__ import annotations

from mailctl.models import Reply
from mailctl.protocols.pipeline.reader import ReplyTuple

__all__ = ["cached_reply", "one_line"]

# Servers repeat the same few replies ("250 2.1.0 Ok"): reuse the immutable Reply objects.
_REPLY_CACHE: dict[tuple[int, bytes], Reply] = {}
_REPLY_CACHE_SIZE = 512


def cached_reply(raw: ReplyTuple) -> Reply:
    key = (raw[0], raw[1])
    found = _REPLY_CACHE.get(key)
    if found is None:
        found = Reply(raw[0], raw[1].decode("utf-8", "surrogateescape"))
        if len(_REPLY_CACHE) < _REPLY_CACHE_SIZE:
            _REPLY_CACHE[key] = found
    return found


def one_line(reply: Reply) -> str:
    return " ".join(f"{reply.code} {reply.message}".split())
