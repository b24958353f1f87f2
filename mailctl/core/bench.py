"""`mailctl bench`: load an SMTP server or the embedded sink; measure QPS, latency and phases.

Modes: `new` opens one session per message (connect, EHLO, STARTTLS, AUTH, one message,
QUIT: what mail-merge scripts do), `reuse` keeps `concurrency` authenticated sessions and
sends one message at a time through aiosmtplib, `pipeline` keeps the same sessions and
runs RFC 2920 pipelined transactions (protocols/pipeline.py). Closed loop by default (each
connection sends its next message when the previous one is done); with `rate` the load is
open loop and latency is measured from each message's intended send time, so a stalled
server shows up in the percentiles instead of silently lowering the offered load
(coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter, deque
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from mailctl.core.stats import Histogram, LatencySummary, histogram, qps, summarize
from mailctl.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    HostNotFoundError,
    InputDataError,
    InterruptedByUser,
    MailctlError,
    NoInputError,
    ProtocolError,
    UsageError,
)
from mailctl.models import Envelope, Security, ServerSettings, Timeouts
from mailctl.protocols.pipeline import (
    PreparedTransaction,
    TransactionStatus,
    pipelined,
    prepare_message,
    prepare_transaction,
)
from mailctl.protocols.resolve import is_loopback_only
from mailctl.protocols.smtp import SessionOptions, SmtpSession

__all__ = [
    "PHASES",
    "BenchMode",
    "BenchRequest",
    "BenchResult",
    "Progress",
    "RegressionCheck",
    "RunResult",
    "Samples",
    "SinkSpec",
    "Target",
    "Workload",
    "build_message",
    "check_regression",
    "load_baseline",
    "load_message",
    "run_bench",
]

PHASES = (
    "connect",
    "tls",
    "banner",
    "ehlo",
    "auth",
    "mail_rcpt",
    "data",
    "end_of_data",
    "quit",
)
DEFAULT_SENDER = "bench@example.com"
DEFAULT_RECIPIENT = "sink@example.com"
# Exact samples are kept for percentiles (8 floats each); beyond this many they are
# counted but not stored, so a long --duration run cannot exhaust memory.
MAX_SAMPLES = 5_000_000
MAX_CONCURRENCY = 1000
SINK_READY_TIMEOUT = 15.0
SINK_STOP_TIMEOUT = 5.0
_PROGRESS_INTERVAL = 0.1
_MAX_BACKOFF = 0.5
# Errors that no amount of retrying fixes: stop the whole run and report them.
_FATAL = (AuthError, ConfigError, HostNotFoundError, InputDataError, ProtocolError)

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


@dataclass(frozen=True)
class Workload:
    message: bytes
    messages: int | None = 2000  # measured messages (warmup comes on top); None with duration
    duration: float | None = None  # seconds, instead of a count
    concurrency: int = 10
    warmup: int = 0  # messages sent first and left out of every statistic
    rate: float | None = None  # messages per second, open loop; None: closed loop
    sender: str = DEFAULT_SENDER
    recipients: tuple[str, ...] = (DEFAULT_RECIPIENT,)

    @property
    def loop(self) -> str:
        return "open" if self.rate else "closed"


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


@dataclass
class RunResult:
    """One mode's run. Times in seconds; latency only over messages that were sent."""

    mode: BenchMode
    loop: str
    rate: float | None
    concurrency: int
    message_size: int
    warmup: int
    sent: int
    failed: int
    unknown: int
    elapsed: float
    qps: float
    latency: LatencySummary | None
    phases: dict[str, LatencySummary]
    errors: dict[str, int]
    connections_opened: int
    histogram: Histogram | None
    interrupted: bool
    samples_dropped: int = 0
    samples: Samples = field(default_factory=Samples, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "loop": self.loop,
            "rate": self.rate,
            "concurrency": self.concurrency,
            "message_size": self.message_size,
            "warmup": self.warmup,
            "sent": self.sent,
            "failed": self.failed,
            "unknown": self.unknown,
            "elapsed_s": round(self.elapsed, 6),
            "qps": round(self.qps, 1),
            "latency": self.latency.to_json() if self.latency else None,
            "phases": {name: summary.to_json() for name, summary in self.phases.items()},
            "errors": dict(self.errors),
            "connections_opened": self.connections_opened,
            "histogram": self.histogram.to_json() if self.histogram else None,
            "interrupted": self.interrupted,
            "samples_dropped": self.samples_dropped,
        }


