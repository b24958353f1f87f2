"""`account test`: connect and log in to each server block; per-block results and the exit code."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, ClassVar

from mailctl.config.store import find_account
from mailctl.core.account.blocks import select_blocks
from mailctl.errors import ExitCode, InterruptedByUser, MailctlError, worst_exit_code
from mailctl.models import Account, Config, Protocol, ServerSettings
from mailctl.serialize import SECONDS, JsonAttrs, meta

if TYPE_CHECKING:
    from mailctl.credentials import Secrets
    from mailctl.protocols.handshake import HandshakeFacts
    from mailctl.protocols.smtp import SessionInfo


@dataclass(frozen=True)
class BlockCheck:
    """What testing one server block showed; `error` is set when it failed."""

    protocol: Protocol
    host: str
    port: int
    security: str
    username: str | None
    connected: bool = False
    tls: HandshakeFacts | None = None
    authenticated: bool | None = None  # None: no username configured, login not attempted
    auth_mechanism: str | None = None
    capabilities: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict, metadata=SECONDS)
    error: MailctlError | None = None

    JSON_ATTRS: ClassVar[JsonAttrs] = ("ok",)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class AccountTest:
    name: str = field(metadata=meta(key="account"))
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
        """OK, or the code of the most serious failure (errors.worst_exit_code)."""
        return worst_exit_code(c.error.exit_code for c in self.failures if c.error is not None)


def check_account(
    config: Config,
    name: str | None,
    protocols: Sequence[Protocol] | None = None,
    *,
    secrets: Secrets,
    tls_name: str | None = None,
) -> AccountTest:
    """Connect to (and, with a username, log in to) each selected block, one after another.

    Failures are recorded per block, not raised. Secrets come from `secrets` (the run's
    source, which prompts only when the caller can ask a person). Raises
    ConfigError/UsageError only for the selection itself (no such account, a requested block
    not configured). `tls_name` (account test --tls-name) replaces each block's for this run.
    """
    account = find_account(config, name)
    checks = [
        _check_block(
            account,
            protocol,
            settings if tls_name is None else replace(settings, tls_name=tls_name),
            secrets=secrets,
        )
        for protocol, settings in select_blocks(account, protocols).items()
    ]
    return AccountTest(name=account.name, checks=tuple(checks), warnings=config.warnings)


def _check_block(
    account: Account,
    protocol: Protocol,
    settings: ServerSettings,
    *,
    secrets: Secrets,
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
        secret = secrets.for_server(account.name, protocol, settings)
    try:
        if protocol is Protocol.SMTP:
            info = asyncio.run(_open_smtp(settings, account.ehlo, secret))
            return replace(
                base,
                connected=True,
                tls=info.tls,
                authenticated=True if settings.username is not None else None,
                auth_mechanism=info.auth_mechanism,
                capabilities=tuple(
                    f"{key} {value}".strip() for key, value in info.extensions.items()
                ),
                timings=dict(info.timings),
            )
        if protocol is Protocol.IMAP:
            from mailctl.protocols.imap import ImapSession

            login = ImapSession.check(settings, secret=secret)
        else:
            from mailctl.protocols.pop3 import Pop3Session

            login = Pop3Session.check(settings, secret=secret)
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
        tls=login.tls,
        authenticated=login.authenticated if settings.username is not None else None,
        auth_mechanism=(settings.auth.value if settings.auth and login.authenticated else None),
        capabilities=login.capabilities,
        timings=dict(login.timings),
    )


async def _open_smtp(
    settings: ServerSettings, ehlo: str | None, secret: Callable[[], str] | None
) -> SessionInfo:
    from mailctl.protocols.smtp import SessionOptions, SmtpSession

    session = await SmtpSession.open(
        SessionOptions(settings=settings, ehlo_name=ehlo, secret=secret, tls_chain=True)
    )
    try:
        return session.info
    finally:
        await session.close()
