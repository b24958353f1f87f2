"""Sink settings, validated once into frozen dataclasses; `--listen` parsing and its safety rule."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

from mailctl.errors import UsageError
from mailctl.models import Security
from mailctl.text import quote

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 2525
DEFAULT_MAX_SIZE: Final = 10 * 1024 * 1024  # advertised as SIZE (RFC 1870); Postfix uses ~10 MB
# Fixed, documented test credentials: the sink is a test server, never a real one.
TEST_USERNAME: Final = "mailctl"
TEST_PASSWORD: Final = "mailctl"  # noqa: S105 - a published test credential, not a secret
WILDCARDS: Final = frozenset({"0.0.0.0", "::"})  # noqa: S104 - recognised in order to refuse/warn


class Phase(StrEnum):
    """Where in an SMTP session a fault applies; EOD is the reply after the final dot."""

    BANNER = "banner"
    EHLO = "ehlo"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    EOD = "eod"


# Faults that refuse or drop a command only make sense where the client sends one.
COMMAND_PHASES: Final = (Phase.MAIL, Phase.RCPT, Phase.DATA, Phase.EOD)


@dataclass(frozen=True)
class FaultConfig:
    """Fault injection for testing clients; all off by default.

    latency: seconds added before replies (every reply, or only `latency_on`'s).
    reject_rate/reject_code/reject_on: refuse that command with the code, with probability P.
    disconnect_rate/disconnect_on: close without replying (EOD: after the final dot, the
    RFC 1047 "outcome unknown" case).
    close_after: answer the next MAIL after that many messages on a connection with 421.
    seed: makes every random choice reproducible (one random.Random per server).
    """

    latency: float = 0.0
    latency_on: Phase | None = None  # None: every reply
    reject_rate: float = 0.0
    reject_code: int = 451
    reject_on: Phase = Phase.MAIL
    disconnect_rate: float = 0.0
    disconnect_on: Phase = Phase.MAIL
    close_after: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("reject_rate", "disconnect_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"--{name.replace('_', '-')} must be between 0 and 1, not {value}")
        if self.latency < 0:
            raise UsageError(f"--latency must not be negative, not {self.latency * 1000:g} ms")
        if not 400 <= self.reject_code <= 599:
            raise UsageError(
                f"--reject-code must be a 4xx or 5xx SMTP code, not {self.reject_code}"
            )
        for name, phase in (("reject-on", self.reject_on), ("disconnect-on", self.disconnect_on)):
            if phase not in COMMAND_PHASES:
                raise UsageError(f"--{name} must be one of mail, rcpt, data, eod, not {phase}")
        if self.close_after is not None and self.close_after < 1:
            raise UsageError(f"--421-after must be at least 1, not {self.close_after}")

    @property
    def any(self) -> bool:
        """True when some fault is on: the server's hot path checks this once per command."""
        return bool(self.latency or self.reject_rate or self.disconnect_rate or self.close_after)


class StoreKind(StrEnum):
    DISCARD = "discard"
    MAILDIR = "maildir"
    MBOX = "mbox"


@dataclass(frozen=True)
class SinkConfig:
    """One sink's settings. Build with `SinkConfig(...)`; invalid combinations raise UsageError."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    security: Security = Security.NONE
    cert_file: Path | None = None  # None with TLS: a throwaway self-signed certificate
    key_file: Path | None = None
    auth: bool = False
    store: StoreKind = StoreKind.DISCARD
    store_path: Path | None = None
    max_size: int = DEFAULT_MAX_SIZE
    max_connections: int | None = None
    max_messages: int | None = None
    duration: float | None = None
    idle_timeout: float = 300.0  # RFC 5321 4.5.3.2.7: a server waits at least 5 minutes
    hostname: str = "localhost"
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise UsageError(f"port must be 0-65535, not {self.port}")
        if (self.cert_file is None) != (self.key_file is None):
            raise UsageError("--cert and --key go together")
        if self.cert_file is not None and self.security is Security.NONE:
            raise UsageError("--cert/--key need --tls or --starttls")
        if (self.store is StoreKind.DISCARD) != (self.store_path is None):
            raise UsageError("a maildir or mbox store needs a path")
        if self.max_size < 1:
            raise UsageError(f"--max-size must be positive, not {self.max_size}")
        for name in ("max_connections", "max_messages"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
        if self.duration is not None and self.duration <= 0:
            raise UsageError(f"--duration must be positive, not {self.duration}")


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int
    loopback: bool
    wildcard: bool


def parse_listen(value: str) -> ListenAddress:
    """Parse HOST:PORT, [IPV6]:PORT or PORT, and apply the binding rule; raise UsageError.

    The sink binds loopback unless `--listen` names another address literally: host names
    (other than "localhost") are refused because a name may resolve to a public address,
    and an empty host (":2525") is refused because it would mean every interface without
    saying so. The wildcards 0.0.0.0 and :: are accepted only when typed; the caller warns.
    This runs before any socket exists.
    """
    text = value.strip()
    if text.isdigit():
        host, port_text = DEFAULT_HOST, text
    elif text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise UsageError(f"--listen {quote(value)}: expected [IPV6]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, str(DEFAULT_PORT)
        elif ":" in host:
            raise UsageError(f"--listen {quote(value)}: write an IPv6 address as [ADDRESS]:PORT")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise UsageError(f"--listen {quote(value)}: the port must be a number 0-65535")
    port = int(port_text)
    if host in ("", "*"):
        raise UsageError(
            f"--listen {quote(value)} names no address",
            hint="use 127.0.0.1 for local tests; to listen on every interface, write 0.0.0.0 or "
            "[::] explicitly",
        )
    if host.lower() == "localhost":
        return ListenAddress("127.0.0.1", port, loopback=True, wildcard=False)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(
            f"--listen {quote(value)}: give an IP address, not a host name",
            hint="a name could resolve to a public address; the sink binds only what you name",
        ) from None
    return ListenAddress(
        str(address), port, loopback=address.is_loopback, wildcard=str(address) in WILDCARDS
    )