@dataclass
class RegressionCheck:
    mode: str
    metric: str  # "qps" or "p99_ms"
    baseline: float
    current: float
    change: float  # fraction, positive = worse
    regressed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "metric": self.metric,
            "baseline": self.baseline,
            "current": self.current,
            "change_pct": round(self.change * 100.0, 2),
            "regressed": self.regressed,
        }


@dataclass
class BenchResult:
    target: dict[str, Any]
    workload: dict[str, Any]
    runs: list[RunResult]
    interrupted: bool = False
    regression: list[RegressionCheck] | None = None
    max_regression: float | None = None

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

    def to_json(self) -> dict[str, Any]:
        runs = []
        for run in self.runs:
            data = run.to_json()
            speedup = self.speedup(run)
            data["speedup_vs_new"] = round(speedup, 2) if speedup is not None else None
            runs.append(data)
        return {
            "target": self.target,
            "workload": self.workload,
            "runs": runs,
            "interrupted": self.interrupted,
            "regression": (
                None
                if self.regression is None
                else {
                    "max_regression_pct": round((self.max_regression or 0.0) * 100.0, 2),
                    "regressed": self.regressed,
                    "checks": [check.to_json() for check in self.regression],
                }
            ),
        }


# --------------------------------------------------------------------------- inputs


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


def load_message(path: Path) -> bytes:
    """Read a message file for --message. Raises NoInputError."""
    try:
        return path.read_bytes()
    except OSError as err:
        raise NoInputError(
            f"{path}: cannot read the message: {err.strerror or type(err).__name__}"
        ) from err


