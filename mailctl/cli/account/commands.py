"""`mailctl account ...`: add, set, list, show, remove, set-password and test accounts.

This module holds the Typer app and its commands (options -> request -> one core call, on
the config the application context loaded); `prompts` asks the terminal questions and
`render` prints the results.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mailctl.cli.account.flags import (
    CaFileOpt,
    DefaultOpt,
    EhloOpt,
    FromOpt,
    ServerBlocks,
    server_block_flags,
)
from mailctl.cli.account.prompts import (
    ask,
    ask_missing,
    confirm,
    keyring_problem,
    offer_keyring,
    read_stdin_secret,
    require_keyring,
)
from mailctl.cli.account.render import (
    render_added,
    render_changed,
    render_details,
    render_list,
    render_password_stored,
    render_removed,
    render_test,
)
from mailctl.cli.context import AppContext, command, remember_options
from mailctl.cli.options import AccountOpt, ConfigOpt, JsonOpt, QuietOpt, TlsNameOpt
from mailctl.cli.output import CommandResult
from mailctl.text import quote

if TYPE_CHECKING:
    from mailctl.models import Protocol

app = typer.Typer(
    name="account",
    help="Manage accounts: servers, the default account, passwords in the keyring.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # a traceback must never print a password
    rich_markup_mode=None,
)


@app.callback()
def account_group(
    ctx: typer.Context,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Manage accounts: servers, the default account, passwords in the keyring."""
    remember_options(ctx, config=config, account=account, json_mode=json_mode, quiet=quiet)


PROTOCOL_HELP = "smtp, imap, pop3 or all"

ProtocolOption = Annotated[
    str, typer.Option("--protocol", "-p", metavar="PROTOCOL", help=PROTOCOL_HELP)
]


# ---------------------------------------------------------------------------------------------
# add


@app.command("add")
@command("account", "add")
@server_block_flags
def add_command(
    app: AppContext,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Account name (letters, digits, . _ @ + -).")
    ],
    from_address: FromOpt = None,
    ehlo: EhloOpt = None,
    *,
    servers: ServerBlocks,
    ca_file: CaFileOpt = None,
    make_default: DefaultOpt = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing account.")] = False,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the password from the first line of stdin and store it in the keyring.",
        ),
    ] = False,
) -> CommandResult:
    """Add an account from flags; on a terminal, ask for whatever is missing.

    The password is never written to the config file: it goes to the system keyring
    (--password-stdin, or the offer made on a terminal), or comes from a
    --*-password-command, or from MAILCTL_PASSWORD at run time.
    """
    from dataclasses import replace

    from mailctl.core import account as core
    from mailctl.models import Protocol

    core.validate_account_name(name)
    core.ensure_addable(app.config_to_write(), name, force=force)
    inputs = {protocol: replace(given, ca_file=ca_file) for protocol, given in servers.items()}
    sender = from_address
    interactive = app.interactive and not password_stdin
    if interactive:
        sender, inputs = ask_missing(sender, inputs, keyring_problem=keyring_problem())
    _require_utf8_text({"--from": sender, "--ehlo": ehlo})
    blocks = {protocol: core.build_server(protocol, given) for protocol, given in inputs.items()}
    request = core.AddAccountRequest(
        name=name,
        from_address=sender or None,
        ehlo=ehlo,
        smtp=blocks[Protocol.SMTP],
        imap=blocks[Protocol.IMAP],
        pop3=blocks[Protocol.POP3],
        make_default=make_default,
        force=force,
    )
    secret: str | None = None
    if password_stdin:
        require_keyring(name, exists=False)  # before reading it: nowhere to put it otherwise
        secret = read_stdin_secret("--password-stdin")
    elif interactive and core.blocks_needing_secret(request.blocks()):
        secret = offer_keyring(app.output, name)
    result = core.add_account(app.config_to_write(), request, secret=secret)
    app.warn(result.warnings)
    return CommandResult(data=result, render=lambda out: render_added(out, result))


# ---------------------------------------------------------------------------------------------
# set


@app.command("set")
@command("account", "set")
@server_block_flags
def set_command(
    app: AppContext,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Account name.")],
    from_address: FromOpt = None,
    ehlo: EhloOpt = None,
    *,
    servers: ServerBlocks,
    ca_file: CaFileOpt = None,
    make_default: DefaultOpt = False,
) -> CommandResult:
    """Change some settings of an account; the others stay ("-" as a user: no login).

    Values are checked as `account add` checks them. A block the account lacks is added when
    its host is given. A security given without a port moves a standard port along.
    """
    from dataclasses import replace

    from mailctl.core import account as core

    _require_utf8_text({"--from": from_address, "--ehlo": ehlo})
    request = core.SetAccountRequest(
        name=name,
        servers={p: replace(given, ca_file=ca_file) for p, given in servers.items()},
        from_address=from_address,
        ehlo=ehlo,
        make_default=make_default,
    )
    result = core.set_account(app.config, request)
    app.warn(result.warnings)
    return CommandResult(data=result, render=lambda out: render_changed(out, result))


