"""`mailctl sink`: flags -> SinkConfig -> run the server in the foreground -> render its stats."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mailctl.cli.context import AppContext, command
from mailctl.cli.output import CommandResult, Output
from mailctl.errors import UsageError
from mailctl.hosts import endpoint
from mailctl.text import quote

if TYPE_CHECKING:
    from mailctl.sink.config import Phase, SinkConfig
    from mailctl.sink.rates import RateWindow
    from mailctl.sink.run import SinkRun
    from mailctl.sink.stats import SinkStats

TLS = "TLS and AUTH"
STORE = "Keeping messages (else discarded and counted)"
FAULTS = "Fault injection"
STOP = "Stopping"


@command("sink")
def sink_command(
    app: AppContext,
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            help="HOST:PORT to listen on (port 0: any free port). Only loopback unless an "
            "address is named here; 0.0.0.0 or [::] must be written out.",
        ),
    ] = "127.0.0.1:2525",
    ready_file: Annotated[
        Path | None,
        typer.Option(
            "--ready-file",
            help="Once listening, write JSON {host, port, pid, security, cert_file, auth} here.",
        ),
    ] = None,
    use_tls: Annotated[
        bool, typer.Option("--tls", help="Implicit TLS on every connection.", rich_help_panel=TLS)
    ] = False,
    use_starttls: Annotated[
        bool, typer.Option("--starttls", help="Offer STARTTLS.", rich_help_panel=TLS)
    ] = False,
    cert: Annotated[
        Path | None,
        typer.Option(
            "--cert",
            help="PEM certificate (default: one kept in ~/.local/state/mailctl/sink).",
            rich_help_panel=TLS,
        ),
    ] = None,
    key: Annotated[
        Path | None, typer.Option("--key", help="PEM private key.", rich_help_panel=TLS)
    ] = None,
    ca_out: Annotated[
        Path | None,
        typer.Option(
            "--ca-out",
            help="Also write the sink's kept certificate here, for clients to trust as CA file.",
            rich_help_panel=TLS,
        ),
    ] = None,
    auth: Annotated[
        bool,
        typer.Option(
            "--auth",
            help="Offer and require AUTH PLAIN/LOGIN with the test credentials mailctl/mailctl.",
            rich_help_panel=TLS,
        ),
    ] = False,
    maildir: Annotated[
        Path | None,
        typer.Option("--maildir", help="Deliver into this Maildir.", rich_help_panel=STORE),
    ] = None,
    mbox: Annotated[
        Path | None,
        typer.Option("--mbox", help="Append to this mbox file.", rich_help_panel=STORE),
    ] = None,
    max_size: Annotated[
        int | None,
        typer.Option("--max-size", help="Largest message in bytes (SIZE).", rich_help_panel=STORE),
    ] = None,
    latency: Annotated[
        float,
        typer.Option("--latency", help="Milliseconds before each reply.", rich_help_panel=FAULTS),
    ] = 0.0,
    latency_on: Annotated[
        str | None,
        typer.Option(
            "--latency-on",
            help="Delay only this reply: banner, ehlo, mail, rcpt, data, eod.",
            rich_help_panel=FAULTS,
        ),
    ] = None,
    reject_rate: Annotated[
        float,
        typer.Option(
            "--reject-rate", help="Probability (0-1) of a refusal.", rich_help_panel=FAULTS
        ),
    ] = 0.0,
    reject_code: Annotated[
        int | None,
        typer.Option(
            "--reject-code", help="Reply code of refusals (default 451).", rich_help_panel=FAULTS
        ),
    ] = None,
    reject_on: Annotated[
        str | None,
        typer.Option(
            "--reject-on",
            help="Refuse this command: mail (default), rcpt, data, eod.",
            rich_help_panel=FAULTS,
        ),
    ] = None,
    disconnect_rate: Annotated[
        float,
        typer.Option(
            "--disconnect-rate",
            help="Probability (0-1) of closing without a reply.",
            rich_help_panel=FAULTS,
        ),
    ] = 0.0,
    disconnect_on: Annotated[
        str | None,
        typer.Option(
            "--disconnect-on",
            help="Close at this command: mail (default), rcpt, data, eod (after the final dot).",
            rich_help_panel=FAULTS,
        ),
    ] = None,
    close_after: Annotated[
        int | None,
        typer.Option(
            "--421-after",
            help="Answer 421 4.7.0 and close after N messages on one connection.",
            rich_help_panel=FAULTS,
        ),
    ] = None,
    max_connections: Annotated[
        int | None,
        typer.Option(
            "--max-connections",
            help="Answer 421 4.4.5 to connections beyond N.",
            rich_help_panel=FAULTS,
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Make the random faults reproducible.", rich_help_panel=FAULTS),
    ] = None,
    max_messages: Annotated[
        int | None,
        typer.Option("--max-messages", help="Stop after N messages.", rich_help_panel=STOP),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option("--duration", help="Stop after SECONDS.", rich_help_panel=STOP),
    ] = None,
    loop: Annotated[
        str,
        typer.Option(
            "--loop",
            help="Event loop: auto (uvloop when installed), asyncio, uvloop.",
        ),
    ] = "auto",
    json_mode: Annotated[
        bool, typer.Option("--json", help="Print the JSON result envelope at exit.")
    ] = False,
) -> CommandResult:
    """Run a local SMTP sink: count (or keep) what arrives, inject faults, report stats at exit.

    Stops on Ctrl-C or SIGTERM, after --max-messages, or after --duration.
    """
    flags: dict[str, Any] = {key: value for key, value in locals().items() if key != "app"}
    return _sink(flags, app.output)


def _phase(flag: str, value: str | None) -> Phase | None:
    from mailctl.sink.config import COMMAND_PHASES, Phase

    if value is None:
        return None
    allowed = tuple(Phase) if flag == "--latency-on" else COMMAND_PHASES
    try:
        phase = Phase(value.lower())
    except ValueError:
        phase = None
    if phase not in allowed:
        choices = ", ".join(choice.value for choice in allowed)
        raise UsageError(f"{flag} {quote(value)}: expected one of {choices}")
    return phase


def build_config(flags: dict[str, Any], output: Output | None = None) -> SinkConfig:
    """Validate the flags into a SinkConfig (no socket yet); warn about exposed addresses."""
    from mailctl.models import Security
    from mailctl.sink.config import FaultConfig, Phase, SinkConfig, StoreKind, parse_listen

    address = parse_listen(flags["listen"])
    if output is not None and not address.loopback:
        if address.wildcard:
            output.warn(
                f"listening on EVERY interface ({address.host}): anyone who can reach this "
                "machine can talk to this test server"
                + (" and log in with mailctl/mailctl" if flags["auth"] else "")
            )
        else:
            output.warn(f"listening on {address.host}, which is not loopback")
    if flags["use_tls"] and flags["use_starttls"]:
        raise UsageError("--tls and --starttls exclude each other", hint="pick one")
    if flags["maildir"] is not None and flags["mbox"] is not None:
        raise UsageError("--maildir and --mbox exclude each other", hint="pick one")
    rate_flags = (
        ("--latency-on", "latency_on", "--latency", flags["latency"]),
        ("--reject-code", "reject_code", "--reject-rate", flags["reject_rate"]),
        ("--reject-on", "reject_on", "--reject-rate", flags["reject_rate"]),
        ("--disconnect-on", "disconnect_on", "--disconnect-rate", flags["disconnect_rate"]),
    )
    for flag, name, needs, value in rate_flags:
        if flags[name] is not None and not value:
            raise UsageError(f"{flag} needs {needs}")
    security = (
        Security.TLS
        if flags["use_tls"]
        else Security.STARTTLS
        if flags["use_starttls"]
        else Security.NONE
    )
    store, store_path = StoreKind.DISCARD, None
    if flags["maildir"] is not None:
        store, store_path = StoreKind.MAILDIR, flags["maildir"]
    elif flags["mbox"] is not None:
        store, store_path = StoreKind.MBOX, flags["mbox"]
    faults = FaultConfig(
        latency=flags["latency"] / 1000.0,
        latency_on=_phase("--latency-on", flags["latency_on"]),
        reject_rate=flags["reject_rate"],
        reject_code=flags["reject_code"] or 451,
        reject_on=_phase("--reject-on", flags["reject_on"]) or Phase.MAIL,
        disconnect_rate=flags["disconnect_rate"],
        disconnect_on=_phase("--disconnect-on", flags["disconnect_on"]) or Phase.MAIL,
        close_after=flags["close_after"],
        seed=flags["seed"],
    )
    extra: dict[str, Any] = {}
    if flags["max_size"] is not None:
        extra["max_size"] = flags["max_size"]
    return SinkConfig(
        host=address.host,
        port=address.port,
        security=security,
        cert_file=flags["cert"],
        key_file=flags["key"],
        auth=flags["auth"],
        store=store,
        store_path=store_path,
        max_connections=flags["max_connections"],
        max_messages=flags["max_messages"],
        duration=flags["duration"],
        faults=faults,
        **extra,
    )


def _sink(flags: dict[str, Any], output: Output) -> CommandResult:
    from mailctl.cli.sinkcert import with_kept_certificate
    from mailctl.sink.rates import RateWindow
    from mailctl.sink.run import LoopKind, run_sink

    config = with_kept_certificate(
        build_config(flags, output), ca_out=flags.get("ca_out"), warn=output.warn
    )
    try:
        loop = LoopKind(flags["loop"])
    except ValueError:
        raise UsageError(
            f"--loop {quote(flags['loop'])}: expected auto, asyncio or uvloop"
        ) from None
    chatty = not output.quiet and not output.json_mode  # -q is the global option
    live = chatty and sys.stderr.isatty()

    def on_ready(info: dict[str, Any]) -> None:
        if chatty:
            store = config.store.value + (f" {config.store_path}" if config.store_path else "")
            auth = "AUTH mailctl/mailctl" if config.auth else "no AUTH"
            output.note(
                f"mailctl sink: listening on {endpoint(info['host'], info['port'])} "
                f"({info['security']}, {auth}, {store}); Ctrl-C stops",
            )

    window = RateWindow()
    drawn = False

    def progress(stats: SinkStats) -> None:
        nonlocal drawn
        line = status_line(stats, window)  # the window needs every tick, drawn or not
        if _in_foreground():
            sys.stderr.write(f"\r{line}\x1b[K")
            sys.stderr.flush()
            drawn = True

    result = run_sink(
        config,
        ready_file=flags["ready_file"],
        on_ready=on_ready,
        progress=progress if live else None,
        loop=loop,
        on_warning=output.warn,
    )
    if drawn:
        sys.stderr.write("\n")
    return CommandResult(data=result, render=lambda out: _render(result, out))


def _in_foreground() -> bool:
    """A sink started with `&` shares the terminal with the shell: redrawing a line there
    would write over the prompt and what the user types, so only the foreground job draws."""
    try:
        return os.tcgetpgrp(sys.stderr.fileno()) == os.getpgrp()
    except OSError:  # a terminal that is not our controlling one: nobody to share it with
        return True


def status_line(stats: SinkStats, window: RateWindow) -> str:
    """The live line: totals and the current rate (the last second, not the average since
    start), cut to the terminal's width so that `\\r` can redraw it in place."""
    import shutil
    import time

    rate = window.add(time.monotonic(), stats.messages)
    line = (
        f"{stats.messages:,} messages  {rate:,.0f} msg/s now  "
        f"{stats.active} open / {stats.connections:,} connections  "
        f"{sum(stats.errors.values()):,} errors"
    )
    return line[: max(shutil.get_terminal_size().columns - 1, 20)]


