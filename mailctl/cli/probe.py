"""`mailctl probe`: options -> ProbeRequest -> core.probe.run_probe -> a report per host."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mailctl.cli.context import AppContext, command
from mailctl.cli.options import AccountOpt, CaFileOpt, EhloOpt, TlsNameOpt
from mailctl.cli.output import CommandResult
from mailctl.errors import ConnectError, MailctlError, UsageError
from mailctl.text import quote

if TYPE_CHECKING:
    from collections.abc import Callable

    from mailctl.cli.output import Output
    from mailctl.core.probe import (
        Finding,
        HandshakeFacts,
        HostReport,
        ProbeProtocol,
        ProbeResult,
        Severity,
        Target,
    )
    from mailctl.models import Account


PROTOCOLS = ("smtp", "submission", "smtps", "imap", "imaps", "pop3", "pop3s")
PROBE = "Probe"


@command("probe")
def probe_command(
    app: AppContext,
    hosts: Annotated[
        list[str] | None,
        typer.Argument(
            help="HOST or HOST:PORT ([V6]:PORT) to probe; without a port, the protocol's "
            "well-known one; without a protocol, the one the port implies.",
            show_default=False,
        ),
    ] = None,
    protocol: Annotated[
        str | None,
        typer.Option(
            "--protocol",
            "-p",
            help="What the port speaks: smtp, submission, smtps, imap, imaps, pop3, pop3s "
            "(default: by port; smtp without one).",
            show_default=False,
            rich_help_panel=PROBE,
        ),
    ] = None,
    mx: Annotated[
        str | None,
        typer.Option(
            "--mx",
            help="Resolve DOMAIN's MX hosts and probe each (port 25) in preference order, "
            "with its DNS mail policy (MTA-STS, TLS-RPT, DANE, SPF, DMARC).",
            rich_help_panel=PROBE,
        ),
    ] = None,
    mx_port: Annotated[
        int,
        typer.Option(
            "--mx-port",
            help="The port --mx probes each MX host on: 25 (RFC 5321); another only for a "
            "test setup.",
            min=1,
            max=65535,
            rich_help_panel=PROBE,
        ),
    ] = 25,
    nameserver: Annotated[
        str | None,
        typer.Option(
            "--nameserver",
            help="Send every DNS lookup to this IP[:PORT]: the host names probed, and with "
            "--mx its records and the MTA-STS policy host.",
            rich_help_panel=PROBE,
        ),
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            help="Exit 1 when a finding at or above this level exists: warning or error "
            "(for CI and monitoring).",
            rich_help_panel=PROBE,
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            help="Seconds to wait for each answer (a tarpit is cut off there).",
            rich_help_panel=PROBE,
        ),
    ] = 10.0,
    deadline: Annotated[
        float,
        typer.Option(
            "--deadline",
            help="Seconds for everything on one host, all its connections included.",
            rich_help_panel=PROBE,
        ),
    ] = 30.0,
    ca_file: CaFileOpt = None,
    tls_name: TlsNameOpt = None,
    ehlo: EhloOpt = None,
    account: AccountOpt = None,  # read through app.options: the servers probed without a HOST
) -> CommandResult:
    """Diagnose mail servers: TLS versions and certificate, STARTTLS, AUTH before TLS.

    Reads only what a server shows before login (never AUTH, MAIL, RCPT or DATA) and reports
    each problem with a stable code and its fix. Exit 0 unless --fail-on finds something
    (exit 1); 74 when no host could be probed at all.
    """
    from mailctl.core.probe import Politeness, ProbeRequest, run_probe
    from mailctl.hosts import ehlo_name
    from mailctl.hosts import tls_name as tls_name_rule

    for name, seconds in (("--timeout", timeout), ("--deadline", deadline)):
        if not seconds > 0:
            raise UsageError(f"{name} must be more than 0 seconds, got {seconds:g}")
    if mx_port != 25 and mx is None:
        raise UsageError("--mx-port applies to the MX hosts of --mx DOMAIN", hint="add --mx")
    checked_name = None if tls_name is None else tls_name_rule(tls_name, field="--tls-name")
    targets = tuple(_target(value, protocol, checked_name) for value in hosts or ())
    if not targets and mx is None:
        chosen = _account(app)
        # Each block trusts its own ca_file, unless --ca-file says otherwise for all.
        targets = _blocks(chosen, checked_name, use_ca_files=ca_file is None)
    request = ProbeRequest(
        targets=targets,
        mx_domain=mx,
        mx_port=mx_port,
        nameserver=nameserver,
        ca_file=ca_file,
        fail_on=_severity(fail_on),
        ehlo_name=None if ehlo is None else ehlo_name(ehlo, field="--ehlo"),
        politeness=Politeness(deadline=deadline, reply_seconds=timeout),
    )
    result = run_probe(request)
    errors: list[MailctlError] = []
    if result.status == "error":
        # Exit 74: the envelope's errors name why, the per-host findings say more.
        errors.append(
            ConnectError(
                "no host could be probed: "
                + "; ".join(f.message for h in result.hosts for f in h.findings)[:500],
                hint="check the host names, ports and firewalls",
            )
        )
    return CommandResult(
        errors=errors,
        data=result,
        status="ok"
        if result.status == "ok"
        else "error"
        if result.status == "error"
        else "partial",
        exit_code=result.exit_code,
        render=lambda out: render_probe(out, result),
    )


def _severity(value: str | None) -> Severity | None:
    from mailctl.core.probe import Severity

    if value is None:
        return None
    text = value.strip().lower()
    if text not in ("warning", "error"):
        raise UsageError(f"--fail-on must be warning or error, got {quote(value)}")
    return Severity.WARNING if text == "warning" else Severity.ERROR


def _protocol(value: str) -> ProbeProtocol:
    from mailctl.core.probe import ProbeProtocol

    try:
        return ProbeProtocol(value.strip().lower())
    except ValueError:
        raise UsageError(
            f"--protocol must be one of {', '.join(PROTOCOLS)}, got {quote(value)}"
        ) from None


def _target(value: str, protocol: str | None, tls_name: str | None) -> Target:
    """HOST[:PORT] with the protocol given, or the one its well-known port speaks."""
    from mailctl.cli.serverflags import split_host_port
    from mailctl.core.probe import ProbeProtocol, Target

    host, port = split_host_port(value)
    if protocol is not None:
        chosen = _protocol(protocol)
    elif port is None:
        chosen = ProbeProtocol.SMTP
    else:
        inferred = ProbeProtocol.for_port(port)
        if inferred is None:
            raise UsageError(
                f"port {port} of {quote(value)} is not a well-known mail port",
                hint="say what it speaks with --protocol, e.g. --protocol submission",
            )
        chosen = inferred
    return Target(host, port if port is not None else chosen.port, chosen, tls_name=tls_name)


def _account(app: AppContext) -> Account:
    """--account's account (or the default one): probing it needs no HOST."""
    from mailctl.errors import ConfigError

    if app.options.account is not None:
        return app.account(None)  # a named account must exist
    try:
        return app.account(None)
    except ConfigError as err:
        raise UsageError(
            "nothing to probe: name a HOST[:PORT], --mx DOMAIN or an account",
            hint="e.g. mailctl probe mail.example.org:587",
        ) from err