def _require_utf8_text(values: dict[str, str | None]) -> None:
    """Refuse values that are not UTF-8 (exit 65 naming the flag): TOML is UTF-8 only."""
    from mailctl.mime.header_safety import require_utf8

    for flag, value in values.items():
        if value is not None:
            require_utf8(flag, value)


# ---------------------------------------------------------------------------------------------
# list, show

AccountName = Annotated[
    str | None,
    typer.Argument(
        metavar="NAME", help="Account name (default: --account, else the default account)."
    ),
]


@app.command("list")
@command("account", "list")
def list_command(app: AppContext) -> CommandResult:
    """List the accounts (* marks the default)."""
    from mailctl.core import account as core

    result = core.list_accounts(app.config)
    return CommandResult(data=result, render=lambda out: render_list(out, result))


@app.command("show")
@command("account", "show")
def show_command(app: AppContext, name: AccountName = None) -> CommandResult:
    """Show every setting of an account and where its password comes from (never the password)."""
    from mailctl.core import account as core

    result = core.show_account(app.config, app.account(name).name)
    return CommandResult(data=result, render=lambda out: render_details(out, result))


# ---------------------------------------------------------------------------------------------
# remove, set-password


@app.command("remove")
@command("account", "remove")
def remove_command(
    app: AppContext,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Account name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> CommandResult:
    """Remove an account from the config file and its passwords from the keyring."""
    from mailctl.core import account as core
    from mailctl.errors import UsageError

    if not yes:
        if not app.interactive:
            raise UsageError(
                f"refusing to remove account {quote(name)} without confirmation",
                hint="pass --yes",
            )
        core.get_account(app.config, name)  # fails before asking if there is no such account
        if not confirm(f"Remove account {name} from {app.config_path}?", default=False, err=True):
            return CommandResult(
                data=core.removal_declined(app.config, name),
                render=lambda out: out.print("Nothing removed."),
            )
    result = core.remove_account(app.config, name)
    app.warn(result.warnings)
    return CommandResult(data=result, render=lambda out: render_removed(out, result, name))


@app.command("set-password")
@command("account", "set-password")
def set_password_command(
    app: AppContext,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Account name.")],
    protocol: ProtocolOption = "all",
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the password from the first line of stdin.")
    ] = False,
) -> CommandResult:
    """Store an account's password in the system keyring (for one block or all of them)."""
    from mailctl.core import account as core
    from mailctl.errors import UsageError

    protocols = _protocols(protocol)
    # Before any question or read: no such account, or no keyring to put the password in.
    core.get_account(app.config, name)
    require_keyring(name)
    if stdin:
        secret = read_stdin_secret("--stdin")
    elif app.interactive:
        secret = ask(f"Password for {name}", hide_input=True, confirmation_prompt=True, err=True)
    else:
        raise UsageError("no terminal to ask for the password on", hint="pipe it in with --stdin")
    result = core.set_password(app.config, name, protocols, secret)
    app.warn(result.warnings)
    return CommandResult(data=result, render=lambda out: render_password_stored(out, result))


def _protocols(value: str) -> tuple[Protocol, ...] | None:
    """--protocol: None for "all" (every configured block), else the one protocol."""
    from mailctl.errors import UsageError
    from mailctl.models import Protocol

    text = value.strip().lower()
    if text == "all":
        return None
    try:
        return (Protocol(text),)
    except ValueError:
        raise UsageError(
            f"--protocol: must be one of smtp, imap, pop3, all, got {quote(value)}"
        ) from None


# ---------------------------------------------------------------------------------------------
# test


@app.command("test")
@command("account", "test")
def test_command(
    app: AppContext,
    name: AccountName = None,
    protocol: ProtocolOption = "all",
    tls_name: TlsNameOpt = None,
) -> CommandResult:
    """Connect and log in to each server of an account; report TLS, auth and capabilities.

    Exits non-zero with the most serious failure's code when any server failed.
    """
    from mailctl.cli.hints import HintWords
    from mailctl.core import account as core
    from mailctl.hosts import tls_name as tls_name_rule
    from mailctl.models import Protocol
    from mailctl.serialize import to_data

    protocols = _protocols(protocol)
    checked = None if tls_name is None else tls_name_rule(tls_name, field="--tls-name")
    result = core.check_account(
        app.config, app.account(name).name, protocols, secrets=app.secrets, tls_name=checked
    )
    # Every block came from the account: fixes read as its keys (cli/hints.py), and as
    # --tls-name too, which this command has.
    words = HintWords(flags=app.flags, accounts={p.value: result.name for p in Protocol})
    for check in result.failures:
        if check.error is not None:
            check.error.reword(words)
    errors = [
        {**to_data(check.error), "protocol": check.protocol.value}
        for check in result.failures
        if check.error is not None
    ]
    return CommandResult(
        data=result,
        status="ok"
        if result.status == "ok"
        else ("partial" if result.status == "partial" else "error"),
        exit_code=result.exit_code,
        # Human output already shows each failure under its server; the envelope lists them,
        # and so does -q, which skips that output but never a failure.
        errors=errors if app.output.json_mode or app.output.quiet else [],
        render=lambda out: render_test(out, result),
    )
