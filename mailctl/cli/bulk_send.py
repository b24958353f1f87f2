"""`mailctl bulk-send`: options -> a BulkRequest -> core.bulk.run.bulk_send -> summary.

The command installs the SIGINT/SIGTERM handlers for the run (the core only polls a stop
switch): the first signal stops taking rows and lets in-flight messages finish, a second
one cuts them (recorded unknown). No `from __future__ import annotations`: `command` reads
the signature with eval_str=True.
"""

import math
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mailctl.cli.context import AppContext, command
from mailctl.cli.output import CommandResult, ErrorEntry, Output
from mailctl.cli.serverflags import ServerFlags
from mailctl.errors import UsageError

if TYPE_CHECKING:
    from mailctl.core.bulk.models import BulkProgress, BulkRequest, BulkResult, StopSwitch

INPUT = "Input"
REPORT = "Report"
SENDING = "Sending"
RESUME = "Journal and resume"

_RATE_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}


@command("bulk-send")
def bulk_send_command(
    app: AppContext,
    server: ServerFlags,
    data: Annotated[
        Path, typer.Argument(help="The CSV file: a header row, then one row per message.")
    ],
    template: Annotated[
        Path,
        typer.Argument(
            help="The template: RFC 822-style headers, a blank line, the body (Jinja2)."
        ),
    ],
    send: Annotated[
        bool,
        typer.Option("--send", help="Send for real (without it: a dry run that sends nothing)."),
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html", help="HTML body template (multipart/alternative).", rich_help_panel=INPUT
        ),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(
            "--delimiter", help="CSV delimiter (default: sniffed).", rich_help_panel=INPUT
        ),
    ] = None,
    encoding: Annotated[
        str, typer.Option("--encoding", help="CSV encoding.", rich_help_panel=INPUT)
    ] = "utf-8-sig",
    limit: Annotated[
        int | None,
        typer.Option("--limit", help="Send at most N messages in this run.", rich_help_panel=INPUT),
    ] = None,
    sample: Annotated[
        int,
        typer.Option(
            "--sample", help="Rendered messages the dry run prints.", rich_help_panel=INPUT
        ),
    ] = 1,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Send the valid rows; record the invalid ones as failed.",
            rich_help_panel=INPUT,
        ),
    ] = False,
    allow_duplicates: Annotated[
        bool,
        typer.Option(
            "--allow-duplicates",
            help="Send rows whose recipients an earlier row already has.",
            rich_help_panel=INPUT,
        ),
    ] = False,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Connections.", rich_help_panel=SENDING)
    ] = 4,
    max_per_connection: Annotated[
        int,
        typer.Option(
            "--max-per-connection", help="Messages per connection.", rich_help_panel=SENDING
        ),
    ] = 100,
    max_age: Annotated[
        float,
        typer.Option(
            "--max-connection-age",
            help="Seconds a connection is used for new messages.",
            rich_help_panel=SENDING,
        ),
    ] = 300.0,
    rate: Annotated[
        str | None,
        typer.Option(
            "--rate", help="Global limit: 50/s, 3000/min, 10000/h.", rich_help_panel=SENDING
        ),
    ] = None,
    per_domain: Annotated[
        int | None,
        typer.Option(
            "--per-domain",
            help="Messages in flight at most per recipient domain.",
            rich_help_panel=SENDING,
        ),
    ] = None,
    domain_cap: Annotated[
        list[str] | None,
        typer.Option(
            "--domain-cap",
            help="DOMAIN=N: a cap for one domain (repeatable), over --per-domain.",
            rich_help_panel=SENDING,
        ),
    ] = None,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            help="Retries of a message after a temporary failure (4xx, lost connection).",
            rich_help_panel=SENDING,
        ),
    ] = 3,
    journal: Annotated[
        Path | None,
        typer.Option(
            "--journal",
            help="The journal (default: DATA.csv.journal beside the CSV).",
            rich_help_panel=RESUME,
        ),
    ] = None,
    resend_unknown: Annotated[
        bool,
        typer.Option(
            "--resend-unknown",
            help="Also send rows whose outcome is unknown (they may arrive twice).",
            rich_help_panel=RESUME,
        ),
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Write one CSV line per row: status, reply, Message-ID.",
            rich_help_panel=REPORT,
        ),
    ] = None,
    failed_csv: Annotated[
        Path | None,
        typer.Option(
            "--failed-csv",
            help="Write the rows that failed, as they were, to feed back in.",
            rich_help_panel=REPORT,
        ),
    ] = None,
    metrics_file: Annotated[
        Path | None,
        typer.Option(
            "--metrics-file",
            help="Prometheus textfile, rewritten during the run.",
            rich_help_panel=REPORT,
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            help="Serve Prometheus metrics on 127.0.0.1:PORT.",
            rich_help_panel=REPORT,
        ),
    ] = None,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            help="Append one JSON line per event (no bodies, no secrets).",
            rich_help_panel=REPORT,
        ),
    ] = None,
    template_changed: Annotated[
        bool,
        typer.Option(
            "--template-changed",
            help="Go on after the template changed (rows already sent are not resent).",
            rich_help_panel=RESUME,
        ),
    ] = False,
) -> CommandResult:
    """Send one personalised message per CSV row: dry run first, resumable, never twice.

    Without --send it validates every row and prints the first rendered message.
    """
    from mailctl.core.bulk.models import BulkRequest, StopSwitch
    from mailctl.mime.header_safety import require_utf8

    for flag, value in (("--account", app.options.account), ("--delimiter", delimiter)):
        if value is not None:
            require_utf8(flag, value)
    if delimiter is not None and len(delimiter) != 1:
        raise UsageError(f"--delimiter {delimiter!r}: must be one character")
    if metrics_port is not None and not 0 <= metrics_port <= 65535:
        raise UsageError(f"--metrics-port {metrics_port}: must be 0-65535")
    from mailctl.store.outputs import check_output

    outputs = (("--report", report), ("--failed-csv", failed_csv), ("--metrics-file", metrics_file))
    for flag, path in outputs:
        if path is not None:  # a directory or socket fails now, not after the whole run
            check_output(path, what=f"{flag} file")
    resolved = None
    default_from = None
    if send:
        from mailctl.models import Protocol

        account = app.server_account(server)
        resolved = app.resolve_server(server, Protocol.SMTP, account=account)
        default_from = account.from_address if account is not None else None
    else:
        from mailctl.cli.context import check_server_flags

        check_server_flags(server)
        account = app.server_account(server, required=False)
        default_from = account.from_address if account is not None else None
    request = BulkRequest(
        csv=data, template=template, html=html, journal=journal, send=send,
        concurrency=concurrency, max_per_connection=max_per_connection, max_age=max_age,
        rate=parse_rate(rate) if rate is not None else None, retries=retries, limit=limit,
        domain_cap=per_domain, domain_caps=parse_domain_caps(domain_cap or []),
        sample=sample, skip_invalid=skip_invalid, allow_duplicates=allow_duplicates,
        resend_unknown=resend_unknown, template_changed=template_changed,
        delimiter=delimiter, encoding=encoding, default_from=default_from,
        report=report, failed_csv=failed_csv, metrics_file=metrics_file,
        metrics_port=metrics_port, log_file=log_file,
        resume_command=_resume_command(data, template, journal),
    )  # fmt: skip
    output = app.output
    stop = StopSwitch()
    progress = None
    if send and not (output.json_mode or output.quiet) and sys.stderr.isatty():
        progress = _progress_bar(output)
    result = _run(request, resolved, progress, stop)
    return _command_result(request, result)


