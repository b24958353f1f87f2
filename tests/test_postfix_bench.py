"""`mailctl bench` against a real Postfix: a connection rate limit is reported as it happened."""

from __future__ import annotations

import json

import pytest
from servers.postfix import PostfixServer
from typer.testing import CliRunner

from mailctl.cli.app import app
from mailctl.errors import ExitCode

RATE = 20


def test_connection_rate_limit_is_partial_with_codes_and_every_attempt(
    postfix: PostfixServer,
) -> None:
    # A service of its own: a fresh budget of RATE connections per anvil_rate_time_unit.
    port = postfix.add_service(smtpd_client_connection_rate_limit=RATE)
    mark = postfix.quiet_mark()
    result = CliRunner().invoke(
        app,
        ["bench", "--server", f"{postfix.host}:{port}", "--no-tls", "--mode", "new",
         "-n", "50", "-c", "5", "--to", "bob@example.org", "--json"],
    )  # fmt: skip
    assert "Traceback" not in result.output
    data = json.loads(result.stdout)
    run = data["data"]["runs"][0]
    assert (run["sent"], run["failed"], run["unknown"]) == (RATE, 50 - RATE, 0)
    assert run["connections_attempted"] == 50
    assert run["connections_opened"] == RATE
    assert run["connections_failed"] == 50 - RATE
    # By reply code and text: "421 4.7.0 postfix.mailctl.test Error: too many connections
    # from 127.0.0.1".
    [group] = run["failure_groups"]
    assert group["reason"] == "421" and group["count"] == 50 - RATE
    assert group["text"].startswith("421 4.7.0 ")
    assert "too many connections from 127.0.0.1" in group["text"]
    assert run["failures_by_reason"] == {"421": 50 - RATE}
    assert (data["status"], data["exit_code"]) == ("partial", ExitCode.TEMPFAIL)
    assert result.exit_code == ExitCode.TEMPFAIL
    # Postfix saw every attempt: the 30 refused ones are in its log too.
    postfix.wait_log(
        rf"Connection rate limit exceeded: \d+ from \S+ for service 127\.0\.0\.1:{port}",
        since=mark,
        count=50 - RATE,
    )


@pytest.mark.parametrize("mode", ["pipeline", "reuse"])
def test_refusals_at_the_hard_error_limit_count_as_refused(
    postfix: PostfixServer, mode: str
) -> None:
    """Every message refused (554); Postfix's third error comes with its 421 and it closes.

    The 421 ends the connection but does not decide the message: it was refused for good,
    in pipeline mode as in reuse mode (aiosmtplib), so retrying will not help (69).
    """
    result = CliRunner().invoke(
        app,
        ["bench", "--server", f"{postfix.host}:{postfix.plain_port}", "--no-tls", "--mode",
         mode, "-n", "6", "-c", "1", "--to", "reject@refused.test", "--json"],
    )  # fmt: skip
    assert "Traceback" not in result.output
    data = json.loads(result.stdout)
    run = data["data"]["runs"][0]
    assert (run["sent"], run["failed"]) == (0, 6)
    assert run["failures_by_reason"] == {"554": 6}, run["failure_groups"]
    assert run["connections_opened"] > 1  # each 421 closed one
    assert (data["status"], result.exit_code) == ("error", ExitCode.UNAVAILABLE)
