"""The values a parsed message becomes (frozen dataclasses written to JSON by mailctl.serialize)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "AddressInfo",
    "AttachmentInfo",
    "AttachmentPart",
    "AuthVerdict",
    "DsnInfo",
    "DsnRecipient",
    "HeaderField",
    "MessageSummary",
    "ParsedMessage",
    "ReceivedHop",
]

# mailctl.serialize metadata, written as plain dicts (see its docstring): `from` and `with`
# are Python keywords, seconds are written in milliseconds, the payload is never written.
_FROM: Final[dict[str, Any]] = {"json": "from"}
_WITH: Final[dict[str, Any]] = {"json": "with"}
_SECONDS: Final[dict[str, Any]] = {"json_unit": "s"}
_SKIP: Final[dict[str, Any]] = {"json": False}


@dataclass(frozen=True)
class HeaderField:
    """One header field, its value decoded (RFC 2047, RFC 6532) and unfolded."""

    name: str
    value: str


@dataclass(frozen=True)
class AddressInfo:
    """One mailbox of an address header: the display name decoded, the address as given."""

    name: str
    address: str


@dataclass(frozen=True)
class AttachmentInfo:
    """An attachment or inline part: the name as the message gives it (untrusted), the size
    and SHA-256 of its decoded content."""

    name: str | None
    content_type: str
    size: int
    sha256: str
    content_id: str | None
    inline: bool


@dataclass(frozen=True)
class AttachmentPart:
    """An attachment with its content (transfer encoding undone), for saving."""

    name: str | None
    content_type: str
    content_id: str | None
    inline: bool
    payload: bytes = field(repr=False, metadata=_SKIP)


@dataclass(frozen=True)
class ReceivedHop:
    """One Received field (RFC 5321 4.4), oldest hop first; `delay` since the previous hop."""

    from_: str | None = field(metadata=_FROM)
    by: str | None
    with_: str | None = field(metadata=_WITH)
    timestamp: str | None  # ISO 8601
    delay: float | None = field(default=None, metadata=_SECONDS)


@dataclass(frozen=True)
class AuthVerdict:
    """One method's result in an Authentication-Results field (RFC 8601 2.2)."""

    authserv_id: str
    method: str  # spf, dkim, dmarc, arc, ...
    result: str  # pass, fail, softfail, neutral, none, temperror, permerror, ...
    properties: dict[str, str]  # "smtp.mailfrom": "example.org", "header.d": ...


@dataclass(frozen=True)
class DsnRecipient:
    """The per-recipient fields of a delivery status notification (RFC 3464 2.3)."""

    original_recipient: str | None
    final_recipient: str | None
    action: str | None  # failed, delayed, delivered, relayed, expanded
    status: str | None  # RFC 3463 enhanced code, e.g. 5.1.1
    diagnostic_code: str | None
    remote_mta: str | None


@dataclass(frozen=True)
class DsnInfo:
    """A bounce's machine-readable part (multipart/report; report-type=delivery-status)."""

    reporting_mta: str | None
    recipients: tuple[DsnRecipient, ...]


@dataclass(frozen=True)
class ParsedMessage:
    """A message as data. Every string came from the message: untrusted, shown only through
    mailctl.text.inert. `problems` lists what was read leniently (a bad charset, a bad
    address); the message was parsed all the same."""

    size: int
    subject: str | None
    from_: tuple[AddressInfo, ...] = field(metadata=_FROM)
    to: tuple[AddressInfo, ...]
    cc: tuple[AddressInfo, ...]
    reply_to: tuple[AddressInfo, ...]
    date: str | None
    date_iso: str | None
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    text: str | None
    html: str | None
    attachments: tuple[AttachmentInfo, ...]
    received: tuple[ReceivedHop, ...]
    authentication: tuple[AuthVerdict, ...]
    list_unsubscribe: tuple[str, ...]
    list_unsubscribe_one_click: bool
    dsn: DsnInfo | None
    headers: tuple[HeaderField, ...]
    problems: tuple[str, ...]


@dataclass(frozen=True)
class MessageSummary:
    """The cheap view of a message for envelope listings; `problem` says what could not be
    read (the rest is filled as far as it goes)."""

    message_id: str | None
    date_iso: str | None
    from_: str | None = field(metadata=_FROM)
    to: str | None
    subject: str | None
    size: int
    attachment_count: int
    problem: str | None = None
