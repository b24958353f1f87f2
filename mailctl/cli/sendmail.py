"""`mailctl sendmail`: a /usr/sbin/sendmail drop-in (as msmtp provides) for git, cron and mutt.

Sendmail's option syntax (`-oi`, `-fADDR`, `-F NAME`, `-B8BITMIME`) is not Click's, so the
arguments are parsed here by hand; the Typer command only passes them through.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, BinaryIO, NoReturn

import typer

from mailctl.cli.context import AppContext, GlobalOptions, root_options
from mailctl.cli.output import CommandResult
from mailctl.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path

    from mailctl.models import Account, Config

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
    from mailctl.core import send as core
    from mailctl.mime.headers import parse_mailbox, parse_mailbox_list
    from mailctl.mime.rawmessage import add_missing_headers, header_value
    from mailctl.models import Protocol
    from mailctl.protocols.smtp import SessionOptions
    from mailctl.protocols.transcript import Transcript

    args = parse_args(argv)
    _require_utf8_args(args)
    if args.config:
        app.options = replace(app.options, config=Path(args.config))
    config = app.config
    data = read_message(sys.stdin.buffer, dot_terminates=args.dot_terminates)
    if not data.strip():
        from mailctl.errors import InputDataError

        raise InputDataError(
            "sendmail: empty message on stdin", hint="pipe the message to mailctl sendmail"
        )

    header_from = header_value(data, "From")
    account = _choose_account(config, app.config_path, args, header_from)
    target = app.resolve_server(ServerFlags(), Protocol.SMTP, account=account)
    sender_text = args.sender or account.from_address or header_from
    sender_field = (
        "-f" if args.sender else "From header" if not account.from_address
        else f"account {account.name} from"
    )  # fmt: skip
    sender = parse_mailbox(sender_field, sender_text) if sender_text else None
    if sender is not None:
        data = add_missing_headers(data, sender=sender, full_name=args.full_name)
    recipients = parse_mailbox_list("recipient", args.recipients)
    prepared = core.prepare_raw(
        data,
        sender=sender,
        recipients=recipients,
        recipients_from_headers=args.read_recipients,
    )
    options = SessionOptions(
        settings=target.settings,
        ehlo_name=target.ehlo_name,
        secret=target.secret,
        transcript=Transcript(on_line=transcript_printer(app.output)) if args.verbose else None,
    )
    result = core.deliver(prepared, options)
    return CommandResult(data=result.to_json())


def _require_utf8_args(args: SendmailArgs) -> None:
    """Refuse -f, -F, -a and recipients that are not UTF-8 (exit 65); -C is a path, opened as is."""
    from mailctl.mime.headers import require_utf8

    for option, value in (("-f", args.sender), ("-F", args.full_name), ("-a", args.account)):
        if value is not None:
            require_utf8(option, value)
    for recipient in args.recipients:
        require_utf8("recipient", recipient)


def _choose_account(
    config: Config, path: Path, args: SendmailArgs, header_from: str | None
) -> Account:
    """-a NAME, else the account whose `from` matches -f or the From header, else the default."""
    from mailctl.config.store import account_for_address, find_account
    from mailctl.errors import ConfigError, InputDataError
    from mailctl.mime.headers import parse_mailbox

    if args.account is not None:
        account = find_account(config, args.account)
    else:
        matched = None
        for candidate in (args.sender, header_from):
            if not candidate:
                continue
            try:
                address = parse_mailbox("From", candidate).addr_spec
            except InputDataError:  # an odd From only means no match; it is checked again later
                continue
            matched = account_for_address(config, address)
            if matched:
                break
        if matched is None and not config.accounts:
            raise ConfigError(
                f"sendmail: no account configured in {path}",
                hint="run 'mailctl account add NAME' (sendmail mode relays through an account)",
            )
        account = matched or find_account(config, None)
    if account.smtp is None:
        raise ConfigError(
            f"sendmail: account {account.name!r} has no smtp block",
            hint=f"add one with 'mailctl account add {account.name} --force --smtp-host ...'",
        )
    return account


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
            list[str] | None, typer.Argument(help="sendmail options and recipients")
        ] = None,
    ) -> None:
        """Act as /usr/sbin/sendmail: message on stdin; -t, -f, -F, -i/-oi, -a ACCOUNT, -v.

        Symlink 'sendmail' to mailctl, or set git's sendemail.sendmailCmd to
        'mailctl sendmail' and cron's MAILTO mailer to it.
        """
        run_sendmail([*(args or []), *ctx.args], before=root_options(ctx))
