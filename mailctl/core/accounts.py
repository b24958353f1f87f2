"""Account use cases: add, list, show, remove, set-password and test (no printing, no prompts)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mailctl.config.schema import (
    FieldError,
    account_name_problem,
    dump_account,
    parse_account,
    parse_server_block,
    show,
)
from mailctl.config.store import find_account, load_config, save_config
from mailctl.credentials import (
    SecretSource,
    delete_secret,
    resolve_secret,
    secret_source,
    store_secret,
    usable_keyring,
)
from mailctl.errors import (
    CredentialError,
    ExitCode,
    InterruptedByUser,
    KeyringUnavailableError,
    MailctlError,
    UsageError,
)
from mailctl.models import Account, Config, Protocol, ServerSettings

if TYPE_CHECKING:
    from mailctl.protocols.smtp import SessionInfo

# Command-line flag for each server-block key, for error messages about flag values.
_FLAG_SUFFIX: Final = {
    "host": "host",
    "port": "port",
    "security": "security",
    "username": "user",
    "auth": "auth",
    "password_command": "password-command",
}
_ACCOUNT_FLAGS: Final = {"from": "--from", "ehlo": "--ehlo"}

# Which failure of `account test` decides the exit code: the one least likely to go away by
# itself (a bug, then things only the user can fix, then the network, then "try later").
_SEVERITY: Final = (
    ExitCode.SOFTWARE,
    ExitCode.CONFIG,
    ExitCode.NOPERM,
    ExitCode.PROTOCOL,
    ExitCode.UNAVAILABLE,
    ExitCode.DATAERR,
    ExitCode.NOINPUT,
    ExitCode.NOHOST,
    ExitCode.IOERR,
    ExitCode.TEMPFAIL,
)

Prompt = Callable[[str], str]


# ---------------------------------------------------------------------------------------------
# Requests


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


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class AccountAdded:
    name: str
    path: Path
    is_default: bool
    replaced: bool
    stored_secrets: tuple[Protocol, ...]
    # Blocks that log in but got no password now (none stored, no password_command).
    password_missing: tuple[Protocol, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.name,
            "config": str(self.path),
            "default": self.is_default,
            "replaced": self.replaced,
            "stored_in_keyring": [p.value for p in self.stored_secrets],
            "password_missing": [p.value for p in self.password_missing],
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class AccountSummary:
    name: str
    is_default: bool
    from_address: str | None
    blocks: tuple[Protocol, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "default": self.is_default,
            "from": self.from_address,
            "blocks": [p.value for p in self.blocks],
        }


@dataclass(frozen=True)
class AccountList:
    path: Path
    default_account: str | None
    accounts: tuple[AccountSummary, ...]
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "config": str(self.path),
            "default_account": self.default_account,
            "accounts": [a.to_json() for a in self.accounts],
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class AccountDetails:
    account: Account
    path: Path
    is_default: bool
    secret_sources: dict[Protocol, SecretSource]
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        blocks: dict[str, Any] = {}
        for protocol in Protocol:
            settings = self.account.server(protocol)
            if settings is not None:
                blocks[protocol.value] = {
                    **settings_json(settings),
                    "secret_source": self.secret_sources[protocol].value,
                }
        return {
            "config": str(self.path),
            "name": self.account.name,
            "default": self.is_default,
            "from": self.account.from_address,
            "ehlo": self.account.ehlo,
            **blocks,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class AccountRemoved:
    name: str
    path: Path
    new_default: str | None
    deleted_secrets: tuple[Protocol, ...]
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.name,
            "removed": True,
            "config": str(self.path),
            "default_account": self.new_default,
            "deleted_from_keyring": [p.value for p in self.deleted_secrets],
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class PasswordStored:
    name: str
    protocols: tuple[Protocol, ...]
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.name,
            "stored_in_keyring": [p.value for p in self.protocols],
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class BlockCheck:
    """What testing one server block showed; `error` is set when it failed."""

    protocol: Protocol
    host: str
    port: int
    security: str
    username: str | None
    connected: bool = False
    tls: dict[str, Any] | None = None
    authenticated: bool | None = None  # None: no username configured, login not attempted
    auth_mechanism: str | None = None
    capabilities: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    error: MailctlError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol.value,
            "host": self.host,
            "port": self.port,
            "security": self.security,
            "username": self.username,
            "ok": self.ok,
            "connected": self.connected,
            "tls": self.tls,
            "authenticated": self.authenticated,
            "auth_mechanism": self.auth_mechanism,
            "capabilities": list(self.capabilities),
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "error": self.error.to_json() if self.error is not None else None,
        }


@dataclass(frozen=True)
class AccountTest:
    name: str
    checks: tuple[BlockCheck, ...]
    warnings: tuple[str, ...] = ()

    @property
    def failures(self) -> tuple[BlockCheck, ...]:
        return tuple(check for check in self.checks if not check.ok)

    @property
    def status(self) -> str:
        """ "ok" when every block passed, "partial" when some did, "error" when none did."""
        failed = len(self.failures)
        if failed == 0:
            return "ok"
        return "partial" if failed < len(self.checks) else "error"

    @property
    def exit_code(self) -> ExitCode:
        """OK, or the exit code of the most serious failure (see _SEVERITY)."""
        codes = [check.error.exit_code for check in self.failures if check.error is not None]
        if not codes:
            return ExitCode.OK
        return min(codes, key=lambda c: _SEVERITY.index(c) if c in _SEVERITY else len(_SEVERITY))

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.name,
            "checks": [check.to_json() for check in self.checks],
            "warnings": list(self.warnings),
        }


def settings_json(settings: ServerSettings) -> dict[str, Any]:
    """Every setting of a block, defaults included (there is no secret in ServerSettings)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "security": settings.security.value,
        "username": settings.username,
        "auth": settings.auth.value if settings.auth is not None else None,
        "password_command": settings.password_command,
        "ca_file": str(settings.ca_file) if settings.ca_file is not None else None,
        "verify": settings.verify,
        "allow_plaintext_auth": settings.allow_plaintext_auth,
        "connect_timeout": settings.timeouts.connect,
        "command_timeout": settings.timeouts.command,
        "data_timeout": settings.timeouts.data,
    }