def _blocks(account: Account, tls_name: str | None, *, use_ca_files: bool) -> tuple[Target, ...]:
    from mailctl.core.probe import ProbeProtocol, Target
    from mailctl.models import Protocol, Security

    names = {
        (Protocol.SMTP, Security.TLS): ProbeProtocol.SMTPS,
        (Protocol.SMTP, Security.STARTTLS): ProbeProtocol.SUBMISSION,
        (Protocol.SMTP, Security.NONE): ProbeProtocol.SUBMISSION,
        (Protocol.IMAP, Security.TLS): ProbeProtocol.IMAPS,
        (Protocol.IMAP, Security.STARTTLS): ProbeProtocol.IMAP,
        (Protocol.IMAP, Security.NONE): ProbeProtocol.IMAP,
        (Protocol.POP3, Security.TLS): ProbeProtocol.POP3S,
        (Protocol.POP3, Security.STARTTLS): ProbeProtocol.POP3,
        (Protocol.POP3, Security.NONE): ProbeProtocol.POP3,
    }
    targets: list[Target] = []
    for protocol in Protocol:
        settings = account.server(protocol)
        if settings is not None:
            targets.append(
                Target(
                    settings.host,
                    settings.port,
                    names[(protocol, settings.security)],
                    tls_name=tls_name or settings.tls_name,
                    ca_file=settings.ca_file if use_ca_files else None,
                )
            )
    return tuple(targets)


