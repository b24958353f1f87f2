"""Account use cases that change the config file or keyring: add, set, remove, set-password."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from mailctl.config.schema import FieldError, dump_account, parse_account
from mailctl.config.store import find_account, load_config, save_config
from mailctl.core.account.blocks import blocks_needing_secret, select_blocks
from mailctl.core.account.requests import (
    AddAccountRequest,
    SetAccountRequest,
    change_server,
    validate_account_name,
)
from mailctl.core.account.view import config_file
from mailctl.credentials import delete_secret, store_secret, usable_keyring
from mailctl.errors import CredentialError, KeyringUnavailableError, UsageError
from mailctl.models import Account, Config, Protocol
from mailctl.serialize import meta
from mailctl.text import quote

_ACCOUNT_FLAGS: Final = {"from": "--from", "ehlo": "--ehlo"}


@dataclass(frozen=True)
class AccountAdded:
    name: str = field(metadata=meta(key="account"))
    path: Path = field(metadata=meta(key="config"))
    is_default: bool = field(metadata=meta(key="default"))
    replaced: bool
    stored_secrets: tuple[Protocol, ...] = field(metadata=meta(key="stored_in_keyring"))
    # Blocks that log in but got no password now (none stored, no password_command).
    password_missing: tuple[Protocol, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccountChanged:
    name: str = field(metadata=meta(key="account"))
    path: Path = field(metadata=meta(key="config"))
    is_default: bool = field(metadata=meta(key="default"))
    # TOML key paths whose value changed ("smtp.port", "from"), in file order.
    changed: tuple[str, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccountRemoved:
    name: str = field(metadata=meta(key="account"))
    path: Path = field(metadata=meta(key="config"))
    new_default: str | None = field(metadata=meta(key="default_account"))
    deleted_secrets: tuple[Protocol, ...] = field(metadata=meta(key="deleted_from_keyring"))
    warnings: tuple[str, ...] = ()
    removed: bool = True  # False when the user said no at the confirmation


@dataclass(frozen=True)
class PasswordStored:
    name: str = field(metadata=meta(key="account"))
    protocols: tuple[Protocol, ...] = field(metadata=meta(key="stored_in_keyring"))
    warnings: tuple[str, ...] = ()


def ensure_addable(config: Config, name: str, *, force: bool) -> None:
    """Fail before any question is asked when `name` exists and `force` is not given.

    Raises UsageError.
    """
    if name in config.accounts and not force:
        raise UsageError(
            f"account {quote(name)} already exists in {config_file(config)}",
            hint="pass --force to replace it, or choose another name",
        )


def add_account(
    config: Config, request: AddAccountRequest, *, secret: str | None = None
) -> AccountAdded:
    """Add (or with `force`, replace) an account to `config` and save its file atomically.

    The first account, or one added with `make_default`, becomes the default. `secret`, when
    given, goes to the keyring for every block that logs in without a password_command; it
    is stored before the file is written, so a keyring failure changes nothing.

    Raises UsageError (bad name or values, no server block, the account exists without
    `force`, a secret nobody needs), KeyringUnavailableError/CredentialError (storing the
    secret), CantCreateError (writing).
    """
    name = validate_account_name(request.name)
    blocks = request.blocks()
    if not blocks:
        raise UsageError(
            f"account {quote(name)} needs at least one server",
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
    path = config_file(config)
    # Read again right before writing: the questions asked since may have taken minutes.
    config = load_config(path)
    ensure_addable(config, name, force=request.force)
    replaced = name in config.accounts
    stored: tuple[Protocol, ...] = ()
    if secret is not None:
        stored = blocks_needing_secret(blocks)
        if not stored:
            raise UsageError(
                f"no server block of {quote(name)} needs a stored password",
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


def set_account(config: Config, request: SetAccountRequest) -> AccountChanged:
    """Change some settings of an existing account and save the file atomically.

    Only what the request holds changes; each block is validated by the rules `add` uses
    (the config file's), and so is the whole account. Raises ConfigError (no such account,
    naming it and the file), UsageError (bad values, nothing to change),
    NoInputError/InputDataError (--ca-file), CantCreateError (writing).
    """
    path = config_file(config)
    config = load_config(path)  # the file as it is now, as add does
    current = find_account(config, request.name)
    if request.nothing_to_change():
        raise UsageError(
            f"nothing to change in account {quote(current.name)}",
            hint="give the settings to change, e.g. --smtp-port 2526",
        )
    blocks = {
        protocol: change_server(protocol, current.server(protocol), request.servers[protocol])
        for protocol in Protocol
    }
    changed = Account(
        name=current.name,
        from_address=current.from_address if request.from_address is None else request.from_address,
        ehlo=current.ehlo if request.ehlo is None else request.ehlo,
        smtp=blocks[Protocol.SMTP],
        imap=blocks[Protocol.IMAP],
        pop3=blocks[Protocol.POP3],
    )
    try:
        changed = parse_account(current.name, dump_account(changed))
    except FieldError as err:
        flag = _ACCOUNT_FLAGS.get(err.field, err.field)
        raise UsageError(err.describe(flag), hint=err.hint) from None
    accounts = dict(config.accounts)
    accounts[current.name] = changed
    default = current.name if request.make_default else config.default_account
    save_config(replace(config, accounts=accounts, default_account=default, warnings=()), path)
    return AccountChanged(
        name=current.name,
        path=path,
        is_default=default == current.name,
        changed=_differences(dump_account(current), dump_account(changed)),
        warnings=config.warnings,
    )


def _differences(before: dict[str, object], after: dict[str, object]) -> tuple[str, ...]:
    """Key paths ("smtp.port") whose value differs between two dumped accounts."""
    found: list[str] = []
    for key in dict.fromkeys([*before, *after]):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found += [f"{key}.{sub}" for sub in _differences(old, new)]
        elif old != new:
            found.append(key)
    return tuple(found)


def remove_account(config: Config, name: str) -> AccountRemoved:
    """Remove an account from the file, then its keyring entries (for every protocol).

    When it was the default, the first remaining account becomes the default. A keyring that
    cannot be used does not stop the removal: it becomes a warning. Raises ConfigError (no
    such account), CantCreateError.
    """
    path = config_file(config)
    config = load_config(path)  # again, right before writing: a confirmation came between
    find_account(config, name)
    accounts = {key: value for key, value in config.accounts.items() if key != name}
    default = config.default_account
    warnings = list(config.warnings)
    if default == name:
        default = next(iter(accounts), None)
        if default is not None:
            warnings.append(
                f"{quote(name)} was the default account; the default is now {quote(default)}"
            )
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


def removal_declined(config: Config, name: str) -> AccountRemoved:
    """What `remove` reports when the user declined: nothing changed. Raises ConfigError."""
    find_account(config, name)
    return AccountRemoved(
        name=name,
        path=config_file(config),
        new_default=config.default_account,
        deleted_secrets=(),
        removed=False,
    )


def set_password(
    config: Config, name: str, protocols: Sequence[Protocol] | None, secret: str
) -> PasswordStored:
    """Store `secret` in the keyring for the account's blocks (all configured when None).

    Raises ConfigError (no such account), UsageError (a requested block is not configured,
    an empty secret), KeyringUnavailableError/CredentialError.
    """
    if not secret:
        raise UsageError("the password is empty", hint="nothing was stored")
    account = find_account(config, name)
    blocks = select_blocks(account, protocols)
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