# ---------------------------------------------------------------------------------------------
# Building requests from command-line values


def build_server(protocol: Protocol, given: ServerInput) -> ServerSettings | None:
    """Validate one block's command-line values (None when none were given).

    Uses the config file's rules, so a value accepted here is accepted in the file. Raises
    UsageError naming the flag (`--smtp-port`) and the bad value.
    """
    prefix = f"--{protocol.value}"
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


def _port_value(value: str | int, *, flag: str) -> int:
    if isinstance(value, int):
        return value
    text = value.strip()
    if not text.isdigit():
        raise UsageError(
            f"{flag}: must be an integer from 1 to 65535, got {show(value)}",
            hint="leave it out to use the standard port for the security setting",
        )
    return int(text)


def validate_account_name(name: str) -> str:
    """Return `name` if it can name an account; UsageError otherwise."""
    problem = account_name_problem(name)
    if problem is not None:
        raise UsageError(f"invalid account name {show(name)}", hint=problem)
    return name


def blocks_needing_secret(blocks: Mapping[Protocol, ServerSettings]) -> tuple[Protocol, ...]:
    """Blocks that log in and have no password_command: those a keyring entry serves."""
    return tuple(
        protocol
        for protocol, settings in blocks.items()
        if settings.username is not None and settings.password_command is None
    )


# ---------------------------------------------------------------------------------------------
# Use cases


def ensure_addable(path: Path, name: str, *, force: bool) -> None:
    """Fail before any question is asked when `name` exists and `force` is not given.

    Raises UsageError, or ConfigError when the existing file is invalid.
    """
    _refuse_existing(load_config(path), path, name, force=force)


def _refuse_existing(config: Config, path: Path, name: str, *, force: bool) -> None:
    if name in config.accounts and not force:
        raise UsageError(
            f"account {name!r} already exists in {path}",
            hint="pass --force to replace it, or choose another name",
        )


