"""Start-up stays cheap: what TAB completion, --version and --help may import, and the lazy group.

TAB completion runs the whole program on every key press, and `--help` is the first thing a
new user runs: benchmarks/send_vs_swaks.py measures them against a bare `import typer`; these
tests pin the rule that keeps them there (DESIGN.md: heavy libraries are imported inside the
commands that need them), whatever the command modules grow to import at their top.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from mailctl.cli.app import app as mailctl_app
from mailctl.cli.lazy import LazyCommand, lazy_group

# Libraries that cost milliseconds to import (asyncio, ssl and email ~20 ms together here) or
# touch the system (keyring): none is needed to list commands, complete a word or print help.
HEAVY = (
    "rich",
    "aiosmtplib",
    "asyncio",
    "ssl",
    "email",
    "keyring",
    "imapclient",
    "jinja2",
    "cryptography",
    "uvloop",
)

# Runs mailctl's real entry point in a fresh interpreter, then records which HEAVY packages
# were imported (at exit, so whatever the command did is counted).
_PROBE = f"""
import atexit, os, sys

def _record():
    loaded = [name for name in {HEAVY!r} if name in sys.modules]
    with open(os.environ["STARTUP_PROBE_OUT"], "w") as out:
        out.write(" ".join(loaded))

atexit.register(_record)
sys.argv = ["mailctl", *sys.argv[1:]]
from mailctl.__main__ import main
main()
"""

BASH = "complete_bash"
SEND_ARGS = ["send", "--from", "a@example.org", "--to", "b@example.org", "--body", "hello"]
CASES = [
    # (id, argv, completion environment, a word the output must contain)
    ("tab-command-name", [], {"COMP_WORDS": "mailctl se", "COMP_CWORD": "1"}, "sendmail"),
    ("tab-send-option", [], {"COMP_WORDS": "mailctl send --st", "COMP_CWORD": "2"}, "--starttls"),
    ("tab-account-sub", [], {"COMP_WORDS": "mailctl account l", "COMP_CWORD": "2"}, "list"),
    ("tab-bench-option", [], {"COMP_WORDS": "mailctl bench --conc", "COMP_CWORD": "2"}, "--"),
    ("tab-sink-option", [], {"COMP_WORDS": "mailctl sink --li", "COMP_CWORD": "2"}, "--listen"),
    ("version", ["--version"], None, "mailctl"),
    ("help", ["--help"], None, "account"),
    ("no-args", [], None, "send"),
    ("send-help", ["send", "--help"], None, "--starttls"),
    ("sendmail-help", ["sendmail", "--help"], None, "sendmail"),
    ("account-help", ["account", "--help"], None, "list"),
    ("account-add-help", ["account", "add", "--help"], None, "--smtp-port"),
    ("bench-help", ["bench", "--help"], None, "--server"),
    ("sink-help", ["sink", "--help"], None, "--listen"),
    ("completion-help", ["completion", "--help"], None, "bash"),
]


def _run_probe(
    argv: list[str], completion: dict[str, str] | None, tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    out = tmp_path / "modules"
    env = {k: v for k, v in os.environ.items() if not k.startswith("_MAILCTL_COMPLETE")}
    env.update({"STARTUP_PROBE_OUT": str(out), "COLUMNS": "100"})
    if completion is not None:
        env.update({"_MAILCTL_COMPLETE": BASH, **completion})
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc, set(out.read_text().split()) if out.exists() else {"<no report>"}


@pytest.mark.parametrize(
    ("argv", "completion", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_listing_completing_and_help_import_no_heavy_library(
    argv: list[str], completion: dict[str, str] | None, expected: str, tmp_path: Path
) -> None:
    proc, loaded = _run_probe(argv, completion, tmp_path)
    shown = proc.stdout + proc.stderr
    assert expected in shown, shown
    assert proc.returncode in (0, 64), shown  # bare `mailctl` prints help and exits 64
    # Rich may draw help panels (the first-run issue turns them on); it is loaded only then.
    rich_help = completion is None and "--help" in argv and "╭" in proc.stdout
    allowed = {"rich"} if rich_help else set()
    assert loaded - allowed == set(), f"{' '.join(argv) or completion} imported {sorted(loaded)}"


def test_the_probe_sees_a_heavy_import(tmp_path: Path) -> None:
    """Guard the guard: a command that does import asyncio is reported."""
    proc, loaded = _run_probe(
        [*SEND_ARGS, "--server", "127.0.0.1:9", "--no-tls", "--connect-timeout", "2"],
        None,
        tmp_path,
    )
    assert proc.returncode != 0  # nothing listens on the discard port
    assert {"asyncio", "email"} <= loaded, proc.stderr


def test_a_bulk_send_dry_run_imports_no_network_library(tmp_path: Path) -> None:
    """The dry run (bulk-send's default) renders and checks rows, it sends nothing: the send
    loop (asyncio, the pool, the SMTP client, ssl) is imported only for --send."""
    csv = tmp_path / "rows.csv"
    csv.write_text("email,name\nann@example.org,Ann\n", encoding="utf-8")
    template = tmp_path / "letter.txt"
    template.write_text("From: me@example.org\nTo: {{ name }} <{{ email }}>\n\nHi\n")
    proc, loaded = _run_probe(["bulk-send", str(csv), str(template), "--json"], None, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"dry_run": true' in proc.stdout
    assert {"email", "jinja2"} <= loaded  # the probe saw the imports that the run does need
    assert not loaded & {"asyncio", "ssl", "aiosmtplib"}, sorted(loaded)


# ---------------------------------------------------------------------------------------------
# The lazy root group (mailctl/cli/lazy.py), on a small app whose registrations record that
# they ran: a registration that did not run did not import its module.

SEND = "Send one message: from flags, or an existing .eml as is."
ACCOUNT = "Manage accounts: servers, the default account, passwords in the keyring."


def _lazy_app(built: list[str]) -> typer.Typer:
    def register_send(app: typer.Typer) -> None:
        from mailctl.cli import send

        built.append("send")
        app.command("send")(send.send_command)

    def register_account(app: typer.Typer) -> None:
        from mailctl.cli import account

        built.append("account")
        app.add_typer(account.app, name="account")

    app = typer.Typer(
        cls=lazy_group(
            LazyCommand("send", SEND, register_send),
            LazyCommand("account", ACCOUNT, register_account),
        ),
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
    )

    @app.callback()
    def main() -> None:
        """A test app."""

    return app


def test_help_lists_every_command_without_building_any() -> None:
    built: list[str] = []
    result = CliRunner().invoke(_lazy_app(built), ["--help"])
    assert result.exit_code == 0, result.output
    assert "send " in result.output and "Send one message: from flags" in result.output
    assert "account " in result.output and "Manage accounts" in result.output
    assert built == []


def test_a_command_is_built_when_it_runs_and_alone() -> None:
    built: list[str] = []
    result = CliRunner().invoke(
        _lazy_app(built),
        [*SEND_ARGS, "--server", "127.0.0.1:25", "--subject", "hi", "--dry-run"],
    )
    assert result.exit_code == 0, result.output
    assert "Subject: hi" in result.stdout
    assert built == ["send"]


def test_a_sub_app_is_built_with_its_subcommands() -> None:
    built: list[str] = []
    result = CliRunner().invoke(_lazy_app(built), ["account", "--help"])
    assert result.exit_code == 0, result.output
    assert "set-password" in result.output
    assert built == ["account"]


def test_a_mistyped_command_is_still_suggested() -> None:
    built: list[str] = []
    result = CliRunner().invoke(_lazy_app(built), ["sedn"])
    assert result.exit_code == 2
    assert "Did you mean 'send'?" in result.output
    assert built == []


def test_listing_summaries_match_the_built_commands() -> None:
    """A table summary that drifts from the command's own help would show stale text."""
    for app in (_lazy_app([]), mailctl_app):
        group = typer.main.get_command(app)
        ctx = typer.Context(group)
        listed = group.get_help(ctx)
        names = group.list_commands(ctx)  # type: ignore[attr-defined]
        for name in names:
            group.get_command(ctx, name)  # type: ignore[attr-defined]  # builds it
        assert group.get_help(ctx) == listed
        assert names == group.list_commands(ctx)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# open_socket answers an IP address without the resolver thread; names still resolve.


@pytest.mark.parametrize(
    ("host", "family"), [("127.0.0.1", "v4"), ("localhost", "v4"), ("::1", "v6")]
)
async def test_open_socket_connects_to_an_address_or_a_name(host: str, family: str) -> None:
    import asyncio
    import socket

    from mailctl.protocols.smtp.connect import open_socket

    kind = socket.AF_INET6 if family == "v6" else socket.AF_INET
    try:
        server = socket.create_server(("::1" if family == "v6" else "127.0.0.1", 0), family=kind)
    except OSError:
        pytest.skip(f"no {family} loopback here")
    with server:
        port = server.getsockname()[1]
        sock = await asyncio.wait_for(
            open_socket(host, port, timeout=5, source_address=None, where=f"{host}:{port}"), 10
        )
        with sock:
            accepted, _ = server.accept()
            accepted.close()
            assert sock.getpeername()[:2] == server.getsockname()[:2]


async def test_open_socket_still_names_a_host_that_does_not_resolve() -> None:
    from mailctl.errors import HostNotFoundError
    from mailctl.protocols.smtp.connect import open_socket

    with pytest.raises(HostNotFoundError, match=r"no-such-host\.invalid"):
        await open_socket(
            "no-such-host.invalid",
            25,
            timeout=5,
            source_address=None,
            where="no-such-host.invalid:25",
        )
