"""The Typer application: global options and the command table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from mailctl import __version__
from mailctl.errors import ExitCode

app = typer.Typer(
    name="mailctl",
    help="A command-line mail toolkit: send mail, act as sendmail, manage accounts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # a traceback must never print a password
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass(frozen=True)
class GlobalOptions:
    config_path: Path | None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mailctl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Config file (default: $MAILCTL_CONFIG, else $XDG_CONFIG_HOME/mailctl/"
            "config.toml).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    ctx.obj = GlobalOptions(config_path=config)


def global_options(ctx: typer.Context) -> GlobalOptions:
    """The options given before the command name (defaults when a command runs standalone)."""
    root = ctx.find_root()
    obj = root.obj
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions(config_path=None)


def _register() -> None:
    from mailctl.cli import account, bench, completion, send, sendmail, sink

    app.add_typer(account.app, name="account")
    app.command("send")(send.send_command)
    sendmail.register(app)
    app.command("completion")(completion.completion_command)
    app.command("bench")(bench.bench_command)
    app.command("sink")(sink.sink_command)


_register()


def run() -> None:
    import os

    if "_MAILCTL_COMPLETE" in os.environ:
        # add_completion=False keeps --install-completion out of --help, but then Typer does not
        # register its shell classes; TAB completion (`mailctl completion` scripts) needs them.
        from typer._completion_classes import completion_init

        completion_init()
    try:
        app(prog_name="mailctl")
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

    command = [arg for arg in argv[:1] if not arg.startswith("-")]
    error = {"code": "usage", "message": "invalid command-line usage (see the message on stderr)"}
    Output(command, json_mode=True).write_json("error", ExitCode.USAGE, {}, [error])