# ---------------------------------------------------------------------------------------------
# human output


_VERSION_WORDS = {
    "TLSv1.3": "TLS 1.3",
    "TLSv1.2": "TLS 1.2",
    "TLSv1.1": "TLS 1.1",
    "TLSv1": "TLS 1.0",
}


def render_probe(out: Output, result: ProbeResult) -> None:
    from mailctl.cli.layout import terminal_width

    width = terminal_width()

    for host in result.hosts:
        _host(out, host, width)
    if result.findings:
        out.print(f"DNS mail policy: {len(result.findings)} finding(s)")
    for finding in result.findings:
        _finding(out, finding, width)
    if len(result.hosts) + bool(result.findings) > 1:
        out.print("")
        _summary(out, result)
    found = result.all_findings()
    counts = {
        level: sum(1 for f in found if f.severity.label == level)
        for level in ("error", "warning", "info")
    }
    plural = {"error": "errors", "warning": "warnings", "info": "info"}
    summary = ", ".join(f"{n} {level if n == 1 else plural[level]}" for level, n in counts.items())
    probed = sum(1 for h in result.hosts if h.probed)
    out.print(f"Findings: {summary}; {probed} of {len(result.hosts)} host(s) probed.")
    if result.fail_on is not None and result.exit_code == 1:
        out.print(f"Findings at or above {result.fail_on.label}: exit 1 (--fail-on).")


def _host(out: Output, host: HostReport, width: int) -> None:
    from mailctl.cli.layout import wrapped

    def say(label: str, text: str) -> None:
        # A no-break space keeps words together through the wrap; printed as a plain space.
        lines = wrapped(f"{label:<11} {text}", width, indent="  ", hanging=" " * 12)
        out.print(lines.replace(_KEEP, " "))

    total = host.timings.get("total")
    took = f", {total:.2f} s" if total is not None else ""
    name = _where(host)
    at = f" ({host.address})" if host.address not in (None, host.mx_name or host.host) else ""
    head = f"{host.protocol.value} {name}{at}: {host.connections} connection(s){took}"
    out.print(wrapped(head, width, hanging="    "))
    if host.banner is not None:
        say("banner", host.banner)
    if host.capabilities_before_tls:
        say("before TLS", " ".join(host.capabilities_before_tls))
    if host.capabilities_after_tls:
        say("after TLS", " ".join(host.capabilities_after_tls))
    if host.tls is not None:
        _tls(say, host.tls)
    if host.versions:
        words = []
        for check in host.versions:
            state = {True: "yes", False: "no", None: "not tried"}[check.offered]
            words.append(f"{_VERSION_WORDS.get(check.version, check.version)} {state}")
        say("versions", ", ".join(words))
    timings = {k: v for k, v in host.timings.items() if k != "total"}
    if timings:
        # "phase N ms" kept whole on one line: the wrap goes between phases.
        say("timings", ", ".join(f"{k}{_KEEP}{v * 1000:.0f}{_KEEP}ms" for k, v in timings.items()))
    if not host.findings:
        out.print("  no findings")
    for finding in host.findings:
        _finding(out, finding, width)


def _where(host: HostReport) -> str:
    """The name a host is known by: its MX name (--mx), else the host given."""
    name = host.mx_name or host.host
    return f"[{name}]:{host.port}" if ":" in name else f"{name}:{host.port}"


_COUNTED = ("error", "warning", "info")
_KEEP = "\u00a0"  # joins "phase N ms" for the wrap (textwrap breaks only at ASCII spaces)


