"""How --help looks: rich panels, one placeholder style, defaults shown one way, and Examples.

Commands declare their options plainly (flag, help, maybe a panel); the rules that make every
command's help look alike live here and run when help is asked, on the built Click command,
so an option added anywhere follows them without saying so:
- placeholders are upper-case words: the option's own metavar, else METAVARS by flag, else by
  the flag's last word (`--smtp-port` PORT), else by type (a path is FILE, an int N, a timeout
  SECONDS), else that last word; never Click's `<str>`/`<int>`;
- a default is always `[default: X]`: Typer's own for a real default, and a "(default X)" or
  "X (default)" written in the help text is moved into the same form;
- options without a panel go to one by FLAG_PANELS (output, server) when the command has
  panels, with the Output panel last;
- then the Examples of cli/examples.py, one per line and never wrapped, so each fits 80
  columns and copies as is.

Rich is imported only here, and this module only when help is printed (cli/lazy.py calls
`render_help`): TAB completion and every other run stay without it (tests/test_startup.py).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mailctl.cli.examples import EXAMPLES
from mailctl.cli.options import OUTPUT, SERVER

if TYPE_CHECKING:
    from rich.console import Console

# Placeholders by flag, for options that declare none.
METAVARS: Final[dict[str, str]] = {
    "--from": "ADDRESS",
    "--to": "ADDRESS",
    "--cc": "ADDRESS",
    "--bcc": "ADDRESS",
    "--reply-to": "ADDRESS",
    "--server": "HOST[:PORT]",
    "--listen": "HOST:PORT",
    "--account": "NAME",
    "--user": "USER",
    "--password-command": "COMMAND",
    "--auth": "MECHANISM",
    "--ehlo": "NAME",
    "--subject": "TEXT",
    "--body": "TEXT",
    "--html": "HTML",
    "--header": "HEADER",
    "--attach-name": "NAME",
    "--in-reply-to": "MESSAGE-ID",
    "--references": "MESSAGE-IDS",
    "--eml": "FILE",
    "--mode": "MODE",
    "--protocol": "PROTOCOL",
    "--latency": "MS",
    "--latency-on": "REPLY",
    "--reject-on": "COMMAND",
    "--disconnect-on": "COMMAND",
    "--reject-rate": "P",
    "--disconnect-rate": "P",
    "--reject-code": "CODE",
    "--rate": "R",
    "--size": "BYTES",
    "--max-size": "BYTES",
    "--max-regression": "PERCENT",
    "--loop": "LOOP",
}
# Placeholders by the last word of a flag (`--smtp-port`, `--tls-name`, `--ca-out`).
WORD_METAVARS: Final[dict[str, str]] = {
    "port": "PORT",
    "host": "HOST",
    "name": "NAME",
    "user": "USER",
    "security": "SECURITY",
    "auth": "MECHANISM",
    "command": "COMMAND",
    "file": "FILE",
    "out": "FILE",
    "dir": "DIR",
    "maildir": "DIR",
}
# Panels by flag, for options that declare none, in a command that has panels.
FLAG_PANELS: Final[dict[str, str]] = {
    "--account": SERVER,
    "--connect-timeout": SERVER,
    "--timeout": SERVER,
    "--data-timeout": SERVER,
    "--json": OUTPUT,
    "--quiet": OUTPUT,
    "--dry-run": OUTPUT,
    "--save": OUTPUT,
    "--trace": OUTPUT,
}
_INDENT = "   "
_PREPARED = "_mailctl_help_prepared"
# "(default X)" or "(default: X)" closing a help text, X possibly holding one "(...)".
_DEFAULT_AT_END = re.compile(r"\s*\(default:?\s+((?:[^()]|\([^()]*\))+)\)(\.?)\s*$")
# "mail (default), rcpt, data": the value named before the word.
_DEFAULT_AFTER_VALUE = re.compile(r"\b([\w.:-]+) \(default\)")


def render_help(command: Any, ctx: Any) -> None:
    """Print `command`'s help (Click's format_help, drawn by Typer's rich renderer)."""
    from typer import rich_utils

    _prepare(command, ctx)
    rich_utils.rich_format_help(obj=command, ctx=ctx, markup_mode="rich")
    examples = EXAMPLES.get(_path(ctx))
    if examples:
        _print_examples(rich_utils._get_rich_console(), examples)


def _path(ctx: Any) -> str:
    """`mailctl account add`: the command's names, whatever the program was called."""
    names = []
    while ctx is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["mailctl", *reversed(names[:-1])])


