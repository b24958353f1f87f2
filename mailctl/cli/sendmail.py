"""`mailctl sendmail`: a /usr/sbin/sendmail drop-in (as msmtp provides) for git, cron and mutt.

Sendmail's option syntax (`-oi`, `-fADDR`, `-F NAME`, `-B8BITMIME`) is not Click's, so the
arguments are parsed here by hand; the Typer command only passes them through.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Annotated, BinaryIO, NoReturn

import typer

from mailctl.cli.choices import complete_sendmail_arg
from mailctl.cli.context import AppContext, GlobalOptions, root_options
from mailctl.cli.output import CommandResult
from mailctl.errors import UsageError

_LINE_CHUNK = 64 * 1024
# Options that take a value, attached (-fADDR) or as the next argument (-f ADDR).
_VALUE_OPTIONS = {"-f", "-r", "-F", "-a", "-C", "-B", "-N", "-R", "-V", "-X", "-L", "-O"}
# Accepted and ignored, as msmtp does: delivery mode, error mode, old-style -o options.
_IGNORED_PREFIXES = (
    "-od",
    "-oe",
    "-om",
    "-oo",
    "-ob",
    "-oem",
    "-oee",
    "-oep",
    "-oeq",
    "-oew",
    "-bm",
)
_UNSUPPORTED_MODES = {
    "-bp": "mailq",
    "-bs": "SMTP on stdin",
    "-bd": "daemon mode",
    "-q": "queue runs",
}


@dataclass
class SendmailArgs:
    read_recipients: bool = False  # -t
    dot_terminates: bool = True  # classic sendmail: a lone "." ends input unless -i/-oi
    sender: str | None = None  # -f / -r
    full_name: str | None = None  # -F
    account: str | None = None  # -a (msmtp)
    config: str | None = None  # -C
    verbose: bool = False  # -v: transcript on stderr
    recipients: list[str] = field(default_factory=list)


def parse_args(argv: list[str]) -> SendmailArgs:  # noqa: PLR0912 - one branch per option
    """Parse sendmail's options; unknown options are a usage error naming the option."""
    args = SendmailArgs()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            args.recipients.extend(argv[i:])
            break
        if not arg.startswith("-") or arg == "-":
            args.recipients.append(arg)
            continue
        if arg in _UNSUPPORTED_MODES or arg.startswith("-q"):
            mode = _UNSUPPORTED_MODES.get(arg[:3], "queue runs")
            raise UsageError(
                f"sendmail {arg}: {mode} is not supported",
                hint="mailctl sends at once and keeps no queue",
            )
        if arg in ("-i", "-oi"):
            args.dot_terminates = False
            continue
        if arg == "-t":
            args.read_recipients = True
            continue
        if arg == "-v":
            args.verbose = True
            continue
        if arg.startswith(_IGNORED_PREFIXES) or arg in ("-bm", "-U", "-Am", "-Ac", "-G"):
            continue
        option, attached = arg[:2], arg[2:]
        if option in _VALUE_OPTIONS:
            if attached:
                value = attached
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                raise UsageError(f"sendmail {option} needs a value", hint=f"write {option} VALUE")
            if option in ("-f", "-r"):
                args.sender = value
            elif option == "-F":
                args.full_name = value
            elif option == "-a":
                args.account = value
            elif option == "-C":
                args.config = value
            # -B (body type), -N (DSN), -R, -V, -X, -L, -O: accepted and ignored, as msmtp does.
            continue
        if arg.startswith("-o"):
            continue  # other old-style -oX options carry no meaning for a relay-only sendmail
        raise UsageError(f"sendmail: unknown option {arg}", hint="see 'mailctl sendmail --help'")
    return args


