"""The bulk RETR path of POP3: pipelined commands (RFC 2449 6.6), answers read in blocks.

poplib sends one RETR, waits, and builds the message line by line (one Python object a
line). Here RETR commands go out in a sliding window when the server lists PIPELINING
(else one at a time), and each answer is read from the session's `Wire` as one block up
to its lone "." line; the scan for that line also finds the doubled dots, so unstuffing
is a join of slices. Every answer is bounded like a single RETR: `max_message` (as sent,
dot-stuffed) and a `data_timeout` deadline of its own; answers are counted against the
commands sent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from mailctl.errors import ConnectionLostError, ProtocolError
from mailctl.protocols.pop3.types import Pop3Message
from mailctl.text import excerpt

if TYPE_CHECKING:
    from mailctl.protocols.pop3.wire import BoundedPOP3
    from mailctl.protocols.wire import Wire

# Commands in flight at once: RETR lines are ~12 octets, so a window never fills a socket
# buffer (no deadlock with a server that stops reading while its answers queue up).
WINDOW = 128


def unstuff(block: bytes, dots: Sequence[int]) -> bytes:
    """The message in a multi-line answer block (terminator included): the "." line
    removed, and the dot at each index of `dots` (RFC 1939 3: one of a doubled leading
    pair, as `Wire.read_dot_block` found them). Line ends stay as sent."""
    if block.endswith(b"\n.\r\n"):
        body = block[:-3]
    elif block.endswith(b"\n.\n"):
        body = block[:-2]
    else:
        return b""  # the block was the "." line alone: an empty message
    if not dots:
        return body
    pieces = []
    last = 0
    for dot in dots:
        pieces.append(body[last:dot])
        last = dot + 1
    pieces.append(body[last:])
    return b"".join(pieces)


def retrieve(
    pop: BoundedPOP3,
    wire: Wire,
    *,
    where: str,
    numbers: Sequence[int],
    sizes: Mapping[int, int],
    uids: Mapping[int, str] | None,
    pipelining: bool,
) -> Iterator[Pop3Message]:
    """RETR each of `numbers` and yield the messages in that order.

    With `pipelining`, up to `WINDOW` commands are in flight: the first window goes out in
    one write, then more each time half of it was answered, so the server never waits
    for commands. Without, one command at a time. Consume the iterator to the end:
    stopping early abandons the connection (answers are still coming).
    Raises ResponseLimitError, TimeoutFailure, ConnectionLostError, ProtocolError (-ERR).
    """
    window = WINDOW if pipelining else 1
    queue = deque(numbers)
    in_flight: deque[int] = deque()

    def send(count: int) -> None:
        lines: list[bytes] = []
        while queue and len(lines) < count:
            number = queue.popleft()
            in_flight.append(number)
            lines.append(b"RETR %d" % number)
        if not lines:
            return
        if len(in_flight) == len(lines):  # nothing unanswered: a fresh command
            with wire.message_command("RETR"):
                pop.send_commands("RETR", lines)
        else:  # answers are still coming: more of the same pipelined command
            pop.send_more(lines)

    finished = False
    try:
        send(window)
        first = True
        while in_flight:
            if not first:
                wire.next_message()  # each answer gets its own budgets and deadline
            first = False
            message = _answer(
                pop, wire, where=where, number=in_flight.popleft(), sizes=sizes, uids=uids
            )
            if len(in_flight) <= window // 2:
                send(window - len(in_flight))
            yield message
        finished = True
    finally:
        if not finished:
            wire.abandon("pipelined RETR answers")


def _answer(
    pop: BoundedPOP3,
    wire: Wire,
    *,
    where: str,
    number: int,
    sizes: Mapping[int, int],
    uids: Mapping[int, str] | None,
) -> Pop3Message:
    status = wire.readline(pop.sock)
    if not status.endswith(b"\n"):
        raise ConnectionLostError(f"POP3 server {where} closed the connection during RETR")
    # RFC 1939 3: "+OK" then SP or the line end; anything else is not a success.
    if not (status.startswith(b"+OK") and status[3:4] in (b" ", b"\r", b"\n")):
        raise ProtocolError(
            f"POP3 server {where} answered RETR {number} with {excerpt(status)}",
            hint="the message may be gone; run the command again",
        )
    block, dots = wire.read_dot_block(pop.sock)
    if not (block in (b".\r\n", b".\n") or block.endswith((b"\n.\r\n", b"\n.\n"))):
        raise ConnectionLostError(
            f"POP3 server {where} closed the connection in the middle of message {number}"
        )
    data = unstuff(block, dots)
    return Pop3Message(
        number=number,
        uid=uids.get(number) if uids is not None else None,
        size=sizes.get(number, len(data)),
        data=data,
    )
