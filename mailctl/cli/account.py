"""`mailctl account ...`: add, list, show, remove, set-password and test accounts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mailctl.cli.app import global_options
from mailctl.cli.output import CommandResult, Output, run_command

if TYPE_CHECKING:
    from mailctl.core.accounts import ServerInput
    from mailctl.models import Protocol

app = typer.Typer(
    name="account",
    help="Manage accounts: servers, the default account, passwords in the keyring.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # a traceback must never print a password
    rich_markup_mode=None,
)

SMTP_PANEL = "SMTP server (sending)"
IMAP_PANEL = "IMAP server"
POP3_PANEL = "POP3 server"
SECURITY_HELP = "tls (implicit TLS), starttls or none"
AUTH_HELP = "plain, login, cram-md5 or xoauth2 (default: one the server offers)"
PROTOCOL_HELP = "smtp, imap, pop3 or all"

JsonOption = Annotated[bool, typer.Option("--json", help="Print the JSON result envelope.")]
ProtocolOption = Annotated[
    str, typer.Option("--protocol", "-p", metavar="PROTOCOL", help=PROTOCOL_HELP)
]


def _path(ctx: typer.Context) -> Path:
    from mailctl.config.paths import config_path

    return config_path(global_options(ctx).config_path)


def _warn_all(output: Output, warnings: tuple[str, ...]) -> None:
    for warning in warnings:
        output.warn(warning)


# ---------------------------------------------------------------------------------------------
# add


@app.command("add")
def add_command(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Account name (letters, digits, . _ @ + -).")
    ],
    from_address: Annotated[
        str | None,
        typer.Option(
            "--from", metavar="ADDRESS", help='Default sender, "Name <addr@example.com>".'
        ),
    ] = None,
    ehlo: Annotated[
        str | None, typer.Option("--ehlo", metavar="NAME", help="Name sent in EHLO.")
    ] = None,
    smtp_host: Annotated[
        str | None,
        typer.Option("--smtp-host", metavar="HOST", help="Host.", rich_help_panel=SMTP_PANEL),
    ] = None,
    smtp_port: Annotated[
        str | None,
        typer.Option(
            "--smtp-port",
            metavar="PORT",
            help="Port (default by security).",
            rich_help_panel=SMTP_PANEL,
        ),
    ] = None,
    smtp_security: Annotated[
        str | None,
        typer.Option(
            "--smtp-security",
            metavar="SECURITY",
            help=f"{SECURITY_HELP} (default starttls).",
            rich_help_panel=SMTP_PANEL,
        ),
    ] = None,
    smtp_user: Annotated[
        str | None,
        typer.Option("--smtp-user", metavar="USER", help="Login name.", rich_help_panel=SMTP_PANEL),
    ] = None,
    smtp_auth: Annotated[
        str | None,
        typer.Option(
            "--smtp-auth", metavar="MECHANISM", help=AUTH_HELP, rich_help_panel=SMTP_PANEL
        ),
    ] = None,
    smtp_password_command: Annotated[
        str | None,
        typer.Option(
            "--smtp-password-command",
            metavar="COMMAND",
            help="Command printing the password.",
            rich_help_panel=SMTP_PANEL,
        ),
    ] = None,
    imap_host: Annotated[
        str | None,
        typer.Option("--imap-host", metavar="HOST", help="Host.", rich_help_panel=IMAP_PANEL),
    ] = None,
    imap_port: Annotated[
        str | None,
        typer.Option(
            "--imap-port",
            metavar="PORT",
            help="Port (default by security).",
            rich_help_panel=IMAP_PANEL,
        ),
    ] = None,
    imap_security: Annotated[
        str | None,
        typer.Option(
            "--imap-security",
            metavar="SECURITY",
            help=f"{SECURITY_HELP} (default tls).",
            rich_help_panel=IMAP_PANEL,
        ),
    ] = None,
    imap_user: Annotated[
        str | None,
        typer.Option("--imap-user", metavar="USER", help="Login name.", rich_help_panel=IMAP_PANEL),
    ] = None,
    imap_auth: Annotated[
        str | None,
        typer.Option(
            "--imap-auth", metavar="MECHANISM", help=AUTH_HELP, rich_help_panel=IMAP_PANEL
        ),
    ] = None,
    imap_password_command: Annotated[
        str | None,
        typer.Option(
            "--imap-password-command",
            metavar="COMMAND",
            help="Command printing the password.",
            rich_help_panel=IMAP_PANEL,
        ),
    ] = None,
    pop3_host: Annotated[
        str | None,
        typer.Option("--pop3-host", metavar="HOST", help="Host.", rich_help_panel=POP3_PANEL),
    ] = None,
    pop3_port: Annotated[
        str | None,
        typer.Option(
            "--pop3-port",
            metavar="PORT",
            help="Port (default by security).",
            rich_help_panel=POP3_PANEL,
        ),
    ] = None,
    pop3_security: Annotated[
        str | None,
        typer.Option(
            "--pop3-security",
            metavar="SECURITY",
            help=f"{SECURITY_HELP} (default tls).",
            rich_help_panel=POP3_PANEL,
        ),
    ] = None,
    pop3_user: Annotated[
        str | None,
        typer.Option("--pop3-user", metavar="USER", help="Login name.", rich_help_panel=POP3_PANEL),
    ] = None,
    pop3_auth: Annotated[
        str | None,
        typer.Option(
            "--pop3-auth", metavar="MECHANISM", help=AUTH_HELP, rich_help_panel=POP3_PANEL
        ),
    ] = None,
    pop3_password_command: Annotated[
        str | None,
        typer.Option(
            "--pop3-password-command",
            metavar="COMMAND",
            help="Command printing the password.",
            rich_help_panel=POP3_PANEL,
        ),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            "--ca-file", metavar="FILE", help="Trust only this CA bundle (PEM) for every server."
        ),
    ] = None,
    make_default: Annotated[
        bool, typer.Option("--default", help="Make this the default account.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing account.")] = False,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the password from the first line of stdin and store it in the keyring.",
        ),
    ] = False,
    json_mode: JsonOption = False,
) -> None:
    """Add an account from flags; on a terminal, ask for whatever is missing.

    The password is never written to the config file: it goes to the system keyring
    (--password-stdin, or the offer made on a terminal), or comes from a
    --*-password-command, or from MAILCTL_PASSWORD at run time.
    """

    def body(output: Output) -> CommandResult:
        from mailctl.core import accounts as core
        from mailctl.models import Protocol

        path = _path(ctx)
        core.validate_account_name(name)
        core.ensure_addable(path, name, force=force)
        inputs = {
            Protocol.SMTP: core.ServerInput(
                host=smtp_host,
                port=smtp_port,
                security=smtp_security,
                username=smtp_user,
                auth=smtp_auth,
                password_command=smtp_password_command,
                ca_file=ca_file,
            ),
            Protocol.IMAP: core.ServerInput(
                host=imap_host,
                port=imap_port,
                security=imap_security,
                username=imap_user,
                auth=imap_auth,
                password_command=imap_password_command,
                ca_file=ca_file,
            ),
            Protocol.POP3: core.ServerInput(
                host=pop3_host,
                port=pop3_port,
                security=pop3_security,
                username=pop3_user,
                auth=pop3_auth,
                password_command=pop3_password_command,
                ca_file=ca_file,
            ),
        }
        sender = from_address
        interactive = output.interactive and not password_stdin
        if interactive:
            sender, inputs = _ask_missing(sender, inputs)
        blocks = {
            protocol: core.build_server(protocol, given) for protocol, given in inputs.items()
        }
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
            secret = _read_stdin_secret("--password-stdin")
        elif interactive and core.blocks_needing_secret(request.blocks()):
            secret = _offer_keyring(output, name)
        result = core.add_account(path, request, secret=secret)
        _warn_all(output, result.warnings)

        def render(out: Output) -> None:
            verb = "Replaced" if result.replaced else "Added"
            out.print(f"{verb} account {result.name} in {result.path}.")
            if result.is_default:
                out.print(f"{result.name} is the default account.")
            if result.stored_secrets:
                stored = ", ".join(p.value for p in result.stored_secrets)
                out.print(f"Password stored in the system keyring for: {stored}.")
            if result.password_missing:
                missing = ", ".join(p.value for p in result.password_missing)
                out.print(
                    f"No password stored for {missing}: run `mailctl account set-password "
                    f"{result.name}`, or set password_command, or MAILCTL_PASSWORD."
                )
            out.print(f"Check it with: mailctl account test {result.name}")

        return CommandResult(data=result.to_json(), render=render)

    run_command(["account", "add"], json_mode, body)


def _ask_missing(
    sender: str | None, inputs: dict[Protocol, ServerInput]
) -> tuple[str | None, dict[Protocol, ServerInput]]:
    """Prompt (on stderr) for what the flags left out: From, a server, its security/port/user."""
    from dataclasses import replace
    from email.utils import parseaddr

    from mailctl.config.schema import DEFAULT_SECURITY
    from mailctl.models import DEFAULT_PORTS, Protocol, Security

    if sender is None:
        sender = _ask(
            'From address ("Name <addr@example.com>", empty for none)',
            default="",
            show_default=False,
            err=True,
        ).strip()
    if all(given.empty for given in inputs.values()):
        host = _ask("SMTP server host (empty for none)", default="", err=True).strip()
        if host:
            inputs[Protocol.SMTP] = replace(inputs[Protocol.SMTP], host=host)
        for protocol in (Protocol.IMAP, Protocol.POP3):
            label = protocol.value.upper()
            article = "an" if protocol is Protocol.IMAP else "a"
            if _confirm(f"Add {article} {label} server?", default=False, err=True):
                host = _ask(f"{label} server host", err=True).strip()
                inputs[protocol] = replace(inputs[protocol], host=host or None)
    address = parseaddr(sender or "")[1]
    choices = [s.value for s in Security]
    for protocol, given in inputs.items():
        if given.host is None:
            continue
        label = protocol.value.upper()
        security = given.security
        while security is None or security.lower() not in choices:
            security = _ask(
                f"{label} security ({', '.join(choices)})",
                default=DEFAULT_SECURITY[protocol].value,
                err=True,
            ).strip()
        port = given.port
        if port is None:
            port = _ask(
                f"{label} port",
                default=DEFAULT_PORTS[protocol][Security(security.lower())],
                type=int,
                err=True,
            )
        username = given.username
        if username is None and given.password_command is None:
            answer = _ask(
                f"{label} username ('-' for no login)", default=address or "-", err=True
            ).strip()
            username = None if answer in ("", "-") else answer
        inputs[protocol] = replace(given, security=security, port=port, username=username)
    return sender, inputs


def _offer_keyring(output: Output, name: str) -> str | None:
    """On a terminal, offer (not force) to store a password in the keyring now."""
    from mailctl.credentials import usable_keyring
    from mailctl.errors import KeyringUnavailableError

    try:
        usable_keyring()
    except KeyringUnavailableError as err:
        output.warn(
            f"no password stored: {err.message}; set password_command in the config file "
            "or MAILCTL_PASSWORD when running mailctl"
        )
        return None
    if not _confirm("Store the password in the system keyring now?", default=True, err=True):
        output.warn(f"no password stored; later: mailctl account set-password {name}")
        return None
    secret: str = _ask("Password", hide_input=True, confirmation_prompt=True, err=True)
    return secret or None


def _read_stdin_secret(flag: str) -> str:
    """The first line of stdin, without its line end (what `--password-stdin` promises)."""
    from mailctl.errors import UsageError

    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(f"{flag} reads the password from a pipe", hint="echo ... | mailctl ...")
    secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise UsageError(f"{flag}: stdin held no password", hint="nothing was stored")
    return secret


# ---------------------------------------------------------------------------------------------
# list, show


@app.command("list")
def list_command(ctx: typer.Context, json_mode: JsonOption = False) -> None:
    """List the accounts (* marks the default)."""

    def body(output: Output) -> CommandResult:
        from mailctl.core import accounts as core

        result = core.list_accounts(_path(ctx))
        _warn_all(output, result.warnings)

        def render(out: Output) -> None:
            if not result.accounts:
                out.print(f"No accounts in {result.path}.")
                out.print("Add one with: mailctl account add NAME")
                return
            from rich.table import Table
            from rich.text import Text

            from mailctl.cli.output import clean

            table = Table(box=None, pad_edge=False, header_style="bold")
            for column in ("", "NAME", "FROM", "SERVERS"):
                table.add_column(column)
            for summary in result.accounts:
                table.add_row(
                    "*" if summary.is_default else "",
                    Text(clean(summary.name)),
                    Text(clean(summary.from_address or "-")),
                    Text(", ".join(p.value for p in summary.blocks)),
                )
            out.out.print(table)

        return CommandResult(data=result.to_json(), render=render)

    run_command(["account", "list"], json_mode, body)


@app.command("show")
def show_command(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(metavar="NAME", help="Account name (default: the default account)."),
    ] = None,
    json_mode: JsonOption = False,
) -> None:
    """Show every setting of an account and where its password comes from (never the password)."""

    def body(output: Output) -> CommandResult:
        from mailctl.core import accounts as core

        result = core.show_account(_path(ctx), name)
        _warn_all(output, result.warnings)
        data = result.to_json()

        def render(out: Output) -> None:
            account = result.account
            out.print(f"account    {account.name}{' (default)' if result.is_default else ''}")
            out.print(f"config     {result.path}")
            out.print(f"from       {account.from_address or '-'}")
            if account.ehlo:
                out.print(f"ehlo       {account.ehlo}")
            for protocol, source in result.secret_sources.items():
                block = data[protocol.value]
                out.print("")
                out.print(f"[{protocol.value}]")
                for key, value in block.items():
                    if key == "secret_source":
                        continue
                    shown = "-" if value is None else value
                    if isinstance(value, bool):
                        shown = "true" if value else "false"
                    out.print(f"  {key:<21} {shown}")
                out.print(f"  {'password from':<21} {source.value}")

        return CommandResult(data=data, render=render)

    run_command(["account", "show"], json_mode, body)


# ---------------------------------------------------------------------------------------------
# remove, set-password


@app.command("remove")
def remove_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Account name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_mode: JsonOption = False,
) -> None:
    """Remove an account from the config file and its passwords from the keyring."""

    def body(output: Output) -> CommandResult:
        from mailctl.core import accounts as core
        from mailctl.errors import UsageError

        path = _path(ctx)
        if not yes:
            if not output.interactive:
                raise UsageError(
                    f"refusing to remove account {name!r} without confirmation",
                    hint="pass --yes",
                )
            core.get_account(path, name)  # fails before asking if there is no such account
            if not _confirm(f"Remove account {name} from {path}?", default=False, err=True):
                return CommandResult(
                    data={"account": name, "removed": False},
                    render=lambda out: out.print("Nothing removed."),
                )
        result = core.remove_account(path, name)
        _warn_all(output, result.warnings)

        def render(out: Output) -> None:
            out.print(f"Removed account {result.name} from {result.path}.")
            if result.new_default is not None and result.new_default != name:
                out.print(f"The default account is {result.new_default}.")
            if result.deleted_secrets:
                deleted = ", ".join(p.value for p in result.deleted_secrets)
                out.print(f"Deleted its keyring entries: {deleted}.")

        return CommandResult(data=result.to_json(), render=render)

    run_command(["account", "remove"], json_mode, body)


@app.command("set-password")
def set_password_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Account name.")],
    protocol: ProtocolOption = "all",
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the password from the first line of stdin.")
    ] = False,
    json_mode: JsonOption = False,
) -> None:
    """Store an account's password in the system keyring (for one block or all of them)."""

    def body(output: Output) -> CommandResult:
        from mailctl.core import accounts as core
        from mailctl.errors import UsageError

        path = _path(ctx)
        protocols = _protocols(protocol)
        if stdin:
            secret = _read_stdin_secret("--stdin")
        elif output.interactive:
            core.get_account(path, name)  # fails before asking if there is no such account
            secret = _ask(
                f"Password for {name}", hide_input=True, confirmation_prompt=True, err=True
            )
        else:
            raise UsageError(
                "no terminal to ask for the password on",
                hint="pipe it in with --stdin",
            )
        result = core.set_password(path, name, protocols, secret)
        _warn_all(output, result.warnings)

        def render(out: Output) -> None:
            stored = ", ".join(p.value for p in result.protocols)
            out.print(f"Stored the password for {result.name} ({stored}) in the system keyring.")

        return CommandResult(data=result.to_json(), render=render)

    run_command(["account", "set-password"], json_mode, body)


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
            f"--protocol: must be one of smtp, imap, pop3, all, got {value!r}"
        ) from None


