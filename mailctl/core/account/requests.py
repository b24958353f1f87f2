"""`account add` input: command-line values validated (by the config rules) into a request."""

from __future__ import annotations

import os
from collections.abc import Mapping
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
    "tls_name": "tls-name",
}


# A user of "-" means "no login" (the prompt says so too): never a user named "-".
NO_LOGIN: Final = "-"


@dataclass(frozen=True)
class ServerInput:
    """One server block as given on the command line: unvalidated text, None when not given."""

    host: str | None = None
    port: str | int | None = None
    security: str | None = None
    username: str | None = None
    auth: str | None = None
    password_command: str | None = None
    tls_name: str | None = None
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
                self.tls_name,
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


@dataclass(frozen=True)
class SetAccountRequest:
    """`account set`: the values to change (None: keep); `ca_file` goes to every block."""

    name: str
    servers: Mapping[Protocol, ServerInput]
    from_address: str | None = None
    ehlo: str | None = None
    make_default: bool = False

    def nothing_to_change(self) -> bool:
        return (
            self.from_address is None
            and self.ehlo is None
            and not self.make_default
            and all(given.empty and given.ca_file is None for given in self.servers.values())
        )


def build_server(protocol: Protocol, given: ServerInput) -> ServerSettings | None:
    """Validate one block's command-line values (None when none were given).

    Uses the config file's rules, so a value accepted here is accepted in the file. A user
    of "-" means no login. Raises UsageError naming the flag (`--smtp-port`) and the bad
    value, InputDataError naming it for a value that is not UTF-8 text, NoInputError/
    InputDataError for a --ca-file that cannot be read or holds no certificate.
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
    raw: dict[str, Any] = {}
    _lay_over(raw, given, prefix)
    return _validated(raw, protocol, prefix)


def change_server(
    protocol: Protocol, current: ServerSettings | None, given: ServerInput
) -> ServerSettings | None:
    """Lay `given` over the block `current` (account set); a new block needs its host.

    A security given without a port moves a standard port along (587 -> 465 for tls), and a
    port given without a security moves a security that followed the old port; values the
    user chose stay. A user of "-" removes the login. Raises as build_server does.
    """
    from mailctl.config.schema import dump_server
    from mailctl.hosts import default_port, default_security

    if current is None:
        return build_server(protocol, given) if not given.empty else None
    prefix = f"--{protocol.value}"
    _require_utf8_values(prefix, given)
    raw = dump_server(current)
    standard_port = current.port == default_port(protocol, current.security)
    port_led = current.security is default_security(protocol, current.port)
    if given.security is not None and given.port is None and standard_port:
        del raw["port"]  # parse_server_block picks the new security's standard port
    if given.port is not None and given.security is None and port_led:
        del raw["security"]  # ... and the new port's security
    _lay_over(raw, given, prefix)
    return _validated(raw, protocol, prefix)


def _lay_over(raw: dict[str, Any], given: ServerInput, prefix: str) -> None:
    """Write the values `given` holds into the raw block (TOML keys)."""
    if given.host is not None:
        raw["host"] = given.host
    if given.port is not None:
        raw["port"] = _port_value(given.port, flag=f"{prefix}-port")
    for key in ("security", "auth", "password_command"):
        value = getattr(given, key)
        if value is not None:
            raw[key] = value
    if given.username is not None:
        if given.username.strip() == NO_LOGIN:
            raw.pop("username", None)
        else:
            raw["username"] = given.username
    if given.tls_name is not None:
        if given.tls_name.strip() == NO_LOGIN:  # "-": check the host's own name again
            raw.pop("tls_name", None)
        else:
            raw["tls_name"] = given.tls_name
    if given.ca_file is not None:
        raw["ca_file"] = str(check_ca_file(given.ca_file))


def _validated(raw: dict[str, Any], protocol: Protocol, prefix: str) -> ServerSettings:
    try:
        return parse_server_block(raw, protocol, key=(protocol.value,))
    except FieldError as err:
        suffix = _FLAG_SUFFIX.get(err.field)
        flag = f"{prefix}-{suffix}" if suffix else "--ca-file"
        raise UsageError(err.describe(flag), hint=err.hint) from None


def check_ca_file(path: Path) -> Path:
    """Return `path` made absolute once it reads as a PEM certificate bundle.

    An account keeps the path and reads it at every connection: a typo found at send time
    is found too late. Raises NoInputError (66: missing, unreadable), InputDataError (65:
    not a regular file, too large, no PEM certificate in it), each naming the path.
    """
    from mailctl.errors import InputDataError
    from mailctl.inputs import PEM_LIMIT, read_file

    absolute = path.expanduser().absolute()
    data = read_file(absolute, what="--ca-file", limit=PEM_LIMIT)
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise InputDataError(
            f"--ca-file {quote(str(absolute))}: no PEM certificate in it",
            hint="give the CA certificate(s) in PEM form (-----BEGIN CERTIFICATE-----)",
            details={"file": str(absolute)},
        )
    return absolute


def _require_utf8_values(prefix: str, given: ServerInput) -> None:
    """Refuse values the UTF-8 config file cannot hold (InputDataError naming the flag).

    Argv bytes that are not UTF-8 arrive as surrogate escapes (PEP 383); TOML is UTF-8 only,
    so such a value could never be written. A password command or CA path naming a
    non-UTF-8 file has to be given another way (a UTF-8 name, a symlink, a script).
    """
    from mailctl.mime.header_safety import require_utf8

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