def parse_rate(text: str) -> float:
    """'50/s', '3000/min', '10000/h' or '20' (per second) -> messages per second."""
    value, _, unit = text.strip().partition("/")
    try:
        number = float(value)
        per = _RATE_UNITS[unit.strip().lower() or "s"]
    except (ValueError, KeyError):
        raise UsageError(
            f"--rate {text!r} is not a rate", hint="write e.g. 50/s, 3000/min or 10000/h"
        ) from None
    if not (number > 0 and math.isfinite(number)):
        raise UsageError(f"--rate {text!r}: must be positive")
    return number / per


def parse_domain_caps(values: list[str]) -> tuple[tuple[str, int], ...]:
    """'gmail.com=2' (repeatable) -> (("gmail.com", 2),)."""
    caps = []
    for value in values:
        domain, _, number = value.partition("=")
        try:
            cap = int(number)
        except ValueError:
            cap = 0
        if not domain.strip() or cap < 1:
            raise UsageError(
                f"--domain-cap {value!r} is not DOMAIN=N", hint="write e.g. gmail.com=2"
            )
        caps.append((domain.strip(), cap))
    return tuple(caps)


def _resume_command(data: Path, template: Path, journal: Path | None) -> str:
    """The exact command line of this run, with --send: running it again resumes."""
    argv = sys.argv
    if "bulk-send" in argv:
        words = ["mailctl", *argv[argv.index("bulk-send") :]]
        before = argv[1 : argv.index("bulk-send")]
        words[1:1] = [w for w in before if w not in ("-q", "--quiet", "--json")]
    else:  # run in-process (tests): the words that matter
        words = ["mailctl", "bulk-send", str(data), str(template)]
        if journal is not None:
            words += ["--journal", str(journal)]
    if "--send" not in words:
        words.append("--send")
    return shlex.join(words)


