"""Typed values shared by every layer: settings, requests and results (stdlib only)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import ClassVar, Final


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


# mailctl.serialize metadata: a duration held in seconds, written as `<key>_ms` (this module is a
# stdlib-only leaf, so it spells the metadata out instead of importing serialize.SECONDS).
_SECONDS: Final = {"json_unit": "s"}
# Sessions one session pool may hold (bench -c, bulk-send -c): here, so that checking the
# option does not import the pool (asyncio, the SMTP client) for a dry run.
MAX_CONCURRENCY: Final = 1000


@dataclass(frozen=True)
class Timeouts:
    """Seconds; every network wait in mailctl is bounded by one of these."""

    connect: float = field(default=30.0, metadata=_SECONDS)
    command: float = field(default=60.0, metadata=_SECONDS)
    data: float = field(default=300.0, metadata=_SECONDS)


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
    # The name the certificate is checked against (TLS server_hostname: SNI and the name
    # check) when it is not `host`, e.g. connecting to an IP address (msmtp's tls_host_override).
    tls_name: str | None = None


@dataclass(frozen=True)
class ResolvedServer:
    """A server to use, as the command line and the config file settled it (cli's context).

    `account` names the account the block came from (None for --server alone); `ehlo_name`
    was checked by mailctl.hosts' rule; `secret` is called at most once per session, right
    before AUTH (None when there is no username).
    """

    settings: ServerSettings
    account: str | None = None
    ehlo_name: str | None = None
    secret: Callable[[], str] | None = field(default=None, repr=False, compare=False)


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
    """An SMTP reply; `message` is the text after the code as the server sent it (with the
    enhanced code, the lines of a multi-line reply joined with newlines), so the wire form
    can be rebuilt (transcripts) and one-line messages read "550 5.1.1 No such user".

    JSON (mailctl.serialize) writes code, `text` under the key "message", and `enhanced`:
    each part once.
    """

    code: int
    message: str = field(metadata={"json": False})

    # computed, written by serialize: the text without the enhanced code, and the code
    JSON_ATTRS: ClassVar[tuple[tuple[str, dict[str, str]] | str, ...]] = (
        ("text", {"json": "message"}),
        "enhanced",
    )

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 enhanced status code at the start of the text, if any."""
        match = _ENHANCED.match(self.message)
        return match.group(0) if match else None

    @property
    def text(self) -> str:
        """The text without the enhanced code, which RFC 2034 4 puts at the start of every
        line of a multi-line reply (removed where a line starts with it, plus one space)."""
        enhanced = self.enhanced
        if enhanced is None:
            return self.message
        return "\n".join(
            line[len(enhanced) :].removeprefix(" ")
            if line == enhanced or line.startswith(enhanced + " ")
            else line
            for line in self.message.split("\n")
        )

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> Reply | None:
        """The Reply that `mailctl.serialize` wrote as `data` (code, message, enhanced)."""
        code, text, enhanced = data.get("code"), data.get("message"), data.get("enhanced")
        if not isinstance(code, int) or isinstance(code, bool):
            return None
        text = text if isinstance(text, str) else ""
        if isinstance(enhanced, str) and enhanced:
            text = f"{enhanced} {text}" if text else enhanced
        return cls(code, text)

    @property
    def is_permanent(self) -> bool:
        return 500 <= self.code <= 599

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code <= 499


@dataclass(frozen=True)
class Envelope:
    """SMTP envelope: what MAIL FROM and RCPT TO carry, independent of the headers."""

    sender: str = field(metadata={"json": "from"})  # may be "" for the null reverse-path
    recipients: tuple[str, ...] = field(metadata={"json": "to"})


@dataclass(frozen=True)
class RecipientResult:
    """The server's reply to one RCPT TO."""

    address: str
    accepted: bool
    reply: Reply


class Direction(StrEnum):
    """Who produced a transcript line; INFO lines are mailctl's own notes."""

    SENT = "sent"
    RECEIVED = "received"
    INFO = "info"


@dataclass(frozen=True)
class TranscriptLine:
    """One line of a protocol session (protocols/transcript.py records them, redacted);
    `tls` says whether it travelled inside TLS."""

    # seconds since the Transcript was created (time.perf_counter)
    elapsed: float = field(metadata=_SECONDS)
    direction: Direction
    tls: bool
    text: str


# Called with each line as it happens (send --trace, sendmail -v): a hang shows where it hangs.
TranscriptCallback = Callable[[TranscriptLine], None]