def _render(run: SinkRun, output: Output) -> None:
    """The human summary, on stderr like the rest of a server's chatter: one fact a line,
    wrapped at spaces to the terminal's width."""
    import shutil

    from mailctl.cli.layout import wrapped
    from mailctl.sink.rates import BURST_GAP

    stats = run.stats
    width = max(shutil.get_terminal_size().columns, 40)
    errors = ", ".join(f"{code}x{count:,}" for code, count in stats.error_replies.items()) or "none"
    connections = f"{stats.connections:,} connection{'s' if stats.connections != 1 else ''}"
    busy = (
        f"{stats.busy_qps:,.0f} msg/s in {stats.busy:.2f} s of arrivals "
        f"(pauses over {BURST_GAP:g} s not counted)"
        if stats.busy > 0
        else f"- (no two messages arrived within {BURST_GAP:g} s of each other)"
    )
    lines = [
        f"mailctl sink: stopped by {run.stopped_by} after {stats.elapsed:.2f} s",
        f"  received   {stats.messages:,} messages ({stats.bytes:,} bytes) on {connections}",
        f"  busy rate  {busy}",
        f"  overall    {stats.qps:,.0f} msg/s (all messages over the {stats.elapsed:.2f} s "
        "since start)",
        f"  faults     {stats.rejected:,} rejected, {stats.disconnected:,} disconnected "
        f"(injected); error replies: {errors}",
    ]
    for line in lines:
        output.note(wrapped(line, width, hanging=" " * 13))
