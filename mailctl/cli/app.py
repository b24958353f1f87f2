"""The Typer application: the root callback (global options) and the command table.

The table (a cli.lazy group) lists each command by name and summary; a command's module is
imported only when that command runs or is completed into. Commands import nothing from
here: the global options they share live in cli/context.py and cli/options.py.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mailctl import __version__
from mailctl.cli.context import VALUE_OPTIONS, remember_options
from mailctl.cli.lazy import LazyCommand, lazy_group
from mailctl.cli.options import AccountOpt, ConfigOpt, JsonOpt, QuietOpt
from mailctl.errors import ExitCode


def _register_send(app: typer.Typer) -> None:
    from mailctl.cli import send

    app.command("send")(send.send_command)


def _register_sendmail(app: typer.Typer) -> None:
    from mailctl.cli import sendmail

    sendmail.register(app)


def _register_sink(app: typer.Typer) -> None:
    from mailctl.cli import sink

    app.command("sink")(sink.sink_command)


def _register_bench(app: typer.Typer) -> None:
    from mailctl.cli import bench

    app.command("bench")(bench.bench_command)


def _register_bulk_send(app: typer.Typer) -> None:
    from mailctl.cli import bulk_send

    app.command("bulk-send")(bulk_send.bulk_send_command)


def _register_fetch(app: typer.Typer) -> None:
    from mailctl.cli import fetch

    app.command("fetch")(fetch.fetch_command)


def _register_folders(app: typer.Typer) -> None:
    from mailctl.cli import folders

    app.command("folders")(folders.folders_command)


def _register_probe(app: typer.Typer) -> None:
    from mailctl.cli import probe

    app.command("probe")(probe.probe_command)


def _register_parse(app: typer.Typer) -> None:
    from mailctl.cli import parse

    app.command("parse")(parse.parse_command)


def _register_completion(app: typer.Typer) -> None:
    from mailctl.cli import completion

    app.command("completion")(completion.completion_command)


def _register_account(app: typer.Typer) -> None:
    from mailctl.cli import account

    app.add_typer(account.app, name="account")


def _render_help(command: object, ctx: object) -> str:
    # Panels and the Examples: imported when help is printed, never for TAB or a run. Click's
    # echo strips the colours when stdout is not a terminal.
    from mailctl.cli.helptext import format_help

    return format_help(command, ctx, color=True)


# In --help order; each summary is the first paragraph of the command's docstring (a test
# compares them). A command's module is imported, and its Click command built, only when it
# runs or a word inside it is completed: TAB on a name and --help read this table (~24 ms).
_COMMANDS = lazy_group(
    LazyCommand("send", "Send one message: from flags, or an existing .eml as is.", _register_send),
    LazyCommand(
        "sendmail",
        "Act as /usr/sbin/sendmail: message on stdin; -t, -f, -F, -i/-oi, -a ACCOUNT, -v.",
        _register_sendmail,
    ),
    LazyCommand(
        "sink",
        "Run a local SMTP sink: count (or keep) what arrives, inject faults, report stats at exit.",
        _register_sink,
    ),
    LazyCommand(
        "bench",
        "Benchmark SMTP sending: QPS, latency percentiles, per-phase timings.",
        _register_bench,
    ),
    LazyCommand(
        "bulk-send",
        "Send one personalised message per CSV row: dry run first, resumable, never twice.",
        _register_bulk_send,
    ),
    LazyCommand(
        "fetch",
        "Fetch mail over IMAP or POP3: list envelopes or keep messages (Maildir, mbox, .eml).",
        _register_fetch,
    ),
    LazyCommand(
        "folders",
        "List IMAP folders with their flags and counts (messages, unseen, size).",
        _register_folders,
    ),
    LazyCommand(
        "probe",
        "Diagnose mail servers: TLS versions and certificate, STARTTLS, AUTH before TLS.",
        _register_probe,
    ),
    LazyCommand(
        "parse",
        "Read a message (.eml or stdin) as data: headers, bodies, attachments, hops, verdicts.",
        _register_parse,
    ),
    LazyCommand("completion", "Print a shell completion script.", _register_completion),
    LazyCommand(
        "account",
        "Manage accounts: servers, the default account, passwords in the keyring.",
        _register_account,
    ),
    help_renderer=_render_help,
)

_app = typer.Typer(
    name="mailctl",
    help="A command-line mail toolkit: send mail, act as sendmail, run a local SMTP sink, "
    "benchmark SMTP servers, manage accounts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # a traceback must never print a password
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=_COMMANDS,
)
app = _app  # `from mailctl.cli.app import app` (tests, tools): commands build on first use


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
    quiet: QuietOpt = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    # Read by cli/context.root_options; the same options after the command name win.
    remember_options(ctx, config=config, account=account, json_mode=json_mode, quiet=quiet)


def _invoked_command(argv: list[str]) -> str | None:
    """The command name in argv, skipping global options; None when there is none (e.g. --help)."""
    names = {spec.name for spec in _COMMANDS.table}
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
        elif arg in VALUE_OPTIONS:
            skip_value = True
        elif not arg.startswith("-"):
            return arg if arg in names else None
    return None


def run() -> None:
    import os

    if "_MAILCTL_COMPLETE" in os.environ:
        # add_completion=False keeps --install-completion out of --help, but then Typer does not
        # register its shell classes; TAB completion (`mailctl completion` scripts) needs them.
        from typer._completion_classes import completion_init

        completion_init()
    try:
        _app(prog_name="mailctl")
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