def _summary(out: Output, result: ProbeResult) -> None:
    """One row per host (and one for the domain's DNS policy): what it runs and how many
    findings of each level; a table when every cell fits whole, else one line per host."""
    from rich.table import Table
    from rich.text import Text

    from mailctl.cli.layout import first_fitting, terminal_width, wrapped
    from mailctl.text import clean

    rows: list[tuple[str, ...]] = []
    for host in result.hosts:
        tls = host.tls
        if not host.probed:
            state = ("-", "not reached")
        elif tls is None:
            state = ("no TLS", "-")
        else:
            verdict = {True: "verified", False: "NOT verified", None: "not checked"}[tls.verified]
            state = (_VERSION_WORDS.get(tls.version or "", tls.version or "?"), verdict)
        rows.append((_where(host), host.protocol.value, *state, *_counts(host.findings)))
    if result.findings:
        rows.append(("DNS mail policy", "dns", "-", "-", *_counts(result.findings)))

    def table(columns: tuple[str, ...], keep: tuple[int, ...]) -> Table:
        made = Table(box=None, pad_edge=False, header_style="bold")
        for number, column in enumerate(columns):
            made.add_column(column, no_wrap=True, justify="right" if number >= 4 else "left")
        for row in rows:
            made.add_row(*(Text(clean(row[i])) for i in keep))
        return made

    everything = tuple(range(7))
    layout = first_fitting(
        out.out,
        table(("HOST", "PROTOCOL", "TLS", "CERTIFICATE", "ERRORS", "WARNINGS", "INFO"), everything),
        table(("HOST", "PROTO", "TLS", "CERT", "ERR", "WARN", "INFO"), everything),
    )
    if layout is not None:
        out.out.print(layout, soft_wrap=False)
        return
    width = terminal_width()
    for row in rows:  # too narrow for a table: one indented line per host
        out.print(wrapped(row[0], width, hanging="    "))
        line = (
            f"{row[1]}, {row[2]}, {row[3]}: {row[4]} error(s), {row[5]} warning(s), {row[6]} info"
        )
        out.print(wrapped(line, width, indent="  "))


def _counts(findings: tuple[Finding, ...]) -> tuple[str, ...]:
    return tuple(str(sum(1 for f in findings if f.severity.label == level)) for level in _COUNTED)


def _tls(say: Callable[[str, str], None], tls: HandshakeFacts) -> None:
    if tls.verified:
        verdict = "certificate verified"
    elif tls.verified is False:
        verdict = f"certificate NOT verified: {tls.verify_message}"
    else:
        verdict = "certificate not checked"
    say("TLS", f"{tls.version} {tls.cipher}; {verdict}")
    say("key group", f"{tls.group or 'unknown'}; OCSP staple: unknown")
    leaf = tls.leaf
    if leaf is not None:
        key = f"{leaf.key_type} {leaf.key_bits} bits" if leaf.key_type else "unknown key"
        say("certificate", f"{leaf.subject or '(no subject)'}, issued by {leaf.issuer}")
        left = leaf.days_left
        when = f"expired {-left} days ago" if left is not None and left < 0 else f"{left} days left"
        say("", f"valid {leaf.not_before} to {leaf.not_after} ({when})")
        say("", f"{key}, {leaf.signature_algorithm}, sha256 {leaf.sha256[:16]}...")
        say("names", ", ".join(leaf.sans) or "(none)")
    if len(tls.chain) > 1:
        say("chain", f"{len(tls.chain)} certificates sent")


def _finding(out: Output, finding: Finding, width: int) -> None:
    from mailctl.cli.layout import wrapped

    level = finding.severity.label.upper()
    style = {"ERROR": "red", "WARNING": "yellow"}.get(level)
    head = f"{level:<7} {finding.code}: {finding.message}"
    out.print(wrapped(head, width, indent="  ", hanging=" " * 8), style=style)
    if finding.fix:
        out.print(wrapped(f"fix: {finding.fix}", width, indent=" " * 10, hanging="     "))
