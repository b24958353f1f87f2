"""`mailctl send`: options -> a SendRequest -> core.send.send -> render the SendResult.

No `from __future__ import annotations` here: `command` reads the signature with
eval_str=True, and compiling ~25 Annotated option strings costs each run ~2.5 ms; annotations
naming TYPE_CHECKING-only types are quoted instead. Modules a run may not need (config,
prompts, tracing) are imported where they are used.
"""

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mailctl.cli.context import AppContext, check_server_flags, command
from mailctl.cli.options import DataTimeoutOpt
from mailctl.cli.output import CommandResult, Output
from mailctl.cli.serverflags import ServerFlags
from mailctl.errors import UsageError
from mailctl.text import clean

if TYPE_CHECKING:
    from mailctl.core.send import ComposedMessage, Given, RawMessage, SendResult
    from mailctl.models import Account, RecipientResult

CONTENT = "Message"
ADDRESSES = "Addresses"


@command("send")
def send_command(
    app: AppContext,
    server: ServerFlags,
    sender: Annotated[
        str | None, typer.Option("--from", "-f", help="From address.", rich_help_panel=ADDRESSES)
    ] = None,
    to: Annotated[
        list[str] | None,
        typer.Option(
            "--to", "-t", help="Recipient (repeatable, or a comma list).", rich_help_panel=ADDRESSES
        ),
    ] = None,
    cc: Annotated[
        list[str] | None, typer.Option("--cc", help="Cc recipient.", rich_help_panel=ADDRESSES)
    ] = None,
    bcc: Annotated[
        list[str] | None,
        typer.Option(
            "--bcc",
            help="Bcc recipient (envelope only, never in headers).",
            rich_help_panel=ADDRESSES,
        ),
    ] = None,
    reply_to: Annotated[
        list[str] | None,
        typer.Option("--reply-to", help="Reply-To address.", rich_help_panel=ADDRESSES),
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
            "--allow-partial",
            help="Send to the accepted recipients even if some are refused.",
            rich_help_panel=ADDRESSES,
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
    from mailctl.core.send import SendRequest, send
    from mailctl.models import Protocol

    _require_utf8_flags(
        {
            "--from": (sender,), "--subject": (subject,), "--body": (body,), "--html": (html,),
            "--in-reply-to": (in_reply_to,), "--references": (references,),
            "--account": (app.options.account,), "--ehlo": (server.ehlo,),
            "--server": (server.server,), "--user": (server.user,), "--auth": (server.auth,),
            "--to": to or (), "--cc": cc or (), "--bcc": bcc or (), "--reply-to": reply_to or (),
            "--attach-name": attach_name or (), "--header": header or (),
        }
    )  # fmt: skip
    check_server_flags(server)  # also for --dry-run, which resolves no server
    account = app.server_account(server, required=not dry_run)
    if eml is None:
        message: ComposedMessage | RawMessage = _composed(
            _given(sender, "--from", account), to, cc, bcc, reply_to, subject, body, body_file,
            html, html_file, attach, attach_name, inline, header, in_reply_to, references,
        )  # fmt: skip
    else:
        if any([subject, body, body_file, html, html_file, attach, inline, header]):
            raise UsageError(
                "--eml sends a message as is and cannot be combined with subject, body, HTML, "
                "attachment or header options",
                hint="edit the file, or drop --eml",
            )
        message = _raw(eml, sender, to, cc, bcc)
    on_transcript = None
    if trace:
        from mailctl.cli.tracing import transcript_printer

        on_transcript = transcript_printer(app.output)
    request = SendRequest(
        message=message,
        server=None if dry_run else app.resolve_server(server, Protocol.SMTP, account=account),
        dry_run=dry_run,
        allow_partial=allow_partial,
        save=save,
        on_transcript=on_transcript,
    )
    result = send(request)
    return _dry_run_result(result) if dry_run else _send_result(result)


def _require_utf8_flags(values: dict[str, tuple[str | None, ...] | list[str]]) -> None:
    """Refuse option values that are not UTF-8 text, naming the option (exit 65, not 70).

    Python hands argv bytes that are not UTF-8 over as surrogate escapes (PEP 383), which no
    header, body or SMTP command can carry. Paths are exempt: the kernel opens them by their
    bytes, and --password-command is a shell command that may name such a file.
    """
    from mailctl.mime.header_safety import require_utf8

    for option, given in values.items():
        for value in given:
            if value is not None:
                require_utf8(option, value)


def _given(value: str | None, flag: str, account: "Account | None") -> "Given | None":
    """--from, else the account's `from`; None when neither gives a sender."""
    from mailctl.core.send import Given

    if value:
        return Given(value, flag)
    if account is not None and account.from_address:
        return Given(account.from_address, f"account {account.name} from")
    return None


def _all(values: list[str] | None, flag: str) -> "tuple[Given, ...]":
    from mailctl.core.send import Given

    return tuple(Given(value, flag) for value in values or ())


def _composed(
    sender: "Given | None",
    to: list[str] | None,
    cc: list[str] | None,
    bcc: list[str] | None,
    reply_to: list[str] | None,
    subject: str,
    body: str | None,
    body_file: Path | None,
    html: str | None,
    html_file: Path | None,
    attach: list[Path] | None,
    attach_name: list[str] | None,
    inline: list[Path] | None,
    header: list[str] | None,
    in_reply_to: str | None,
    references: str | None,
) -> "ComposedMessage":
    from mailctl.core.send import Attachment, ComposedMessage

    names = attach_name or []
    files = attach or []
    if len(names) > len(files):
        raise UsageError("more --attach-name than --attach options", hint="one name per --attach")
    attachments = [
        Attachment(path, names[i] if i < len(names) else None) for i, path in enumerate(files)
    ]
    attachments += [Attachment(path, inline=True) for path in inline or ()]
    if sender is not None and all(v is None for v in (body, body_file, html, html_file)):
        body = _stdin_body()
    return ComposedMessage(
        sender=sender,
        to=_all(to, "--to"),
        cc=_all(cc, "--cc"),
        bcc=_all(bcc, "--bcc"),
        reply_to=_all(reply_to, "--reply-to"),
        subject=subject,
        text=body,
        text_file=body_file,
        html=html,
        html_file=html_file,
        attachments=tuple(attachments),
        headers=tuple(header or ()),
        in_reply_to=in_reply_to,
        references=references,
    )


def _stdin_body() -> str:
    """No body given: read it from stdin (bounded), unless stdin is a terminal."""
    from mailctl.errors import InputDataError
    from mailctl.inputs import read_input

    if sys.stdin.isatty():
        raise UsageError(
            "no message body", hint="give --body, --body-file, --html, or pipe it on stdin"
        )
    data = read_input("-", what="stdin")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputDataError(
            f"stdin is not UTF-8 text (byte {err.start})",
            hint="convert it with iconv, or attach it with --attach",
        ) from err


def _raw(
    eml: str,
    sender: str | None,
    to: list[str] | None,
    cc: list[str] | None,
    bcc: list[str] | None,
) -> "RawMessage":
    """--eml FILE (or '-'): an explicit --from wins, else the message's own From (never the
    account's); --to/--cc/--bcc, else the message's To/Cc/Bcc."""
    from mailctl.core.send import Given, RawMessage
    from mailctl.inputs import read_input

    return RawMessage(
        data=read_input(eml, what="--eml"),
        sender=Given(sender, "--from") if sender else None,
        recipients=(*_all(to, "--to"), *_all(cc, "--cc"), *_all(bcc, "--bcc")),
        recipients_from_headers=not (to or cc or bcc),
    )


def _dry_run_result(result: "SendResult") -> CommandResult:
    prepared, saved = result.prepared, result.saved_to

    def render(output: Output) -> None:
        envelope = prepared.envelope
        output.note(f"MAIL FROM:<{envelope.sender}>")
        for rcpt in envelope.recipients:
            output.note(f"RCPT TO:<{rcpt}>")
        if saved is not None:
            output.note(f"saved to {saved}")
        output.note(f"--- {len(prepared.data)} bytes follow on stdout (dry run: nothing sent) ---")

    def product(output: Output) -> None:
        sys.stdout.flush()
        sys.stdout.buffer.write(prepared.data)
        sys.stdout.buffer.flush()

    return CommandResult(data=result, render=render, product=product)


def _print_refused(output: Output, refused: "tuple[RecipientResult, ...]") -> None:
    """The refused recipients on stderr: a table when its rows fit the terminal whole, else
    each address on its line and the reply under it, wrapped at spaces (never cut)."""
    from rich.table import Table

    from mailctl.cli.layout import fits, print_wrapped

    rows = [(clean(r.address), clean(f"{r.reply.code} {r.reply.message}")) for r in refused]
    table = Table("recipient", "reply", title="refused recipients")
    for column in table.columns:
        column.no_wrap = True
    for row in rows:
        table.add_row(*row)
    console = output.err
    if fits(console, table):
        console.print(table, soft_wrap=False)
        return
    print_wrapped(console, "refused recipients:")
    for address, reply in rows:
        print_wrapped(console, address, indent="  ")
        print_wrapped(console, reply, indent="    ")


def _send_result(result: "SendResult") -> CommandResult:
    refused = result.refused

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
            _print_refused(output, refused)

    return CommandResult(
        data=result,
        status=result.status,
        exit_code=result.exit_code,
        errors=result.errors,
        render=render,
    )
