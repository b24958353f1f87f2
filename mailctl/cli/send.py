"""`mailctl send`: options -> a prepared message and session options -> core.send -> render."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mailctl.cli.context import AppContext, check_server_flags, command
from mailctl.cli.options import DataTimeoutOpt
from mailctl.cli.output import CommandResult, Output, clean
from mailctl.cli.serverflags import ServerFlags
from mailctl.errors import UsageError

if TYPE_CHECKING:
    from mailctl.core.send import PreparedMessage, SendResult
    from mailctl.mime.compose import ComposeRequest
    from mailctl.models import Account, ResolvedServer
    from mailctl.protocols.smtp import SessionOptions

CONTENT = "Message"


@command("send")
def send_command(
    app: AppContext,
    server: ServerFlags,
    sender: Annotated[
        str | None, typer.Option("--from", "-f", help="From address.", rich_help_panel=CONTENT)
    ] = None,
    to: Annotated[
        list[str] | None,
        typer.Option(
            "--to", "-t", help="Recipient (repeatable, or a comma list).", rich_help_panel=CONTENT
        ),
    ] = None,
    cc: Annotated[
        list[str] | None, typer.Option("--cc", help="Cc recipient.", rich_help_panel=CONTENT)
    ] = None,
    bcc: Annotated[
        list[str] | None,
        typer.Option(
            "--bcc",
            help="Bcc recipient (envelope only, never in headers).",
            rich_help_panel=CONTENT,
        ),
    ] = None,
    reply_to: Annotated[
        list[str] | None,
        typer.Option("--reply-to", help="Reply-To address.", rich_help_panel=CONTENT),
    ] = None,
    subject: Annotated[
        str, typer.Option("--subject", "-s", help="Subject.", rich_help_panel=CONTENT)
    ] = "",
    body: Annotated[
        str | None,
        typer.Option(
            "--body",
            "-b",
            help="Text body (else --body-file, else stdin).",
            rich_help_panel=CONTENT,
        ),
    ] = None,
    body_file: Annotated[
        Path | None,
        typer.Option(
            "--body-file", help="Read the text body from a file.", rich_help_panel=CONTENT
        ),
    ] = None,
    html: Annotated[
        str | None, typer.Option("--html", help="HTML body.", rich_help_panel=CONTENT)
    ] = None,
    html_file: Annotated[
        Path | None,
        typer.Option(
            "--html-file", help="Read the HTML body from a file.", rich_help_panel=CONTENT
        ),
    ] = None,
    attach: Annotated[
        list[Path] | None,
        typer.Option("--attach", "-a", help="Attach a file (repeatable).", rich_help_panel=CONTENT),
    ] = None,
    attach_name: Annotated[
        list[str] | None,
        typer.Option(
            "--attach-name",
            help="File name for the --attach at the same position.",
            rich_help_panel=CONTENT,
        ),
    ] = None,
    inline: Annotated[
        list[Path] | None,
        typer.Option(
            "--inline",
            help="Inline image for the HTML, referenced as cid:FILENAME.",
            rich_help_panel=CONTENT,
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help='Extra header "Name: value".', rich_help_panel=CONTENT),
    ] = None,
    in_reply_to: Annotated[
        str | None,
        typer.Option("--in-reply-to", help="Message-ID this replies to.", rich_help_panel=CONTENT),
    ] = None,
    references: Annotated[
        str | None, typer.Option("--references", help="References header.", rich_help_panel=CONTENT)
    ] = None,
    eml: Annotated[
        str | None,
        typer.Option(
            "--eml",
            help="Send an existing message file as is ('-' for stdin).",
            rich_help_panel=CONTENT,
        ),
    ] = None,
    data_timeout: DataTimeoutOpt = None,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial", help="Send to the accepted recipients even if some are refused."
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", "-n", help="Print the exact bytes and envelope; connect to nothing."
        ),
    ] = False,
    save: Annotated[
        Path | None, typer.Option("--save", help="Also write the message to FILE.eml.")
    ] = None,
    trace: Annotated[
        bool, typer.Option("--trace", help="Print the SMTP transcript on stderr.")
    ] = False,
) -> CommandResult:
    """Send one message: from flags, or an existing .eml as is."""
    flags = SendFlags(
        sender=sender, to=tuple(to or ()), cc=tuple(cc or ()), bcc=tuple(bcc or ()),
        reply_to=tuple(reply_to or ()), subject=subject, body=body, body_file=body_file,
        html=html, html_file=html_file, attach=tuple(attach or ()),
        attach_name=tuple(attach_name or ()), inline=tuple(inline or ()),
        header=tuple(header or ()), in_reply_to=in_reply_to, references=references, eml=eml,
        account=app.options.account, allow_partial=allow_partial, dry_run=dry_run,
        save=save, trace=trace, server=server,
    )  # fmt: skip
    return _send(flags, app)


@dataclass(frozen=True)
class SendFlags:
    """Everything `send` was given, so the steps below take one value instead of 40."""

    sender: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    reply_to: tuple[str, ...]
    subject: str
    body: str | None
    body_file: Path | None
    html: str | None
    html_file: Path | None
    attach: tuple[Path, ...]
    attach_name: tuple[str, ...]
    inline: tuple[Path, ...]
    header: tuple[str, ...]
    in_reply_to: str | None
    references: str | None
    eml: str | None
    account: str | None
    allow_partial: bool
    dry_run: bool
    save: Path | None
    trace: bool
    server: ServerFlags


def _send(flags: SendFlags, app: AppContext) -> CommandResult:
    from mailctl.core import send as core
    from mailctl.models import Protocol

    _require_utf8_flags(flags)
    check_server_flags(flags.server)  # also for --dry-run, which resolves no server
    acct = app.server_account(flags.server, required=not flags.dry_run)
    prepared = _prepare(flags, acct)
    saved = core.save_message(prepared, flags.save) if flags.save is not None else None
    if flags.dry_run:
        return _dry_run_result(prepared, saved)
    target = app.resolve_server(flags.server, Protocol.SMTP, account=acct)
    result = core.deliver(
        prepared, _session_options(flags, target, app.output), allow_partial=flags.allow_partial
    )
    return _send_result(replace(result, saved_to=saved))


def _require_utf8_flags(flags: SendFlags) -> None:
    """Refuse option values that are not UTF-8 text, naming the option (exit 65, not 70).

    Python hands argv bytes that are not UTF-8 over as surrogate escapes (PEP 383), which no
    header, body or SMTP command can carry. Paths are exempt: the kernel opens them by their
    bytes, and --password-command is a shell command that may name such a file.
    """
    from mailctl.mime.headers import require_utf8

    single = {
        "--from": flags.sender, "--subject": flags.subject, "--body": flags.body,
        "--html": flags.html, "--in-reply-to": flags.in_reply_to,
        "--references": flags.references, "--account": flags.account,
        "--ehlo": flags.server.ehlo,
        "--server": flags.server.server, "--user": flags.server.user, "--auth": flags.server.auth,
    }  # fmt: skip
    repeated = {
        "--to": flags.to, "--cc": flags.cc, "--bcc": flags.bcc, "--reply-to": flags.reply_to,
        "--attach-name": flags.attach_name, "--header": flags.header,
    }  # fmt: skip
    for option, value in single.items():
        if value is not None:
            require_utf8(option, value)
    for option, values in repeated.items():
        for value in values:
            require_utf8(option, value)


def _prepare(flags: SendFlags, acct: Account | None) -> PreparedMessage:
    from mailctl.core import send as core
    from mailctl.mime.headers import parse_mailbox, parse_mailbox_list

    if flags.eml is None:
        from_value = flags.sender or (acct.from_address if acct else None)
        if not from_value:
            raise UsageError("no sender", hint="pass --from ADDRESS or set 'from' in the account")
        from_field = "--from" if flags.sender or acct is None else f"account {acct.name} from"
        return core.prepare_composed(_compose_request(flags, from_value, from_field))
    content = [flags.subject, flags.body, flags.body_file, flags.html, flags.html_file]
    if any(content) or flags.attach or flags.inline or flags.header:
        raise UsageError(
            "--eml sends a message as is and cannot be combined with subject, body, HTML, "
            "attachment or header options",
            hint="edit the file, or drop --eml",
        )
    # With --eml an explicit --from wins; else the message's own From (not the account's).
    return core.prepare_raw(
        _read_input(flags.eml, "--eml"),
        sender=parse_mailbox("--from", flags.sender) if flags.sender else None,
        recipients=(
            *parse_mailbox_list("--to", flags.to),
            *parse_mailbox_list("--cc", flags.cc),
            *parse_mailbox_list("--bcc", flags.bcc),
        ),
        recipients_from_headers=not (flags.to or flags.cc or flags.bcc),
    )


def _compose_request(flags: SendFlags, from_value: str, from_field: str) -> ComposeRequest:
    from mailctl.mime.compose import AttachmentSpec, ComposeRequest
    from mailctl.mime.headers import (
        parse_header_option,
        parse_mailbox,
        parse_mailbox_list,
        require_clean,
    )

    if flags.body is not None and flags.body_file is not None:
        raise UsageError("--body and --body-file exclude each other", hint="pick one")
    if flags.html is not None and flags.html_file is not None:
        raise UsageError("--html and --html-file exclude each other", hint="pick one")
    text = flags.body if flags.body_file is None else _read_text(flags.body_file, "--body-file")
    html = flags.html if flags.html_file is None else _read_text(flags.html_file, "--html-file")
    if text is None and html is None:
        if sys.stdin.isatty():
            raise UsageError(
                "no message body", hint="give --body, --body-file, --html, or pipe it on stdin"
            )
        text = _decode(_read_input("-", "stdin"), "stdin")
    names = flags.attach_name
    if len(names) > len(flags.attach):
        raise UsageError("more --attach-name than --attach options", hint="one name per --attach")
    attachments = [
        AttachmentSpec(path=path, filename=names[i] if i < len(names) else None)
        for i, path in enumerate(flags.attach)
    ]
    attachments += [AttachmentSpec(path=path, inline=True) for path in flags.inline]
    return ComposeRequest(
        sender=parse_mailbox(from_field, from_value),
        to=parse_mailbox_list("--to", flags.to),
        cc=parse_mailbox_list("--cc", flags.cc),
        bcc=parse_mailbox_list("--bcc", flags.bcc),
        reply_to=parse_mailbox_list("--reply-to", flags.reply_to),
        subject=require_clean("--subject", flags.subject),
        text=text,
        html=html,
        attachments=tuple(attachments),
        extra_headers=tuple(parse_header_option(raw) for raw in flags.header),
        in_reply_to=flags.in_reply_to,
        references=flags.references,
    )


def _session_options(flags: SendFlags, target: ResolvedServer, output: Output) -> SessionOptions:
    from mailctl.cli.tracing import transcript_printer
    from mailctl.protocols.smtp import SessionOptions
    from mailctl.protocols.transcript import Transcript

    return SessionOptions(
        settings=target.settings,
        ehlo_name=target.ehlo_name,
        secret=target.secret,
        transcript=Transcript(on_line=transcript_printer(output)) if flags.trace else None,
    )


def _read_input(source: str, field: str) -> bytes:
    """Read a whole input file (or stdin for '-'), bounded: mailctl.inputs' rules and limit."""
    from mailctl.inputs import read_input

    return read_input(source, what=field)


