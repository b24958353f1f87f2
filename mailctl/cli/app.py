"""The Typer application: the root callback (global options) and the command table.

Commands are imported only when registered (lazily), and import nothing from here: the global
options they share live in cli/context.py and cli/options.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated

import typer

from mailctl import __version__
from mailctl.cli.context import VALUE_OPTIONS, remember_options
from mailctl.cli.options import AccountOpt, ConfigOpt, JsonOpt
from mailctl.errors import ExitCode

_app = typer.Typer(
    name="mailctl",
    help="A command-line mail toolkit: send mail, act as sendmail, manage accounts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # a traceback must never print a password
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mailctl {__version__}")
        raise typer.Exit()


@_app.callback()
def main(
    ctx: typer.Context,
    config: ConfigOpt = None,
    account: AccountOpt = None,
    json_mode: JsonOpt = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    # Read by cli/context.root_options; the same options after the command name win.
    remember_options(ctx, config=config, account=account, json_mode=json_mode)


def _register_account() -> None:
    from mailctl.cli import account

    _app.add_typer(account.app, name="account")


def _register_send() -> None:
    from mailctl.cli import send

    _app.command("send")(send.send_command)


def _register_sendmail() -> None:
    from mailctl.cli import sendmail

    sendmail.register(_app)


def _register_sink() -> None:
    from mailctl.cli import sink

    _app.command("sink")(sink.sink_command)


def _register_bench() -> None:
    from mailctl.cli import bench

    _app.command("bench")(bench.bench_command)


def _register_completion() -> None:
    from mailctl.cli import completion

    _app.command("completion")(completion.completion_command)


# In --help order. Each entry imports its module only when registered: Typer inspects every
# registered command's signature at start-up, so `mailctl send` registers `send` alone (~50 ms).
_COMMANDS: dict[str, Callable[[], None]] = {
    "send": _register_send,
    "sendmail": _register_sendmail,
    "account": _register_account,
    "sink": _register_sink,
    "bench": _register_bench,
    "completion": _register_completion,
}
_registered: set[str] = set()


def _register(names: Iterable[str] = _COMMANDS) -> typer.Typer:
    for name in names:
        if name not in _registered:
            _registered.add(name)
            _COMMANDS[name]()
    return _app


def __getattr__(name: str) -> typer.Typer:
    """`from mailctl.cli.app import app` (tests, tools) gets every command (PEP 562)."""
    if name == "app":
        return _register()
    raise AttributeError(name)


def _invoked_command(argv: list[str]) -> str | None:
    """The command name in argv, skipping global options; None when there is none (e.g. --help)."""
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
        elif arg in VALUE_OPTIONS:
            skip_value = True
        elif not arg.startswith("-"):
            return arg if arg in _COMMANDS else None
    return None


def run() -> None:
    import os
    import sys

    completing = "_MAILCTL_COMPLETE" in os.environ
    if completing:
        # add_completion=False keeps --install-completion out of --help, but then Typer does not
        # register its shell classes; TAB completion (`mailctl completion` scripts) needs them.
        from typer._completion_classes import completion_init

        completion_init()
    command = None if completing else _invoked_command(sys.argv[1:])
    application = _register([command] if command else _COMMANDS)
    try:
        application(prog_name="mailctl")
    except SystemExit as done:
        # Click reports bad flags with exit 2; mailctl's contract is sysexits: EX_USAGE is 64.
        if done.code == 2:
            _usage_envelope()
            raise SystemExit(int(ExitCode.USAGE)) from None
        raise


def _usage_envelope() -> None:
    """With --json, a flag error still yields the envelope (Click already printed the message)."""
    import sys

    argv = sys.argv[1:]
    if "--json" not in argv:
        return
    from mailctl.cli.output import Output

    name = _invoked_command(argv)
    command = [name] if name else []
    error = {"code": "usage", "message": "invalid command-line usage (see the message on stderr)"}
    Output(command, json_mode=True).write_json("error", ExitCode.USAGE, {}, [error])
