"""Every flag, config key and command that mailctl's messages and hints name exists.

A hint that says "use --security tls" when the flag is --tls sends the user to a usage
error. The source is read with ast: every string constant in mailctl/ (f-string pieces
included) that names a `--flag` must name a flag of some mailctl command, taken from the
Typer application itself (plus the help option from its context settings; sendmail's own
options are single-dash and parsed by hand). Hints (`hint=`) that name a config setting
(`key = value`) must name a key the config schema accepts, and `mailctl account X` must
name an account subcommand.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main

from mailctl.cli.app import app
from mailctl.config.schema import ACCOUNT_KEYS, SERVER_KEYS, TOP_KEYS

SOURCE = Path(__file__).resolve().parent.parent / "mailctl"
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9]*(?:-[a-z0-9]+)*)")
SETTING = re.compile(r"(?<![\w.-])([a-z][a-z0-9_]*) = ")
SUBCOMMAND = re.compile(r"\bmailctl ([a-z][a-z0-9-]*) ([a-z][a-z0-9-]*)")


def _commands() -> Any:
    return typer.main.get_command(app)


def _subcommands(group: Any) -> dict[str, Any]:
    """A group's commands through Click's API, which builds those a lazy group only lists."""
    ctx = typer.Context(group)
    return {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}


def known_flags() -> set[str]:
    """Every long option of every mailctl command and subcommand."""
    flags = {name for name in app.info.context_settings["help_option_names"] if name[:2] == "--"}
    pending = [_commands()]
    while pending:
        command = pending.pop()
        for param in command.params:
            flags.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
        if hasattr(command, "list_commands"):
            pending.extend(_subcommands(command).values())
    return flags


def strings(tree: ast.AST) -> Iterator[ast.Constant]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node


def hint_strings(tree: ast.AST) -> Iterator[ast.Constant]:
    """String constants inside a `hint=...` argument (or a *_HINT constant)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword):
            if node.arg == "hint":
                yield from strings(node.value)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id.endswith("HINT") for t in node.targets
        ):
            yield from strings(node.value)


def sources() -> Iterator[tuple[str, ast.AST]]:
    for path in sorted(SOURCE.rglob("*.py")):
        yield str(path.relative_to(SOURCE.parent)), ast.parse(path.read_text(encoding="utf-8"))


def named_flags() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for where, tree in sources():
        for node in strings(tree):
            for flag in FLAG.findall(node.value):
                found.setdefault(flag, []).append(f"{where}:{node.lineno}")
    return found


def test_the_scan_sees_flags_and_the_app_has_them() -> None:
    """Guard the guard: a scanner that finds nothing would pass everything."""
    flags = known_flags()
    assert {"--tls", "--starttls", "--no-tls", "--help", "--smtp-security", "--mode"} <= flags
    named = named_flags()
    assert "--allow-plaintext-auth" in named and "--ca-file" in named


def test_every_flag_a_message_names_exists() -> None:
    flags = known_flags()
    unknown = {flag: where for flag, where in named_flags().items() if flag not in flags}
    assert not unknown, f"flags named in messages that no mailctl command has: {unknown}"


def test_every_setting_a_hint_names_exists() -> None:
    keys = {*SERVER_KEYS, *ACCOUNT_KEYS, *TOP_KEYS}
    unknown = [
        f"{where}:{node.lineno}: {key}"
        for where, tree in sources()
        for node in hint_strings(tree)
        for key in SETTING.findall(node.value)
        if key not in keys
    ]
    assert not unknown, f"config keys named in hints that the schema does not accept: {unknown}"


def test_every_subcommand_a_message_names_exists() -> None:
    groups = {
        name: set(command.list_commands(typer.Context(command)))
        for name, command in _subcommands(_commands()).items()
        if hasattr(command, "list_commands")
    }
    unknown = [
        f"{where}:{node.lineno}: mailctl {group} {sub}"
        for where, tree in sources()
        for node in strings(tree)
        for group, sub in SUBCOMMAND.findall(node.value)
        if group in groups and sub not in groups[group]
    ]
    assert not unknown, f"subcommands named in messages that do not exist: {unknown}"


def test_the_starttls_hint_names_the_flag_send_has(scripted_smtp: Any, tmp_path: Path) -> None:
    """The report that started this: `send` has --tls, not --security tls."""
    import json

    from typer.testing import CliRunner

    server = scripted_smtp()  # offers no STARTTLS
    result = CliRunner().invoke(
        app,
        ["send", "--from", "a@example.org", "--to", "b@example.org", "--body", "x",
         f"--server=127.0.0.1:{server.port}", "--starttls", "--json"],
        env={"MAILCTL_CONFIG": str(tmp_path / "none.toml"), "NO_COLOR": "1"},
    )  # fmt: skip
    assert result.exit_code == 76, result.stdout
    [error] = json.loads(result.stdout)["errors"]
    assert error["code"] == "starttls_unavailable"
    # Issue 8: the server came from --server, so the hint names flags only (an account's
    # block key is named when the server came from an account: test_hints_lead_somewhere).
    assert "--tls" in error["hint"] and "--no-tls" in error["hint"], error


def test_every_flag_a_fix_can_be_worded_as_exists() -> None:
    """cli/hints.py words fixes as flags: each of them must be a flag of some command."""
    from mailctl.cli.hints import _FLAGS

    flags = known_flags()
    worded = {flag for by_value in _FLAGS.values() for flag in by_value.values()}
    assert worded <= flags, worded - flags


def test_every_fix_names_a_setting_that_can_be_worded() -> None:
    """A `Fix("setting", ...)` in the source must name a key of a server block or a flag of
    the wording table: else the hint silently drops it."""
    from mailctl.cli.hints import _FLAGS

    settings = {*SERVER_KEYS, *_FLAGS}
    unknown = [
        f"{where}:{node.lineno}: {node.args[0].value}"
        for where, tree in sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "Fix"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and node.args[0].value not in settings
    ]
    assert not unknown, unknown


# "use --security tls" and "use security tls": an option or a key written as neither.
HALF_NAMED = re.compile(r"\b(?:--)?(security|verify|auth) (tls|starttls|none|true|false)\b")


def test_no_hint_names_a_setting_without_its_flag_or_key_form() -> None:
    found = [
        f"{where}:{node.lineno}: {node.value!r}"
        for where, tree in sources()
        for node in hint_strings(tree)
        if HALF_NAMED.search(node.value)
    ]
    assert not found, found


def test_the_half_named_check_catches_the_reported_wording() -> None:
    assert HALF_NAMED.search("use --security tls (port 465)")
    assert HALF_NAMED.search("use security tls (port 993) if the server supports it")
    assert not HALF_NAMED.search('security = "tls"')
