"""`mailctl send`: options -> a prepared message and session options -> core.send -> render."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mailctl.cli.app import global_options
from mailctl.cli.output import CommandResult, Output, clean, run_command

if TYPE_CHECKING:
    from mailctl.core.send import PreparedMessage, SendResult
    from mailctl.models import Account, ServerSettings

SERVER = "Server (without an account)"
TLS = "Transport security"
CONTENT = "Message"


def send_command(
    ctx: typer.Context,
    sender: Annotated[
        str | None, typer.Option("--from", "-f", help="From address.", rich_help_panel=CONTENT)
    ] = None,
    to: Annotated[
        list[str] | None,
        typer.Option("--to", "-t", help="Recipient (repeatable, or a comma list).", rich_help_panel=CONTENT),
    ] = None,
    cc: Annotated[list[str] | None, typer.Option("--cc", help="Cc recipient.", rich_help_panel=CONTENT)] = None,
    bcc: Annotated[
        list[str] | None,
        typer.Option("--bcc", help="Bcc recipient (envelope only, never in headers).", rich_help_panel=CONTENT),
    ] = None,
    reply_to: Annotated[
        list[str] | None, typer.Option("--reply-to", help="Reply-To address.", rich_help_panel=CONTENT)
    ] = None,
    subject: Annotated[str, typer.Option("--subject", "-s", help="Subject.", rich_help_panel=CONTENT)] = "",
    body: Annotated[
        str | None, typer.Option("--body", "-b", help="Text body (else --body-file, else stdin).", rich_help_panel=CONTENT)
    ] = None,
    body_file: Annotated[
        Path | None, typer.Option("--body-file", help="Read the text body from a file.", rich_help_panel=CONTENT)
    ] = None,
    html: Annotated[str | None, typer.Option("--html", help="HTML body.", rich_help_panel=CONTENT)] = None,
    html_file: Annotated[
        Path | None, typer.Option("--html-file", help="Read the HTML body from a file.", rich_help_panel=CONTENT)
    ] = None,
    attach: Annotated[
        list[Path] | None, typer.Option("--attach", "-a", help="Attach a file (repeatable).", rich_help_panel=CONTENT)
    ] = None,
    attach_name: Annotated[
        list[str] | None,
        typer.Option("--attach-name", help="File name for the --attach at the same position.", rich_help_panel=CONTENT),
    ] = None,
    inline: Annotated[
        list[Path] | None,
        typer.Option("--inline", help="Inline image for the HTML, referenced as cid:FILENAME.", rich_help_panel=CONTENT),
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help='Extra header "Name: value".', rich_help_panel=CONTENT)
    ] = None,
    in_reply_to: Annotated[
        str | None, typer.Option("--in-reply-to", help="Message-ID this replies to.", rich_help_panel=CONTENT)
    ] = None,
    references: Annotated[
        str | None, typer.Option("--references", help="References header.", rich_help_panel=CONTENT)
    ] = None,
    eml: Annotated[
        str | None,
        typer.Option("--eml", help="Send an existing message file as is ('-' for stdin).", rich_help_panel=CONTENT),
    ] = None,
    account: Annotated[str | None, typer.Option("--account", "-A", help="Account name (default: the default account).")] = None,
    server: Annotated[str | None, typer.Option("--server", help="HOST[:PORT] to use without an account.", rich_help_panel=SERVER)] = None,
    user: Annotated[
        str | None,
        typer.Option("--user", "-u", help="AUTH user (password from MAILCTL_PASSWORD, --password-command or a prompt).", rich_help_panel=SERVER),
    ] = None,
    password_command: Annotated[
        str | None, typer.Option("--password-command", help="Command printing the password.", rich_help_panel=SERVER)
    ] = None,
    auth: Annotated[
        str | None, typer.Option("--auth", help="AUTH mechanism: plain, login, cram-md5, xoauth2.", rich_help_panel=SERVER)
    ] = None,
    ehlo: Annotated[str | None, typer.Option("--ehlo", help="EHLO name.", rich_help_panel=SERVER)] = None,
    use_tls: Annotated[bool, typer.Option("--tls", help="Implicit TLS (port 465).", rich_help_panel=TLS)] = False,
    use_starttls: Annotated[bool, typer.Option("--starttls", help="Required STARTTLS (port 587).", rich_help_panel=TLS)] = False,
    no_tls: Annotated[bool, typer.Option("--no-tls", help="No encryption at all.", rich_help_panel=TLS)] = False,
    ca_file: Annotated[Path | None, typer.Option("--ca-file", help="Trust this CA bundle.", rich_help_panel=TLS)] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Do not verify the certificate (warned).", rich_help_panel=TLS)
    ] = False,
    allow_plaintext_auth: Annotated[
        bool,
        typer.Option("--allow-plaintext-auth", help="Allow AUTH on an unencrypted connection.", rich_help_panel=TLS),
    ] = False,
    connect_timeout: Annotated[float | None, typer.Option("--connect-timeout", help="Seconds.")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds per command.")] = None,
    allow_partial: Annotated[
        bool,
        typer.Option("--allow-partial", help="Send to the accepted recipients even if some are refused."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Print the exact bytes and envelope; connect to nothing.")
    ] = False,
    save: Annotated[Path | None, typer.Option("--save", help="Also write the message to FILE.eml.")] = None,
    trace: Annotated[bool, typer.Option("--trace", help="Print the SMTP transcript on stderr.")] = False,
    json_mode: Annotated[bool, typer.Option("--json", help="Print the JSON result envelope.")] = False,
) -> None:
    """Send one message: from flags, or an existing .eml as is."""
    options = global_options(ctx)

    def body_fn(output: Output) -> CommandResult:
        from mailctl.config.paths import config_path
        from mailctl.config.store import find_account, load_config
        from mailctl.core import send as core

        security_flags = [use_tls, use_starttls, no_tls]
        if sum(security_flags) > 1:
            from mailctl.errors import UsageError

            raise UsageError("--tls, --starttls and --no-tls exclude each other", hint="pick one")

        acct: Account | None = None
        if server is None:
            path = config_path(options.config_path)
            config = load_config(path)
            for warning in config.warnings:
                output.warn(warning)
            if config.accounts or account is not None:
                acct = find_account(config, account)
            elif not dry_run:
                from mailctl.errors import ConfigError

                raise ConfigError(
                    f"no account configured in {path} and no --server given",
                    hint="run 'mailctl account add NAME' or pass --server HOST:PORT",
                )

        prepared = _prepare(acct, output)
        saved = core.save_message(prepared, save) if save is not None else None
        if dry_run:
            return _dry_run_result(prepared, saved)

        settings = _server_settings(acct, output)
        session_options = _session_options(settings, acct, output)
        result = core.deliver(prepared, session_options, allow_partial=allow_partial)
        if saved is not None:
            from dataclasses import replace

            result = replace(result, saved_to=saved)
        return _send_result(result)

    def _prepare(acct: Account | None, output: Output) -> PreparedMessage:
        from mailctl.core import send as core
        from mailctl.mime.headers import parse_mailbox, parse_mailbox_list

        from_value = sender or (acct.from_address if acct else None)
        if eml is not None:
            if any([subject, body, body_file, html, html_file, attach, inline, header]):
                from mailctl.errors import UsageError

                raise UsageError(
                    "--eml sends a message as is and cannot be combined with subject, body, HTML, "
                    "attachment or header options",
                    hint="edit the file, or drop --eml",
                )
            data = _read_input(eml, "--eml")
            # With --eml the explicit sender wins; else the message's own From (not the account's).
            return core.prepare_raw(
                data,
                sender=parse_mailbox("--from", sender) if sender else None,
                recipients=(
                    *parse_mailbox_list("--to", to or ()),
                    *parse_mailbox_list("--cc", cc or ()),
                    *parse_mailbox_list("--bcc", bcc or ()),
                ),
                recipients_from_headers=not (to or cc or bcc),
            )
        if not from_value:
            from mailctl.errors import UsageError

            raise UsageError("no sender", hint="pass --from ADDRESS or set 'from' in the account")
        request = _compose_request(from_value, output)
        return core.prepare_composed(request)

    def _compose_request(from_value: str, output: Output) -> object:
        from mailctl.errors import UsageError
        from mailctl.mime.compose import AttachmentSpec, ComposeRequest
        from mailctl.mime.headers import (
            parse_header_option,
            parse_mailbox,
            parse_mailbox_list,
            require_clean,
        )

        if body is not None and body_file is not None:
            raise UsageError("--body and --body-file exclude each other", hint="pick one")
        if html is not None and html_file is not None:
            raise UsageError("--html and --html-file exclude each other", hint="pick one")
        text: str | None = body
        if body_file is not None:
            text = _read_text(body_file, "--body-file")
        html_text = html if html_file is None else _read_text(html_file, "--html-file")
        if text is None and html_text is None:
            if sys.stdin.isatty():
                raise UsageError(
                    "no message body", hint="give --body, --body-file, --html, or pipe the body on stdin"
                )
            text = _decode(sys.stdin.buffer.read(), "stdin")
        names = list(attach_name or ())
        if len(names) > len(attach or ()):
            raise UsageError("more --attach-name than --attach options", hint="give one name per --attach")
        attachments = [
            AttachmentSpec(path=path, filename=names[i] if i < len(names) else None)
            for i, path in enumerate(attach or ())
        ]
        attachments += [AttachmentSpec(path=path, inline=True) for path in inline or ()]
        return ComposeRequest(
            sender=parse_mailbox("--from", from_value),
            to=parse_mailbox_list("--to", to or ()),
            cc=parse_mailbox_list("--cc", cc or ()),
            bcc=parse_mailbox_list("--bcc", bcc or ()),
            reply_to=parse_mailbox_list("--reply-to", reply_to or ()),
            subject=require_clean("--subject", subject),
            text=text,
            html=html_text,
            attachments=tuple(attachments),
            extra_headers=tuple(parse_header_option(raw) for raw in header or ()),
            in_reply_to=in_reply_to,
            references=references,
        )

    def _server_settings(acct: Account | None, output: Output) -> ServerSettings:
        from mailctl.cli.serverflags import ServerFlags, settings_from_flags

        flags = ServerFlags(
            server=server,
            user=user,
            password_command=password_command,
            auth=auth,
            tls=use_tls,
            starttls=use_starttls,
            no_tls=no_tls,
            ca_file=ca_file,
            insecure=insecure,
            allow_plaintext_auth=allow_plaintext_auth,
            connect_timeout=connect_timeout,
            command_timeout=timeout,
        )
        settings = settings_from_flags(flags, acct.smtp if acct else None, account_name=acct.name if acct else None)
        if not settings.verify:
            output.warn(
                f"certificate verification is off for {settings.host}:{settings.port} (--insecure): "
                "anyone on the path can read and change this session"
            )
        return settings

    def _session_options(settings: ServerSettings, acct: Account | None, output: Output) -> object:
        from mailctl.cli.prompts import secret_provider
        from mailctl.cli.tracing import transcript_printer
        from mailctl.mime.headers import validate_ehlo_name
        from mailctl.models import Protocol
        from mailctl.protocols.smtp import SessionOptions
        from mailctl.protocols.transcript import Transcript

        ehlo_name = ehlo or (acct.ehlo if acct else None)
        return SessionOptions(
            settings=settings,
            ehlo_name=validate_ehlo_name(ehlo_name) if ehlo_name else None,
            secret=secret_provider(acct.name if acct else None, Protocol.SMTP, settings, output)
            if settings.username
            else None,
            transcript=Transcript(on_line=transcript_printer(output)) if trace else None,
        )

    run_command(["send"], json_mode, body_fn)  # type: ignore[arg-type]


def _read_input(source: str, field: str) -> bytes:
    """Read a whole input file (or stdin for '-'); the message must be complete before any I/O."""
    from mailctl.errors import InputDataError, NoInputError

    if source == "-":
        return sys.stdin.buffer.read()
    path = Path(source)
    if not path.exists():
        raise NoInputError(f"{field} {source}: no such file", hint="check the path")
    if not path.is_file():
        raise InputDataError(f"{field} {source}: not a regular file", hint="give a file")
    try:
        return path.read_bytes()
    except OSError as err:
        raise NoInputError(f"{field} {source}: {err.strerror}", hint="check permissions") from err


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
        output.err.print(f"MAIL FROM:<{clean(envelope.sender)}>", markup=False)
        for rcpt in envelope.recipients:
            output.err.print(f"RCPT TO:<{clean(rcpt)}>", markup=False)
        if saved is not None:
            output.err.print(f"saved to {saved}", markup=False)
        output.err.print(f"--- {len(prepared.data)} bytes follow on stdout (dry run: nothing sent) ---", markup=False)
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
        status = "partial"
        permanent = all(r.reply.is_permanent and r.reply.code != 552 for r in refused)
        exit_code = ExitCode.UNAVAILABLE if permanent else ExitCode.TEMPFAIL
        for r in refused:
            errors.append(
                {
                    "code": "smtp_permanent" if r.reply.is_permanent and r.reply.code != 552 else "smtp_transient",
                    "message": f"recipient {r.address} refused: {r.reply.code} {r.reply.message}",
                }
            )

    def render(output: Output) -> None:
        from rich.table import Table

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
