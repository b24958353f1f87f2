"""bulk-send against a real Postfix (tests/servers/postfix.py): STARTTLS and SASL on the
submission port, refusals from its recipient map, the 421 at its hard error limit and the
421 past its connection count limit come from the real thing.

What Postfix queued is compared with the journal: every row sent has its own queue id,
refused rows are failed or deferred, nothing is sent twice.
"""

from __future__ import annotations

import csv as csv_module
import json
from collections import Counter
from pathlib import Path
from typing import Any

from servers.postfix import PostfixServer
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.core.bulk.models import BulkRequest
from mailctl.core.bulk.run import bulk_send
from mailctl.models import ResolvedServer, Security, ServerSettings, Timeouts

FAST = Timeouts(connect=10.0, command=20.0, data=20.0)
TEMPLATE = (
    "From: Sender <sender@example.org>\nTo: <{{ email }}>\nSubject: row {{ n }}\n\nrow {{ n }}\n"
)


def write(tmp_path: Path, addresses: list[str]) -> tuple[Path, Path]:
    csv = tmp_path / "rows.csv"
    lines = [
        "n,email,cc",
        *(
            f"{n},{address},{'copy@example.org' if n == 2 else ''}"
            for n, address in enumerate(addresses)
        ),
    ]
    csv.write_text("\n".join(lines) + "\n")
    template = tmp_path / "letter.txt"
    template.write_text(TEMPLATE)
    return csv, template


def report(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv_module.DictReader(handle))


def test_submission_with_starttls_and_auth_sends_each_row_once(
    postfix: PostfixServer, tmp_path: Path
) -> None:
    addresses = [f"user{n}@example.org" for n in range(20)]
    addresses[5] = "unknown@refused.test"  # 550 5.1.1: failed, never retried
    addresses[9] = "later@refused.test"  # 450 4.2.0: retried, then deferred
    csv, template = write(tmp_path, addresses)
    out = tmp_path / "report.csv"
    result = CliRunner().invoke(
        app,
        [
            "bulk-send", str(csv), str(template), "--send", "--json", "-c", "3",
            "--retries", "1", "--report", str(out),
            "--server", f"{postfix.host}:{postfix.submission_port}", "--starttls",
            "--user", postfix.user, "--ca-file", str(postfix.ca_pem),
        ],
        env={"MAILCTL_PASSWORD": postfix.password, "NO_COLOR": "1"},
    )  # fmt: skip
    assert result.exit_code == 69, result.output  # the worst class: a permanent refusal
    data = json.loads(result.stdout)["data"]
    assert (data["sent"], data["failed"], data["deferred"]) == (18, 1, 1)
    lines = report(out)
    by_status = Counter(line["status"] for line in lines)
    assert by_status == {"sent": 18, "failed": 1, "deferred": 1}
    failed = next(line for line in lines if line["status"] == "failed")
    assert (failed["recipient"], failed["code"], failed["attempts"]) == (
        "unknown@refused.test", "550", "1",
    )  # fmt: skip
    deferred = next(line for line in lines if line["status"] == "deferred")
    assert (deferred["code"], deferred["attempts"]) == ("450", "2")
    queue_ids = [line["queue_id"] for line in lines if line["status"] == "sent"]
    assert len(set(queue_ids)) == 18 and "" not in queue_ids  # 18 messages queued, once each


def test_the_421_at_the_hard_error_limit_costs_no_row(
    postfix: PostfixServer, tmp_path: Path
) -> None:
    """Postfix answers 421 and closes after HARD_ERROR_LIMIT refusals in a row on one session
    (a delivered message resets the count): the rows after it go on a new session, none is
    lost or sent twice."""
    addresses = [f"x{n}@refused.test" if n % 10 < 4 else f"user{n}@example.org" for n in range(30)]
    csv, template = write(tmp_path, addresses)
    out = tmp_path / "report.csv"
    settings = ServerSettings(postfix.host, postfix.plain_port, Security.NONE, timeouts=FAST)
    request = BulkRequest(
        csv=csv, template=template, send=True, concurrency=1, retries=3, retry_base=0.01,
        report=out,
    )  # fmt: skip
    result = bulk_send(request, server=ResolvedServer(settings=settings))
    assert (result.sent, result.failed, result.deferred, result.unknown) == (18, 12, 0, 0)
    assert result.exit_code == 69 and result.status == "partial"
    assert result.connections_opened > 1  # the 421s closed sessions
    lines = report(out)
    assert {line["code"] for line in lines if line["status"] == "failed"} == {"554"}
    queue_ids = [line["queue_id"] for line in lines if line["status"] == "sent"]
    assert len(set(queue_ids)) == 18


