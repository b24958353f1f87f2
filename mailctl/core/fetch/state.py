"""What earlier fetches into one destination took (`FetchState`), kept in the XDG state dir.

One JSON file per account (server and user), folder and destination, under
`state_dir()/fetch/`, named by a hash of those, written atomically (temp, fsync, rename)
and only after the messages it lists are durable. IMAP: the folder's UIDVALIDITY, the
highest UID taken, and a hash of each taken message's Message-ID (RFC 3501 2.3.1.1: when
UIDVALIDITY changes, every UID may name another message, so messages are matched again by
Message-ID instead of being fetched all over again). POP3: the UIDL ids taken (RFC 1939 7).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mailctl.errors import CantCreateError, ConfigError
from mailctl.store.files import write_atomic

VERSION = 1
# A bound on the file (a state file is ours, but a damaged one must not exhaust memory).
MAX_STATE_BYTES = 256 * 1024 * 1024
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_MESSAGE_ID = re.compile(
    rb"^message-id:[ \t]*((?:[^\r\n]|\r?\n[ \t])*)", re.IGNORECASE | re.MULTILINE
)


def header_block(data: bytes) -> bytes:
    """The header block of a message (everything before the first empty line)."""
    match = _HEADER_END.search(data)
    return data[: match.start()] if match else data


def message_key(data: bytes) -> str:
    """A message's identity across UIDVALIDITY changes: a hash of its Message-ID, or of its
    whole header block when it has none (RFC 5322 3.6.4 makes Message-ID optional).

    `data` is the message or its header block (BODY[HEADER]); both give the same key.
    """
    headers = _header_block(data)
    match = _MESSAGE_ID.search(headers)
    if match:
        value = b"".join(match.group(1).split())
        if value:
            return hashlib.sha256(b"id:" + value).hexdigest()[:32]
    return hashlib.sha256(b"headers:" + headers).hexdigest()[:32]


def _header_block(data: bytes) -> bytes:
    """`header_block(data)`, in C for the usual CRLF message: the first CRLF CRLF is the
    end unless a bare-LF blank line ("\n\n" or "\n\r\n") comes before it."""
    end = data.find(b"\r\n\r\n")
    if end >= 0 and data.find(b"\n\n", 0, end) < 0 and data.find(b"\n\r\n", 0, end + 2) < 0:
        return data[:end]
    return header_block(data)


@dataclass
class FetchState:
    """The state of one (account, folder, destination); `path` is its file."""

    path: Path
    identity: dict[str, str]
    uidvalidity: int | None = None
    uids: set[int] = field(default_factory=set)  # taken under `uidvalidity`
    keys: set[str] = field(default_factory=set)
    uidls: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, folder: Path, identity: dict[str, str]) -> FetchState:
        """The state for `identity` (protocol, server, user, folder, destination), or an
        empty one. Raises ConfigError when the file is there but unreadable or damaged."""
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        path = folder / f"{identity['protocol']}-{digest[:24]}.json"
        state = cls(path=path, identity=identity)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return state
        except OSError as err:
            raise _damaged(path, err.strerror or str(err)) from err
        with os.fdopen(fd, "rb") as handle:
            raw = handle.read(MAX_STATE_BYTES + 1)
        if len(raw) > MAX_STATE_BYTES:
            raise _damaged(path, "larger than any state file mailctl writes")
        try:
            data = json.loads(raw)
            if data.get("version") != VERSION or data.get("identity") != identity:
                raise ValueError("not this fetch's state")
            validity = data.get("uidvalidity")
            state.uidvalidity = int(validity) if validity is not None else None
            state.uids = parse_ranges(str(data.get("uids", "")))
            state.keys = {str(k) for k in data.get("message_keys", [])}
            state.uidls = {str(u) for u in data.get("uidls", [])}
        except (ValueError, TypeError, AttributeError) as err:
            raise _damaged(path, str(err)) from err
        return state

    def save(self) -> None:
        """Write the state atomically (0600; its folder 0700). Raises CantCreateError."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise CantCreateError(
                f"cannot create the fetch state folder {self.path.parent}: {err.strerror}",
                hint="check $XDG_STATE_HOME and its permissions",
            ) from err
        document = {
            "version": VERSION,
            "identity": self.identity,
            "uidvalidity": self.uidvalidity,
            "uids": format_ranges(self.uids),
            "message_keys": sorted(self.keys),
            "uidls": sorted(self.uidls),
        }
        write_atomic(self.path, json.dumps(document).encode(), what="fetch state")


def format_ranges(numbers: set[int]) -> str:
    """UIDs as an IMAP-style set, "1:500,502,510:900" (RFC 3501 9): short for runs."""
    parts: list[str] = []
    ordered = sorted(numbers)
    index = 0
    while index < len(ordered):
        start = end = ordered[index]
        index += 1
        while index < len(ordered) and ordered[index] == end + 1:
            end = ordered[index]
            index += 1
        parts.append(str(start) if start == end else f"{start}:{end}")
    return ",".join(parts)


def parse_ranges(text: str) -> set[int]:
    """The UIDs of `format_ranges`' text. Raises ValueError when it is not such a set."""
    numbers: set[int] = set()
    for part in filter(None, text.split(",")):
        low, _, high = part.partition(":")
        first, last = int(low), int(high or low)
        if last < first or last - first > 100_000_000:
            raise ValueError(f"bad UID range {part!r}")
        numbers.update(range(first, last + 1))
    return numbers


def _damaged(path: Path, why: str) -> ConfigError:
    return ConfigError(
        f"the fetch state file {path} cannot be read: {why}",
        hint="move it away to start over (the next --new run then fetches everything again)",
        details={"file": str(path)},
    )
