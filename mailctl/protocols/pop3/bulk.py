"""The bulk RETR path of POP3: pipelined commands (RFC 2449 6.6), answers read in blocks.

poplib sends one RETR, waits, and builds the message line by line (one Python object a
line). Here a window of RETR commands goes out in one write when the server lists
PIPELINING (else one at a time), and each answer is read from the session's `Wire` as
one block up to its lone "." line, then dot-unstuffed with two C-level passes. Every
answer is bounded like a single RETR: `max_message` (as sent, dot-stuffed) and a
`data_timeout` deadline of its own; the caller counts answers against the commands sent.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from mailctl.errors import ConnectionLostError, ProtocolError
from mailctl.protocols.pop3.types import Pop3Message
from mailctl.text import excerpt

if TYPE_CHECKING:
    from mailctl.protocols.pop3.wire import BoundedPOP3
    from mailctl.protocols.wire import Wire

CRLF = b"\r\n"
# Commands in flight at once: RETR lines are ~12 octets, so a window never fills a socket
# buffer (no deadlock with a server that stops reading while its answers queue up).
WINDOW = 64


def unstuff(block: bytes) -> bytes:
    """The message in a multi-line answer block (terminator included): the "." line
    removed, a leading dot removed from every line that has one doubled (RFC 1939 3),
    bare LF line ends made CRLF (as poplib-based `retr` does)."""
    if block.endswith(b"\n.\r\n"):
        body = block[:-3]
    elif block.endswith(b"\n.\n"):
        body = block[:-2]
    else:
        body = b""  # the block was the "." line alone: an empty message
    if body.count(b"\n") != body.count(CRLF):
        body = b"".join(
            (line[:-1] if line.endswith(b"\r") else line) + CRLF for line in body.split(b"\n")[:-1]
        )
    if body.startswith(b".."):
        body = body[1:]
    return body.replace(b"\n..", b"\n.")


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

    With `pipelining`, up to `WINDOW` commands per write; else one. The caller runs this
    inside `Wire.message_command("RETR")` for each window (done here) and consumes it to
    the end: stopping early abandons the connection (answers are still coming).
    Raises ResponseLimitError, TimeoutFailure, ConnectionLostError, ProtocolError (-ERR).
    """
    window = WINDOW if pipelining else 1
    for start in range(0, len(numbers), window):
        chunk = numbers[start : start + window]
        with wire.message_command("RETR"):
            pop.send_commands("RETR", [b"RETR %d" % number for number in chunk])
        finished = False
        try:
            for index, number in enumerate(chunk):
                if index:
                    wire.next_message()  # each answer gets its own budgets and deadline
                yield _answer(pop, wire, where=where, number=number, sizes=sizes, uids=uids)
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
    block = wire.read_dot_block(pop.sock)
    if not (block in (b".\r\n", b".\n") or block.endswith((b"\n.\r\n", b"\n.\n"))):
        raise ConnectionLostError(
            f"POP3 server {where} closed the connection in the middle of message {number}"
        )
    data = unstuff(block)
    return Pop3Message(
        number=number,
        uid=uids.get(number) if uids is not None else None,
        size=sizes.get(number, len(data)),
        data=data,
    )
