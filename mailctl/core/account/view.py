"""Read-only account use cases: get, list and show (with where each secret would come from)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from mailctl.config.store import find_account
from mailctl.core.account.blocks import configured_blocks
from mailctl.credentials import SecretSource, secret_source
from mailctl.models import Account, Config, Protocol, ServerSettings
from mailctl.serialize import SKIP, JsonAttrs, meta


@dataclass(frozen=True)
class AccountSummary:
    name: str
    is_default: bool = field(metadata=meta(key="default"))
    from_address: str | None = field(metadata=meta(key="from"))
    blocks: tuple[Protocol, ...]


@dataclass(frozen=True)
class AccountList:
    path: Path = field(metadata=meta(key="config"))
    default_account: str | None
    accounts: tuple[AccountSummary, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class BlockDetails:
    """One server block as `account show` reports it: every setting, defaults included (there
    is no secret in ServerSettings), and where its secret would come from."""

    settings: ServerSettings = field(metadata=meta(flatten=True))
    secret_source: SecretSource


@dataclass(frozen=True)
class AccountDetails:
    account: Account = field(metadata=SKIP)
    path: Path = field(metadata=meta(key="config"))
    is_default: bool = field(metadata=meta(key="default"))
    secret_sources: dict[Protocol, SecretSource] = field(metadata=SKIP)
    warnings: tuple[str, ...] = ()

    JSON_ATTRS: ClassVar[JsonAttrs] = (
        "name",
        ("from_address", meta(key="from")),
        "ehlo",
        "smtp",
        "imap",
        "pop3",
    )

    @property
    def name(self) -> str:
        return self.account.name

    @property
    def from_address(self) -> str | None:
        return self.account.from_address

    @property
    def ehlo(self) -> str | None:
        return self.account.ehlo

    @property
    def smtp(self) -> BlockDetails | None:
        return self.block(Protocol.SMTP)

    @property
    def imap(self) -> BlockDetails | None:
        return self.block(Protocol.IMAP)

    @property
    def pop3(self) -> BlockDetails | None:
        return self.block(Protocol.POP3)

    def block(self, protocol: Protocol) -> BlockDetails | None:
        """The configured block of `protocol` with its secret source, or None."""
        settings = self.account.server(protocol)
        if settings is None:
            return None
        return BlockDetails(settings=settings, secret_source=self.secret_sources[protocol])


def config_file(config: Config) -> Path:
    """The file `config` was loaded from (every Config the context hands in has one)."""
    if config.path is None:
        raise ValueError("a Config loaded from a file was expected")
    return config.path


def get_account(config: Config, name: str | None) -> Account:
    """The named account (the default when None). Raises ConfigError."""
    return find_account(config, name)


def list_accounts(config: Config) -> AccountList:
    """Summarise every account in the config file. Raises ConfigError."""
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
        path=config_file(config),
        default_account=config.default_account,
        accounts=summaries,
        warnings=config.warnings,
    )


def show_account(
    config: Config, name: str | None, *, env: Mapping[str, str] = os.environ
) -> AccountDetails:
    """Every setting of one account (the default when `name` is None) and, per block, where
    its secret would come from — never the secret. Raises ConfigError."""
    account = find_account(config, name)
    sources = {
        protocol: secret_source(account.name, protocol, settings, env=env)
        for protocol, settings in configured_blocks(account).items()
    }
    return AccountDetails(
        account=account,
        path=config_file(config),
        is_default=account.name == config.default_account,
        secret_sources=sources,
        warnings=config.warnings,
    )
