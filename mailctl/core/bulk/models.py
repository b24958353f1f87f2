"""bulk-send's request, its result (status and exit code by DESIGN.md "Exit codes"), the
progress it reports while it runs, and the stop switch the command flips on a signal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from mailctl.errors import ExitCode, MailctlError, worst_exit_code
from mailctl.serialize import SECONDS, JsonAttrs, meta

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_PER_CONNECTION",
    "DEFAULT_RETRIES",
    "MAX_INVALID_LISTED",
    "BulkProgress",
    "BulkRequest",
    "BulkResult",
    "InvalidRow",
    "Preview",
    "ProgressCallback",
    "StopSwitch",
]

DEFAULT_CONCURRENCY = 4
DEFAULT_MAX_PER_CONNECTION = 100
DEFAULT_MAX_AGE = 300.0  # seconds: Postfix's own connection cache reuses no longer (FACTS.md)
DEFAULT_RETRIES = 3  # retries after the first attempt (transient failures only)
# Invalid rows named one by one in the result; beyond, only counted (a 1,000,000-row file
# with a bad column must not make a 1,000,000-entry report: --report has them all).
MAX_INVALID_LISTED = 100


@dataclass(frozen=True)
class BulkRequest:
    """One bulk-send run: the data, the template, the journal and how to send."""

    csv: Path
    template: Path
    html: Path | None = None
    journal: Path | None = None  # None: DATA.csv.journal next to the CSV
    send: bool = False  # False: the dry run (validate, preview, say how to send)
    concurrency: int = DEFAULT_CONCURRENCY
    max_per_connection: int = DEFAULT_MAX_PER_CONNECTION
    max_age: float = DEFAULT_MAX_AGE
    rate: float | None = None  # messages per second, all connections together
    domain_cap: int | None = None  # messages in flight at most per recipient domain
    domain_caps: tuple[tuple[str, int], ...] = ()  # (domain, cap) pairs over domain_cap
    retries: int = DEFAULT_RETRIES
    retry_base: float = 1.0  # seconds before the first retry (at most; doubles, with jitter)
    limit: int | None = None  # send at most this many messages in this run
    sample: int = 1  # rendered messages the dry run prints
    skip_invalid: bool = False
    allow_duplicates: bool = False
    resend_unknown: bool = False
    template_changed: bool = False
    delimiter: str | None = None
    encoding: str = "utf-8-sig"
    default_from: str | None = None  # the account's address, for a template without From
    attachments_root: Path | None = None
    report: Path | None = None  # --report FILE.csv: one line per row of this run
    failed_csv: Path | None = None  # --failed-csv FILE: the original rows that failed
    metrics_file: Path | None = None  # Prometheus textfile, rewritten atomically
    metrics_port: int | None = None  # Prometheus HTTP endpoint on 127.0.0.1
    log_file: Path | None = None  # one JSON line per event
    # The command line that resumes this run (the cli knows its argv; the core does not).
    resume_command: str | None = None
    # Seconds in-flight transactions get to finish after a stop (Ctrl-C) before they are
    # cut and recorded unknown.
    settle_timeout: float = 30.0
    # Bytes of messages the validation pass keeps for the send loop (core/bulk/cache.py).
    render_cache: int = 16 * 2**20

    @property
    def journal_path(self) -> Path:
        """The journal: --journal, else DATA.csv.journal beside the CSV."""
        from mailctl.core.bulk.journal import default_path  # the journal's own rule

        return self.journal if self.journal is not None else default_path(self.csv)


@dataclass(frozen=True)
class InvalidRow:
    """A row the validation pass refused, by the line it starts on."""

    line: int
    row: int  # 1-based data row number
    code: str  # the error's code: missing_column, invalid_address, header_injection, ...
    message: str


@dataclass(frozen=True)
class Preview:
    """One rendered message of the dry run: its envelope and its text (Bcc not in it)."""

    line: int
    sender: str
    recipients: tuple[str, ...]
    message: str  # the message as it would go, decoded for display (surrogates escaped)


@dataclass
class BulkProgress:
    """The run so far; sent counts only rows whose state is durable in the journal."""

    total: int  # rows this run will try (pending, deferred, maybe unknown; --limit applied)
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    unknown: int = 0
    elapsed: float = 0.0  # seconds since the first message was taken
    connections: int = 0  # sessions open now
    finished: bool = False  # the last call of the run
    stopping: bool = False  # a stop was asked for; in-flight messages are settling

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.deferred + self.unknown


ProgressCallback = Callable[[BulkProgress], None]


class StopSwitch:
    """Set from a signal handler (cli); the running send loop polls it (no signals in core).

    The first `stop()` asks for a clean stop: take no new row, let in-flight messages
    finish (at most `settle_timeout`), flush. A second one cuts in-flight transactions at
    once (they are recorded unknown: RFC 1047).
    """

    def __init__(self) -> None:
        self.requested = 0
        self.reason = ""

    def stop(self, reason: str = "interrupted") -> None:
        self.requested += 1
        self.reason = self.reason or reason

    @property
    def stopping(self) -> bool:
        return self.requested > 0

    @property
    def forced(self) -> bool:
        return self.requested > 1


@dataclass
class BulkResult:
    """What a run did, and what the journal holds after it."""

    csv: Path
    journal: Path | None  # a dry run keeps none: the existing one, if any, else None
    dry_run: bool
    rows: int = 0  # data rows in the CSV
    valid: int = 0
    invalid: int = 0
    invalid_rows: list[InvalidRow] = field(default_factory=list)  # the first ones
    duplicates: int = 0  # rows whose recipients an earlier row already had (sent once)
    # Against the journal's earlier runs: rows it did not know, rows no longer in the CSV.
    new_rows: int = 0
    vanished_rows: int = 0
    csv_changed: bool = False
    # This run's outcomes (durable in the journal).
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    unknown: int = 0
    not_tried: int = 0  # claimed or pending when the run stopped: still to send
    skipped_done: int = 0  # rows of this CSV an earlier run settled (sent, failed, unknown)
    to_send: int = 0  # rows this run sends (or would: pending, deferred; --limit aside)
    recovered_unknown: int = 0  # rows a crashed run left in flight, now unknown
    # What the journal holds after the run, by state (pending, sent, failed, ...).
    journal_counts: dict[str, int] = field(default_factory=dict)
    elapsed: float = field(default=0.0, metadata=SECONDS)
    qps: float = field(default=0.0, metadata=meta(digits=1))
    connections_opened: int = 0
    connections_attempted: int = 0
    interrupted: bool = False
    stopped_by: MailctlError | None = None  # the breaker's cause, or the quota reply
    quota: bool = False  # the run stopped on a quota reply (resumable later)
    resume_command: str | None = None
    previews: list[Preview] = field(default_factory=list)
    skip_invalid: bool = False  # invalid rows were recorded failed and the rest sent

    JSON_ATTRS: ClassVar[JsonAttrs] = ()

    @property
    def exit_code(self) -> ExitCode:
        """130 on Ctrl-C; else the worst class among what went wrong (DESIGN.md "Exit
        codes"): the error that stopped the run (77 auth, 75 quota, ...), 69 for a
        permanent refusal, 65 for invalid rows, 75 deferred or unknown. A dry run: 65
        when invalid rows would stop the real run, else 0."""
        if self.interrupted:
            return ExitCode.INTERRUPTED
        codes: list[ExitCode] = []
        # Invalid rows stop the run unless --skip-invalid; skipped, they are failed rows of
        # their own class (bad data) in a real run, and nothing to report in a dry run.
        if self.invalid and (not self.skip_invalid or not self.dry_run):
            codes.append(ExitCode.DATAERR)
        if self.dry_run:
            return worst_exit_code(codes)
        if self.stopped_by is not None:
            codes.append(self.stopped_by.exit_code)
        if self.failed:
            codes.append(ExitCode.UNAVAILABLE)
        if self.deferred or self.unknown:
            codes.append(ExitCode.TEMPFAIL)
        return worst_exit_code(codes)

    @property
    def status(self) -> str:
        """ok; partial when something went wrong and rows were sent (this run or before);
        error when nothing was sent."""
        if self.exit_code is ExitCode.OK:
            return "ok"
        if self.dry_run:
            return "error"
        if self.sent or self.journal_counts.get("sent", 0):
            return "partial"
        return "error"
