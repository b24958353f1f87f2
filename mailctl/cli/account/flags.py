"""The per-protocol server flags of `account add` and `account set`, declared once.

`--smtp-host`, `--imap-port`, `--pop3-user`, ...: one template per block key, stamped out for
each protocol, so both commands spell, document and group them the same way. A command takes
them as one keyword-only parameter, `servers: ServerBlocks` (see `server_block_flags`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeAlias

import typer

from mailctl.cli.output import CommandResult

if TYPE_CHECKING:
    from mailctl.core.account import ServerInput
    from mailctl.models import Protocol

    ServerBlocks: TypeAlias = dict[Protocol, ServerInput]
else:
    ServerBlocks = dict  # evaluated by inspect at import time: no heavy import for it

# The account-wide flags both commands take.
FromOpt = Annotated[
    str | None,
    typer.Option("--from", metavar="ADDRESS", help='Default sender, "Name <addr@example.com>".'),
]
EhloOpt = Annotated[str | None, typer.Option("--ehlo", metavar="NAME", help="Name sent in EHLO.")]
CaFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca-file", metavar="FILE", help="Trust only this CA bundle (PEM) for every server."
    ),
]
DefaultOpt = Annotated[bool, typer.Option("--default", help="Make this the default account.")]

SECURITY_HELP = "tls (implicit TLS), starttls or none"
AUTH_HELP = "plain, login, cram-md5 or xoauth2 (default: one the server offers)"
PANELS: Final = {"smtp": "SMTP server (sending)", "imap": "IMAP server", "pop3": "POP3 server"}
DEFAULT_SECURITY: Final = {"smtp": "starttls", "imap": "tls", "pop3": "tls"}

# ServerInput field -> (flag suffix, metavar, help); help may use {security} (the default).
_FIELDS: Final = {
    "host": ("host", "HOST", "Host."),
    "port": ("port", "PORT", "Port (default by security)."),
    "security": ("security", "SECURITY", SECURITY_HELP + " (default {security})."),
    "username": ("user", "USER", "Login name."),
    "auth": ("auth", "MECHANISM", AUTH_HELP),
    "password_command": ("password-command", "COMMAND", "Command printing the password."),
    "tls_name": (
        "tls-name",
        "NAME",
        "Check the certificate against NAME (and send it as SNI) instead of the host; - clears.",
    ),
}
PROTOCOLS: Final = ("smtp", "imap", "pop3")


def flag_name(protocol: str, field: str) -> str:
    """The command-line flag of one block key: ("imap", "username") -> "--imap-user"."""
    return f"--{protocol}-{_FIELDS[field][0]}"


def _options() -> dict[str, tuple[str, str, Any]]:
    """Parameter name -> (protocol, field, Annotated type), in --help order."""
    options: dict[str, tuple[str, str, Any]] = {}
    for protocol in PROTOCOLS:
        for field, (_suffix, metavar, text) in _FIELDS.items():
            option = typer.Option(
                flag_name(protocol, field),
                metavar=metavar,
                help=text.format(security=DEFAULT_SECURITY[protocol]),
                rich_help_panel=PANELS[protocol],
            )
            options[f"{protocol}_{field}"] = (protocol, field, Annotated[str | None, option])
    return options


BLOCK_OPTIONS: Final = _options()


def server_block_flags(func: Callable[..., CommandResult]) -> Callable[..., CommandResult]:
    """Replace `func`'s `servers` parameter with the per-protocol options (BLOCK_OPTIONS).

    The wrapper collects them into `servers={Protocol: ServerInput}` (None for a flag not
    given) and calls `func`; put it under `cli.context.command`, which reads the signature.
    """
    signature = inspect.signature(func, eval_str=True)
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        if param.name != "servers":
            # `servers` is keyword-only in the source (it sits among options with defaults);
            # Typer wants one kind throughout.
            params.append(param.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD))
            continue
        params += [
            inspect.Parameter(
                key, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=annotation
            )
            for key, (_protocol, _field, annotation) in BLOCK_OPTIONS.items()
        ]

    def run(**values: Any) -> CommandResult:
        from mailctl.core.account import ServerInput
        from mailctl.models import Protocol

        given: dict[str, dict[str, Any]] = {protocol: {} for protocol in PROTOCOLS}
        for key, (protocol, field, _annotation) in BLOCK_OPTIONS.items():
            given[protocol][field] = values.pop(key, None)
        servers = {Protocol(protocol): ServerInput(**fields) for protocol, fields in given.items()}
        return func(**values, servers=servers)

    run.__name__ = func.__name__
    run.__qualname__ = func.__qualname__
    run.__doc__ = func.__doc__
    run.__module__ = func.__module__
    run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    return run
