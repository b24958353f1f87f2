"""What the pool sends: a payload (envelope and message, prepared once) and the job around it,
and the bounded queue of jobs waiting for their retry."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

from mailctl.models import Envelope
from mailctl.protocols.pipeline import (
    PreparedTransaction,
    WireMessage,
    prepare_message,
    prepare_transaction,
)

__all__ = ["Job", "Payload", "RetryQueue"]


class Payload:
    """One message and its envelope. The wire form (CRLF, dot-stuffed) is made once, and the
    MAIL/RCPT/DATA commands once per server (they depend on its SIZE, 8BITMIME and SMTPUTF8
    extensions), so a payload shared by many jobs (bench) costs nothing per message."""

    __slots__ = ("_commands", "_extensions", "_wire", "data", "eight_bit", "envelope", "smtputf8")

    def __init__(
        self,
        envelope: Envelope,
        data: bytes,
        *,
        smtputf8: bool = False,
        eight_bit: bool | None = None,
    ) -> None:
        self.envelope = envelope
        self.data = data
        self.smtputf8 = smtputf8
        self.eight_bit = any(byte > 127 for byte in data) if eight_bit is None else eight_bit
        self._wire: WireMessage | None = None
        self._extensions: Mapping[str, str] | None = None
        self._commands: PreparedTransaction | None = None

    @property
    def wire(self) -> WireMessage:
        """The message as it goes after 354. Raises InputDataError (a line over 998 octets)."""
        if self._wire is None:
            self._wire = prepare_message(self.data)
        return self._wire

    def transaction(self, extensions: Mapping[str, str]) -> PreparedTransaction:
        """The pipelined transaction for a server with these EHLO `extensions`.

        Raises AddressError, InputDataError and MessageTooLargeError (see
        prepare_transaction): the message cannot go to this server.
        """
        known = self._extensions
        if self._commands is None or (known is not extensions and known != extensions):
            self._commands = prepare_transaction(
                self.envelope,
                self.wire,
                extensions=extensions,
                smtputf8=self.smtputf8,
                eight_bit=self.eight_bit,
            )
            self._extensions = extensions
        return self._commands


@dataclass(slots=True, eq=False)
class Job:
    """One message to send: the payload, the caller's key and what happened to it so far."""

    payload: Payload
    tag: Hashable | None = None
    origin: float = 0.0  # the caller's latency origin (perf_counter), 0.0: none
    attempts: int = 0  # transactions tried, sent or not (free reconnects not included)
    reconnects: int = 0  # resends after a reused connection was found gone
    due: float = 0.0  # monotonic time before which a retry must not start


class RetryQueue:
    """Jobs waiting for their retry, earliest due first; at most `limit` of them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.heap: list[tuple[float, int, Job]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self.heap)

    @property
    def full(self) -> bool:
        return len(self.heap) >= self.limit

    def push(self, job: Job, due: float) -> None:
        job.due = due
        heapq.heappush(self.heap, (due, next(self._order), job))

    def pop_due(self, now: float) -> Job | None:
        """The earliest job whose time has come, or None."""
        heap = self.heap
        if heap and heap[0][0] <= now:
            return heapq.heappop(heap)[2]
        return None

    def next_due(self) -> float | None:
        return self.heap[0][0] if self.heap else None

    def drain(self) -> list[Job]:
        """Every waiting job, earliest first; the queue is left empty."""
        jobs = [entry[2] for entry in sorted(self.heap)]
        self.heap.clear()
        return jobs