def test_the_connection_count_limit_shrinks_the_pool(
    postfix: PostfixServer, tmp_path: Path
) -> None:
    """`smtpd_client_connection_count_limit = 2` against -c 6: "421 4.7.0 too many
    connections"; AIMD gives way and every row is sent once."""
    port = postfix.add_service(smtpd_client_connection_count_limit=2)
    # Enough rows that the six sessions overlap even on an idle machine (with 40, the
    # first two could send everything before the others connected: no 421 to see).
    csv, template = write(tmp_path, [f"user{n}@example.org" for n in range(300)])
    out = tmp_path / "report.csv"
    settings = ServerSettings(postfix.host, port, Security.NONE, timeouts=FAST)
    request = BulkRequest(
        csv=csv, template=template, send=True, concurrency=6, retry_base=0.01, report=out
    )
    result = bulk_send(request, server=ResolvedServer(settings=settings))
    assert (result.sent, result.exit_code) == (300, 0)
    assert result.connections_attempted > result.connections_opened
    queue_ids = [line["queue_id"] for line in report(out)]
    assert len(set(queue_ids)) == 300


def _run(
    tmp_path: Path, port: int, addresses: list[str], template: str = TEMPLATE, **overrides: object
) -> tuple[Any, list[dict[str, str]]]:
    """bulk_send to the Postfix service on `port` (-c 2, one retry); the result, the report."""
    csv, letter = write(tmp_path, addresses)
    letter.write_text(template)
    out = tmp_path / "report.csv"
    settings = ServerSettings("127.0.0.1", port, Security.NONE, timeouts=FAST)
    options: dict[str, object] = {"concurrency": 2, "retries": 1, "retry_base": 0.01}
    options.update(overrides)
    request = BulkRequest(csv=csv, template=letter, send=True, report=out, **options)  # type: ignore[arg-type]
    result = bulk_send(request, server=ResolvedServer(settings=settings))
    return result, report(out)


def test_the_connection_rate_limit_defers_the_rest_and_loses_nothing(
    postfix: PostfixServer, tmp_path: Path
) -> None:
    """`smtpd_client_connection_rate_limit = 3` (per 60 s): a fourth connection gets
    "421 4.7.0 Error: too many connections"; with 2 messages a connection, at most 6 rows
    go out, the others are deferred (never failed, never unknown) for a later run."""
    port = postfix.add_service(smtpd_client_connection_rate_limit=3)
    result, lines = _run(
        tmp_path, port, [f"user{n}@example.org" for n in range(20)], max_per_connection=2
    )
    sent = [line for line in lines if line["status"] == "sent"]
    assert 2 <= len(sent) <= 6, lines
    assert {line["status"] for line in lines} <= {"sent", "deferred", "pending"}, lines
    assert len({line["queue_id"] for line in sent}) == len(sent)
    assert result.failed == 0 and result.unknown == 0
    assert result.exit_code == 75  # try again later
    assert result.resume_command is None or "--send" in result.resume_command


def test_a_message_over_the_size_limit_fails_alone(postfix: PostfixServer, tmp_path: Path) -> None:
    """`message_size_limit`: the big row is refused for good (552 5.3.4, permanent, at MAIL
    with SIZE= or after the dot), the rows around it are sent once each."""
    port = postfix.add_service(message_size_limit=4000)
    template = (
        "From: Sender <sender@example.org>\nTo: <{{ email }}>\nSubject: row {{ n }}\n\n"
        "{% if n == '3' %}{{ 'x' * 60 + '\\n' }}{% for i in range(100) %}"
        "{{ 'y' * 60 }}\n{% endfor %}{% endif %}row {{ n }}\n"
    )
    result, lines = _run(tmp_path, port, [f"user{n}@example.org" for n in range(8)], template)
    by_status = Counter(line["status"] for line in lines)
    assert by_status == {"sent": 7, "failed": 1}, lines
    failed = next(line for line in lines if line["status"] == "failed")
    assert failed["recipient"] == "user3@example.org", failed
    # Postfix advertised SIZE 4000: refused before MAIL (never sent), or 552 from the server
    assert failed["code"] == "" and "at most 4000" in failed["text"], failed
    assert result.exit_code == 69


def test_452_too_many_recipients_is_transient_and_sends_no_row_twice(
    postfix: PostfixServer, tmp_path: Path
) -> None:
    """`smtpd_recipient_limit = 1`: a row with To and Cc gets "452 4.5.3 Error: too many
    recipients" for its second RCPT (RFC 5321 4.5.3.1.10): deferred with that reply after
    its retry, nothing delivered for it (no partial copy), the one-recipient rows sent."""
    port = postfix.add_service(smtpd_recipient_limit=1)
    template = (
        "From: Sender <sender@example.org>\nTo: <{{ email }}>\nCc: {{ cc }}\n"
        "Subject: row {{ n }}\n\nrow\n"
    )
    result, lines = _run(tmp_path, port, [f"user{n}@example.org" for n in range(6)], template)
    by_status = Counter(line["status"] for line in lines)
    assert by_status == {"sent": 5, "deferred": 1}, lines
    deferred = next(line for line in lines if line["status"] == "deferred")
    assert "user2@example.org" in deferred["recipient"], deferred
    assert deferred["code"] == "452" and deferred["queue_id"] == "", deferred
    assert result.exit_code == 75
