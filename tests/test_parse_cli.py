"""`mailctl parse`: the human view (inert on a real terminal), --json, --attachments, stdin,
and one-line errors with sysexits codes for bad input (issue 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from terminal import child_env, run_on_terminal
from typer.testing import CliRunner

from mailctl.cli.app import app

runner = CliRunner()

HOSTILE = (
    b"From: =?utf-8?q?=1B[2J=1B]8;;http://evil.example/=07Boss=1B]8;;=07?= <boss@example.org>\r\n"
    b"To: you@example.org\r\n"
    b"Subject: [bold red]URGENT[/] \x1b[31mred\x1b[0m \xc2\x9b2J \xe2\x80\xaegpj.exe"
    b" =?utf-8?q?over=0Dwrite?=\r\n"
    b"Date: Tue, 1 Oct 2024 10:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    b"line one\r\n\x1b[1A\x1b[2Kfake line\r\n[link=http://evil.example]click[/link]\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\n"
    b"Content-Disposition: attachment; filename*=utf-8''%1B%5B31m..%2F..%2Fevil%E2%80%AE.sh\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nZXZpbA==\r\n--b--\r\n"
)


def _acting(raw: bytes) -> list[bytes]:
    """The bytes in terminal output that a terminal would act on (none may come from mail)."""
    return [
        token for token in (b"\x1b", b"\x07", b"\xc2\x9b", b"\xe2\x80\xae", b"\x00") if token in raw
    ]


def test_the_human_view_is_inert_on_a_real_terminal(tmp_path: Path) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes(HOSTILE)
    env = {k: v for k, v in child_env().items() if k != "NO_COLOR"}  # colours allowed
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    run = run_on_terminal(
        ["parse", str(message), "--attachments", str(tmp_path / "files")], columns=100, env=env
    )
    assert run.code == 0, run.terminal
    assert _acting(run.terminal) == [], run.terminal
    shown = run.terminal.decode()
    assert "[bold red]URGENT[/]" in shown  # markup stays text
    assert "\\x1b[31mred\\x1b[0m" in shown and "\\u202egpj.exe" in shown
    assert "\\x1b[1A\\x1b[2Kfake line" in shown and "over\\x0dwrite" in shown
    assert "[link=http://evil.example]click[/link]" in shown
    saved = list((tmp_path / "files").iterdir())
    assert [p.name for p in saved] == ["evil.sh"]
    assert saved[0].read_bytes() == b"evil"


def test_json_has_the_message_and_the_saved_files(tmp_path: Path) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes(HOSTILE)
    result = runner.invoke(
        app, ["parse", str(message), "--json", "--attachments", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)["data"]
    assert data["source"] == str(message)
    parsed = data["message"]
    assert parsed["subject"].startswith("[bold red]URGENT[/] \x1b[31mred")
    assert parsed["attachments"][0]["name"] == "\x1b[31m../../evil\u202e.sh"
    (saved,) = data["saved"]
    assert Path(saved["path"]).parent == tmp_path / "out"
    assert saved["sha256"] == parsed["attachments"][0]["sha256"]
    assert saved["size"] == 4


def test_stdin_with_a_dash() -> None:
    result = runner.invoke(app, ["parse", "-"], input=b"Subject: from stdin\n\nhello\n")
    assert result.exit_code == 0, result.output
    assert "Subject:     from stdin" in result.stdout
    assert result.stdout.rstrip().endswith("hello")


def test_html_only_is_shown_as_text_never_as_html() -> None:
    html = b"<html><head><style>p{}</style></head><body><p>Hi <b>there</b></p>"
    html += b"<script>alert(1)</script><div>bye</div></body></html>"
    raw = b"Subject: h\nContent-Type: text/html; charset=utf-8\n\n" + html + b"\n"
    result = runner.invoke(app, ["parse", "-"], input=raw)
    assert result.exit_code == 0, result.output
    assert "<" not in result.stdout.split("Size:")[1]
    assert "Hi there" in result.stdout and "bye" in result.stdout
    assert "alert" not in result.stdout and "p{}" not in result.stdout


def _one_line_error(args: list[str], stdin: bytes | None = None) -> tuple[int, str, dict[str, Any]]:
    human = runner.invoke(app, args, input=stdin)
    assert human.stdout == ""
    lines = human.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mailctl: "), human.stderr
    assert "Traceback" not in human.stderr
    machine = runner.invoke(app, [*args, "--json"], input=stdin)
    envelope = json.loads(machine.stdout)
    assert machine.exit_code == human.exit_code == envelope["exit_code"]
    return human.exit_code, lines[0], envelope["errors"][0]


def test_a_missing_file_is_66(tmp_path: Path) -> None:
    code, line, error = _one_line_error(["parse", str(tmp_path / "nope.eml")])
    assert code == 66 and "does not exist" in line and error["code"] == "no_input"


def test_a_limit_is_65_naming_it() -> None:
    bomb = b"Subject: " + b"x" * (1024 * 1024) + b"\r\n\r\nhi\r\n"
    code, line, error = _one_line_error(["parse", "-"], bomb)
    assert code == 65 and error["code"] == "message_unparseable"
    assert "ParseLimits.max_header_line" in line
    assert error["details"] == {"limit": "max_header_line", "value": 65536}


def test_an_endless_stdin_is_refused_at_the_input_limit(tmp_path: Path) -> None:
    """A huge base64 part streamed in: read up to MAILCTL_MAX_INPUT, never all of it."""
    out_file, err_file = (tmp_path / "out").open("wb"), (tmp_path / "err").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailctl", "parse", "-"],
        stdin=subprocess.PIPE,
        stdout=out_file,
        stderr=err_file,
        env={**child_env(), "MAILCTL_MAX_INPUT": "8M", "PYTHONPATH": os.getcwd()},
    )
    assert proc.stdin is not None
    sent = 0

    def feed() -> None:
        nonlocal sent
        assert proc.stdin is not None
        head = b"From: a@x.org\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        line = b"QUFB" * 19 + b"\r\n"
        try:
            proc.stdin.write(head)
            while sent < 1024 * 1024 * 1024:  # up to 1 GiB, never reached
                proc.stdin.write(line * 1000)
                sent += len(line) * 1000
        except (BrokenPipeError, ValueError):
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        proc.wait(timeout=60)
    finally:
        proc.kill()
        writer.join(timeout=10)
        proc.stdin.close()
        out_file.close()
        err_file.close()
    err = (tmp_path / "err").read_bytes()
    assert (tmp_path / "out").read_bytes() == b""
    assert proc.returncode == 65, err
    assert b"over the 8 MiB limit" in err and err.count(b"\n") == 1
    assert sent < 64 * 1024 * 1024


def test_an_attachment_folder_that_cannot_be_made_is_73(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    code, line, error = _one_line_error(
        ["parse", "-", "--attachments", str(tmp_path / "file" / "sub")], HOSTILE
    )
    assert "attachment folder" in line
    assert code == 73 and error["code"] == "cant_create"


def test_json_output_escapes_what_a_terminal_would_act_on() -> None:
    """--json printed to a terminal: json.dumps escapes C0 controls (ESC) but, with
    ensure_ascii off, writes C1 controls (U+009B is CSI), bidi overrides and line separators
    raw. They are written as JSON escapes instead: the same data, nothing a terminal acts on."""
    raw = (
        "Subject: a\u202eb \u009b2J c\u2028d\u2029e \x7f\r\n"
        "From: =?utf-8?q?=C2=9B31m?= <a@example.org>\r\n\r\nbody \u2066x\u2069\r\n"
    ).encode()
    result = runner.invoke(app, ["parse", "-", "--json"], input=raw)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for char in ("\u202e", "\u009b", "\u2028", "\u2029", "\x7f", "\u2066", "\u2069", "\x1b"):
        assert char not in out, repr(char)
    parsed = json.loads(out)["data"]["message"]
    assert parsed["subject"] == "a\u202eb \u009b2J c\u2028d\u2029e \x7f"
    assert parsed["from"][0]["name"] == "\u009b31m"
    assert parsed["text"] == "body \u2066x\u2069\r\n"