def _decode(data: bytes, field: str) -> str:
    from mailctl.errors import InputDataError

    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputDataError(
            f"{field} is not UTF-8 text (byte {err.start})",
            hint="convert it with iconv, or attach it with --attach",
        ) from err


def _read_text(path: Path, field: str) -> str:
    return _decode(_read_input(str(path), f"{field}"), f"{field} {path}")


def _dry_run_result(prepared: PreparedMessage, saved: Path | None) -> CommandResult:
    from mailctl.core.send import SendResult

    result = SendResult(prepared=prepared, dry_run=True, saved_to=saved)

    def render(output: Output) -> None:
        envelope = prepared.envelope
        output.note(f"MAIL FROM:<{envelope.sender}>")
        for rcpt in envelope.recipients:
            output.note(f"RCPT TO:<{rcpt}>")
        if saved is not None:
            output.note(f"saved to {saved}")
        output.note(f"--- {len(prepared.data)} bytes follow on stdout (dry run: nothing sent) ---")
        sys.stdout.flush()
        sys.stdout.buffer.write(prepared.data)
        sys.stdout.buffer.flush()

    data = result.to_json()
    data["message"] = prepared.data.decode("utf-8", errors="replace")
    return CommandResult(data=data, render=render)


def _send_result(result: SendResult) -> CommandResult:
    from mailctl.errors import ExitCode

    refused = result.refused
    status: str = "ok"
    exit_code = ExitCode.OK
    errors: list[dict[str, object]] = []
    if refused:
        from mailctl.protocols.smtp import TransactionStatus, rcpt_status, refusal_status

        status = "partial"
        exit_code = refusal_status(r.reply.code for r in refused).exit_code
        for r in refused:
            permanent = rcpt_status(r.reply.code) is TransactionStatus.REFUSED
            errors.append(
                {
                    "code": "smtp_permanent" if permanent else "smtp_transient",
                    "message": f"recipient {r.address} refused: {r.reply.code} {r.reply.message}",
                }
            )

    def render(output: Output) -> None:
        final = result.final_reply
        accepted = sum(1 for r in result.recipients if r.accepted)
        output.print(
            f"sent {len(result.prepared.data)} bytes to {accepted} of {len(result.recipients)} "
            f"recipient(s) via {result.server} ({result.security}"
            + (f", {result.tls.version}" if result.tls else "")
            + (f", AUTH {result.auth_mechanism}" if result.auth_mechanism else "")
            + ")"
        )
        if final is not None:
            output.print(f"server: {final.code} {final.message}")
        if result.queue_id:
            output.print(f"queue id: {result.queue_id}")
        if refused:
            from rich.table import Table

            table = Table("recipient", "reply", title="refused recipients")
            for r in refused:
                table.add_row(clean(r.address), clean(f"{r.reply.code} {r.reply.message}"))
            output.err.print(table)

    return CommandResult(
        data=result.to_json(),
        status=status,  # type: ignore[arg-type]
        exit_code=exit_code,
        errors=errors,
        render=render,
    )
