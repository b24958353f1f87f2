"""`mailctl send` against a real Postfix (tests/servers/postfix.py): what the server said."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from servers.postfix import DATA_REFUSED_SENDER, REJECT_HEADER, PostfixServer
from typer.testing import CliRunner, Result

from mailctl.cli.app import app

runner = CliRunner()

MESSAGE = ["--from", "sender@example.org", "--subject", "postfix test", "--body", "hello"]


def invoke(args: Sequence[str], tmp_path: Path, server: PostfixServer) -> Result:
    return invoke_with_password(args, tmp_path, server, server.password)


def invoke_with_password(
    args: Sequence[str], tmp_path: Path, server: PostfixServer, password: str
) -> Result:
    env = {
        "MAILCTL_CONFIG": str(tmp_path / "no-config.toml"),
        "NO_COLOR": "1",
        "MAILCTL_PASSWORD": password,
    }
    result = runner.invoke(app, list(args), env=env, catch_exceptions=False)
    assert password not in result.stdout + result.stderr
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
    mark = postfix.quiet_mark()
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


# -- 6b: Postfix's 421 at smtpd_hard_error_limit is read and reported ---------------------


def test_hard_error_limit_421_is_reported_not_connection_lost(
    postfix: PostfixServer, tmp_path: Path
) -> None:
    """The third error comes with '421 4.7.0 ... too many errors' in the same segment."""
    mark = postfix.quiet_mark()
    rcpts = ["reject@refused.test", "unknown@refused.test", "other@refused.test", "bob@example.org"]
    to = [arg for rcpt in rcpts for arg in ("--to", rcpt)]
    result = invoke(
        ["send", *MESSAGE, *to, *plain(postfix), "--allow-partial", "--json"], tmp_path, postfix
    )
    assert result.exit_code == 75, result.stdout
    [error] = json.loads(result.stdout)["errors"]
    assert error["code"] == "smtp_transient", error
    assert "421 4.7.0" in error["message"] and "too many errors" in error["message"]
    postfix.wait_log(r"too many errors after RCPT", since=mark)


def test_hard_error_limit_421_is_named_after_the_refusals(
    postfix: PostfixServer, tmp_path: Path
) -> None:
    rcpts = ["reject@refused.test", "unknown@refused.test", "other@refused.test"]
    to = [arg for rcpt in rcpts for arg in ("--to", rcpt)]
    result = invoke(["send", *MESSAGE, *to, *plain(postfix), "--json"], tmp_path, postfix)
    assert result.exit_code == 69, result.stdout
    [error] = json.loads(result.stdout)["errors"]
    assert error["code"] == "smtp_permanent"
    assert "reject@refused.test: 554 5.7.1" in error["message"]
    assert "421 4.7.0" in error["message"] and "too many errors" in error["message"]


# -- 6c: QUIT after every orderly failure (Postfix logs 'lost connection after' otherwise) -


@pytest.fixture(scope="module")
def small_size_port(postfix: PostfixServer) -> int:
    return postfix.add_service(message_size_limit=2000)


def _ends_with_quit(postfix: PostfixServer, mark: int) -> str:
    log = postfix.wait_log(r"disconnect from", since=mark)
    assert "lost connection after" not in log, log
    [disconnect] = [line for line in log.splitlines() if "disconnect from" in line]
    assert "quit=1" in disconnect, log
    return log


CASES = {
    # name: (extra arguments, password, exit code, Postfix log evidence)
    "wrong-password": (["--to", "bob@example.org"], "Wr0ng-pw!x", 77, "authentication failed"),
    "mechanism-not-offered": (["--to", "bob@example.org", "--auth", "cram-md5"], None, 77, None),
    "starttls-not-offered": (["--to", "bob@example.org"], None, 76, None),
    "refused-recipient": (["--to", "reject@refused.test"], None, 69, "reject: RCPT"),
    "refused-data": (["--to", "bob@example.org"], None, 69, "reject: DATA"),
    "refused-after-dot": (["--to", "bob@example.org", "-H", REJECT_HEADER], None, 69, "reject:"),
    "too-large": (["--to", "bob@example.org", "--body", "x" * 3000], None, 65, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_quit_after_every_orderly_failure(
    postfix: PostfixServer, small_size_port: int, tmp_path: Path, case: str
) -> None:
    extra, password, exit_code, evidence = CASES[case]
    if case in ("wrong-password", "mechanism-not-offered"):
        server = submission(postfix)
    elif case == "starttls-not-offered":
        server = [f"--server={postfix.host}:{postfix.plain_port}", "--starttls", "--user", "u"]
    elif case == "too-large":
        server = plain(postfix, small_size_port)
    else:
        server = plain(postfix)
    sender = DATA_REFUSED_SENDER if case == "refused-data" else "sender@example.org"
    message = ["--from", sender, "--subject", "quit test"]
    if "--body" not in extra:
        message += ["--body", "hello"]
    mark = postfix.quiet_mark()
    env_password = password or postfix.password
    result = invoke_with_password(
        ["send", *message, *extra, *server], tmp_path, postfix, env_password
    )
    assert result.exit_code == exit_code, result.stdout + result.stderr
    log = _ends_with_quit(postfix, mark)
    if evidence:
        assert evidence in log


def test_account_test_says_quit_after_a_refused_login(
    postfix: PostfixServer, tmp_path: Path
) -> None:
    """`account test` opens sessions the same way: a 535 there ends with QUIT too."""
    config = tmp_path / "config.toml"
    config.write_text(
        "[accounts.pf]\nfrom = 'a@example.org'\n"
        f"[accounts.pf.smtp]\nhost = '{postfix.host}'\nport = {postfix.submission_port}\n"
        f"security = 'starttls'\nusername = '{postfix.user}'\nca_file = '{postfix.ca_pem}'\n",
        encoding="utf-8",
    )
    config.chmod(0o600)
    mark = postfix.quiet_mark()
    env = {"MAILCTL_CONFIG": str(config), "NO_COLOR": "1", "MAILCTL_PASSWORD": "Wr0ng-pw!x"}
    result = runner.invoke(app, ["account", "test", "pf", "--json"], env=env)
    assert result.exit_code == 77, result.stdout
    assert "Wr0ng-pw!x" not in result.stdout + result.stderr
    _ends_with_quit(postfix, mark)
