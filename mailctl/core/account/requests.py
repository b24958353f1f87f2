"""`account add` input: command-line values validated (by the config rules) into a request."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mailctl.config.schema import FieldError, account_name_problem, parse_server_block
from mailctl.errors import UsageError
from mailctl.models import Protocol, ServerSettings
from mailctl.text import quote

# Command-line flag for each server-block key, for error messages about flag values.
_FLAG_SUFFIX: Final = {
    "host": "host",
    "port": "port",
    "security": "security",
    "username": "user",
    "auth": "auth",
    "password_command": "password-command",
}


@dataclass(frozen=True)
class ServerInput:
    """One server block as given on the command line: unvalidated text, None when not given."""

    host: str | None = None
    port: str | int | None = None
    security: str | None = None
    username: str | None = None
    auth: str | None = None
    password_command: str | None = None
    ca_file: Path | None = None

    @property
    def empty(self) -> bool:
        return all(
            value is None
            for value in (
                self.host,
                self.port,
                self.security,
                self.username,
                self.auth,
                self.password_command,
            )
        )


@dataclass(frozen=True)
class AddAccountRequest:
    name: str
    from_address: str | None = None
    ehlo: str | None = None
    smtp: ServerSettings | None = None
    imap: ServerSettings | None = None
    pop3: ServerSettings | None = None
    make_default: bool = False
    force: bool = False

    def blocks(self) -> dict[Protocol, ServerSettings]:
        found = {Protocol.SMTP: self.smtp, Protocol.IMAP: self.imap, Protocol.POP3: self.pop3}
        return {protocol: settings for protocol, settings in found.items() if settings}


def build_server(protocol: Protocol, given: ServerInput) -> ServerSettings | None:
    """Validate one block's command-line values (None when none were given).

    Uses the config file's rules, so a value accepted here is accepted in the file. Raises
    UsageError naming the flag (`--smtp-port`) and the bad value, InputDataError naming it
    for a value that is not UTF-8 text.
    """
    prefix = f"--{protocol.value}"
    _require_utf8_values(prefix, given)
    if given.host is None:
        if given.empty:
            return None
        raise UsageError(
            f"{prefix}-host is required when other {prefix}-* options are given",
            hint=f"add {prefix}-host HOST",
        )
    raw: dict[str, Any] = {"host": given.host}
    if given.port is not None:
        raw["port"] = _port_value(given.port, flag=f"{prefix}-port")
    for key in ("security", "username", "auth", "password_command"):
        value = getattr(given, key)
        if value is not None:
            raw[key] = value
    if given.ca_file is not None:
        raw["ca_file"] = str(given.ca_file.expanduser().absolute())
    try:
        return parse_server_block(raw, protocol, key=(protocol.value,))
    except FieldError as err:
        suffix = _FLAG_SUFFIX.get(err.field)
        flag = f"{prefix}-{suffix}" if suffix else "--ca-file"
        raise UsageError(err.describe(flag), hint=err.hint) from None


def _require_utf8_values(prefix: str, given: ServerInput) -> None:
    """Refuse values the UTF-8 config file cannot hold (InputDataError naming the flag).

    Argv bytes that are not UTF-8 arrive as surrogate escapes (PEP 383); TOML is UTF-8 only,
    so such a value could never be written. A password command or CA path naming a
    non-UTF-8 file has to be given another way (a UTF-8 name, a symlink, a script).
    """
    from mailctl.mime.headers import require_utf8

    for key, suffix in _FLAG_SUFFIX.items():
        value = getattr(given, key)
        if isinstance(value, str):
            require_utf8(f"{prefix}-{suffix}", value)
    if given.ca_file is not None:
        require_utf8("--ca-file", os.fsdecode(given.ca_file), hint="use a path in UTF-8")


def _port_value(value: str | int, *, flag: str) -> int:
    if isinstance(value, int):
        return value
    text = value.strip()
    if not text.isdigit():
        raise UsageError(
            f"{flag}: must be an integer from 1 to 65535, got {quote(value)}",
            hint="leave it out to use the standard port for the security setting",
        )
    return int(text)


def validate_account_name(name: str) -> str:
    """Return `name` if it can name an account; UsageError otherwise."""
    problem = account_name_problem(name)
    if problem is not None:
        raise UsageError(f"invalid account name {quote(name)}", hint=problem)
    return name
