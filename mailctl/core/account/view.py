"""Read-only account use cases: get, list and show (with where each secret would come from)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailctl.config.store import find_account
from mailctl.core.account.blocks import configured_blocks
from mailctl.credentials import SecretSource, secret_source
from mailctl.models import Account, Config, Protocol, ServerSettings


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
