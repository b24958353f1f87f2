"""Typed values shared by every layer: settings, requests and results (stdlib only)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class Security(StrEnum):
    """How a connection is protected; STARTTLS is required when chosen, never opportunistic."""

    TLS = "tls"
    STARTTLS = "starttls"
    NONE = "none"


class AuthMechanism(StrEnum):
    PLAIN = "plain"
    LOGIN = "login"
    CRAM_MD5 = "cram-md5"
    XOAUTH2 = "xoauth2"


class Protocol(StrEnum):
    SMTP = "smtp"
    IMAP = "imap"
    POP3 = "pop3"


DEFAULT_PORTS: dict[Protocol, dict[Security, int]] = {
    Protocol.SMTP: {Security.TLS: 465, Security.STARTTLS: 587, Security.NONE: 25},
    Protocol.IMAP: {Security.TLS: 993, Security.STARTTLS: 143, Security.NONE: 143},
    Protocol.POP3: {Security.TLS: 995, Security.STARTTLS: 110, Security.NONE: 110},
}


@dataclass(frozen=True)
class Timeouts:
    """Seconds; every network wait in mailctl is bounded by one of these."""

    connect: float = 30.0
    command: float = 60.0
    data: float = 300.0


@dataclass(frozen=True)
class ServerSettings:
    """One server block of an account (or the equivalent built from command-line flags)."""

    host: str
    port: int
    security: Security = Security.STARTTLS
    username: str | None = None
    auth: AuthMechanism | None = None  # None: pick one advertised mechanism, try it once
    password_command: str | None = None
    ca_file: Path | None = None
    verify: bool = True  # False only through --insecure, with a warning
    allow_plaintext_auth: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True)
class Account:
    """A named account: the From address, its servers and EHLO name."""

    name: str
    from_address: str | None = None  # "Name <addr>" used when --from is absent
    smtp: ServerSettings | None = None
    imap: ServerSettings | None = None
    pop3: ServerSettings | None = None
    ehlo: str | None = None

    def server(self, protocol: Protocol) -> ServerSettings | None:
        found: ServerSettings | None = getattr(self, protocol.value)
        return found


@dataclass(frozen=True)
class Config:
    """The validated config file: accounts by name and the default one."""

    accounts: dict[str, Account]
    default_account: str | None = None
    path: Path | None = None
    # Problems that do not stop loading (e.g. a password stored in the file, which is ignored).
    warnings: tuple[str, ...] = ()


_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True)
class Reply:
    """An SMTP reply; `message` keeps multi-line replies joined with newlines."""

    code: int
    message: str

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 enhanced status code at the start of the text, if any."""
        match = _ENHANCED.match(self.message)
        return match.group(0) if match else None

    @property
    def is_permanent(self) -> bool:
        return 500 <= self.code <= 599

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code <= 499

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "enhanced": self.enhanced, "message": self.message}


@dataclass(frozen=True)
class Envelope:
    """SMTP envelope: what MAIL FROM and RCPT TO carry, independent of the headers."""

    sender: str  # may be "" for the null reverse-path
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class RecipientResult:
    """The server's reply to one RCPT TO."""

    address: str
    accepted: bool
    reply: Reply

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "accepted": self.accepted, "reply": self.reply.to_json()}
