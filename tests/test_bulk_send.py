"""`mailctl bulk-send` end to end: dry run, validation, sending through mailctl's sink (with its
fault injection) and aiosmtpd, the journal across reruns, Ctrl-C and kill -9.

What the server stored is counted by Message-ID and compared with the journal: every row in
exactly one state, none sent twice (except rows recorded unknown), none lost. Every server
and every run here is bounded in time.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from servers.sink_process import SinkProcess, sinks
from servers.smtp_server import TEST_PASSWORD, TEST_USER, SmtpServerFactory
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.core.bulk.journal import Journal, RowState
from mailctl.core.bulk.models import BulkRequest
from mailctl.core.bulk.run import bulk_send
from mailctl.mime.template import MessageTemplate
from mailctl.models import ResolvedServer, Security, ServerSettings, Timeouts

FAST = Timeouts(connect=5.0, command=5.0, data=5.0)
TEMPLATE = (
    "From: Sender <sender@example.org>\n"
    "To: {{ name }} <{{ email }}>\n"
    "Subject: Hello {{ name }}\n"
    "\n"
    "Dear {{ name }},\n"
    "your code is {{ code }}.\n"
)
runner = CliRunner()


def write_csv(path: Path, count: int, *, extra: list[str] | None = None) -> Path:
    lines = ["name,email,code"]
    lines += [f"Person {n},person{n}@example.org,{n:05d}" for n in range(count)]
    lines += extra or []
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    def make(count: int, *, extra: list[str] | None = None) -> tuple[Path, Path]:
        template = tmp_path / "letter.txt"
        template.write_text(TEMPLATE, encoding="utf-8")
        return write_csv(tmp_path / "contacts.csv", count, extra=extra), template

    return make


# -- mailctl's sink, faults from the command line ---------------------------------------------


Sink = SinkProcess


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Callable[..., Sink]]:
    yield from sinks(tmp_path)


def server(port: int, **settings: Any) -> ResolvedServer:
    return ResolvedServer(
        settings=ServerSettings("127.0.0.1", port, Security.NONE, timeouts=FAST, **settings)
    )


def journal_states(csv: Path, template: Path) -> dict[str, tuple[RowState, str]]:
    """Message-ID -> (state, identity) for every row the journal holds."""
    digest = MessageTemplate.load(template).digest
    with Journal.open(csv.with_name(csv.name + ".journal"), template_digest=digest) as journal:
        return {r.message_id: (r.state, r.identity) for r in journal.records()}


def assert_exactly_once(stored: Counter[str], states: dict[str, tuple[RowState, str]]) -> None:
    """Every row sent is stored once; none stored that the journal does not say sent or
    unknown; a row stored twice was recorded unknown at least once (checked by the caller)."""
    for message_id, (state, _identity) in states.items():
        if state is RowState.SENT:
            assert stored[message_id] >= 1, (message_id, "sent but not stored")
        elif state is not RowState.UNKNOWN:
            assert stored[message_id] == 0, (message_id, state, "stored but not sent")
    assert set(stored) <= set(states)


def cli(*args: str | Path) -> Any:
    result = runner.invoke(app, [str(a) for a in args], env={"NO_COLOR": "1"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


# -- the dry run and validation -----------------------------------------------------------------


def test_the_dry_run_prints_the_first_message_and_sends_nothing(
    files: Callable[..., tuple[Path, Path]],
) -> None:
    csv, template = files(3)
    result = cli("bulk-send", csv, template)
    assert result.exit_code == 0, result.output
    assert "To: Person 0 <person0@example.org>" in result.stdout
    assert "your code is 00000." in result.stdout
    assert "Person 1" not in result.stdout  # --sample 1: the first message only
    assert "3 rows, 3 valid, 0 invalid, 0 duplicates (sent once), 3 to send" in result.stdout
    assert "--send" in result.stdout  # says how to send for real
    assert not csv.with_name("contacts.csv.journal").exists()  # a dry run keeps no journal


def test_invalid_rows_are_listed_by_line_and_stop_the_run(
    files: Callable[..., tuple[Path, Path]], sink: Callable[..., Sink]
) -> None:
    # Line 5: a bad address; line 6: CR/LF in a header value (Subject) inside a quoted field.
    csv, template = files(
        3, extra=["Bad,not an address,1", '"Evil\r\nBcc: x@evil.test",e@example.org,2']
    )
    result = cli("bulk-send", csv, template, "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 65, result.output
    assert data["status"] == "error"
    assert [(r["line"], r["row"]) for r in data["data"]["invalid_rows"]] == [(5, 4), (6, 5)]
    assert data["data"]["invalid_rows"][1]["code"] == "header_injection"
    server_ = sink()
    result = cli(
        "bulk-send", csv, template, "--send", "--server", f"127.0.0.1:{server_.port}", "--no-tls"
    )
    assert result.exit_code == 65, result.output
    assert not server_.stored()  # nothing sent before every row is valid
    # --skip-invalid: the rest is sent, the bad ones recorded failed; partial, exit 65.
    result = cli(
        "bulk-send", csv, template, "--send", "--skip-invalid", "--json",
        "--server", f"127.0.0.1:{server_.port}", "--no-tls",
    )  # fmt: skip
    data = json.loads(result.stdout)
    assert (result.exit_code, data["status"]) == (65, "partial"), result.output
    assert data["data"]["sent"] == 3
    states = journal_states(csv, template)
    assert Counter(state for state, _ in states.values()) == {RowState.SENT: 3, RowState.FAILED: 2}
    assert sum(server_.stored().values()) == 3


def test_template_code_in_a_field_is_inert(files: Callable[..., tuple[Path, Path]]) -> None:
    csv, template = files(0, extra=["Ann,a@example.org,{{ ''.__class__ }} {% raw %}x"])
    result = cli("bulk-send", csv, template)
    # A field's text is data, never template code: it is printed as it was written.
    assert result.exit_code == 0, result.output
    assert "your code is {{ ''.__class__ }} {% raw %}x." in result.stdout


# -- sending ------------------------------------------------------------------------------------


def test_send_then_rerun_sends_nothing_twice(
    files: Callable[..., tuple[Path, Path]], sink: Callable[..., Sink]
) -> None:
    csv, template = files(40, extra=["Again,person3@example.org,99999"])  # a duplicate
    server_ = sink()
    where = ("--server", f"127.0.0.1:{server_.port}", "--no-tls")
    result = cli("bulk-send", csv, template, "--send", "--json", "-c", "3", *where)
    data = json.loads(result.stdout)
    assert (result.exit_code, data["status"]) == (0, "ok"), result.output
    assert (data["data"]["sent"], data["data"]["duplicates"]) == (40, 1)
    stored = server_.stored()
    assert len(stored) == 40 and set(stored.values()) == {1}
    states = journal_states(csv, template)
    assert_exactly_once(stored, states)
    # The same command again: the journal says every row is done.
    result = cli("bulk-send", csv, template, "--send", "--json", *where)
    data = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert (data["data"]["sent"], data["data"]["skipped_done"]) == (0, 40)
    assert server_.stored() == stored
    # ... so it does not even connect (no login for nothing, nothing in the server's log)
    assert data["data"]["connections_attempted"] == 0, data["data"]
    human = cli("bulk-send", csv, template, "--send", *where)
    assert human.exit_code == 0, human.output
    assert "nothing left to send, no connection made" in human.output


def test_allow_duplicates_sends_each_row(
    files: Callable[..., tuple[Path, Path]], sink: Callable[..., Sink]
) -> None:
    csv, template = files(2, extra=["Again,person1@example.org,7"])
    server_ = sink()
    result = cli(
        "bulk-send", csv, template, "--send", "--allow-duplicates",
        "--server", f"127.0.0.1:{server_.port}", "--no-tls",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sum(server_.stored().values()) == 3


def run_core(csv: Path, template: Path, port: int, **overrides: Any) -> Any:
    request = BulkRequest(csv=csv, template=template, send=True, retry_base=0.01, **overrides)
    return bulk_send(request, server=server(port))


def test_transient_refusals_are_retried_until_sent(
    files: Callable[..., tuple[Path, Path]], sink: Callable[..., Sink]
) -> None:
    csv, template = files(30)
    server_ = sink("--reject-rate", "0.3", "--reject-code", "451", "--seed", "3")
    result = run_core(csv, template, server_.port, retries=20, concurrency=2)
    assert (result.sent, result.failed, result.deferred, result.exit_code) == (30, 0, 0, 0)
    stored = server_.stored()
    assert len(stored) == 30 and set(stored.values()) == {1}


def test_transient_refusals_past_the_retries_are_deferred_and_resumed(
    files: Callable[..., tuple[Path, Path]], sink: Callable[..., Sink]
) -> None:
    csv, template = files(20)
    refusing = sink("--reject-rate", "1", "--reject-code", "451")
    result = run_core(csv, template, refusing.port, retries=1)
    assert (result.sent, result.deferred, result.exit_code, result.status) == (0, 20, 75, "error")
    assert result.resume_command is None or "--send" in result.resume_command
    assert not refusing.stored()
    good = sink()
    result = run_core(csv, template, good.port)
    assert (result.sent, result.exit_code) == (20, 0)


def test_permanent_refusals_are_never_retried(
    files: Callable[..., tuple[Path, Path]], sink: Callable[..., Sink]
) -> None:
    csv, template = files(30)
    server_ = sink(
        "--reject-rate", "0.3", "--reject-code", "550", "--reject-on", "rcpt", "--seed", "2"
    )
    result = run_core(csv, template, server_.port, retries=5)
    stats = server_.stop()
    assert result.failed > 0 and result.sent + result.failed == 30
    assert (result.status, result.exit_code) == ("partial", 69)
    # Each refused row met exactly one RCPT: no retry of a 5xx.
    assert stats["messages"] == result.sent
    states = journal_states(csv, template)
    assert Counter(s for s, _ in states.values()) == {
        RowState.SENT: result.sent, RowState.FAILED: result.failed,
    }  # fmt: skip


def test_lost_after_the_dot_is_unknown_and_resent_only_when_asked(
    files: Callable[..., tuple[Path, Path]], sink: Callable[..., Sink]
) -> None:
    csv, template = files(30)
    server_ = sink("--disconnect-rate", "0.2", "--disconnect-on", "eod", "--seed", "4")
    result = run_core(csv, template, server_.port)
    assert result.unknown > 0 and result.sent + result.unknown == 30
    assert result.exit_code == 75
    stored_before = server_.stored()
    again = run_core(csv, template, server_.port)
    assert (again.sent, again.unknown) == (0, 0)  # unknown rows are not resent by default
    assert server_.stored() == stored_before
    forced = run_core(csv, template, server_.port, resend_unknown=True)
    assert forced.sent + forced.unknown == result.unknown
    # The resent rows kept their Message-IDs (stable per row): a message that had arrived
    # after all is now there twice under one ID, never under a second one.
    stored = server_.stored()
    assert set(stored) <= set(journal_states(csv, template))
    assert len(stored) <= 30 and sum(stored.values()) >= sum(stored_before.values()) + forced.sent


def test_421_after_n_messages_reconnects_without_losing_or_repeating(
    files: Callable[..., tuple[Path, Path]], sink: Callable[..., Sink]
) -> None:
    csv, template = files(40)
    server_ = sink("--421-after", "7")
    result = run_core(csv, template, server_.port, retries=0, concurrency=2)
    assert (result.sent, result.exit_code) == (40, 0)
    stored = server_.stored()
    assert len(stored) == 40 and set(stored.values()) == {1}


def test_one_auth_failure_stops_the_run_after_a_single_attempt(
    files: Callable[..., tuple[Path, Path]], smtp_server_factory: SmtpServerFactory
) -> None:
    csv, template = files(20)
    smtp = smtp_server_factory(security=Security.NONE, auth=True)
    resolved = ResolvedServer(
        settings=ServerSettings(
            "127.0.0.1", smtp.port, Security.NONE, timeouts=FAST, username=TEST_USER,
            allow_plaintext_auth=True,
        ),
        secret=lambda: TEST_PASSWORD + "-wrong",
    )  # fmt: skip
    request = BulkRequest(csv=csv, template=template, send=True, concurrency=8, retries=5)
    from mailctl.errors import AuthError

    with pytest.raises(AuthError):
        bulk_send(request, server=resolved)
    assert len(smtp.auth_attempts) == 1  # not workers x retries
    assert not smtp.messages
    states = journal_states(csv, template)
    assert {s for s, _ in states.values()} == {RowState.PENDING}


# -- stopping: Ctrl-C, kill -9 --------------------------------------------------------------------


def bulk_process(csv: Path, template: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mailctl", "bulk-send", str(csv), str(template), "--send",
         "--server", f"127.0.0.1:{port}", "--no-tls", "-c", "2", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_a_signal_stops_cleanly_and_the_resume_sends_the_rest_once(
    files: Callable[..., tuple[Path, Path]], sink: Callable[..., Sink], signum: int
) -> None:
    csv, template = files(200)
    server_ = sink("--latency", "10", "--latency-on", "eod")
    process = bulk_process(csv, template, server_.port)
    deadline = time.monotonic() + 30
    while len(server_.stored()) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signum)
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "resume with: mailctl bulk-send" in err and "--send" in err
    stored = server_.stored()
    assert 20 <= len(stored) < 200
    states = journal_states(csv, template)
    assert not any(s is RowState.IN_FLIGHT for s, _ in states.values())
    assert_exactly_once(stored, states)
    # Resume: the same command.
    result = run_core(csv, template, server_.port)
    assert result.exit_code == 0
    stored = server_.stored()
    assert len(stored) == 200 and set(stored.values()) == {1}


@pytest.fixture
def tmpfs_folder() -> Iterator[Path]:
    """A folder in RAM (/dev/shm): a journal there commits in microseconds, so the send loop
    uses it from its own thread rather than the journal thread (engine.Worker)."""
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    with tempfile.TemporaryDirectory(prefix="mailctl-test-", dir="/dev/shm") as name:
        yield Path(name)


# Seeds 1-4: the journal on disk (claims committed on the journal thread); 5-6: in RAM
# (claims committed inline, between the loop's writes).
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_kill_9_at_a_random_moment_loses_nothing_and_sends_nothing_twice(
    files: Callable[..., tuple[Path, Path]],
    sink: Callable[..., Sink],
    seed: int,
    request: pytest.FixtureRequest,
) -> None:
    rows = 1500
    csv, template = files(rows)
    if seed > 4:
        folder: Path = request.getfixturevalue("tmpfs_folder")
        csv, template = Path(shutil.copy(csv, folder)), Path(shutil.copy(template, folder))
    server_ = sink("--latency", "2", "--latency-on", "eod")
    rng = random.Random(seed)
    # Killed once the sink has stored a random number of messages (seed 4: at once, maybe
    # still in the validation pass), a random instant after that.
    wanted = 0 if seed == 4 else rng.randint(1, rows - 200)
    process = bulk_process(csv, template, server_.port, "-c", "4")
    new = server_.maildir / "new"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if wanted == 0 or (new.exists() and len(os.listdir(new)) >= wanted):
            break
        time.sleep(0.005)
    time.sleep(rng.uniform(0, 0.02))
    assert process.poll() is None, "the run ended before the kill"
    process.kill()
    process.communicate(timeout=10)
    stored_at_kill = server_.stored()
    # Resume: the crashed run's in-flight rows become unknown: at most two batches claimed
    # ahead (2 x -c x 2), what the pool had on the wire (-c x 2) and what was sent since the
    # last claim's commit (less than a batch); the retries waiting (none here).
    result = run_core(csv, template, server_.port, concurrency=4)
    assert result.recovered_unknown <= 4 * (4 * 2)
    stored = server_.stored()
    states = journal_states(csv, template)
    assert len(states) == rows
    assert not any(s in (RowState.IN_FLIGHT, RowState.PENDING) for s, _ in states.values())
    assert_exactly_once(stored, states)
    unknown = {mid for mid, (s, _) in states.items() if s is RowState.UNKNOWN}
    assert len(unknown) == result.recovered_unknown
    # Sent twice only if recorded unknown; every row arrived or is recorded unknown.
    assert {mid for mid, n in stored.items() if n > 1} <= unknown
    assert set(states) - set(stored) <= unknown
    assert set(stored_at_kill) <= set(stored)


# -- on a terminal --------------------------------------------------------------------------------


def test_progress_bar_fits_80_columns_and_ctrl_c_prints_the_resume_command(
    files: Callable[..., tuple[Path, Path]], sink: Callable[..., Sink]
) -> None:
    from terminal import run_on_terminal

    csv, template = files(3000)
    server_ = sink("--latency", "1", "--latency-on", "eod")
    args = ["bulk-send", str(csv), str(template), "--send", "-c", "2",
            "--server", f"127.0.0.1:{server_.port}", "--no-tls"]  # fmt: skip
    # ^C once some hundred rows are out: the bar redraws about ten times a second, so the
    # counts it shows jump (299 -> 403): match a number's size, not its first digit (with
    # "sent 3" the first match could be the last frame, "sent 3,000", after the run ended).
    run = run_on_terminal(
        args,
        columns=80,
        ctrl_c_when=lambda shown: re.search(rb"sent [1-9]\d{2}\b", shown) is not None,
        timeout=60,
    )
    screen = run.screen
    assert run.code == 130, screen
    frames = [part for part in re.split(r"[\r\n]+", screen) if "deferred" in part]
    assert frames, screen
    assert all(len(frame) <= 80 for frame in frames), frames
    assert any(re.search(r"sent [\d,]+ failed 0 deferred 0 [\d,]+/s", f) for f in frames), frames
    flat = " ".join(screen.split())
    assert "resume with: mailctl bulk-send" in flat, screen
    # The same command resumes; every row arrives once.
    result = run_core(csv, template, server_.port)
    assert result.exit_code == 0
    stored = server_.stored()
    assert len(stored) == 3000 and set(stored.values()) == {1}


def test_report_failed_csv_log_and_metrics(
    files: Callable[..., tuple[Path, Path]], sink: Callable[..., Sink], tmp_path: Path
) -> None:
    csv, template = files(20, extra=["Formula,=cmd@example.org,1"])
    server_ = sink(
        "--reject-rate", "0.3", "--reject-code", "550", "--reject-on", "rcpt", "--seed", "8"
    )
    out = {name: tmp_path / name for name in ("report.csv", "failed.csv", "log.jsonl", "m.prom")}
    result = cli(
        "bulk-send", csv, template, "--send", "--json", "--server", f"127.0.0.1:{server_.port}",
        "--no-tls", "--report", out["report.csv"], "--failed-csv", out["failed.csv"],
        "--log-file", out["log.jsonl"], "--metrics-file", out["m.prom"],
    )  # fmt: skip
    data = json.loads(result.stdout)["data"]
    assert result.exit_code == 69, result.output
    assert data["failed"] > 0 and data["sent"] + data["failed"] == 21
    import csv as csv_module

    with out["report.csv"].open(newline="") as handle:
        report = list(csv_module.DictReader(handle))
    assert len(report) == 21
    assert Counter(line["status"] for line in report) == {
        "sent": data["sent"],
        "failed": data["failed"],
    }
    assert any(line["recipient"] == "'=cmd@example.org" for line in report)  # neutralised
    stored = server_.stored()
    sent_ids = {line["message_id"] for line in report if line["status"] == "sent"}
    assert set(stored) == sent_ids
    # The failed rows, as they were: the same header, ready to be fed back in.
    failed_lines = out["failed.csv"].read_text().splitlines()
    assert failed_lines[0] == "name,email,code"
    assert len(failed_lines) == 1 + data["failed"]
    assert set(failed_lines[1:]) <= set(csv.read_text().splitlines())
    events = [json.loads(line) for line in out["log.jsonl"].read_text().splitlines()]
    kinds = Counter(event["event"] for event in events)
    assert kinds["row_sent"] == data["sent"] and kinds["row_failed"] == data["failed"]
    assert kinds["run_started"] == kinds["run_stopped"] == 1
    assert "Dear" not in out["log.jsonl"].read_text()  # no bodies
    metrics = out["m.prom"].read_text()
    assert f'mailctl_bulk_rows_total{{code="250",status="sent"}} {data["sent"]}.0' in metrics


# -- quota, throttling, one run per journal, template changes ------------------------------------


def test_a_sending_quota_stops_the_run_cleanly_and_the_rest_resumes(
    files: Callable[..., tuple[Path, Path]], smtp_server_factory: SmtpServerFactory
) -> None:
    csv, template = files(30)
    smtp = smtp_server_factory(security=Security.NONE, auth=False)
    # Gmail's reply when the account's daily sending limit is used up (RFC 3463 5.4.5).
    smtp.reject("person10@example.org", 550, "5.4.5 Daily user sending quota exceeded.")
    request = BulkRequest(
        csv=csv, template=template, send=True, concurrency=1, resume_command="again"
    )
    result = bulk_send(request, server=server(smtp.port))
    assert result.quota and result.exit_code == 75 and result.status == "partial"
    assert result.stopped_by is not None and "quota" in result.stopped_by.message
    assert result.sent == 10 and result.failed == 0
    assert result.resume_command == "again"
    states = journal_states(csv, template)
    # The row that met the quota was not refused for good: it goes again with the rest.
    assert Counter(s for s, _ in states.values()) == {
        RowState.SENT: 10,
        RowState.DEFERRED: 1,
        RowState.PENDING: 19,
    }
    smtp.handler.rejections.clear()  # a day later
    again = bulk_send(request, server=server(smtp.port))
    assert (again.sent, again.exit_code) == (20, 0)
    assert len(smtp.messages) == 30


def test_max_connections_421_shrinks_the_pool_and_sends_everything_once(
    files: Callable[..., tuple[Path, Path]], sink: Callable[..., Sink]
) -> None:
    csv, template = files(200)
    server_ = sink("--max-connections", "2")
    result = run_core(csv, template, server_.port, concurrency=8)
    assert (result.sent, result.exit_code) == (200, 0)
    assert result.connections_attempted > result.connections_opened  # some got 421 4.4.5
    stored = server_.stored()
    assert len(stored) == 200 and set(stored.values()) == {1}


def test_a_second_run_on_the_same_journal_is_refused(
    files: Callable[..., tuple[Path, Path]],
) -> None:
    csv, template = files(3)
    digest = MessageTemplate.load(template).digest
    with Journal.open(csv.with_name(csv.name + ".journal"), template_digest=digest):
        result = cli(
            "bulk-send", csv, template, "--send", "--server", "127.0.0.1:9", "--no-tls", "--json"
        )
    data = json.loads(result.stdout)
    assert result.exit_code == 75, result.output
    assert data["errors"][0]["code"] == "journal_busy"


def test_a_changed_template_needs_template_changed_and_resends_nothing(
    files: Callable[..., tuple[Path, Path]], sink: Callable[..., Sink]
) -> None:
    csv, template = files(5)
    server_ = sink()
    where = ("--server", f"127.0.0.1:{server_.port}", "--no-tls")
    assert cli("bulk-send", csv, template, "--send", "--limit", "3", *where).exit_code == 0
    template.write_text(TEMPLATE.replace("Dear", "Hello"))
    refused = cli("bulk-send", csv, template, "--send", "--json", *where)
    assert refused.exit_code == 65, refused.output
    assert json.loads(refused.stdout)["errors"][0]["code"] == "template_changed"
    went_on = cli("bulk-send", csv, template, "--send", "--template-changed", "--json", *where)
    assert went_on.exit_code == 0, went_on.output
    assert json.loads(went_on.stdout)["data"]["sent"] == 2
    stored = server_.stored()
    assert len(stored) == 5 and set(stored.values()) == {1}


def test_a_second_sigint_cuts_in_flight_messages_and_records_them_unknown(
    files: Callable[..., tuple[Path, Path]], sink: Callable[..., Sink]
) -> None:
    csv, template = files(20)
    server_ = sink("--latency", "10000", "--latency-on", "eod")  # each reply after the dot: 10 s
    process = bulk_process(csv, template, server_.port)
    log = csv.with_name("contacts.csv.journal")
    deadline = time.monotonic() + 30
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # validated; the first messages wait for their reply
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=20)
    assert process.returncode == 130, err
    assert time.monotonic() - started < 6  # not the 10 s reply, nor the 30 s settle time
    states = Counter(s for s, _ in journal_states(csv, template).values())
    assert RowState.IN_FLIGHT not in states
    assert 1 <= states[RowState.UNKNOWN] <= 2 * 2  # -c 2, two transactions each on the wire
    assert states[RowState.PENDING] == 20 - states[RowState.UNKNOWN]


def test_ctrl_c_during_the_validation_pass_stops_at_once_and_sends_nothing(
    files: Callable[..., tuple[Path, Path]], sink: Callable[..., Sink]
) -> None:
    csv, template = files(60000)  # validating takes many seconds
    server_ = sink()
    process = bulk_process(csv, template, server_.port)
    journal = csv.with_name("contacts.csv.journal")
    deadline = time.monotonic() + 30
    while not journal.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert time.monotonic() - started < 3
    assert "interrupted during the validation pass" in err and "nothing was sent" in err
    assert not server_.stored()


def test_a_temporary_quota_reply_stops_the_run_and_keeps_the_reply(
    files: Callable[..., tuple[Path, Path]], smtp_server_factory: SmtpServerFactory
) -> None:
    csv, template = files(10)
    smtp = smtp_server_factory(security=Security.NONE, auth=False)
    smtp.reject("person4@example.org", 451, "4.7.1 Daily sending quota exceeded, try tomorrow")
    out = csv.with_name("report.csv")
    request = BulkRequest(
        csv=csv, template=template, send=True, concurrency=1, retry_base=0.01, report=out
    )
    result = bulk_send(request, server=server(smtp.port))
    assert result.quota and (result.sent, result.deferred, result.exit_code) == (4, 1, 75)
    import csv as csv_module

    with out.open(newline="") as handle:
        lines = {line["recipient"]: line for line in csv_module.DictReader(handle)}
    quota = lines["person4@example.org"]
    assert (quota["status"], quota["code"], quota["enhanced"]) == ("deferred", "451", "4.7.1")
    assert "quota" in quota["text"]
    assert {lines[f"person{n}@example.org"]["status"] for n in range(5, 10)} == {"pending"}


def test_a_row_that_no_longer_renders_at_send_time_fails_alone(
    tmp_path: Path, sink: Callable[..., Sink]
) -> None:
    """Valid at the validation pass, its attachment deleted before its turn: that row is
    recorded failed (65) and the others are sent."""
    template = tmp_path / "letter.txt"
    template.write_text(TEMPLATE.replace("\n\n", "\nAttachment: {{ file }}\n\n", 1))
    lines = ["name,email,code,file"]
    for n in range(20):
        (tmp_path / f"a{n}.txt").write_text(f"attachment {n}\n")
        lines.append(f"Person {n},person{n}@example.org,{n},a{n}.txt")
    csv = tmp_path / "contacts.csv"
    csv.write_text("\n".join(lines) + "\n")
    server_ = sink("--latency", "20", "--latency-on", "eod")

    def delete_late_attachments(progress: Any) -> None:
        for n in range(10, 20):
            (tmp_path / f"a{n}.txt").unlink(missing_ok=True)

    request = BulkRequest(csv=csv, template=template, send=True, concurrency=1, render_cache=0)
    result = bulk_send(request, server=server(server_.port), progress=delete_late_attachments)
    assert (result.sent, result.invalid, result.failed) == (10, 10, 0), result
    assert (result.exit_code, result.status) == (65, "partial")
    assert {row.code for row in result.invalid_rows} == {"no_input"}
    states = Counter(s for s, _ in journal_states(csv, template).values())
    assert states == {RowState.SENT: 10, RowState.FAILED: 10}
    assert len(server_.stored()) == 10


def test_530_to_mail_stops_every_connection_and_leaves_the_rows_pending(
    files: Callable[..., tuple[Path, Path]], smtp_server_factory: SmtpServerFactory
) -> None:
    csv, template = files(20)
    smtp = smtp_server_factory(security=Security.NONE, auth=True, require_auth=True)
    request = BulkRequest(csv=csv, template=template, send=True, concurrency=4, retries=5)
    result = bulk_send(request, server=server(smtp.port))  # no credentials: 530 to MAIL
    assert result.stopped_by is not None and result.stopped_by.code == "auth_failed"
    assert (result.exit_code, result.status, result.sent, result.failed) == (77, "error", 0, 0)
    assert not smtp.messages
    states = journal_states(csv, template)
    assert {s for s, _ in states.values()} == {RowState.PENDING}  # resumable once fixed


def test_per_domain_caps_send_every_row_once(tmp_path: Path, sink: Callable[..., Sink]) -> None:
    template = tmp_path / "letter.txt"
    template.write_text(TEMPLATE)
    domains = ("a.example", "b.example", "c.example")
    rows = [f"P{n},p{n}@{domains[n % 3]},{n}" for n in range(60)]
    csv = tmp_path / "contacts.csv"
    csv.write_text("name,email,code\n" + "\n".join(rows) + "\n")
    server_ = sink("--latency", "2", "--latency-on", "eod")
    where = ("--server", f"127.0.0.1:{server_.port}", "--no-tls")
    bad = cli("bulk-send", csv, template, "--send", "--domain-cap", "a.example", *where)
    assert bad.exit_code == 64 and "DOMAIN=N" in bad.output
    result = cli(
        "bulk-send", csv, template, "--send", "-c", "4", "--per-domain", "1",
        "--domain-cap", "b.example=2", "--json", *where,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["sent"] == 60
    stored = server_.stored()
    assert len(stored) == 60 and set(stored.values()) == {1}


def test_the_feed_sends_rows_kept_rendered_without_parsing_the_csv_again(
    files: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    """The send loop takes a row the validation pass kept rendered from its journal record
    alone; the CSV is parsed again only up to a row the cache does not hold, which is
    rendered with the same Message-ID. Every row is claimed (in_flight) before it is handed
    out."""
    from mailctl.core.bulk.cache import RenderCache, stand_in_id
    from mailctl.core.bulk.engine import RowFeed
    from mailctl.core.bulk.rows import CsvSource
    from mailctl.core.bulk.run import recipient_key

    csv, template_path = files(10)
    template = MessageTemplate.load(template_path)
    cache = RenderCache()
    with Journal.open(tmp_path / "feed.journal", template_digest=template.digest) as journal:
        for row in CsvSource(csv):
            stand_in = stand_in_id("example.org")
            rendered = template.render(row.fields, message_id=stand_in)
            record = journal.add(row, recipient=recipient_key(rendered), domain="example.org")
            assert cache.put(row.identity, rendered, stand_in, record.message_id)
        journal.flush()
        records = list(journal.records({RowState.PENDING}, this_run=True))
        evicted = records[6]
        assert cache.pop(evicted.identity) is not None  # as when over the cache's budget
        read: list[int] = []

        def rows() -> Iterator[Any]:
            for row in CsvSource(csv):
                read.append(row.line)
                yield row

        feed = RowFeed(
            rows(), iter(records), template, journal,
            batch=4, limit=None, resend_unknown=False, cache=cache,
        )  # fmt: skip
        jobs = []
        while (job := feed.take()) is not None:
            jobs.append(job)
        feed.close()
        assert [job.tag.identity for job in jobs] == [r.identity for r in records]
        assert read == [r.line for r in records[:7]]  # up to the evicted row, no further
        for job, record in zip(jobs, records, strict=True):
            assert f"\r\nMessage-ID: {record.message_id}\r\n".encode() in job.payload.data
        states = {r.identity: r.state for r in journal.records()}
        assert set(states.values()) == {RowState.IN_FLIGHT}


def test_the_journal_is_used_inline_only_while_commits_are_cheap_and_one_thread_at_a_time() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from mailctl.core.bulk.engine import Worker

    cheap = False
    here = threading.get_ident()
    with ThreadPoolExecutor(max_workers=1) as executor:
        worker = Worker(executor, cheap=lambda: cheap)
        assert worker.call(threading.get_ident).result() != here  # dear commits: the thread
        gate = threading.Event()
        busy = worker.call(gate.wait, 10)  # still running on the thread
        cheap = True
        after = worker.call(threading.get_ident)  # not beside it: after it, on the thread
        assert not after.done()
        gate.set()
        assert busy.result() and after.result() != here
        assert worker.call(threading.get_ident).result() == here  # cheap, idle: inline
        failed = worker.call(int, "x")  # inline, an error is handed over, not raised
        with pytest.raises(ValueError):
            failed.result()
        cheap = False
        assert worker.call(threading.get_ident).result() != here


def test_the_send_loop_runs_on_uvloop_when_installed_and_asyncio_without(
    files: Callable[..., tuple[Path, Path]], sink: Callable[..., Sink]
) -> None:
    from mailctl.core.bulk.engine import loop_factory

    uvloop = pytest.importorskip("uvloop")
    assert loop_factory() is uvloop.new_event_loop  # every other test here sends on it
    csv, template = files(30)
    server_ = sink()
    # Without uvloop (Windows, or not installed): asyncio's loop, the same result.
    code = (
        "import sys; sys.modules['uvloop'] = None\n"
        "from mailctl.core.bulk.engine import loop_factory\n"
        "assert loop_factory() is None\n"
        "sys.argv = ['mailctl', *sys.argv[1:]]\n"
        "from mailctl.__main__ import main\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "bulk-send", str(csv), str(template), "--send", "--json",
         "--server", f"127.0.0.1:{server_.port}", "--no-tls"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["data"]["sent"] == 30
    stored = server_.stored()
    assert len(stored) == 30 and set(stored.values()) == {1}
