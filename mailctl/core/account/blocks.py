"""Which server blocks of an account a use case acts on: configured, selected, needing a secret."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mailctl.errors import UsageError
from mailctl.models import Account, Protocol, ServerSettings
from mailctl.text import quote


def blocks_needing_secret(blocks: Mapping[Protocol, ServerSettings]) -> tuple[Protocol, ...]:
    """Blocks that log in and have no password_command: those a keyring entry serves."""
    return tuple(
        protocol
        for protocol, settings in blocks.items()
        if settings.username is not None and settings.password_command is None
    )


def configured_blocks(account: Account) -> dict[Protocol, ServerSettings]:
    """The account's server blocks that are configured, in Protocol order."""
    found = {protocol: account.server(protocol) for protocol in Protocol}
    return {protocol: settings for protocol, settings in found.items() if settings is not None}


def select_blocks(
    account: Account, protocols: Iterable[Protocol] | None
) -> dict[Protocol, ServerSettings]:
    """The requested blocks (every configured one when None).

    Raises UsageError naming the configured blocks when a requested one is not configured.
    """
    configured = configured_blocks(account)
    if protocols is None:
        return configured
    selected: dict[Protocol, ServerSettings] = {}
    for protocol in protocols:
        settings = configured.get(protocol)
        if settings is None:
            have = ", ".join(p.value for p in configured) or "none"
            raise UsageError(
                f"account {quote(account.name)} has no {protocol.value} server",
                hint=f"configured: {have}",
            )
        selected[protocol] = settings
    return selected
