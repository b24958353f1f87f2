"""`mailctl send` against a real Postfix (tests/servers/postfix.py): what the server said."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from servers.postfix import PostfixServer
from typer.testing import CliRunner, Result

from mailctl.cli.app import app

runner = CliRunner()

MESSAGE = ["--from", "sender@example.org", "--subject", "postfix test", "--body", "hello"]


def invoke(args: Sequence[str], tmp_path: Path, server: PostfixServer) -> Result:
    env = {
        "MAILCTL_CONFIG": str(tmp_path / "no-config.toml"),
        "NO_COLOR": "1",
        "MAILCTL_PASSWORD": server.password,
    }
    result = runner.invoke(app, list(args), env=env, catch_exceptions=False)
    assert server.password not in result.stdout + result.stderr
    return result


def submission(server: PostfixServer) -> list[str]:
    return [
        f"--server={server.host}:{server.submission_port}",
        "--starttls",
        "--ca-file",
        str(server.ca_pem),
        "--user",
        server.user,
    ]


def plain(server: PostfixServer, port: int | None = None) -> list[str]:
    return [f"--server={server.host}:{port or server.plain_port}", "--no-tls"]


def test_smoke_submission_starttls_auth(postfix: PostfixServer, tmp_path: Path) -> None:
    mark = postfix.log_mark()
    result = invoke(
        ["send", *MESSAGE, "--to", "bob@example.org", *submission(postfix), "--json"],
        tmp_path,
        postfix,
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)["data"]
    assert data["final_reply"]["code"] == 250
    assert data["queue_id"] and data["auth_mechanism"] == "PLAIN"
    assert data["tls"]["version"].startswith("TLSv1.")
    log = postfix.wait_log(rf"{data['queue_id']}: to=<bob@example.org>.*status=sent", since=mark)
    assert "sasl_username=mailer" in log


def test_smoke_plain_port(postfix: PostfixServer, tmp_path: Path) -> None:
    for port in (postfix.plain_port, postfix.ratelimit_port):
        result = invoke(
            ["send", *MESSAGE, "--to", "bob@example.org", *plain(postfix, port), "--json"],
            tmp_path,
            postfix,
        )
        assert result.exit_code == 0, result.stdout + result.stderr
        data = json.loads(result.stdout)["data"]
        assert data["final_reply"]["code"] == 250 and data["queue_id"]


def test_submission_refuses_unauthenticated_relay_from_loopback(
    postfix: PostfixServer, tmp_path: Path
) -> None:
    args = [f"--server={postfix.host}:{postfix.submission_port}", "--starttls"]
    result = invoke(
        ["send", *MESSAGE, "--to", "bob@example.org", *args, "--ca-file", str(postfix.ca_pem)],
        tmp_path,
        postfix,
    )
    assert result.exit_code == 69, result.stdout + result.stderr
    assert "554" in result.stderr and "Access denied" in result.stderr