def add_account(
    path: Path, request: AddAccountRequest, *, secret: str | None = None
) -> AccountAdded:
    """Add (or with `force`, replace) an account and save the config atomically.

    The first account, or one added with `make_default`, becomes the default. `secret`, when
    given, goes to the keyring for every block that logs in without a password_command; it
    is stored before the file is written, so a keyring failure changes nothing.

    Raises UsageError (bad name or values, no server block, the account exists without
    `force`, a secret nobody needs), ConfigError (the existing file is invalid),
    KeyringUnavailableError/CredentialError (storing the secret), CantCreateError (writing).
    """
    name = validate_account_name(request.name)
    blocks = request.blocks()
    if not blocks:
        raise UsageError(
            f"account {name!r} needs at least one server",
            hint="give --smtp-host, --imap-host or --pop3-host",
        )
    account = Account(
        name=name,
        from_address=request.from_address,
        smtp=request.smtp,
        imap=request.imap,
        pop3=request.pop3,
        ehlo=request.ehlo,
    )
    try:
        account = parse_account(name, dump_account(account))
    except FieldError as err:
        flag = _ACCOUNT_FLAGS.get(err.field, err.field)
        raise UsageError(err.describe(flag), hint=err.hint) from None
    config = load_config(path)
    _refuse_existing(config, path, name, force=request.force)
    replaced = name in config.accounts
    stored: tuple[Protocol, ...] = ()
    if secret is not None:
        stored = blocks_needing_secret(blocks)
        if not stored:
            raise UsageError(
                f"no server block of {name!r} needs a stored password",
                hint="a password is stored only for blocks with a username and no password_command",
            )
        usable_keyring()
        for protocol in stored:
            store_secret(name, protocol, secret)
    accounts = dict(config.accounts)
    accounts[name] = account
    default = config.default_account
    if request.make_default or default is None:
        default = name
    save_config(replace(config, accounts=accounts, default_account=default, warnings=()), path)
    return AccountAdded(
        name=name,
        path=path,
        is_default=default == name,
        replaced=replaced,
        stored_secrets=stored,
        password_missing=tuple(p for p in blocks_needing_secret(blocks) if p not in stored),
        warnings=config.warnings,
    )


def get_account(path: Path, name: str | None) -> Account:
    """The named account (the default when None). Raises ConfigError."""
    return find_account(load_config(path), name)


def list_accounts(path: Path) -> AccountList:
    """Summarise every account in the config file. Raises ConfigError."""
    config = load_config(path)
    summaries = tuple(
        AccountSummary(
            name=account.name,
            is_default=account.name == config.default_account,
            from_address=account.from_address,
            blocks=tuple(p for p in Protocol if account.server(p) is not None),
        )
        for account in config.accounts.values()
    )
    return AccountList(
        path=path,
        default_account=config.default_account,
        accounts=summaries,
        warnings=config.warnings,
    )


def show_account(
    path: Path, name: str | None, *, env: Mapping[str, str] = os.environ
) -> AccountDetails:
    """Every setting of one account (the default when `name` is None) and, per block, where
    its secret would come from — never the secret. Raises ConfigError."""
    config = load_config(path)
    account = find_account(config, name)
    sources = {
        protocol: secret_source(account.name, protocol, settings, env=env)
        for protocol, settings in _blocks(account).items()
    }
    return AccountDetails(
        account=account,
        path=path,
        is_default=account.name == config.default_account,
        secret_sources=sources,
        warnings=config.warnings,
    )


def remove_account(path: Path, name: str) -> AccountRemoved:
    """Remove an account from the file, then its keyring entries (for every protocol).

    When it was the default, the first remaining account becomes the default. A keyring that
    cannot be used does not stop the removal: it becomes a warning. Raises ConfigError (no
    such account, invalid file), CantCreateError.
    """
    config = load_config(path)
    find_account(config, name)
    accounts = {key: value for key, value in config.accounts.items() if key != name}
    default = config.default_account
    warnings = list(config.warnings)
    if default == name:
        default = next(iter(accounts), None)
        if default is not None:
            warnings.append(f"{name!r} was the default account; the default is now {default!r}")
    save_config(replace(config, accounts=accounts, default_account=default, warnings=()), path)
    deleted: list[Protocol] = []
    for protocol in Protocol:
        try:
            if delete_secret(name, protocol):
                deleted.append(protocol)
        except KeyringUnavailableError:
            break  # nothing can have been stored there by mailctl
        except CredentialError as err:
            warnings.append(f"keyring entry {name}:{protocol.value} not deleted: {err.message}")
    return AccountRemoved(
        name=name,
        path=path,
        new_default=default,
        deleted_secrets=tuple(deleted),
        warnings=tuple(warnings),
    )


def set_password(
    path: Path, name: str, protocols: Sequence[Protocol] | None, secret: str
) -> PasswordStored:
    """Store `secret` in the keyring for the account's blocks (all configured when None).

    Raises ConfigError (no such account), UsageError (a requested block is not configured,
    an empty secret), KeyringUnavailableError/CredentialError.
    """
    if not secret:
        raise UsageError("the password is empty", hint="nothing was stored")
    config = load_config(path)
    account = find_account(config, name)
    blocks = _select_blocks(account, protocols)
    usable_keyring()
    warnings = list(config.warnings)
    for protocol, settings in blocks.items():
        store_secret(account.name, protocol, secret)
        if settings.password_command is not None:
            warnings.append(
                f"{account.name} {protocol.value}: password_command is set and comes first; "
                "the stored password is used only once it is removed"
            )
        elif settings.username is None:
            warnings.append(
                f"{account.name} {protocol.value}: no username is configured, so no password "
                "is sent until one is"
            )
    return PasswordStored(name=account.name, protocols=tuple(blocks), warnings=tuple(warnings))


