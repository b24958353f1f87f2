"""Bench requests (target, workload, modes), results and their JSON form; the test message."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from mailctl.core.stats import Histogram, LatencySummary
from mailctl.errors import ExitCode, MailctlError
from mailctl.models import Security, ServerSettings
from mailctl.protocols.smtp.outcome import TransactionStatus, worst
from mailctl.serialize import SECONDS, SKIP, JsonAttrs, meta

__all__ = [
    "DEFAULT_RECIPIENT",
    "DEFAULT_SENDER",
    "PHASES",
    "BenchMode",
    "BenchRequest",
    "BenchResult",
    "ErrorGroup",
    "Progress",
    "RegressionCheck",
    "RegressionReport",
    "RunResult",
    "Samples",
    "SinkSpec",
    "Target",
    "TargetReport",
    "Workload",
    "build_message",
    "load_message",
]

# The phase names send (timings_ms) and account test use too, in the order they happen.
PHASES = (
    "connect",
    "banner",
    "ehlo",
    "starttls",
    "auth",
    "mail_rcpt",
    "data",
    "end_of_data",
    "quit",
)
DEFAULT_SENDER = "bench@example.com"
DEFAULT_RECIPIENT = "sink@example.com"

# done, total (None with a duration), seconds, finished (the last call of the run)
Progress = Callable[[int, int | None, float, bool], None]


class BenchMode(StrEnum):
    NEW = "new"
    REUSE = "reuse"
    PIPELINE = "pipeline"


@dataclass(frozen=True)
class SinkSpec:
    """How to start the embedded sink (`mailctl sink`) when no --server is given."""

    security: Security = Security.NONE
    auth: bool = False


@dataclass(frozen=True)
class Target:
    """Where to send: `settings` of a real server, or None for the embedded sink."""

    settings: ServerSettings | None = None
    secret: Callable[[], str] | None = field(default=None, repr=False)
    sink: SinkSpec = SinkSpec()
    allow_remote: bool = False  # --i-own-this-server
    ehlo_name: str | None = None
    timeout: float | None = None  # --timeout: the ceiling of every wait
    connect_timeout: float | None = None  # --connect-timeout: connect and greeting


@dataclass(frozen=True)
class Workload:
    message: bytes = field(metadata=SKIP)  # JSON: its size only
    messages: int | None = 2000  # measured messages (warmup comes on top); None with duration
    duration: float | None = field(default=None, metadata=SECONDS)  # instead of a count
    concurrency: int = 10
    warmup: int = 0  # messages sent first and left out of every statistic
    # messages per second, open loop; None: closed loop
    rate: float | None = field(default=None, metadata=meta(key="target_qps"))
    sender: str = field(default=DEFAULT_SENDER, metadata=SKIP)
    recipients: tuple[str, ...] = field(default=(DEFAULT_RECIPIENT,), metadata=SKIP)

    JSON_ATTRS: ClassVar[JsonAttrs] = ("message_size", "loop")

    @property
    def message_size(self) -> int:
        return len(self.message)

    @property
    def loop(self) -> str:
        return "open" if self.rate else "closed"


@dataclass(frozen=True)
class TargetReport:
    """Where a bench run sent its messages, as reported (no secret)."""

    embedded_sink: bool
    host: str
    port: int
    security: Security
    auth: bool


@dataclass(frozen=True)
class BenchRequest:
    target: Target
    workload: Workload
    modes: tuple[BenchMode, ...] = (BenchMode.PIPELINE,)


class Samples:
    """Raw per-message samples in columns (for --csv): seconds, NaN where not measured."""

    COLUMNS = ("start_s", "latency_s", "status", "reason", "mail_rcpt_s", "data_s", "end_of_data_s")

    def __init__(self) -> None:
        self.start = array("d")
        self.latency = array("d")
        self.mail_rcpt = array("d")
        self.data = array("d")
        self.end_of_data = array("d")
        self.status = array("B")
        self.reason = array("H")
        self._labels: dict[str, int] = {}
        self._names: list[str] = []

    def __len__(self) -> int:
        return len(self.latency)

    def _label(self, text: str) -> int:
        found = self._labels.get(text)
        if found is None:
            found = self._labels[text] = len(self._names)
            self._names.append(text)
        return found

    def append(
        self,
        start: float,
        latency: float,
        status: str,
        reason: str,
        phases: tuple[float, float, float],
    ) -> None:
        self.start.append(start)
        self.latency.append(latency)
        self.status.append(_STATUS_CODES[status])
        self.reason.append(self._label(reason) if len(self._names) < 65_000 else 0)
        self.mail_rcpt.append(phases[0])
        self.data.append(phases[1])
        self.end_of_data.append(phases[2])

    def rows(self) -> Iterator[tuple[float, float, str, str, float, float, float]]:
        names = self._names
        for i in range(len(self.latency)):
            yield (
                self.start[i],
                self.latency[i],
                _STATUS_NAMES[self.status[i]],
                names[self.reason[i]] if names else "",
                self.mail_rcpt[i],
                self.data[i],
                self.end_of_data[i],
            )


_STATUS_NAMES = ("sent", "failed", "unknown", "refused", "transient")
_STATUS_CODES = {name: index for index, name in enumerate(_STATUS_NAMES)}


# What a message that was not sent counts as (FACTS.md, "SMTP semantics"): "refused" is
# permanent (5xx), "transient" is 4xx, 421, a timeout or a cut before the final dot, and
# "unknown" a cut or a timeout after the final dot (RFC 1047: it may have been delivered).
FAILURE_STATUSES = ("refused", "transient", "unknown")


@dataclass
class ErrorGroup:
    """Messages that failed the same way: the reply code (or failure name) and its text."""

    reason: str  # "421", "550", "timeout", "outcome_unknown", "connection_lost", ...
    text: str  # the server's reply on one line ("421 4.7.0 Error: too many ..."), or ours
    status: str = field(metadata=meta(key="class"))  # one of FAILURE_STATUSES
    count: int


@dataclass
class RunResult:
    """One mode's run. Times in seconds; latency only over messages that were sent.

    A message counts as sent only when the server's reply to its final dot was read and
    was 2xx. `failed` = `permanent` + `transient`; `unknown` is apart. Every connection
    attempt is counted, refused ones included (`connections_opened` are the sessions that
    got through greeting, EHLO, TLS and AUTH). `stopped_by` is the session-fatal error that
    ended the run early (circuit breaker), if any. JSON keys: mailctl.serialize's convention
    (`rate` is `target_qps`, `errors` is `failures_by_reason`, `error_details` is
    `failure_groups`, durations in `*_ms`).
    """

    mode: BenchMode
    loop: str
    rate: float | None = field(metadata=meta(key="target_qps"))
    concurrency: int
    message_size: int
    warmup: int
    sent: int
    failed: int
    unknown: int
    elapsed: float = field(metadata=SECONDS)
    qps: float = field(metadata=meta(digits=1))
    latency: LatencySummary | None
    phases: dict[str, LatencySummary]
    errors: dict[str, int] = field(metadata=meta(key="failures_by_reason"))
    connections_opened: int
    histogram: Histogram | None
    interrupted: bool
    samples_dropped: int = 0
    samples: Samples = field(default_factory=Samples, repr=False, metadata=SKIP)
    permanent: int = 0
    transient: int = 0
    connections_attempted: int = 0
    error_details: list[ErrorGroup] = field(
        default_factory=list, metadata=meta(key="failure_groups")
    )
    stopped_by: MailctlError | None = None
    not_tried: int = 0  # messages of a count workload never tried because the run stopped
    # QPS relative to mode `new` when both ran; set by BenchResult.
    speedup_vs_new: float | None = field(default=None, metadata=meta(digits=2))

    JSON_ATTRS: ClassVar[JsonAttrs] = ("connections_failed",)

    @property
    def connections_failed(self) -> int:
        return max(self.connections_attempted - self.connections_opened, 0)

    @property
    def worst(self) -> TransactionStatus:
        """The worst status among the messages of the run (SENT if none failed)."""
        counted = (
            (TransactionStatus.REFUSED, self.permanent),
            (TransactionStatus.TRANSIENT, self.transient),
            (TransactionStatus.UNKNOWN, self.unknown),
        )
        return worst(status for status, count in counted if count)

    @property
    def exit_class(self) -> ExitCode:
        """69 if a message was refused permanently, 75 if one failed otherwise, else 0."""
        return self.worst.exit_code


@dataclass
class RegressionCheck:
    mode: str
    metric: str  # "qps" or "p99_ms"
    baseline: float
    current: float
    change: float = field(metadata=SKIP)  # fraction, positive = worse; JSON: change_pct
    regressed: bool

    JSON_ATTRS: ClassVar[JsonAttrs] = ("change_pct",)

    @property
    def change_pct(self) -> float:
        return round(self.change * 100.0, 2)


@dataclass(frozen=True)
class RegressionReport:
    """The `regression` object of the JSON report: the limit, the verdict, each check."""

    max_regression_pct: float
    regressed: bool
    checks: tuple[RegressionCheck, ...]


@dataclass
class BenchResult:
    target: TargetReport
    workload: Workload
    runs: list[RunResult]
    interrupted: bool = False
    regression: list[RegressionCheck] | None = field(default=None, metadata=SKIP)
    max_regression: float | None = field(default=None, metadata=SKIP)  # a fraction

    JSON_ATTRS: ClassVar[JsonAttrs] = (("regression_report", meta(key="regression")),)

    def __post_init__(self) -> None:
        for run in self.runs:
            run.speedup_vs_new = self.speedup(run)

    def run(self, mode: BenchMode) -> RunResult | None:
        return next((run for run in self.runs if run.mode is mode), None)

    def speedup(self, run: RunResult) -> float | None:
        """QPS relative to `new` (one connection per message), when both ran."""
        base = self.run(BenchMode.NEW)
        if base is None or base.qps <= 0.0:
            return None
        return run.qps / base.qps

    @property
    def regressed(self) -> bool:
        return any(check.regressed for check in self.regression or ())

    @property
    def regression_report(self) -> RegressionReport | None:
        if self.regression is None:
            return None
        return RegressionReport(
            max_regression_pct=round((self.max_regression or 0.0) * 100.0, 2),
            regressed=self.regressed,
            checks=tuple(self.regression),
        )

    @property
    def stopped_by(self) -> MailctlError | None:
        """The session-fatal error that stopped a run early, if one did."""
        return next((run.stopped_by for run in self.runs if run.stopped_by), None)

    @property
    def status(self) -> str:
        """ok; partial when some messages failed and others were sent (or on Ctrl-C);
        error when none was sent but some were tried, or on a regression."""
        if self.interrupted:
            return "partial"
        sent = sum(run.sent for run in self.runs)
        if self.stopped_by is not None or any(run.exit_class for run in self.runs):
            return "partial" if sent else "error"
        return "error" if self.regressed else "ok"

    @property
    def exit_code(self) -> ExitCode:
        """130 on Ctrl-C; else the code of a session-fatal error that stopped the run (auth,
        TLS, connect, configuration...), unless it is a mere 75 and a message was refused
        permanently; else the worst failure class among the messages (69 permanent over 75
        transient, timeout or unknown); else 79 on a regression; else 0. Failures win over
        79: throughput measured against a failing server says nothing about a regression."""
        if self.interrupted:
            return ExitCode.INTERRUPTED
        failed = worst(run.worst for run in self.runs).exit_code
        fatal = self.stopped_by
        if fatal is not None and not (
            fatal.exit_code is ExitCode.TEMPFAIL and failed is ExitCode.UNAVAILABLE
        ):
            return fatal.exit_code
        if failed is not ExitCode.OK:
            return failed
        return ExitCode.REGRESSION if self.regressed else ExitCode.OK


def build_message(size: int) -> bytes:
    """A plain-text message of exactly `size` octets (CRLF, 76-octet lines), or the minimum."""
    head = (
        f"From: <{DEFAULT_SENDER}>\r\nTo: <{DEFAULT_RECIPIENT}>\r\n"
        "Subject: mailctl bench\r\nMessage-ID: <bench@mailctl.invalid>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode("ascii")
    room = max(size - len(head), 0)
    line = b"x" * 74 + b"\r\n"
    body = line * (room // len(line))
    rest = room - len(body)
    if rest >= 3:
        body += b"y" * (rest - 2) + b"\r\n"
    elif rest:
        body = body[: len(body) - (len(line) - rest)] + b"z" * (len(line) - 2) + b"\r\n"
    return head + body


def load_message(path: Path, *, what: str = "message file") -> bytes:
    """Read a message file for --message, by send's rules: a regular file within the input
    limit ($MAILCTL_MAX_INPUT), held as SMTP carries it (CRLF line ends, as send does), so
    `message_size` is what is sent. Raises NoInputError, NotRegularFileError,
    InputTooLargeError."""
    from mailctl.inputs import read_file
    from mailctl.mime.compose import crlf_lines

    return crlf_lines(read_file(path, what=what))