def _run(
    request: "BulkRequest",
    server: Any,
    progress: "Any",
    stop: "StopSwitch",
) -> "BulkResult":
    import signal

    from mailctl.core.bulk.run import bulk_send

    def handler(signum: int, _frame: object) -> None:
        stop.stop("interrupted" if signum == signal.SIGINT else "terminated")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return bulk_send(request, server=server, progress=progress, stop=stop)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# --------------------------------------------------------------------------- progress


def _progress_bar(output: Output) -> Any:
    """A rich bar on stderr: sent, failed, deferred, the rate and the ETA, in 80 columns."""
    from rich.progress import BarColumn, TextColumn
    from rich.progress import Progress as RichProgress

    from mailctl.cli.layout import clock, width_of
    from mailctl.core.bulk.models import BulkProgress as BulkProgressCls
    from mailctl.sink.rates import RateWindow, eta

    console = output.err
    window = RateWindow()
    state: dict[str, Any] = {}

    def text(progress: "BulkProgress", done: int, speed: float, left: float | None) -> str:
        return (
            f"{done:,}/{progress.total:,} sent {progress.sent:,} failed {progress.failed:,} "
            f"deferred {progress.deferred:,} {speed:,.0f}/s ETA {clock(left)}"
        )

    def start(progress: "BulkProgress", status: str) -> None:
        # The bar takes what the widest status (every count at the total) leaves of the line.
        total = progress.total
        widest = len(text(BulkProgressCls(total, total, total, total), total, 99_999.0, 359_999.0))
        bar = RichProgress(
            BarColumn(bar_width=max(width_of(console) - widest - 2, 4)),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
            expand=False,
        )
        bar.start()
        state["bar"] = bar
        state["task"] = bar.add_task("bulk", total=max(total, 1), status=status)

    def update(progress: "BulkProgress") -> None:
        done = progress.done
        speed = window.add(progress.elapsed, progress.sent)
        status = text(progress, done, speed, eta(max(progress.total - done, 0), speed))
        if progress.stopping and not progress.finished:  # no longer than the ETA it replaces
            status = status[: status.rindex(" ETA ")] + " stopping"
        if "bar" not in state:
            start(progress, status)
        bar = state["bar"]
        bar.update(state["task"], completed=done, status=status)
        if progress.finished:
            bar.stop()

    return update


# --------------------------------------------------------------------------- result


def _command_result(request: "BulkRequest", result: "BulkResult") -> CommandResult:
    return CommandResult(
        data=result,
        status=result.status,  # type: ignore[arg-type]
        exit_code=result.exit_code,
        errors=_errors(request, result),
        # The dry run's messages and summary are what it was asked for: printed also with -q,
        # the messages first.
        render=None if result.dry_run else (lambda output: _render(output, request, result)),
        product=(lambda output: _dry_run(output, request, result)) if result.dry_run else None,
    )


def _errors(request: "BulkRequest", result: "BulkResult") -> list[ErrorEntry]:
    from mailctl.errors import InputDataError, InterruptedByUser

    errors: list[ErrorEntry] = []
    if result.interrupted:
        resume = f"; resume with: {result.resume_command}" if result.resume_command else ""
        errors.append(InterruptedByUser(f"interrupted: the rest stays in the journal{resume}"))
    if result.invalid:
        first = result.invalid_rows[0] if result.invalid_rows else None
        named = f" (first: line {first.line}: {first.message})" if first else ""
        if request.skip_invalid:
            message = f"{result.invalid:,} invalid rows recorded as failed{named}"
            hint = None
        else:
            message = f"{result.invalid:,} of {result.rows:,} rows are invalid{named}"
            hint = "fix them, or pass --skip-invalid to send the other rows"
        errors.append(InputDataError(message, hint=hint, details={"invalid": result.invalid}))
    if result.stopped_by is not None:
        errors.append(result.stopped_by)
    if result.failed:
        errors.append(
            {"code": "smtp_permanent", "message": f"{result.failed:,} rows were refused (5xx)"}
        )
    if result.deferred:
        errors.append(
            {
                "code": "temporary_failure",
                "message": f"{result.deferred:,} rows failed temporarily and are deferred",
                "hint": "run the same command again later to retry them",
            }
        )
    if result.unknown:
        errors.append(
            {
                "code": "outcome_unknown",
                "message": f"{result.unknown:,} rows may or may not have been delivered "
                "(the connection was lost after the message)",
                "hint": "check the mailboxes or the server log; --resend-unknown sends them again",
            }
        )
    return errors