# ---------------------------------------------------------------------------------------------
# test


@app.command("test")
def test_command(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(metavar="NAME", help="Account name (default: the default account)."),
    ] = None,
    protocol: ProtocolOption = "all",
    json_mode: JsonOption = False,
) -> None:
    """Connect and log in to each server of an account; report TLS, auth and capabilities.

    Exits non-zero with the most serious failure's code when any server failed.
    """

    def body(output: Output) -> CommandResult:
        from mailctl.cli.output import clean
        from mailctl.core import accounts as core

        prompt = _hidden_prompt if output.interactive else None
        result = core.check_account(_path(ctx), name, _protocols(protocol), prompt=prompt)
        _warn_all(output, result.warnings)
        errors = [
            {"protocol": check.protocol.value, **check.error.to_json()}
            for check in result.failures
            if check.error is not None
        ]

        def render(out: Output) -> None:
            for check in result.checks:
                where = f"{check.host}:{check.port}"
                head = f"{check.protocol.value:<5} {where} ({check.security})"
                if check.error is not None:
                    out.out.print(f"{clean(head)}  FAILED", markup=False, style="red")
                    out.print(f"      {check.error.one_line()}")
                    continue
                out.out.print(f"{clean(head)}  OK", markup=False, style="green")
                if check.tls is not None:
                    out.print(f"      tls: {check.tls.get('version')} {check.tls.get('cipher')}")
                else:
                    out.print("      tls: none")
                if check.authenticated is None:
                    out.print("      login: not attempted (no username)")
                else:
                    how = f" ({check.auth_mechanism})" if check.auth_mechanism else ""
                    verdict = "OK" if check.authenticated else "not done"
                    out.print(f"      login as {check.username}: {verdict}{how}")
                if check.capabilities:
                    out.print(f"      capabilities: {' '.join(check.capabilities)}")
            if result.status == "partial":
                failed = ", ".join(c.protocol.value for c in result.failures)
                out.print(f"Some servers failed: {failed}.")

        return CommandResult(
            data=result.to_json(),
            status="ok"
            if result.status == "ok"
            else ("partial" if result.status == "partial" else "error"),
            exit_code=result.exit_code,
            # Human output already shows each failure under its server; the envelope lists them.
            errors=errors if output.json_mode else [],
            render=render,
        )

    run_command(["account", "test"], json_mode, body)


def _hidden_prompt(label: str) -> str:
    secret: str = _ask(label, hide_input=True, default="", show_default=False, err=True)
    return secret


def _ask(text: str, **kwargs: Any) -> Any:
    """typer.prompt, with Ctrl-C/Ctrl-D (click's Abort) reported as an interruption."""
    from mailctl.errors import InterruptedByUser

    try:
        return typer.prompt(text, **kwargs)
    except typer.Abort:
        raise InterruptedByUser("interrupted at a prompt", hint="nothing was changed") from None


def _confirm(text: str, **kwargs: Any) -> bool:
    """typer.confirm, with Ctrl-C/Ctrl-D (click's Abort) reported as an interruption."""
    from mailctl.errors import InterruptedByUser

    try:
        return bool(typer.confirm(text, **kwargs))
    except typer.Abort:
        raise InterruptedByUser("interrupted at a prompt", hint="nothing was changed") from None
