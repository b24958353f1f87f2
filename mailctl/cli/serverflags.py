"""Turn --server/--tls/--user flags (alone, or over an account's block) into ServerSettings.

`ServerFlags` is what cli/options.SERVER_OPTIONS collect (cli/context builds it); the
context's `resolve_server` calls `settings_from_flags` with the account's block.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from mailctl.errors import ConfigError, UsageError
from mailctl.hosts import default_port, default_security, tls_name
from mailctl.models import (
    AuthMechanism,
    Protocol,
    Security,
    ServerSettings,
    Timeouts,
)

_DEFAULT_TIMEOUTS = Timeouts()


@dataclass(frozen=True)
class ServerFlags:
    """The server, TLS and AUTH flags as given; settings_from_flags lays them over an account."""

    server: str | None = None
    ehlo: str | None = None
    user: str | None = None
    password_command: str | None = None
    auth: str | None = None
    tls: bool = False
    starttls: bool = False
    no_tls: bool = False
    ca_file: Path | None = None
    tls_name: str | None = None
    insecure: bool = False
    allow_plaintext_auth: bool = False
    connect_timeout: float | None = None
    command_timeout: float | None = None
    data_timeout: float | None = None

    @property
    def security(self) -> Security | None:
        if self.tls:
            return Security.TLS
        if self.starttls:
            return Security.STARTTLS
        if self.no_tls:
            return Security.NONE
        return None


def split_host_port(value: str) -> tuple[str, int | None]:
    """Parse HOST, HOST:PORT, [V6] or [V6]:PORT; raise UsageError naming --server otherwise."""
    text = value.strip()
    port_text: str | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UsageError(f"--server {value!r}: unbalanced '['", hint="write [::1]:2525")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise UsageError(
                    f"--server {value!r}: expected ':PORT' after ']'", hint="write [::1]:2525"
                )
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host = text
    if not host or any(c.isspace() or ord(c) < 32 for c in host):
        raise UsageError(f"--server {value!r}: not a host name", hint="write HOST or HOST:PORT")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"--server {value!r}: port must be 1-65535", hint="write HOST:PORT")
    return host, int(port_text)


def settings_from_flags(
    flags: ServerFlags,
    base: ServerSettings | None,
    *,
    account_name: str | None,
    protocol: Protocol = Protocol.SMTP,
) -> ServerSettings:
    """Flags win over the account's block; without either, say how to give a server.

    Raises InputDataError for --server, --user or --auth values that are not UTF-8 text (PEP
    383 surrogate escapes of argv bytes), naming the flag, before anything connects.
    """
    from mailctl.mime.header_safety import require_utf8

    for flag, value in (("--server", flags.server), ("--user", flags.user), ("--auth", flags.auth)):
        if value is not None:
            require_utf8(flag, value)
    settings = _base_settings(flags, base, account_name=account_name, protocol=protocol)
    changes = _overrides(flags, settings.timeouts)
    return replace(settings, **changes) if changes else settings  # type: ignore[arg-type]


def _base_settings(
    flags: ServerFlags, base: ServerSettings | None, *, account_name: str | None, protocol: Protocol
) -> ServerSettings:
    security = flags.security
    if flags.server is not None:
        host, port = split_host_port(flags.server)
        # Secure by default, by the config file's rule: implicit TLS on 465, else STARTTLS.
        security = security or default_security(protocol, port)
        return ServerSettings(
            host=host, port=port or default_port(protocol, security), security=security
        )
    if base is not None:
        return base if security in (None, base.security) else replace(base, security=security)
    where = (
        f"account {account_name!r} has no [{protocol.value}] block" if account_name else "no server"
    )
    raise ConfigError(
        where, hint=f"pass --server HOST:PORT or add a {protocol.value} block to the account"
    )


def _overrides(flags: ServerFlags, timeouts: Timeouts) -> dict[str, object]:
    changes: dict[str, object] = {}
    if flags.user is not None:
        changes["username"] = flags.user
    if flags.password_command is not None:
        changes["password_command"] = flags.password_command
    if flags.auth is not None:
        try:
            changes["auth"] = AuthMechanism(flags.auth.lower())
        except ValueError:
            choices = ", ".join(m.value for m in AuthMechanism)
            raise UsageError(
                f"--auth {flags.auth!r} is not supported", hint=f"use one of {choices}"
            ) from None
    if flags.ca_file is not None:
        changes["ca_file"] = flags.ca_file
    if flags.tls_name is not None:
        changes["tls_name"] = tls_name(flags.tls_name, field="--tls-name")
    if flags.insecure:
        changes["verify"] = False
    if flags.allow_plaintext_auth:
        changes["allow_plaintext_auth"] = True
    flag_names = {"connect_timeout": "--connect-timeout", "command_timeout": "--timeout"}
    flag_names["data_timeout"] = "--data-timeout"
    for name, flag in flag_names.items():
        value = getattr(flags, name)
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be positive", hint="give seconds")
    if any(getattr(flags, name) is not None for name in flag_names):
        changes["timeouts"] = Timeouts(
            connect=flags.connect_timeout or timeouts.connect,
            command=flags.command_timeout or timeouts.command,
            data=_data_timeout(flags, timeouts),
        )
    return changes


def _data_timeout(flags: ServerFlags, timeouts: Timeouts) -> float:
    """The wait for the reply after the final dot: --timeout is its ceiling, unless a data
    timeout is asked for by name (--data-timeout, or data_timeout in the account).

    RFC 5321 4.5.3.2.6 suggests 10 minutes there, hence the long default; but a user who
    says --timeout 5 means no wait longer than 5 s. An account's data_timeout counts as
    asked for when it differs from the default (the parsed config cannot tell more).
    """
    if flags.data_timeout is not None:
        return flags.data_timeout
    configured = timeouts.data != _DEFAULT_TIMEOUTS.data
    if flags.command_timeout is None or configured:
        return timeouts.data
    return min(timeouts.data, flags.command_timeout)