def load_baseline(path: Path) -> dict[str, Any]:
    """Read a saved `mailctl bench --json` result (the envelope or its data). Raises
    NoInputError, InputDataError."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise NoInputError(
            f"{path}: cannot read the baseline: {err.strerror or type(err).__name__}"
        ) from err
    except (ValueError, UnicodeDecodeError) as err:
        raise InputDataError(f"{path}: the baseline is not JSON: {err}") from err
    data = loaded.get("data", loaded) if isinstance(loaded, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise InputDataError(
            f"{path}: not a 'mailctl bench --json' result (no data.runs list)",
            hint="save one with: mailctl bench --json > baseline.json",
        )
    return data


def check_regression(
    result: BenchResult, baseline: dict[str, Any], max_regression: float
) -> list[RegressionCheck]:
    """Compare QPS (lower is worse) and p99 (higher is worse) per mode with the baseline.

    A mode missing from either side is not compared. Raises InputDataError when no mode
    can be compared at all.
    """
    checks: list[RegressionCheck] = []
    for saved in baseline.get("runs", []):
        if not isinstance(saved, dict):
            continue
        run = next((r for r in result.runs if r.mode.value == saved.get("mode")), None)
        if run is None:
            continue
        saved_qps = saved.get("qps")
        if isinstance(saved_qps, (int, float)) and saved_qps > 0:
            change = (saved_qps - run.qps) / saved_qps
            checks.append(
                RegressionCheck(
                    run.mode.value, "qps", float(saved_qps), round(run.qps, 1), change,
                    change > max_regression,
                )
            )  # fmt: skip
        latency = saved.get("latency")
        saved_p99 = latency.get("p99_ms") if isinstance(latency, dict) else None
        if isinstance(saved_p99, (int, float)) and saved_p99 > 0 and run.latency is not None:
            current = run.latency.p99 * 1000.0
            change = (current - saved_p99) / saved_p99
            checks.append(
                RegressionCheck(
                    run.mode.value, "p99_ms", float(saved_p99), round(current, 3), change,
                    change > max_regression,
                )
            )  # fmt: skip
    if not checks:
        raise InputDataError(
            "the baseline has no run of the mode(s) benchmarked now",
            hint="record the baseline with the same --mode or --compare",
        )
    return checks


def _validate(request: BenchRequest) -> None:
    work = request.workload
    if (work.messages is None) == (work.duration is None):
        raise UsageError("give either a message count or a duration", hint="-n N or --duration S")
    if work.messages is not None and work.messages < 1:
        raise UsageError(f"--messages {work.messages}: must be at least 1")
    if work.duration is not None and not 0 < work.duration <= 86_400:
        raise UsageError(f"--duration {work.duration:g}: must be between 0 and 86400 seconds")
    if not 1 <= work.concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency {work.concurrency}: must be 1-{MAX_CONCURRENCY}")
    if work.warmup < 0:
        raise UsageError("--warmup cannot be negative")
    if work.rate is not None and not work.rate > 0:
        raise UsageError(f"--rate {work.rate:g}: must be positive (messages per second)")
    if not request.modes:
        raise UsageError("no mode to run")


def check_target(target: Target) -> None:
    """Refuse a non-loopback server unless the user said they own it, before any connect.

    Every address the host resolves to must be loopback: a name alone proves nothing.
    Raises UsageError, HostNotFoundError.
    """
    settings = target.settings
    if settings is None or target.allow_remote:
        return
    loopback, addresses = is_loopback_only(settings.host, settings.port)
    if not loopback:
        shown = ", ".join(addresses) or "no address"
        raise UsageError(
            f"{settings.host} ({shown}) is not a loopback address; a benchmark floods the "
            "server with mail",
            hint="pass --i-own-this-server if you run this server and may load it",
        )


# --------------------------------------------------------------------------- the sink


class _Sink:
    """`mailctl sink` in a child process, per its ready-file contract; always stopped."""

    def __init__(self, process: subprocess.Popen[bytes], folder: Path) -> None:
        self.process = process
        self.folder = folder

    @classmethod
    def start(cls, spec: SinkSpec) -> tuple[_Sink, ServerSettings, Callable[[], str] | None]:
        """Start it and wait (bounded) for the ready file. Raises ConnectError."""
        folder = Path(tempfile.mkdtemp(prefix="mailctl-bench-"))
        ready = folder / "ready.json"
        command = [
            sys.executable, "-m", "mailctl", "sink", "--listen", "127.0.0.1:0",
            "--ready-file", str(ready), "--quiet",
        ]  # fmt: skip
        if spec.security is Security.STARTTLS:
            command.append("--starttls")
        elif spec.security is Security.TLS:
            command.append("--tls")
        if spec.auth:
            command.append("--auth")
        log = (folder / "sink.log").open("wb")
        try:
            # Its own session: a terminal's Ctrl-C reaches only us, and we stop it after
            # printing the partial report, instead of it dying under in-flight messages.
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        except OSError as err:
            log.close()
            raise ConnectError(f"cannot start the embedded sink: {err}") from err
        finally:
            if not log.closed:
                log.close()
        sink = cls(process, folder)
        try:
            info = sink._wait_ready(ready)
            settings, secret = sink._settings(info)
        except BaseException:
            sink.stop()
            raise
        return sink, settings, secret

    def _wait_ready(self, ready: Path) -> dict[str, Any]:
        deadline = time.monotonic() + SINK_READY_TIMEOUT
        while time.monotonic() < deadline:
            if ready.exists():
                with contextlib.suppress(ValueError, OSError):
                    info = json.loads(ready.read_text(encoding="utf-8"))
                    if isinstance(info, dict):
                        return info
            if self.process.poll() is not None:
                raise ConnectError(
                    f"the embedded sink exited with status {self.process.returncode}: "
                    f"{self._log_tail()}",
                    hint="run 'mailctl sink' by hand to see why, or pass --server",
                )
            time.sleep(0.02)
        raise ConnectError(
            f"the embedded sink was not ready within {SINK_READY_TIMEOUT:g}s",
            hint="pass --server HOST:PORT to benchmark a running server",
        )

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            text = (self.folder / "sink.log").read_text(encoding="utf-8", errors="replace")
            return " ".join(text.strip().splitlines()[-3:])[-300:] or "no output"
        return "no output"

    def _settings(self, info: dict[str, Any]) -> tuple[ServerSettings, Callable[[], str] | None]:
        try:
            security = Security(info.get("security") or "none")
            auth = info.get("auth")
            username = auth["username"] if isinstance(auth, dict) else None
            password = str(auth["password"]) if isinstance(auth, dict) else None
            cert = info.get("cert_file")
            settings = ServerSettings(
                host=str(info["host"]),
                port=int(info["port"]),
                security=security,
                username=str(username) if username else None,
                ca_file=Path(cert) if cert else None,
                # Loopback test credentials of our own sink: clear text is harmless here.
                allow_plaintext_auth=True,
                timeouts=Timeouts(connect=10.0, command=30.0, data=60.0),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ProtocolError(f"the embedded sink wrote an unusable ready file: {err}") from err
        return settings, ((lambda: password) if password is not None else None)

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL; never raises."""
        process = self.process
        if process.poll() is None:
            with contextlib.suppress(OSError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(SINK_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(SINK_STOP_TIMEOUT)
        # Our mkdtemp folder: the ready file, the log, and whatever the sink put next to
        # the ready file (its throwaway CA certificate).
        shutil.rmtree(self.folder, ignore_errors=True)


# --------------------------------------------------------------------------- recording


class _Recorder:
    """Hands out message indices (bounded by count or deadline) and keeps the samples."""

    def __init__(self, work: Workload, started: float) -> None:
        self.work = work
        self.t0 = started
        self.warmup = work.warmup
        self.total = None if work.messages is None else work.messages + work.warmup
        self.deadline = None if work.duration is None else started + work.duration
        self.rate = work.rate
        self.next_index = 0
        self.t_measure: float | None = started if work.warmup == 0 else None
        self.last_end = started
        self.samples = Samples()
        self.dropped = 0
        self.sent = 0
        self.failed = 0
        self.unknown = 0
        self.done = 0
        # Columns of floats (array), not lists of tuples: millions of small tracked
        # objects would make the garbage collector the bottleneck of the load generator.
        self.latencies = array("d")
        self.phases: dict[str, array[float]] = {name: array("d") for name in PHASES}
        self.errors: Counter[str] = Counter()
        self.connections = 0
        self.stopped = False
        self.fatal: MailctlError | None = None

    def take(self) -> int | None:
        """The next message index, or None when the count or the duration is used up."""
        if self.stopped:
            return None
        index = self.next_index
        if self.total is not None and index >= self.total:
            return None
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return None
        self.next_index = index + 1
        if index == self.warmup and self.t_measure is None:
            self.t_measure = self.intended(index) if self.rate else time.perf_counter()
        return index

    def take_exhausted(self) -> bool:
        """True once no further index will be handed out."""
        if self.stopped or (self.total is not None and self.next_index >= self.total):
            return True
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def intended(self, index: int) -> float:
        """Open loop: when message `index` is due (a fixed schedule from the start)."""
        return self.t0 + index / self.rate if self.rate else 0.0

    async def wait_turn(self, index: int) -> float:
        """Open loop: sleep until the message is due; return the latency origin."""
        if not self.rate:
            return time.perf_counter()
        due = self.intended(index)
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        return due

    def record(
        self,
        index: int,
        origin: float,
        end: float,
        *,
        status: str,
        reason: str,
        phases: tuple[float, float, float],
    ) -> None:
        self.done += 1
        if index < self.warmup:
            return
        self.last_end = max(self.last_end, end)
        latency = end - origin
        if status == "sent":
            self.sent += 1
            self.latencies.append(latency)
            for name, value in zip(("mail_rcpt", "data", "end_of_data"), phases, strict=True):
                if not math.isnan(value):
                    self.phases[name].append(value)
        else:
            if status == "unknown":
                self.unknown += 1
            else:
                self.failed += 1
            self.errors[reason or status] += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(origin - self.t0, latency, status, reason, phases)
        else:
            self.dropped += 1

    def record_session(self, timings: dict[str, float]) -> None:
        self.connections += 1
        for key, name in (
            ("connect", "connect"),
            ("starttls", "tls"),
            ("banner", "banner"),
            ("ehlo", "ehlo"),
            ("auth", "auth"),
        ):
            if key in timings:
                self.phases[name].append(timings[key])

    def result(self, mode: BenchMode, message_size: int, interrupted: bool) -> RunResult:
        start = self.t_measure if self.t_measure is not None else self.t0
        elapsed = max(self.last_end - start, 0.0)
        ordered = sorted(self.latencies)
        return RunResult(
            mode=mode,
            loop=self.work.loop,
            rate=self.rate,
            concurrency=self.work.concurrency,
            message_size=message_size,
            warmup=self.warmup,
            sent=self.sent,
            failed=self.failed,
            unknown=self.unknown,
            elapsed=elapsed,
            qps=qps(self.sent, elapsed),
            latency=summarize(ordered),
            phases={
                name: summary
                for name, values in self.phases.items()
                if (summary := summarize(values)) is not None
            },
            errors=dict(self.errors.most_common()),
            connections_opened=self.connections,
            histogram=histogram(ordered) if ordered else None,
            interrupted=interrupted,
            samples_dropped=self.dropped,
            samples=self.samples,
        )


_NAN = math.nan
_NO_PHASES = (_NAN, _NAN, _NAN)


# --------------------------------------------------------------------------- the modes


@dataclass
class _Context:
    options: SessionOptions
    envelope: Envelope
    message: bytes
    recorder: _Recorder


async def _open(ctx: _Context, failures: int) -> SmtpSession | None:
    """Open one session, recording its phases; None after a non-fatal failure (charged to
    one message so the loop stays bounded)."""
    recorder = ctx.recorder
    try:
        session = await SmtpSession.open(ctx.options)
    except MailctlError as err:
        fatal = isinstance(err, _FATAL) or (isinstance(err, ConnectError) and not recorder.sent)
        if fatal:
            recorder.fatal = recorder.fatal or err
            recorder.stopped = True
            return None
        index = recorder.take()
        if index is not None:
            now = time.perf_counter()
            recorder.record(index, now, now, status="failed", reason=err.code, phases=_NO_PHASES)
        await asyncio.sleep(min(0.01 * 2**failures, _MAX_BACKOFF))
        return None
    recorder.record_session(session.info.timings)
    return session


def _error_reason(err: MailctlError) -> tuple[str, str]:
    """(status, reason) for a failed aiosmtplib-mode send: the reply code when there is one."""
    reply = err.details.get("reply")
    if isinstance(reply, dict) and isinstance(reply.get("code"), int):
        reason = str(reply["code"])
    else:
        recipients = err.details.get("recipients")
        codes = [
            r["reply"]["code"]
            for r in recipients or ()
            if isinstance(r, dict) and not r.get("accepted")
        ]
        reason = str(codes[0]) if codes else err.code
    return ("unknown" if err.code == "outcome_unknown" else "failed"), reason


async def _new_worker(ctx: _Context) -> None:
    """One session per message: connect, EHLO, STARTTLS, AUTH, one message, QUIT."""
    recorder = ctx.recorder
    failures = 0
    while (index := recorder.take()) is not None:
        origin = await recorder.wait_turn(index)
        try:
            session = await SmtpSession.open(ctx.options)
        except MailctlError as err:
            if isinstance(err, _FATAL) or (isinstance(err, ConnectError) and not recorder.sent):
                recorder.fatal = recorder.fatal or err
                recorder.stopped = True
                return
            now = time.perf_counter()
            recorder.record(index, origin, now, status="failed", reason=err.code, phases=_NO_PHASES)
            failures += 1
            await asyncio.sleep(min(0.01 * 2**failures, _MAX_BACKOFF))
            continue
        failures = 0
        recorder.record_session(session.info.timings)
        try:
            transaction = await session.send(ctx.envelope, ctx.message)
        except MailctlError as err:
            status, reason = _error_reason(err)
            recorder.record(
                index, origin, time.perf_counter(), status=status, reason=reason, phases=_NO_PHASES
            )
        else:
            timings = transaction.timings
            recorder.record(
                index, origin, time.perf_counter(), status="sent", reason="",
                phases=(timings["mail"] + timings["rcpt"], timings["data"], _NAN),
            )  # fmt: skip
        finally:
            started = time.perf_counter()
            await session.close()
            if index >= recorder.warmup:
                recorder.phases["quit"].append(time.perf_counter() - started)


async def _reuse_worker(ctx: _Context) -> None:
    """One long-lived session, one message at a time through aiosmtplib."""
    recorder = ctx.recorder
    session: SmtpSession | None = None
    failures = 0
    try:
        while not recorder.stopped:
            if session is None or not session.connected:
                if session is not None:
                    await session.close()
                session = await _open(ctx, failures)
                if session is None:
                    failures += 1
                    if recorder.stopped or recorder.take_exhausted():
                        return
                    continue
                failures = 0
            index = recorder.take()
            if index is None:
                return
            origin = await recorder.wait_turn(index)
            try:
                transaction = await session.send(ctx.envelope, ctx.message)
            except MailctlError as err:
                status, reason = _error_reason(err)
                recorder.record(
                    index,
                    origin,
                    time.perf_counter(),
                    status=status,
                    reason=reason,
                    phases=_NO_PHASES,
                )
                continue
            timings = transaction.timings
            recorder.record(
                index, origin, time.perf_counter(), status="sent", reason="",
                phases=(timings["mail"] + timings["rcpt"], timings["data"], _NAN),
            )  # fmt: skip
    finally:
        if session is not None:
            await session.close()


async def _pipeline_worker(ctx: _Context) -> None:
    """One long-lived session with RFC 2920 pipelined transactions, chained back to back."""
    recorder = ctx.recorder
    session: SmtpSession | None = None
    prepared: PreparedTransaction | None = None
    failures = 0
    try:
        while not recorder.stopped:
            if session is not None:
                await session.close()
            session = await _open(ctx, failures)
            if session is None:
                failures += 1
                if recorder.stopped or recorder.take_exhausted():
                    return
                continue
            failures = 0
            if prepared is None:
                prepared = prepare_transaction(
                    ctx.envelope,
                    prepare_message(ctx.message),
                    extensions=session.info.extensions,
                )
            if not await _pipeline_session(recorder, session, prepared):
                return
    finally:
        if session is not None:
            await session.close()


async def _pipeline_session(
    recorder: _Recorder, session: SmtpSession, prepared: PreparedTransaction
) -> bool:
    """Send on one session until the work is done (False) or the connection ends (True)."""
    pending: deque[tuple[int, float]] = deque()
    take = recorder.take
    rate = recorder.rate

    def closed_loop() -> Iterator[PreparedTransaction]:
        while (index := take()) is not None:
            pending.append((index, 0.0))
            yield prepared

    async def open_loop() -> AsyncGenerator[PreparedTransaction, None]:
        while (index := take()) is not None:
            pending.append((index, await recorder.wait_turn(index)))
            yield prepared

    source = open_loop() if rate else closed_loop()
    sent = TransactionStatus.SENT
    try:
        pipe_context = pipelined(session)
        pipe = await pipe_context.__aenter__()
    except ProtocolError as err:  # no PIPELINING: say so instead of measuring something else
        recorder.fatal = recorder.fatal or err
        recorder.stopped = True
        return False
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_exit(pipe_context)
        async for result in pipe.send_all(source):
            index, origin = pending.popleft()
            if result.status is sent:
                recorder.record(
                    index,
                    origin or result.started,
                    result.finished,
                    status="sent",
                    reason="",
                    phases=(
                        result.envelope_done - result.started,
                        result.data_accepted - result.envelope_done,
                        result.finished - result.dot_sent,
                    ),
                )
            else:
                end = result.finished or time.perf_counter()
                recorder.record(
                    index,
                    origin or result.started or end,
                    end,
                    status=result.status.value,
                    reason=result.reason or result.status.value,
                    phases=_NO_PHASES,
                )
    if not isinstance(source, Iterator):
        await source.aclose()
    return not recorder.take_exhausted()


_WORKERS = {
    BenchMode.NEW: _new_worker,
    BenchMode.REUSE: _reuse_worker,
    BenchMode.PIPELINE: _pipeline_worker,
}


async def _progress_ticker(recorder: _Recorder, progress: Progress) -> None:
    total = recorder.total
    while True:
        progress(recorder.done, total, time.perf_counter() - recorder.t0, False)
        await asyncio.sleep(_PROGRESS_INTERVAL)


async def _run_mode(
    mode: BenchMode,
    options: SessionOptions,
    work: Workload,
    progress: Progress | None,
) -> RunResult:
    recorder = _Recorder(work, time.perf_counter())
    ctx = _Context(options, Envelope(work.sender, work.recipients), work.message, recorder)
    worker = _WORKERS[mode]
    tasks = [asyncio.create_task(worker(ctx)) for _ in range(work.concurrency)]
    ticker = asyncio.create_task(_progress_ticker(recorder, progress)) if progress else None
    interrupted = False
    try:
        await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        # Ctrl-C (asyncio.run cancels the main task): stop, clean up, report what we have.
        interrupted = True
        recorder.stopped = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if ticker is not None and progress is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            progress(recorder.done, recorder.total, time.perf_counter() - recorder.t0, True)
    if recorder.fatal is not None and not recorder.sent:
        raise recorder.fatal
    return recorder.result(mode, len(work.message), interrupted)


async def _run_all(
    request: BenchRequest,
    options: SessionOptions,
    progress: Callable[[BenchMode], Progress | None] | None,
) -> tuple[list[RunResult], bool]:
    runs: list[RunResult] = []
    for mode in request.modes:
        run = await _run_mode(mode, options, request.workload, progress(mode) if progress else None)
        runs.append(run)
        if run.interrupted:
            return runs, True
    return runs, False


def run_bench(
    request: BenchRequest,
    *,
    progress: Callable[[BenchMode], Progress | None] | None = None,
) -> BenchResult:
    """Run every requested mode on the same workload and target; return the report.

    The loopback check happens before any socket is opened; the embedded sink is always
    stopped, also on Ctrl-C (the report is then partial: `interrupted`). Raises
    UsageError, HostNotFoundError, InterruptedByUser (before any result), and the
    session errors that make a run impossible (ConnectError before anything was sent,
    AuthError, TlsError, ConfigError, ProtocolError, InputDataError).
    """
    _validate(request)
    check_target(request.target)
    target = request.target
    sink: _Sink | None = None
    try:
        if target.settings is None:
            sink, settings, secret = _Sink.start(target.sink)
        else:
            settings, secret = target.settings, target.secret
        options = SessionOptions(settings=settings, secret=secret, ehlo_name=target.ehlo_name)
        runs, interrupted = asyncio.run(_run_all(request, options, progress))
    except KeyboardInterrupt:
        raise InterruptedByUser("interrupted before any result") from None
    finally:
        if sink is not None:
            sink.stop()
    return BenchResult(
        target={
            "embedded_sink": sink is not None,
            "host": settings.host,
            "port": settings.port,
            "security": settings.security.value,
            "auth": settings.username is not None,
        },
        workload={
            "messages": request.workload.messages,
            "duration_s": request.workload.duration,
            "concurrency": request.workload.concurrency,
            "message_size": len(request.workload.message),
            "warmup": request.workload.warmup,
            "rate": request.workload.rate,
            "loop": request.workload.loop,
        },
        runs=runs,
        interrupted=interrupted,
    )