def _print_examples(console: Console, examples: Any) -> None:
    from rich.text import Text

    console.print()
    console.print(Text(" Examples:", style="bold"))
    for number, example in enumerate(examples):
        if number:
            console.print()
        console.print(Text(f"{_INDENT}# {example.what}", style="dim"), soft_wrap=True)
        for line in example.lines:
            # soft_wrap: printed as is, never folded, so the example can be copied whole.
            console.print(Text(_INDENT + line), soft_wrap=True)
    console.print()


def _prepare(command: Any, ctx: Any) -> None:
    """Apply the rules of the module docstring to `command`, once (help can be asked twice in
    one process, as tests do; the rules are not idempotent, escaping above all)."""
    from rich.markup import escape
    from typer.core import TyperArgument, TyperOption

    if getattr(command, _PREPARED, False):
        return
    setattr(command, _PREPARED, True)
    if command.help:
        command.help = escape(_unwrap(command.help))
    params = command.get_params(ctx)
    has_panels = any(getattr(param, "rich_help_panel", None) for param in params)
    for param in params:
        if isinstance(param, TyperOption):
            if has_panels and not param.rich_help_panel:
                param.rich_help_panel = next(
                    (FLAG_PANELS[flag] for flag in param.opts if flag in FLAG_PANELS), None
                )
            if param.metavar is None and not param.is_flag and not param.count:
                param.metavar = _metavar(param)
        elif isinstance(param, TyperArgument):
            _argument_placeholder(param)
        param.help = _default_in_brackets(param, escape(param.help or "")) or None
    # Output last; every other panel keeps the place of its first option (a stable sort).
    command.params.sort(key=lambda param: getattr(param, "rich_help_panel", None) == OUTPUT)


def _unwrap(text: str) -> str:
    """Join the lines of each paragraph (docstrings are wrapped for the source, not for the
    terminal: rich keeps single newlines), except a paragraph Click marks with \\b."""
    paragraphs = text.split("\n\n")
    return "\n\n".join(
        p if p.lstrip().startswith("\b") else " ".join(p.split()) for p in paragraphs
    )


def _metavar(param: Any) -> str:
    """An option's placeholder: by flag; else by the flag's last word (`--smtp-port` PORT);
    else by the type of its value (FILE, SECONDS, N, NUMBER); else the last word itself."""
    for flag in param.opts:
        if flag in METAVARS:
            return METAVARS[flag]
    longest = max(param.opts, key=len)
    last = longest.lstrip("-").rsplit("-", 1)[-1]
    if last in WORD_METAVARS:
        return WORD_METAVARS[last]
    return _metavar_by_type(getattr(param.type, "name", ""), param.type, last)


def _metavar_by_type(kind: str, param_type: Any, last: str) -> str:
    if kind == "path" or getattr(param_type, "func", None) is Path:
        return "FILE"
    if kind in ("float", "int", "integer") and last in ("timeout", "duration", "interval"):
        return "SECONDS"
    if kind in ("int", "integer"):
        return "N"
    if kind == "float":
        return "NUMBER"
    return last.upper()


def _argument_placeholder(param: Any) -> None:
    """An argument shows its name in upper case, with no `<text>` type column beside it."""
    if param.metavar is None:
        param.metavar = (param.name or "arg").upper() + ("..." if param.nargs != 1 else "")
    if param.type.get_metavar(param=param, ctx=None) is None:
        # Typer's panel prints `<text>` for a type with no metavar of its own: a copy of the
        # type whose metavar is empty prints nothing (parsing is the type's own, unchanged).
        kind = type(param.type)
        shown = copy.copy(param.type)
        shown.__class__ = type(f"Shown{kind.__name__}", (kind,), {"get_metavar": _no_metavar})
        param.type = shown


def _no_metavar(_self: Any, param: Any, ctx: Any = None) -> str:
    return ""


def _default_in_brackets(param: Any, text: str) -> str:
    """Move a default written in the help text into `[default: X]`, as Typer shows its own."""
    from rich.markup import escape

    value = None
    match = _DEFAULT_AT_END.search(text)
    if match:
        value = match.group(1)
        text = text[: match.start()] + match.group(2)
    else:
        match = _DEFAULT_AFTER_VALUE.search(text)
        if match:
            value = match.group(1)
            text = text[: match.start()] + value + text[match.end() :]
    if value is None:
        return text
    param.show_default = False  # this one, not Typer's, if it had one
    return f"{text} [dim]{escape(f'[default: {value}]')}[/dim]".strip()
