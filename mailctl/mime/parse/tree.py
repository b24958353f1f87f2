"""Untrusted bytes -> the email package's message tree, with every ParseLimits bound enforced
while parsing, and an iterative walk over the tree.

The email package's FeedParser has no limits of its own and costs ~0.5 ms per part, so a
check after parsing would come too late: the part count and depth are checked in its message
factory, the header block of each part before its header parser sees it, and the message
size and line count before anything is parsed. Bytes are fed in chunks, so the parser never
holds more unparsed lines than one chunk makes.
"""

from __future__ import annotations

from collections.abc import Iterator
from email.feedparser import BytesFeedParser
from email.message import EmailMessage, Message
from email.policy import compat32
from typing import TYPE_CHECKING, Any, Final

from mailctl.errors import MailctlError, MessageParseError
from mailctl.inputs import describe
from mailctl.mime.parse.limits import ParseLimits, limit_error
from mailctl.mime.wire_policy import wire_policy

__all__ = ["count_lines", "parse_email", "parse_tree", "walk"]

_CHUNK: Final = 64 * 1024


class _LimitExceeded(Exception):
    """Raised inside the parser to stop it; carries the MailctlError to raise instead."""


def count_lines(data: bytes) -> int:
    """Lines as the email package splits them: CRLF, LF and a bare CR each end one."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n") + 1


def check_size(data: bytes, limits: ParseLimits) -> None:
    """Refuse a message over max_message_bytes or max_lines before parsing it.

    Raises MessageParseError.
    """
    if len(data) > limits.max_message_bytes:
        limit = limits.max_message_bytes
        raise limit_error(
            f"is {len(data)} bytes, over {describe(limit)}", "max_message_bytes", limit
        )
    lines = count_lines(data)
    if lines > limits.max_lines:
        raise limit_error(
            f"has {lines} lines, more than {limits.max_lines}", "max_lines", limits.max_lines
        )


if TYPE_CHECKING:
    _Base = BytesFeedParser[Message]
else:  # not subscriptable at run time
    _Base = BytesFeedParser


class _BoundedParser(_Base):
    """BytesFeedParser with the header limits checked on each header block's raw lines."""

    def __init__(self, limits: ParseLimits, *, modern: bool) -> None:
        self.limits = limits
        self.created = 0
        self.kind: type[Message] = EmailMessage if modern else Message
        policy = wire_policy().clone(linesep="\n") if modern else compat32
        super().__init__(_factory=self._make, policy=policy)
        self.created = 0  # FeedParser calls the factory once to probe its signature

    def _make(self, **kwargs: Any) -> Message:
        self.created += 1
        if self.created > self.limits.max_parts:
            limit = self.limits.max_parts
            raise _LimitExceeded(
                limit_error(f"has more than {limit} MIME parts", "max_parts", limit)
            )
        # FeedParser keeps the open ancestors of the part being created in _msgstack.
        stack = getattr(self, "_msgstack", None)
        if stack is not None and len(stack) > self.limits.max_depth:
            raise _LimitExceeded(_depth_error(self.limits))
        return self.kind(**kwargs)

    def _parse_headers(self, lines: list[str]) -> None:
        # Before the policy sees the block: its header parser is slow on long values.
        total = 0
        for line in lines:
            if len(line) > self.limits.max_header_line:
                limit = self.limits.max_header_line
                what = f"has a header line longer than {describe(limit)}"
                raise _LimitExceeded(limit_error(what, "max_header_line", limit))
            total += len(line)
        if total > self.limits.max_headers_bytes:
            limit = self.limits.max_headers_bytes
            what = f"has a header block larger than {describe(limit)}"
            raise _LimitExceeded(limit_error(what, "max_headers_bytes", limit))
        super()._parse_headers(lines)  # type: ignore[misc]


def _depth_error(limits: ParseLimits) -> MessageParseError:
    limit = limits.max_depth
    return limit_error(f"nests more than {limit} levels deep", "max_depth", limit)


def parse_tree(data: bytes, limits: ParseLimits) -> Message:
    """Parse `data` within `limits` into a tree whose header values stay raw text.

    compat32 on purpose: policy.default builds a header object each time a header is read,
    and the parser reads Content-Type several times per part (~2 ms of a 10 KB message's
    2.5 ms here). mime.parse decodes the few headers it shows itself (decode.py).
    Raises MessageParseError (65) naming the limit that tripped; never RecursionError.
    """
    return _parse(data, limits, modern=False)


def parse_email(data: bytes, limits: ParseLimits) -> EmailMessage:
    """parse_tree with policy.default semantics (header objects), for a message to send as
    is (read_eml). Raises MessageParseError as parse_tree does."""
    message = _parse(data, limits, modern=True)
    assert isinstance(message, EmailMessage)
    return message


def _parse(data: bytes, limits: ParseLimits, *, modern: bool) -> Message:
    check_size(data, limits)
    parser = _BoundedParser(limits, modern=modern)
    try:
        view = memoryview(data)
        for start in range(0, len(data), _CHUNK):
            parser.feed(bytes(view[start : start + _CHUNK]))
        return parser.close()
    except _LimitExceeded as stop:
        error = stop.args[0]
        raise error from None
    except RecursionError:  # pragma: no cover - the depth limit stops far earlier
        raise _depth_error(limits) from None
    except MailctlError:
        raise
    except Exception as err:
        # The email package's header parser raises IndexError and friends on some values.
        raise MessageParseError(
            f"the message cannot be parsed ({type(err).__name__} in the email package)",
            hint="a message this malformed is refused rather than guessed at",
        ) from err


def walk(message: Message) -> Iterator[tuple[Message, int]]:
    """Every part of `message` in document order with its depth, without recursion.

    message/rfc822 parts are yielded but not entered: their content is another message.
    """
    stack: list[tuple[Message, int]] = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        yield part, depth
        children = part.get_payload() if part.is_multipart() else None
        if isinstance(children, list) and _maintype(part) == "multipart":
            stack.extend(
                (child, depth + 1) for child in reversed(children) if isinstance(child, Message)
            )


def _maintype(part: Message) -> str:
    try:
        return part.get_content_maintype()
    except Exception:  # the header parser raises on some malformed values: not a container
        return "application"
