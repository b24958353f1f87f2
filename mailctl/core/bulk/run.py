"""`bulk_send`: one personalised message per CSV row, validated first, sent through the session
pool, every row's fate kept in the journal.

The order of a run: load the template and open the CSV (every column the template uses
must be in its header); the validation pass renders every row (addresses parsed strictly,
no CR/LF in a header value, attachments readable) and registers it in the journal (its
identity, its stable Message-ID, duplicates flagged); then either the dry run (the first
rendered messages and the summary, nothing sent, no journal kept) or the send loop
(engine.py). Invalid rows stop the run before the first message, unless `skip_invalid`,
which records them failed and sends the rest.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mailctl.core.bulk.cache import RenderCache, stand_in_id
from mailctl.core.bulk.hooks import RunHooks
from mailctl.core.bulk.journal import Journal, RowRecord, RowState
from mailctl.core.bulk.models import (
    MAX_INVALID_LISTED,
    BulkRequest,
    BulkResult,
    InvalidRow,
    Preview,
    ProgressCallback,
    StopSwitch,
)
from mailctl.core.bulk.rows import CsvSource, Row
from mailctl.errors import InputDataError, InterruptedByUser, MailctlError, UsageError
from mailctl.mime.template import MessageTemplate, RenderedMessage
from mailctl.models import MAX_CONCURRENCY, ResolvedServer

if TYPE_CHECKING:  # the send loop (asyncio, the pool, the SMTP client): --send only
    from mailctl.core.bulk.engine import SendOutcome

__all__ = ["bulk_send"]

# Valid rows added to the journal at once (journal.add_many): rendered messages held meanwhile.
ADD_BATCH = 256
_DONE = frozenset({RowState.SENT, RowState.FAILED, RowState.UNKNOWN, RowState.DUPLICATE})


def _check(request: BulkRequest) -> None:
    if not 1 <= request.concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency {request.concurrency}: must be 1-{MAX_CONCURRENCY}")
    if request.max_per_connection < 1:
        raise UsageError(f"--max-per-connection {request.max_per_connection}: at least 1")
    if not request.max_age > 0:
        raise UsageError(f"--max-connection-age {request.max_age:g}: must be positive")
    if not 0 <= request.retries <= 100:
        raise UsageError(f"--retries {request.retries}: must be 0-100")
    if request.rate is not None and not request.rate > 0:
        raise UsageError(f"--rate {request.rate:g}: must be positive")
    if request.limit is not None and request.limit < 1:
        raise UsageError(f"--limit {request.limit}: must be at least 1")
    if not 0 <= request.sample <= 100:
        raise UsageError(f"--sample {request.sample}: must be 0-100")


def recipient_key(rendered: RenderedMessage) -> str:
    """What makes two rows duplicates: the same envelope recipients (case of the domain and
    order aside; RFC 5321 2.4 lets the local part's case matter, so it is kept)."""
    keys = []
    for mailbox in rendered.recipients:
        local, _, domain = mailbox.addr_spec.rpartition("@")
        keys.append(f"{local}@{domain.lower()}")
    return ",".join(sorted(keys))


def _invalid(row: Row, error: MailctlError) -> InvalidRow:
    return InvalidRow(line=row.line, row=row.index, code=error.code, message=error.message)


def _validate(
    request: BulkRequest,
    template: MessageTemplate,
    source: CsvSource,
    journal: Journal,
    result: BulkResult,
    *,
    cache: RenderCache | None = None,
    stop: StopSwitch | None = None,
) -> list[Row]:
    """Render every row and register it in the journal; return the first rows to preview.
    With `cache`, keep the rendered messages of rows to send (see cache.py). Raises
    InterruptedByUser when `stop` is set (nothing was sent)."""
    shown: list[Row] = []
    sendable = _sendable(request)
    domain = "localhost"  # the last sender's domain: the stand-in ID's length
    # Valid rows wait here (rendered) to be added to the journal a batch at a time, in order.
    batch: list[tuple[Row, RenderedMessage, str]] = []

    def add_batch() -> None:
        records = journal.add_many(
            [(row, recipient_key(rendered), _domain(rendered)) for row, rendered, _ in batch],
            allow_duplicates=request.allow_duplicates,
        )
        for (row, rendered, stand_in), record in zip(batch, records, strict=True):
            if record.state is RowState.DUPLICATE:
                result.duplicates += 1
            elif record.state in _DONE and record.state not in sendable:
                result.skipped_done += 1
            if record.state in sendable:
                result.to_send += 1
                if len(shown) < request.sample:
                    shown.append(row)
                if cache is not None:
                    cache.put(row.identity, rendered, stand_in, record.message_id)
        batch.clear()

    for row in source:
        if stop is not None and stop.stopping:
            add_batch()
            journal.flush()
            raise InterruptedByUser(
                f"interrupted during the validation pass (row {row.index:,}): nothing was sent"
            )
        result.rows += 1
        stand_in = stand_in_id(domain)
        try:
            if row.error is not None:  # ragged, or not text in the encoding (rows.py)
                raise row.error
            rendered = template.render(row.fields, message_id=stand_in)
        except MailctlError as err:  # missing column, bad address, CR/LF, attachment
            result.invalid += 1
            if len(result.invalid_rows) < MAX_INVALID_LISTED:
                result.invalid_rows.append(_invalid(row, err))
            if request.skip_invalid:
                add_batch()  # the journal sees the rows in the CSV's order
                record = journal.add(row, recipient="")
                if record.state not in _DONE:
                    text = f"{err.code}: {err.message}"
                    journal.finish(row.identity, RowState.FAILED, attempts=0, text=text)
            continue
        result.valid += 1
        domain = _domain(rendered)
        batch.append((row, rendered, stand_in))
        if len(batch) >= ADD_BATCH:
            add_batch()
    add_batch()
    journal.flush()
    return shown


def _domain(rendered: RenderedMessage) -> str:
    """The sender's domain: the domain of the row's Message-ID."""
    return rendered.sender.addr_spec.rpartition("@")[2]


def _preview(template: MessageTemplate, journal: Journal, rows: list[Row]) -> list[Preview]:
    previews = []
    for row in rows:
        checked = template.render(row.fields, message_id=stand_in_id("localhost"))
        record = journal.add(
            row,
            recipient=recipient_key(checked),
            domain=checked.sender.addr_spec.rpartition("@")[2],
        )
        rendered = template.render(row.fields, message_id=record.message_id)
        previews.append(
            Preview(
                line=row.line,
                sender=rendered.sender.addr_spec,
                recipients=tuple(m.addr_spec for m in rendered.recipients),
                message=rendered.data.decode("utf-8", "surrogateescape"),
            )
        )
    return previews


def _open(request: BulkRequest) -> tuple[MessageTemplate, CsvSource]:
    template = MessageTemplate.load(
        request.template,
        html_path=request.html,
        attachments_root=request.attachments_root,
        default_from=request.default_from,
    )
    source = CsvSource(request.csv, delimiter=request.delimiter, encoding=request.encoding)
    missing = sorted(template.columns - set(source.header))
    if missing:
        names = ", ".join(missing)
        raise InputDataError(
            f"{request.csv}: the template uses columns the CSV header does not have: {names}",
            hint="add them to the header row, or remove them from the template",
            details={"missing_columns": missing},
        )
    return template, source


def bulk_send(
    request: BulkRequest,
    *,
    server: ResolvedServer | None = None,
    progress: ProgressCallback | None = None,
    stop: StopSwitch | None = None,
) -> BulkResult:
    """Validate every row, then preview (dry run) or send; return what happened.

    Raises UsageError, NoInputError (a missing CSV or template), InputDataError (a bad
    template, a CSV it cannot read, a column the template needs and the header lacks),
    JournalBusyError (another run holds the journal), TemplateChangedError, and the
    session-fatal error of a run that never got going (AUTH, TLS, refused connections:
    nothing was sent and every row is still pending).
    """
    _check(request)
    template, source = _open(request)
    if not request.send:
        return _dry_run(request, template, source, stop)
    if server is None:
        raise UsageError("bulk-send --send needs a server", hint="pass --server or --account")
    stop = stop or StopSwitch()
    path = request.journal_path
    result = BulkResult(
        csv=request.csv, journal=path, dry_run=False, skip_invalid=request.skip_invalid
    )
    with contextlib.ExitStack() as stack:
        hooks = _hooks(request, stack)
        journal = stack.enter_context(
            Journal.open(
                path, template_digest=template.digest, template_changed=request.template_changed
            )
        )
        result.recovered_unknown = journal.recover()
        cache = RenderCache(request.render_cache)
        _validate(request, template, source, journal, result, cache=cache, stop=stop)
        changes = journal.changes()
        result.new_rows, result.vanished_rows = changes.new, changes.vanished
        result.csv_changed = changes.changed
        if result.invalid and not request.skip_invalid:
            result.journal_counts = _counts(journal)
            _write_outputs(request, journal)
            return result
        outcome = _send(
            request, server, template, journal, result,
            source=source, hooks=hooks, progress=progress, stop=stop, cache=cache,
        )  # fmt: skip
        _write_outputs(request, journal)
        if hooks.events is not None:
            reason = "interrupted" if outcome.interrupted else "done"
            if outcome.stopped_by is not None:
                reason = "quota" if outcome.quota else outcome.stopped_by.code
            hooks.events.run_stopped(
                reason=reason, counts=result.journal_counts, elapsed_s=outcome.elapsed
            )
    fatal = outcome.stopped_by
    if (
        fatal is not None
        and not outcome.quota
        and not result.sent
        and not result.connections_opened
    ):
        raise fatal  # never got going (AUTH, TLS, refused): one line says more than zeros
    if any(result.journal_counts.get(s.value, 0) for s in _sendable(request)):
        result.resume_command = request.resume_command
    return result


def _sendable(request: BulkRequest) -> frozenset[RowState]:
    if request.resend_unknown:
        return frozenset({RowState.PENDING, RowState.DEFERRED, RowState.UNKNOWN})
    return frozenset({RowState.PENDING, RowState.DEFERRED})


def _hooks(request: BulkRequest, stack: contextlib.ExitStack) -> RunHooks:
    """The event log and the metrics the request asks for, closed by `stack`."""
    events = metrics = None
    if request.log_file is not None:
        from mailctl.core.bulk.eventlog import EventLog

        events = stack.enter_context(EventLog.open(request.log_file))
    if request.metrics_file is not None or request.metrics_port is not None:
        from mailctl.core.bulk.metrics import BulkMetrics

        metrics = stack.enter_context(BulkMetrics(path=request.metrics_file))
        if request.metrics_port is not None:
            metrics.serve(request.metrics_port)
    return RunHooks(events, metrics)


def _send(
    request: BulkRequest,
    server: ResolvedServer,
    template: MessageTemplate,
    journal: Journal,
    result: BulkResult,
    *,
    source: CsvSource,
    hooks: RunHooks,
    progress: ProgressCallback | None,
    stop: StopSwitch,
    cache: RenderCache,
) -> SendOutcome:
    """The send loop over the rows the journal says are still to send; fills `result`.
    `source`: the validation pass's, read again (its dialect is not sniffed twice, and a
    file changed since that pass is noticed)."""
    import asyncio

    from mailctl.core.bulk.engine import SendOutcome, loop_factory, send_rows
    from mailctl.protocols.smtp import SessionOptions

    sendable = _sendable(request)
    todo = result.to_send
    total = min(todo, request.limit) if request.limit is not None else todo
    if total <= 0:  # every row settled (a rerun) or --limit 0: no connection, no login
        result.journal_counts = _counts(journal)
        return SendOutcome()
    if hooks.events is not None:
        hooks.events.run_started(
            send=True, concurrency=request.concurrency, rate=request.rate,
            journal=str(request.journal_path), rows=result.rows,
        )  # fmt: skip
    options = SessionOptions(
        settings=server.settings, secret=server.secret, ehlo_name=server.ehlo_name
    )
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        outcome = runner.run(
            send_rows(
                request, options, template, journal, source, total=total, sendable=sendable,
                progress=progress, stop=stop, hooks=hooks, cache=cache,
            )
        )  # fmt: skip
    counts = outcome.counts
    result.invalid += outcome.invalid
    room = MAX_INVALID_LISTED - len(result.invalid_rows)
    result.invalid_rows.extend(outcome.invalid_rows[: max(room, 0)])
    result.sent = counts[RowState.SENT]
    result.failed = counts[RowState.FAILED]
    result.deferred = counts[RowState.DEFERRED]
    result.unknown = counts[RowState.UNKNOWN]
    result.not_tried = outcome.not_tried
    result.elapsed = outcome.elapsed
    result.qps = result.sent / outcome.elapsed if outcome.elapsed > 0 else 0.0
    result.connections_opened = outcome.connections_opened
    result.connections_attempted = outcome.connections_attempted
    result.interrupted = outcome.interrupted
    result.stopped_by = outcome.stopped_by
    result.quota = outcome.quota
    result.journal_counts = _counts(journal)
    return outcome


def matching_rows(rows: Iterable[Row], records: Iterable[RowRecord]) -> Iterator[Row]:
    """The CSV rows that `records` (in line order, as the journal gives them) name."""
    wanted = iter(records)
    record = next(wanted, None)
    for row in rows:
        if record is None:
            return
        if row.identity == record.identity:
            yield row
            record = next(wanted, None)


def _write_outputs(request: BulkRequest, journal: Journal) -> None:
    """--report (every row of this run) and --failed-csv (the failed rows, as they were)."""
    if request.report is not None:
        from mailctl.store.reports import write_report

        write_report(request.report, journal.records(this_run=True))
    if request.failed_csv is not None:
        from mailctl.store.reports import write_failed_csv

        source = CsvSource(request.csv, delimiter=request.delimiter, encoding=request.encoding)
        header = source.raw_header_line()
        failed = matching_rows(source, journal.records({RowState.FAILED}, this_run=True))
        write_failed_csv(
            request.failed_csv,
            header,
            source.dialect,
            (dict(zip(header, row.values, strict=False)) for row in failed),
            encoding=request.encoding,
        )


def _counts(journal: Journal) -> dict[str, int]:
    return {state.value: count for state, count in journal.counts().items() if count}


def _dry_run(
    request: BulkRequest, template: MessageTemplate, source: CsvSource, stop: StopSwitch | None
) -> BulkResult:
    """Validate and preview with a journal in a temporary folder (duplicates are found the
    same way as in the real run), leaving nothing behind."""
    # `journal`: the real one when it exists (--send then skips the rows it has settled).
    existing = request.journal_path if request.journal_path.exists() else None
    result = BulkResult(
        csv=request.csv, journal=existing, dry_run=True, skip_invalid=request.skip_invalid
    )
    digest = template.digest
    with (
        tempfile.TemporaryDirectory(prefix="mailctl-bulk-") as folder,
        Journal.open(Path(folder) / "dry-run.journal", template_digest=digest) as j,
    ):
        shown = _validate(request, template, source, j, result, stop=stop)
        result.previews = _preview(template, j, shown)
        result.journal_counts = _counts(j)
    return result
