"""`send --allow-partial` lists refused recipients: at 80 columns each address and reply whole."""

from __future__ import annotations

from pathlib import Path

from servers.smtp_server import TEST_PASSWORD, SmtpTestServer
from typer.testing import CliRunner

from mailctl.cli.app import app

GONE = "engineering-notifications-department@subsidiary-of-example.com"
TEXT = "5.1.1 Recipient address rejected: User unknown in virtual mailbox table"


def test_refused_recipients_fit_80_columns(smtp_server: SmtpTestServer, tmp_path: Path) -> None:
    smtp_server.reject(GONE, code=550, text=TEXT)
    result = CliRunner().invoke(
        app,
        [
            "send", "--from", "a@example.org", "--to", "bob@example.org", "--to", GONE,
            "--body", "x", "--allow-partial", f"--server=127.0.0.1:{smtp_server.port}",
            "--starttls", "--ca-file", str(smtp_server.ca_file), "--user", "alice",
        ],
        env={
            "MAILCTL_CONFIG": str(tmp_path / "none.toml"),
            "MAILCTL_PASSWORD": TEST_PASSWORD,
            "NO_COLOR": "1",
            "COLUMNS": "80",
        },
    )  # fmt: skip
    assert result.exit_code == 69, result.stderr
    # The list; the error line after it stays one line by design (errors are one line).
    lines = result.stderr.split("\nmailctl: ", 1)[0].splitlines()
    assert all(len(line) <= 80 for line in lines), result.stderr
    assert "…" not in result.stderr
    assert any(GONE in line for line in lines), result.stderr
    for word in TEXT.split():
        assert any(word in line for line in lines), (word, result.stderr)
