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
    lines = ["n,email", *(f"{n},{address}" for n, address in enumerate(addresses))]
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
    csv, template = write(tmp_path, [f"user{n}@example.org" for n in range(40)])
    out = tmp_path / "report.csv"
    settings = ServerSettings(postfix.host, port, Security.NONE, timeouts=FAST)
    request = BulkRequest(
        csv=csv, template=template, send=True, concurrency=6, retry_base=0.01, report=out
    )
    result = bulk_send(request, server=ResolvedServer(settings=settings))
    assert (result.sent, result.exit_code) == (40, 0)
    assert result.connections_attempted > result.connections_opened
    queue_ids = [line["queue_id"] for line in report(out)]
    assert len(set(queue_ids)) == 40