def check_account(
    path: Path,
    name: str | None,
    protocols: Sequence[Protocol] | None = None,
    *,
    prompt: Prompt | None = None,
    env: Mapping[str, str] = os.environ,
) -> AccountTest:
    """Connect to (and, with a username, log in to) each selected block, one after another.

    Failures are recorded per block, not raised. Secrets come from resolve_secret, with
    `prompt` only when the caller can ask a person. Raises ConfigError/UsageError only for
    the selection itself (no such account, a requested block not configured).
    """
    config = load_config(path)
    account = find_account(config, name)
    checks = [
        _check_block(account, protocol, settings, prompt=prompt, env=env)
        for protocol, settings in _select_blocks(account, protocols).items()
    ]
    return AccountTest(name=account.name, checks=tuple(checks), warnings=config.warnings)


# ---------------------------------------------------------------------------------------------
# Helpers


def _blocks(account: Account) -> dict[Protocol, ServerSettings]:
    found = {protocol: account.server(protocol) for protocol in Protocol}
    return {protocol: settings for protocol, settings in found.items() if settings is not None}


def _select_blocks(
    account: Account, protocols: Iterable[Protocol] | None
) -> dict[Protocol, ServerSettings]:
    configured = _blocks(account)
    if protocols is None:
        return configured
    selected: dict[Protocol, ServerSettings] = {}
    for protocol in protocols:
        settings = configured.get(protocol)
        if settings is None:
            have = ", ".join(p.value for p in configured) or "none"
            raise UsageError(
                f"account {account.name!r} has no {protocol.value} server",
                hint=f"configured: {have}",
            )
        selected[protocol] = settings
    return selected


def _check_block(
    account: Account,
    protocol: Protocol,
    settings: ServerSettings,
    *,
    prompt: Prompt | None,
    env: Mapping[str, str],
) -> BlockCheck:
    base = BlockCheck(
        protocol=protocol,
        host=settings.host,
        port=settings.port,
        security=settings.security.value,
        username=settings.username,
    )
    secret: Callable[[], str] | None = None
    if settings.username is not None:
        secret = _secret_for(account.name, protocol, settings, prompt=prompt, env=env)
    try:
        if protocol is Protocol.SMTP:
            info = asyncio.run(_open_smtp(settings, account.ehlo, secret))
            return replace(
                base,
                connected=True,
                tls=info.tls.to_json() if info.tls is not None else None,
                authenticated=True if settings.username is not None else None,
                auth_mechanism=info.auth_mechanism,
                capabilities=tuple(
                    f"{key} {value}".strip() for key, value in info.extensions.items()
                ),
                timings=dict(info.timings),
            )
        if protocol is Protocol.IMAP:
            from mailctl.protocols.imap import check_imap

            login = check_imap(settings, secret=secret)
        else:
            from mailctl.protocols.pop3 import check_pop3

            login = check_pop3(settings, secret=secret)
    except InterruptedByUser:
        raise  # Ctrl-C at a password prompt stops the whole test, not just this block
    except MailctlError as err:
        return replace(base, error=err)
    except Exception as err:  # a bug below us: report it for this block, keep testing others
        return replace(
            base,
            error=MailctlError(
                f"internal error testing {protocol.value}: {type(err).__name__}",
                hint="this is a bug in mailctl; please report it",
            ),
        )
    return replace(
        base,
        connected=True,
        tls=login.tls.to_json() if login.tls is not None else None,
        authenticated=login.authenticated if settings.username is not None else None,
        auth_mechanism=(settings.auth.value if settings.auth and login.authenticated else None),
        capabilities=login.capabilities,
        timings=dict(login.timings),
    )


def _secret_for(
    account: str,
    protocol: Protocol,
    settings: ServerSettings,
    *,
    prompt: Prompt | None,
    env: Mapping[str, str],
) -> Callable[[], str]:
    """The secret callable the protocol layer calls once, right before AUTH."""

    def secret() -> str:
        return resolve_secret(account, protocol, settings, prompt=prompt, env=env)

    return secret


async def _open_smtp(
    settings: ServerSettings, ehlo: str | None, secret: Callable[[], str] | None
) -> SessionInfo:
    from mailctl.protocols.smtp import SessionOptions, SmtpSession

    session = await SmtpSession.open(
        SessionOptions(settings=settings, ehlo_name=ehlo, secret=secret)
    )
    try:
        return session.info
    finally:
        await session.close()
