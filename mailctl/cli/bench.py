"""`mailctl bench`: options -> a BenchRequest -> core.bench.run_bench -> tables and histogram."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mailctl.cli import options
from mailctl.cli.context import AppContext, command
from mailctl.cli.output import CommandResult, ErrorEntry, Output
from mailctl.cli.serverflags import ServerFlags
from mailctl.errors import UsageError
from mailctl.hosts import endpoint

if TYPE_CHECKING:
    from collections.abc import Callable

    from mailctl.core.bench import (
        BenchMode,
        BenchRequest,
        BenchResult,
        Progress,
        RegressionCheck,
        RunResult,
        Target,
        Workload,
    )

LOAD = "Load"
SERVER = options.SERVER  # without --server or an account: an embedded sink (see the docstring)
REPORT = "Report"

DEFAULT_MESSAGES = 2000
DEFAULT_SIZE = 2000
DEFAULT_MAX_REGRESSION = "10%"


@dataclass(frozen=True)
class BenchFlags:
    messages: int | None
    duration: float | None
    concurrency: int
    size: int | None
    message: Path | None
    warmup: int
    rate: float | None
    mode: str
    compare: bool
    sender: str | None
    to: tuple[str, ...]
    account: str | None
    i_own_this_server: bool
    csv: Path | None
    baseline: Path | None
    max_regression: str
    profile: Path | None
    json_mode: bool
    server: ServerFlags


@command("bench")
def bench_command(
    app: AppContext,
    server: ServerFlags,
    messages: Annotated[
        int | None,
        typer.Option(
            "--messages",
            "-n",
            help=f"Messages to send (default {DEFAULT_MESSAGES}).",
            rich_help_panel=LOAD,
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration", help="Run for SECONDS instead of a count.", rich_help_panel=LOAD
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Connections.", rich_help_panel=LOAD)
    ] = 10,
    size: Annotated[
        int | None,
        typer.Option(
            "--size", help=f"Message size in bytes (default {DEFAULT_SIZE}).", rich_help_panel=LOAD
        ),
    ] = None,
    message: Annotated[
        Path | None,
        typer.Option("--message", help="Send this message file instead.", rich_help_panel=LOAD),
    ] = None,
    warmup: Annotated[
        int,
        typer.Option(
            "--warmup",
            help="Messages sent first and left out of the statistics.",
            rich_help_panel=LOAD,
        ),
    ] = 0,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate",
            help="Open loop: offer R messages/s; latency counts from each intended send time.",
            rich_help_panel=LOAD,
        ),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="new (a connection per message), reuse (a pool, one message at a time), "
            "pipeline (a pool with RFC 2920 pipelining).",
            rich_help_panel=LOAD,
        ),
    ] = "pipeline",
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Run new, reuse and pipeline on the same workload.",
            rich_help_panel=LOAD,
        ),
    ] = False,
    sender: Annotated[
        str | None, typer.Option("--from", help="Envelope sender.", rich_help_panel=LOAD)
    ] = None,
    to: Annotated[
        list[str] | None,
        typer.Option("--to", help="Envelope recipient (repeatable).", rich_help_panel=LOAD),
    ] = None,
    i_own_this_server: Annotated[
        bool,
        typer.Option(
            "--i-own-this-server",
            help="Allow a server that is not on loopback (it will be flooded with mail).",
            rich_help_panel=SERVER,
        ),
    ] = False,
    auth: Annotated[
        str | None,
        typer.Option(
            "--auth",
            help="AUTH mechanism (plain, login, ...); with the embedded sink: turn AUTH on.",
            rich_help_panel=SERVER,
        ),
    ] = None,
    command_timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout", help="Seconds: the longest any wait may last (connect, reply, data)."
        ),
    ] = None,
    csv: Annotated[
        Path | None,
        typer.Option("--csv", help="Write every raw sample to FILE.", rich_help_panel=REPORT),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            help="Compare with a saved --json result; exit 79 on a regression.",
            rich_help_panel=REPORT,
        ),
    ] = None,
    max_regression: Annotated[
        str,
        typer.Option(
            "--max-regression",
            help="Allowed QPS drop / p99 rise against --baseline, in percent.",
            rich_help_panel=REPORT,
        ),
    ] = DEFAULT_MAX_REGRESSION,
    profile: Annotated[
        Path | None,
        typer.Option(
            "--profile",
            help="Write a cProfile dump of the client to FILE.",
            rich_help_panel=REPORT,
        ),
    ] = None,
) -> CommandResult:
    """Benchmark SMTP sending: QPS, latency percentiles, per-phase timings.

    Without --server it starts its own sink (`mailctl sink`) in a child process.
    """
    flags = BenchFlags(
        messages=messages, duration=duration, concurrency=concurrency, size=size,
        message=message, warmup=warmup, rate=rate, mode=mode, compare=compare,
        sender=sender, to=tuple(to or ()), account=app.options.account,
        i_own_this_server=i_own_this_server, csv=csv, baseline=baseline,
        max_regression=max_regression, profile=profile, json_mode=app.output.json_mode,
        server=server,
    )  # fmt: skip
    return _bench(flags, app)


def _bench(flags: BenchFlags, app: AppContext) -> CommandResult:
    from mailctl.core import bench as core
    from mailctl.mime.header_safety import require_utf8
    from mailctl.store.outputs import check_output

    # PEP 383: argv bytes that are not UTF-8 arrive as surrogate escapes, which no SMTP
    # command can carry (not even with SMTPUTF8): name the flag before anything connects.
    given = {"--from": (flags.sender,), "--to": flags.to, "--account": (flags.account,)}
    for flag, values in given.items():
        for value in values:
            if value is not None:
                require_utf8(flag, value)
    for flag, path in (("--csv", flags.csv), ("--profile", flags.profile)):
        if path is not None:  # a directory or socket fails now, not after the whole run
            check_output(path, what=f"{flag} file")
    output = app.output
    request = core.BenchRequest(
        target=_target(flags, app),
        workload=_workload(flags),
        modes=_modes(flags),
    )
    max_regression = _percent(flags.max_regression)
    baseline = (
        core.load_baseline(flags.baseline, what="--baseline")
        if flags.baseline is not None
        else None
    )
    progress = (
        _progress_factory(output, flags.duration)
        if not (flags.json_mode or output.quiet) and sys.stderr.isatty()
        else None
    )
    result = _run(request, flags.profile, progress)
    if flags.profile is not None and not output.quiet:
        output.note(f"profile of the client written to {flags.profile} (python -m pstats FILE)")
    if flags.csv is not None:
        _write_csv(flags.csv, result)
    if baseline is not None and result.runs:
        result.regression = core.check_regression(result, baseline, max_regression)
        result.max_regression = max_regression
    return _command_result(result)


def _run(
    request: BenchRequest,
    profile: Path | None,
    progress: Callable[[BenchMode], Progress | None] | None,
) -> BenchResult:
    from mailctl.core.bench import run_bench

    if profile is None:
        return run_bench(request, progress=progress)
    import cProfile
    import marshal

    from mailctl.store.outputs import write_output

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return run_bench(request, progress=progress)
    finally:
        profiler.disable()
        # What Profile.dump_stats writes (pstats reads it), but through the output-file rule:
        # dump_stats' plain open() blocks forever on a FIFO nobody reads.
        profiler.create_stats()
        stats = marshal.dumps(profiler.stats)
        write_output(profile, stats, mode=0o644, what="profile")


def _modes(flags: BenchFlags) -> tuple[BenchMode, ...]:
    from mailctl.core.bench import BenchMode

    if flags.compare:
        return (BenchMode.NEW, BenchMode.REUSE, BenchMode.PIPELINE)
    try:
        return (BenchMode(flags.mode.lower()),)
    except ValueError:
        raise UsageError(
            f"--mode {flags.mode!r} is not a mode", hint="use new, reuse or pipeline"
        ) from None


def _percent(text: str) -> float:
    """'10%' or '10' -> 0.10."""
    value = text.strip().removesuffix("%").strip()
    try:
        number = float(value)
    except ValueError:
        raise UsageError(
            f"--max-regression {text!r} is not a percentage", hint="write e.g. 10%"
        ) from None
    if not 0.0 <= number <= 1000.0:
        raise UsageError(f"--max-regression {text!r} must be between 0% and 1000%")
    return number / 100.0


def _workload(flags: BenchFlags) -> Workload:
    from mailctl.core.bench import (
        DEFAULT_RECIPIENT,
        DEFAULT_SENDER,
        Workload,
        build_message,
        load_message,
    )

    if flags.message is not None and flags.size is not None:
        raise UsageError("--size and --message exclude each other", hint="pick one")
    if flags.size is not None and not 0 < flags.size <= 50_000_000:
        raise UsageError(f"--size {flags.size}: must be 1 to 50,000,000 bytes")
    if flags.messages is not None and flags.duration is not None:
        raise UsageError("--messages and --duration exclude each other", hint="pick one")
    data = (
        load_message(flags.message, what="--message")
        if flags.message is not None
        else build_message(flags.size or DEFAULT_SIZE)
    )
    return Workload(
        message=data,
        messages=None
        if flags.duration is not None
        else (DEFAULT_MESSAGES if flags.messages is None else flags.messages),
        duration=flags.duration,
        concurrency=flags.concurrency,
        warmup=flags.warmup,
        rate=flags.rate,
        sender=flags.sender or DEFAULT_SENDER,
        recipients=flags.to or (DEFAULT_RECIPIENT,),
    )


def _target(flags: BenchFlags, app: AppContext) -> Target:
    from mailctl.cli.context import check_server_flags
    from mailctl.core.bench import SinkSpec, Target
    from mailctl.models import Protocol, Security

    server = flags.server
    for name, value in (
        ("--timeout", server.command_timeout),
        ("--connect-timeout", server.connect_timeout),
    ):
        if value is not None and not 0 < value <= 86_400:
            raise UsageError(f"{name} {value:g}: must be between 0 and 86400 seconds")
    timeout, connect_timeout = server.command_timeout, server.connect_timeout
    if server.server is None and flags.account is None:
        ehlo = check_server_flags(server)
        if server.user or server.password_command:
            raise UsageError(
                "--user and --password-command need --server or --account",
                hint="the embedded sink has its own test credentials: pass --auth alone",
            )
        sink = SinkSpec(security=server.security or Security.NONE, auth=server.auth is not None)
        return Target(sink=sink, ehlo_name=ehlo, timeout=timeout, connect_timeout=connect_timeout)
    # Every connection authenticates: the context's secret source asks once, not per session.
    resolved = app.resolve_server(server, Protocol.SMTP)
    return Target(
        settings=resolved.settings,
        secret=resolved.secret,
        allow_remote=flags.i_own_this_server,
        ehlo_name=resolved.ehlo_name,
        timeout=timeout,
        connect_timeout=connect_timeout,
    )


# --------------------------------------------------------------------------- progress


def _progress_factory(
    output: Output, duration: float | None
) -> Callable[[BenchMode], Progress | None]:
    """A rich progress bar per mode on stderr (only on a terminal, never with --json): done
    of total, the current rate and an ETA; with --duration the bar measures time, whose end
    is known."""
    from rich.progress import BarColumn, TextColumn
    from rich.progress import Progress as RichProgress

    from mailctl.cli.layout import clock
    from mailctl.sink.rates import RateWindow, eta

    def factory(mode: BenchMode) -> Progress:
        bar = RichProgress(
            TextColumn(f"{mode.value:<8}"),
            BarColumn(bar_width=None),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[status]}"),
            console=output.err,
            transient=True,
            expand=False,
        )
        window = RateWindow()
        state: dict[str, Any] = {}

        def update(done: int, total: int | None, elapsed: float, finished: bool) -> None:
            rate = window.add(elapsed, done)
            if duration is not None:  # the bar measures time: its end is known
                size, completed = duration, min(elapsed, duration)
                left: float | None = max(duration - elapsed, 0.0)
                count = f"{done:,} sent"
            else:
                size, completed = float(total or 0), float(done)
                left = eta((total or 0) - done, rate)
                count = f"{done:,}/{total or 0:,}"
            status = f"{count}  {rate:,.0f} msg/s  ETA {clock(left)}"
            if "task" not in state:
                bar.start()
                state["task"] = bar.add_task(mode.value, total=size, status=status)
            bar.update(state["task"], completed=completed, status=status)
            if finished:
                bar.stop()

        return update

    return factory


# --------------------------------------------------------------------------- output


def _write_csv(path: Path, result: BenchResult) -> None:
    import csv
    import io
    import math

    from mailctl.store.outputs import write_output

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "mode", "index", "start_s", "latency_ms", "status", "reason",
            "mail_rcpt_ms", "data_ms", "end_of_data_ms",
        ]
    )  # fmt: skip

    def ms(value: float) -> str:
        return "" if math.isnan(value) else f"{value * 1000.0:.3f}"

    for run in result.runs:
        for index, row in enumerate(run.samples.rows()):
            start, latency, status, reason, mail_rcpt, data, end = row
            writer.writerow(
                [
                    run.mode.value, index, f"{start:.6f}", ms(latency), status, reason,
                    ms(mail_rcpt), ms(data), ms(end),
                ]
            )  # fmt: skip
    write_output(path, buffer.getvalue().encode("utf-8"), mode=0o644, what="CSV file")


def _command_result(result: BenchResult) -> CommandResult:
    """Status and exit code as the result decides them (core.bench.models.BenchResult), with one
    error per cause: Ctrl-C, what stopped a run, the failed messages of each run, and a
    regression (reported also when failures decide the exit code)."""
    from mailctl.errors import InterruptedByUser, RegressionError

    errors: list[ErrorEntry] = []
    if result.interrupted:
        errors.append(InterruptedByUser("interrupted: the report is partial"))
    for run in result.runs:
        if run.stopped_by is not None:
            errors.append(run.stopped_by)
    for run in result.runs:
        summary = _failure_summary(run)
        if summary is not None:
            errors.append(summary)
    if result.regressed:
        worst = [c for c in result.regression or () if c.regressed]
        listed = "; ".join(
            f"{c.mode} {_metric_name(c.metric)} {_figure(c.metric, c.baseline)} -> "
            f"{_figure(c.metric, c.current)} ({_direction(c.change)})"
            for c in worst
        )
        errors.append(
            RegressionError(
                f"performance regressed beyond {100 * (result.max_regression or 0):g}%: {listed}",
                hint="run it again to rule out a busy machine; if the change is expected, "
                "save a new baseline: mailctl bench --json > baseline.json",
            )
        )
    return CommandResult(
        data=result,
        status=result.status,  # type: ignore[arg-type]
        exit_code=result.exit_code,
        errors=errors,
        render=lambda output: _render(output, result),
    )


def _failure_summary(run: RunResult) -> dict[str, Any] | None:
    """One error entry for the messages of `run` that were not sent, naming the replies."""
    failed = run.failed + run.unknown
    if not failed:
        return None
    if run.permanent:
        code = "smtp_permanent"
    elif run.unknown and not run.transient:
        code = "outcome_unknown"
    else:
        code = "temporary_failure"
    tried = run.sent + failed
    parts = [
        f"{count} {label}"
        for count, label in (
            (run.permanent, "refused (5xx)"),
            (run.transient, "failed temporarily (4xx, timeout or cut before the final dot)"),
            (run.unknown, "got no reply after the final dot (may or may not have been delivered)"),
        )
        if count
    ]
    top = run.error_details[0] if run.error_details else None
    most = f"; most often: {top.count} x {top.text}" if top is not None else ""
    message = (
        f"{run.mode.value}: {failed} of {tried} messages were not sent: {', '.join(parts)}{most}"
    )
    return {
        "code": code,
        "message": message,
        "details": {
            "mode": run.mode.value,
            "permanent": run.permanent,
            "transient": run.transient,
            "unknown": run.unknown,
        },
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1000.0:.2f}"


# One column of the summary: its header and its cell for a run (the result for speedup).
_Column = tuple[str, "Callable[[BenchResult, RunResult], str]"]


def _latency_cell(index: int) -> Callable[[BenchResult, RunResult], str]:
    def cell(_result: BenchResult, run: RunResult) -> str:
        lat = run.latency
        if lat is None:
            return "-"
        return _ms((lat.p50, lat.p90, lat.p99, lat.p999, lat.maximum)[index])

    return cell


def _conns(_result: BenchResult, run: RunResult) -> str:
    # opened of attempted when some attempts failed (refused, 421 at the greeting)
    if run.connections_failed:
        return f"{run.connections_opened:,}/{run.connections_attempted:,}"
    return f"{run.connections_opened:,}"


def _speedup(result: BenchResult, run: RunResult) -> str:
    speedup = result.speedup(run)
    return f"{speedup:.1f}x" if speedup is not None else "-"


_COUNTS: tuple[_Column, ...] = (
    ("sent", lambda _r, run: f"{run.sent:,}"),
    ("failed", lambda _r, run: f"{run.failed:,}"),
    ("unknown", lambda _r, run: f"{run.unknown:,}"),
    ("msg/s", lambda _r, run: f"{run.qps:,.0f}"),
)
_LATENCY: tuple[_Column, ...] = tuple(
    (name, _latency_cell(index)) for index, name in enumerate(("p50", "p90", "p99", "p99.9", "max"))
)


def _summary_table(result: BenchResult, columns: tuple[_Column, ...], title: str | None) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("mode", no_wrap=True)
    for name, _cell in columns:
        table.add_column(name, justify="right", no_wrap=True)
    for run in result.runs:
        table.add_row(run.mode.value, *(cell(result, run) for _name, cell in columns))
    return table


def _summary_layouts(result: BenchResult) -> list[list[Any]]:
    """The summary, widest first: one table; throughput and latency apart."""
    tail: tuple[_Column, ...] = (("conns", _conns),)
    if len(result.runs) > 1:
        tail += (("speedup", _speedup),)
    return [
        [_summary_table(result, _COUNTS + _LATENCY + tail, None)],
        [
            _summary_table(result, _COUNTS + tail, "throughput"),
            _summary_table(result, _LATENCY, "latency (ms)"),
        ],
    ]


def _summary_lines(result: BenchResult) -> list[str]:
    """The summary for very narrow terminals: a paragraph per mode."""
    lines = []
    for run in result.runs:
        counts = ", ".join(f"{name}={cell(result, run)}" for name, cell in _COUNTS)
        lat = ", ".join(f"{name}={cell(result, run)}" for name, cell in _LATENCY)
        more = f", conns={_conns(result, run)}"
        if len(result.runs) > 1:
            more += f", speedup={_speedup(result, run)}"
        lines.append(f"{run.mode.value}: {counts}{more}; latency ms: {lat}")
    return lines


def _render(output: Output, result: BenchResult) -> None:
    from mailctl.cli.layout import fits, print_wrapped, width_of

    console = output.out
    target = result.target
    where = "embedded sink" if target.embedded_sink else "server"
    work = result.workload
    amount = f"{work.messages:,} messages" if work.messages else f"{work.duration or 0:g}s"
    print_wrapped(
        console,
        f"mailctl bench: {amount}, {work.concurrency} connections, "
        f"{work.message_size}-byte messages",
    )
    print_wrapped(
        console,
        f"target: {where} {endpoint(target.host, target.port)} "
        f"(security {target.security.value}, auth {'on' if target.auth else 'off'})",
    )
    print_wrapped(console, _loop_label(result))
    layout = next(
        (tables for tables in _summary_layouts(result) if all(fits(console, t) for t in tables)),
        None,
    )
    if layout is None:
        for line in _summary_lines(result):
            print_wrapped(console, line)
    else:
        for table in layout:
            console.print(table, soft_wrap=False)
    _print_phases(console, result)
    for run in result.runs:
        _render_failures(console, run)
    shown = result.runs[-1]
    if shown.histogram is not None:
        console.print(f"latency histogram ({shown.mode.value}):", markup=False)
        bar = max(min(40, width_of(console) - 40), 10)
        for line in _histogram_lines(shown, width=bar):
            console.print(line, markup=False, highlight=False)
    if result.regression is not None:
        limit = 100 * (result.max_regression or 0)
        for check in result.regression:
            print_wrapped(console, f"baseline {_check_text(check, limit)}")
    # Ctrl-C is reported once, by the error line the renderer prints after this report.


def _metric_name(metric: str) -> str:
    return {"qps": "msg/s", "p99_ms": "p99 ms"}.get(metric, metric)


def _direction(change: float) -> str:
    """A check's change in words: `change` is a fraction, positive = worse whatever the metric
    (core.bench: QPS lower is worse, latency higher is worse)."""
    if change > 0:
        return f"{change * 100:.1f}% worse"
    if change < 0:
        return f"{-change * 100:.1f}% better"
    return "unchanged"


def _figure(metric: str, value: float) -> str:
    return f"{value:,.0f}" if metric == "qps" else f"{value:,.3f}"


def _check_text(check: RegressionCheck, limit: float) -> str:
    verdict = f"REGRESSED (limit {limit:g}%)" if check.regressed else "ok"
    return (
        f"{check.mode} {_metric_name(check.metric)}: {_figure(check.metric, check.baseline)} -> "
        f"{_figure(check.metric, check.current)} ({_direction(check.change)}) {verdict}"
    )


def _render_failures(console: Any, run: RunResult) -> None:
    """Errors by reply code and text, connection attempts, and what stopped the run."""
    from mailctl.cli.layout import print_wrapped
    from mailctl.text import clean

    mode = run.mode.value
    if run.error_details:
        print_wrapped(console, f"errors ({mode}), by reply code and text:", style="red")
        for group in run.error_details:
            print_wrapped(
                console,
                f"{group.count:>7,} x {clean(group.text)} ({group.status})",
                style="red",
                indent="  ",
                hanging="          ",
            )
    if run.connections_failed:
        print_wrapped(
            console,
            f"connections ({mode}): {run.connections_attempted:,} attempted, "
            f"{run.connections_opened:,} opened, {run.connections_failed:,} failed",
        )
    if run.stopped_by is not None:
        untried = f"; {run.not_tried:,} messages not tried" if run.not_tried else ""
        print_wrapped(
            console, f"stopped ({mode}): {clean(run.stopped_by.one_line())}{untried}", style="red"
        )


def _loop_label(result: BenchResult) -> str:
    rate = result.workload.rate
    if rate:
        return f"open loop at {rate:g} msg/s; latency (ms) from each message's intended send time"
    return "closed loop (next message when the last is done); latency (ms) from the actual send"


def _phase_cell(summary: Any) -> str:
    return f"{_ms(summary.p50)} / {_ms(summary.p99)} ({summary.count:,})" if summary else "-"


def _print_phases(console: Any, result: BenchResult) -> None:
    """Per-phase p50 / p99: one column per mode when that fits, else a row per phase and mode;
    a footnote says what the phases are and which a mode does not measure."""
    from rich import box
    from rich.table import Table

    from mailctl.cli.layout import fits, print_wrapped
    from mailctl.core.bench import PHASES, BenchMode

    phases = [p for p in PHASES if any(p in run.phases for run in result.runs)]
    if not phases:
        return
    wide = Table(
        title="phases: p50 / p99 ms (count)", title_justify="left", box=box.SIMPLE_HEAD,
        show_edge=False, pad_edge=False, collapse_padding=True,
    )  # fmt: skip
    wide.add_column("phase", no_wrap=True)
    for run in result.runs:
        wide.add_column(run.mode.value, justify="right", no_wrap=True)
    for phase in phases:
        wide.add_row(phase, *(_phase_cell(run.phases.get(phase)) for run in result.runs))
    if fits(console, wide):
        console.print(wide, soft_wrap=False)
    else:
        long = Table(
            title="phases (ms)", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
            pad_edge=False, collapse_padding=True,
        )  # fmt: skip
        for name in ("phase", "mode", "p50", "p99", "count"):
            long.add_column(name, justify="left" if name in ("phase", "mode") else "right")
        for phase in phases:
            for run in result.runs:
                found = run.phases.get(phase)
                if found is not None:
                    long.add_row(
                        phase, run.mode.value, _ms(found.p50), _ms(found.p99), f"{found.count:,}"
                    )
        console.print(long, soft_wrap=False)
    note = "data = DATA to the 354; end_of_data = body and final dot to the final reply"
    if result.run(BenchMode.PIPELINE) is not None:
        note += (
            "; pipeline writes MAIL, RCPT and DATA at once and reads their replies together, "
            "so it has no mail_rcpt or data time of its own"
        )
    print_wrapped(console, note, hanging="")


def _histogram_lines(run: RunResult, width: int = 40) -> list[str]:
    histogram = run.histogram
    assert histogram is not None
    peak = max(histogram.counts) or 1
    lines = []
    for index, count in enumerate(histogram.counts):
        low, high = histogram.edges[index], histogram.edges[index + 1]
        bar = "#" * max(1 if count else 0, round(width * count / peak))
        lines.append(f"  {_ms(low):>9} - {_ms(high):>9} ms | {bar:<{width}} {count:,}")
    return lines