def read_message(stream: BinaryIO, *, dot_terminates: bool) -> bytes:
    """Read the message from stdin within the input limit (mailctl.inputs).

    Without -i a line holding only '.' ends it, as in sendmail, and nothing after it is read.
    Raises InputTooLargeError past the limit, without reading the rest.
    """
    from mailctl.inputs import MAX_INPUT_HINT, max_input_bytes, read_stream, too_large

    if not dot_terminates:
        return read_stream(stream, what="stdin")
    limit = max_input_bytes()
    out = bytearray()
    at_line_start = True
    while piece := stream.readline(_LINE_CHUNK):  # a bounded piece of a line, even a huge one
        if at_line_start and piece.rstrip(b"\r\n") == b".":
            break
        out += piece
        if len(out) > limit:
            raise too_large("stdin", limit, hint=MAX_INPUT_HINT)
        at_line_start = piece.endswith(b"\n")
    return bytes(out)


def run_sendmail(argv: list[str], *, before: GlobalOptions | None = None) -> NoReturn:
    """Run sendmail mode; exits with a sysexits code (what cron, git and mutt expect).

    `before` holds the global options given before `sendmail` (`mailctl --config F
    sendmail ...`); -C names the config file too, and wins. Never JSON: callers read the
    exit code.
    """
    app = AppContext(["sendmail"], GlobalOptions(config=before.config if before else None))
    app.run(lambda: _sendmail(argv, app))


def _sendmail(argv: list[str], app: AppContext) -> CommandResult:
    from pathlib import Path

    from mailctl.cli.serverflags import ServerFlags
    from mailctl.cli.tracing import transcript_printer
    from mailctl.core.send import Given, RawMessage, SendRequest, account_for_message, send
    from mailctl.errors import InputDataError
    from mailctl.models import Protocol

    args = parse_args(argv)
    _require_utf8_args(args)
    if args.config:
        app.options = replace(app.options, config=Path(args.config))
    config = app.config  # a config problem is reported before stdin is read
    data = read_message(sys.stdin.buffer, dot_terminates=args.dot_terminates)
    if not data.strip():
        raise InputDataError(
            "sendmail: empty message on stdin", hint="pipe the message to mailctl sendmail"
        )
    account = account_for_message(config, account=args.account, sender=args.sender, data=data)
    # -f, else the account's from, else (complete_headers) the message's From header.
    sender = None
    if args.sender:
        sender = Given(args.sender, "-f")
    elif account.from_address:
        sender = Given(account.from_address, f"account {account.name} from")
    request = SendRequest(
        message=RawMessage(
            data=data,
            sender=sender,
            recipients=tuple(Given(r, "recipient") for r in args.recipients),
            recipients_from_headers=args.read_recipients,
            complete_headers=True,
            full_name=args.full_name,
        ),
        server=app.resolve_server(ServerFlags(), Protocol.SMTP, account=account),
        on_transcript=transcript_printer(app.output) if args.verbose else None,
    )
    result = send(request)
    return CommandResult(data=result, status=result.status, exit_code=result.exit_code)


def _require_utf8_args(args: SendmailArgs) -> None:
    """Refuse -f, -F, -a and recipients that are not UTF-8 (exit 65); -C is a path, opened as is."""
    from mailctl.mime.header_safety import require_utf8

    for option, value in (("-f", args.sender), ("-F", args.full_name), ("-a", args.account)):
        if value is not None:
            require_utf8(option, value)
    for recipient in args.recipients:
        require_utf8("recipient", recipient)


def register(app: typer.Typer) -> None:
    @app.command(
        "sendmail",
        context_settings={
            "ignore_unknown_options": True,
            "allow_extra_args": True,
            "allow_interspersed_args": False,
        },
    )
    def sendmail_command(
        ctx: typer.Context,
        args: Annotated[
            list[str] | None,
            typer.Argument(
                help="sendmail options and recipients", autocompletion=complete_sendmail_arg
            ),
        ] = None,
    ) -> None:
        """Act as /usr/sbin/sendmail: message on stdin; -t, -f, -F, -i/-oi, -a ACCOUNT, -v.

        Symlink 'sendmail' to mailctl, or set git's sendemail.sendmailCmd to
        'mailctl sendmail' and cron's MAILTO mailer to it.
        """
        run_sendmail([*(args or []), *ctx.args], before=root_options(ctx))
