"""`mailctl bench` against a real Postfix: a connection rate limit is reported as it happened."""

from __future__ import annotations

import json

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
    [group] = run["error_details"]
    assert group["reason"] == "421" and group["count"] == 50 - RATE
    assert group["text"].startswith("421 4.7.0 ")
    assert "too many connections from 127.0.0.1" in group["text"]
    assert run["errors"] == {"421": 50 - RATE}
    assert (data["status"], data["exit_code"]) == ("partial", ExitCode.TEMPFAIL)
    assert result.exit_code == ExitCode.TEMPFAIL
    # Postfix saw every attempt: the 30 refused ones are in its log too.
    postfix.wait_log(
        rf"Connection rate limit exceeded: \d+ from \S+ for service 127\.0\.0\.1:{port}",
        since=mark,
        count=50 - RATE,
    )