def _print_previews(output: Output, result: "BulkResult") -> None:
    from mailctl.text import clean

    for preview in result.previews:
        output.print(
            f"--- line {preview.line}: from {preview.sender} to {', '.join(preview.recipients)}"
        )
        for line in preview.message.split("\r\n"):
            sys.stdout.write(clean(line) + "\n")
    sys.stdout.flush()


def _dry_run(output: Output, request: "BulkRequest", result: "BulkResult") -> None:
    _print_previews(output, result)
    _render(output, request, result)


def _render(output: Output, request: "BulkRequest", result: "BulkResult") -> None:
    from mailctl.cli.layout import print_wrapped
    from mailctl.text import clean

    console = output.out
    if result.dry_run:
        print_wrapped(
            console,
            f"dry run: {result.rows:,} rows, {result.valid:,} valid, {result.invalid:,} invalid, "
            f"{result.duplicates:,} duplicates (sent once), {result.to_send:,} to send; "
            "nothing was sent",
        )
    else:
        _send_summary(console, result)
    for invalid in result.invalid_rows[:10]:
        print_wrapped(
            console, f"line {invalid.line}: {clean(invalid.message)}", style="red", hanging="    "
        )
    if result.invalid > 10:
        print_wrapped(console, f"... and {result.invalid - 10:,} more invalid rows", style="red")
    if result.dry_run and result.journal is not None:
        print_wrapped(
            console,
            f"journal {result.journal} exists: --send sends only the rows it has not settled",
        )
    if result.dry_run and (not result.invalid or request.skip_invalid):
        print_wrapped(console, f"to send for real: {_resume_with_send(request)}")
    elif result.resume_command and not result.interrupted:
        print_wrapped(console, f"to resume: {result.resume_command}")


def _send_summary(console: Any, result: "BulkResult") -> None:
    """The rows by what happened to them (a table when it fits), the rate, what changed."""
    from rich import box
    from rich.table import Table

    from mailctl.cli.layout import fits, print_wrapped

    rows = [
        ("sent", result.sent),
        ("failed", result.failed),
        ("deferred", result.deferred),
        ("unknown", result.unknown),
        ("not tried", result.not_tried),
        ("already done", result.skipped_done),
        ("duplicates", result.duplicates),
        ("invalid", result.invalid),
    ]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("rows", no_wrap=True)
    table.add_column("count", justify="right", no_wrap=True)
    for name, count in rows:
        if count or name in ("sent", "failed"):
            table.add_row(name, f"{count:,}")
    if fits(console, table):
        console.print(table, soft_wrap=False)
    else:
        print_wrapped(console, ", ".join(f"{n} {c:,}" for n, c in rows if c))
    if result.connections_attempted == 0 and not result.sent and result.skipped_done:
        line = f"nothing left to send, no connection made; journal {result.journal}"
    else:
        line = (
            f"{result.sent:,} sent in {result.elapsed:.2f}s ({result.qps:,.0f} msg/s), "
            f"{result.connections_opened:,} connections; journal {result.journal}"
        )
    print_wrapped(console, line)
    if result.csv_changed:
        print_wrapped(
            console,
            f"the CSV changed since the last run: {result.new_rows:,} rows the journal did "
            f"not know (sent as new rows unless their recipients were already sent to), "
            f"{result.vanished_rows:,} rows no longer in the file (left in the journal)",
        )
    if result.recovered_unknown:
        print_wrapped(
            console,
            f"{result.recovered_unknown:,} rows were in flight when a previous run died: "
            "recorded unknown (--resend-unknown sends them again)",
        )


def _resume_with_send(request: "BulkRequest") -> str:
    return request.resume_command or "the same command with --send"
