"""How --help looks: panels, one placeholder style, defaults shown one way, and Examples.

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
- then the Examples of cli/examples.py: each comment wrapped at spaces (every line again a
  `# ` comment), each command in the lines it is written in (`Example.lines`) when they fit,
  else broken anew between shell words (never inside a quoted string), every broken line
  ending in ` \\` and the next indented two more, so it still pastes into a shell as the same
  command (`example_lines`).

Every line fits the terminal's width (at most 120; under 40 it renders at 40) but one holding a
single word longer than the line, which no break can help. The usage line wraps at spaces, its
continuations under the program's name; a panel title too long for its box is cut with "…".
The panels are drawn here with box characters and `textwrap`, in the layout of Typer's rich
help. Typer's own rich renderer was tried first: it imports rich, markdown-it and pygments
(~45 ms) and lays out ~40 options in ~25-35 ms, which put `mailctl --help` at ~2.8x a bare
`import typer` against the 2.5x budget (issue 7); this module costs what `textwrap` costs. It
is imported only when help is printed (cli/app.py's renderer, through cli/lazy.py), never for
TAB or a run.
"""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from mailctl.cli.examples import EXAMPLES, Example
from mailctl.cli.options import OUTPUT, SERVER

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


def format_help(command: Any, ctx: Any, *, color: bool = False, width: int | None = None) -> str:
    """The whole help of `command`: usage, description, panels, Examples.

    `color` adds ANSI styles (Click's echo strips them when stdout is not a terminal);
    `width` defaults to the terminal's (COLUMNS), at most 120.
    """
    if width is None:
        width = min(shutil.get_terminal_size().columns, 120)
    width = max(width, 40)
    paint = _Paint(color)
    _prepare(command, ctx)
    # Typer writes a required argument as `{NAME}`, which reads like a set of choices.
    usage = re.sub(r"\{([A-Z][A-Z0-9_.-]*)\}", r"\1", command.get_usage(ctx).strip())
    out = ["", *_wrap_usage(usage, width, paint), ""]
    text = (command.help or "").partition("\f")[0].strip()
    for paragraph in (p for p in text.split("\n\n") if p.strip()):
        out += _wrap_paragraph(paragraph, width - 2, " ")
        out.append("")
    for title, rows in _panels(command, ctx):
        out += _box(title, rows, width, paint)
    examples = EXAMPLES.get(_path(ctx))
    if examples:
        out += _examples(examples, width, paint)
    return "\n".join(out) + "\n"


def _wrap_usage(usage: str, width: int, paint: _Paint) -> list[str]:
    """` Usage: mailctl probe [OPTIONS] [HOSTS...]`, wrapped at spaces under `mailctl`."""
    hang = " " * (len(" ") + len(usage.partition(" ")[0]) + 1)  # under the word after "Usage:"
    lines = textwrap.wrap(
        usage,
        width=width,
        initial_indent=" ",
        subsequent_indent=hang,
        break_long_words=False,  # [OPTIONS], [HOSTS...] stay whole
        break_on_hyphens=False,
    )
    return [line[: len(line) - len(line.lstrip())] + paint.usage(line.lstrip()) for line in lines]


def _path(ctx: Any) -> str:
    """`mailctl account add`: the command's names, whatever the program was called."""
    names = []
    while ctx is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["mailctl", *reversed(names[:-1])])


class _Paint:
    """ANSI styles in the colours of Typer's rich help, or none."""

    def __init__(self, on: bool) -> None:
        self.on = on and "NO_COLOR" not in os.environ

    def _style(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.on and text.strip() else text

    def usage(self, text: str) -> str:
        return self._style("1", text)

    def flag(self, text: str) -> str:
        return self._style("1;36", text)

    def short(self, text: str) -> str:
        return self._style("1;32", text)

    def metavar(self, text: str) -> str:
        return self._style("1;33", text)

    def dim(self, text: str) -> str:
        return self._style("2", text)


def _wrap_paragraph(paragraph: str, width: int, indent: str) -> list[str]:
    if paragraph.lstrip().startswith("\b"):  # Click's mark: keep these lines as they are...
        out = []
        for line in paragraph.lstrip()[1:].strip("\n").splitlines():
            own = indent + line[: len(line) - len(line.lstrip())]
            out += textwrap.wrap(  # ...unless too wide: then wrapped under their own indent
                line.strip(),
                width=width,
                initial_indent=own,
                subsequent_indent=own + "  ",
                break_on_hyphens=False,
            ) or [""]
        return out
    return textwrap.wrap(
        " ".join(paragraph.split()),
        width=width,
        initial_indent=indent,
        subsequent_indent=indent,
        break_on_hyphens=False,
    )


# One row of a panel: the cells before the help (flags, short flags, placeholder) and the help.
_Row = tuple[tuple[str, str, str], str]


def _panels(command: Any, ctx: Any) -> Iterator[tuple[str, list[_Row]]]:
    """(title, rows) in Typer's order: Arguments, Options, the other panels, Commands."""
    arguments: dict[str, list[_Row]] = {}
    options: dict[str, list[_Row]] = {"Options": []}
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        help_text = " ".join(record[1].split())
        if param.param_type_name == "argument":
            row = ((param.make_metavar(ctx), "", ""), help_text)
            arguments.setdefault("Arguments", []).append(row)
            continue
        longs = ", ".join(o for o in param.opts if o.startswith("--")) or param.opts[0]
        shorts = ", ".join(o for o in param.opts if not o.startswith("--"))
        takes_value = not getattr(param, "is_flag", False) and not getattr(param, "count", False)
        metavar = param.make_metavar(ctx) if takes_value else ""
        panel = getattr(param, "rich_help_panel", None) or "Options"
        options.setdefault(panel, []).append(((longs, shorts, metavar), help_text))
    yield from arguments.items()
    yield from ((title, rows) for title, rows in options.items() if rows)
    if hasattr(command, "list_commands"):
        rows: list[_Row] = []
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                summary = (sub.short_help or sub.help or "").partition("\f")[0]
                rows.append(((name, "", ""), " ".join(summary.split("\n\n")[0].split())))
        if rows:
            yield "Commands", rows


def _box(title: str, rows: list[_Row], width: int, paint: _Paint) -> list[str]:
    """A panel: `╭─ title ─╮`, one row per option (help wrapped in its column), `╰─╯`."""
    inner = width - 4  # "│ " and " │"
    widths = [max(len(cells[i]) for cells, _ in rows) for i in range(3)]
    lead = sum(w + 2 for w in widths if w)
    help_width = inner - lead
    room = width - 6  # "╭─ " + title + " " + at least "─╮"
    if len(title) > room:  # cut with "…", after a whole word when there is one to end at
        cut = title[: room - 1]
        if title[room - 1] != " " and " " in cut:
            cut = cut[: cut.rindex(" ")]
        title = cut.rstrip() + "…"
    rule = "─" * (width - len(title) - 5)
    lines = [paint.dim("╭─ ") + title + " " + paint.dim(rule + "╮")]
    for cells, help_text in rows:
        if help_width < 20:  # too narrow beside the cells: help on the lines below
            head = "  ".join(c for c in cells if c)
            wrapped = textwrap.wrap(help_text, inner - 4, break_on_hyphens=False)
            body = textwrap.wrap(head, inner, subsequent_indent="  ", break_on_hyphens=False)
            body += ["    " + line for line in wrapped]
            for text in body:
                lines.append(_side(paint) + text.ljust(inner) + _side(paint, end=True))
            continue
        wrapped = textwrap.wrap(help_text, help_width, break_on_hyphens=False) or [""]
        for number, line in enumerate(wrapped):
            if number == 0:
                painted = [
                    style(cell.ljust(w)) + "  "
                    for cell, w, style in zip(
                        cells, widths, (paint.flag, paint.short, paint.metavar), strict=True
                    )
                    if w
                ]
                start = "".join(painted)
            else:
                start = " " * lead
            padded = _help(line, paint).ljust(help_width + _extra(line, paint))
            lines.append(_side(paint) + start + padded + _side(paint, end=True))
    lines.append(paint.dim("╰" + "─" * (width - 2) + "╯"))
    return lines


def _side(paint: _Paint, *, end: bool = False) -> str:
    return paint.dim(" │") if end else paint.dim("│") + " "


def _help(line: str, paint: _Paint) -> str:
    """Dim the `[default: ...]`/`[required]` notes of a help line."""
    return re.sub(r"\[(default: [^\]]*|required)\]", lambda m: paint.dim(m.group(0)), line)


def _extra(line: str, paint: _Paint) -> int:
    """Characters of ANSI codes that _help added (ljust counts them, the terminal does not)."""
    return len(_help(line, paint)) - len(line)


def _examples(examples: tuple[Example, ...], width: int, paint: _Paint) -> list[str]:
    """The Examples section: each example's comment, then its command (see example_lines)."""
    out = ["", " " + paint.usage("Examples:")]
    for number, example in enumerate(examples):
        if number:
            out.append("")
        comment, command = example_lines(example, width)
        out += [paint.dim(line) for line in comment]
        out += command
    out.append("")
    return out


def example_lines(example: Example, width: int) -> tuple[list[str], list[str]]:
    """(comment lines, command lines) of `example` as printed in `width` columns, indented.

    The command keeps the pieces of `example.lines` when they fit; else it is broken anew,
    between shell words only, every line but the last ending in ` \\`. Joined back (each
    backslash-newline removed, as the shell does) it is the same command, word for word.
    """
    room = width - len(_INDENT)
    comment = textwrap.wrap(
        example.what,
        width=room,
        initial_indent="# ",
        subsequent_indent="# ",
        break_long_words=False,  # a word wider than the line overflows rather than split
        break_on_hyphens=False,
    )
    lines = example.lines
    if any(len(line) > room for line in lines):
        lines = _break_command(example.command, room)
    return [_INDENT + line for line in comment], [_INDENT + line for line in lines]


# Shell operators that read better with the word after them on the same line (`< message.eml`).
_OPERATORS: Final = frozenset({"|", "||", "&&", ";", "<", ">", ">>", "2>", "2>&1"})


def _break_command(command: str, room: int) -> list[str]:
    """`command` in lines of at most `room` columns, continued with ` \\` and two spaces.

    Breaks fall between shell words, preferably not between an option and its value; a word
    longer than a whole line is left on a line of its own and overflows (nothing may cut it).
    """
    words = _shell_words(command)
    units: list[list[str]] = []  # the words that prefer one line: `--to bob@example.org`
    for word in words:
        if units and (
            units[-1][-1] in _OPERATORS
            or (
                len(units[-1]) == 1
                and units[-1][0].startswith("-")
                and not word.startswith("-")
                and word not in _OPERATORS
            )
        ):
            units[-1].append(word)
        else:
            units.append([word])
    lines: list[str] = []
    while units:
        lead = "  " if lines else ""
        rest = " ".join(word for unit in units for word in unit)
        if len(lead) + len(rest) <= room:
            lines.append(lead + rest)
            break
        taken: list[str] = []
        while units:
            if len(lead) + len(" ".join([*taken, *units[0]])) + len(" \\") <= room:
                taken += units.pop(0)
            elif len(units[0]) > 1 and len(_continued(units[0], last=len(units) == 1)) > room:
                units[0:1] = [[word] for word in units[0]]  # no line holds it: word by word
            else:
                break
        if not taken:
            taken = units.pop(0)  # a single word wider than the line: it overflows
        lines.append(lead + " ".join(taken) + (" \\" if units else ""))
    return lines


def _continued(unit: list[str], *, last: bool) -> str:
    """`unit` alone on a continuation line."""
    return "  " + " ".join(unit) + ("" if last else " \\")


def _shell_words(command: str) -> list[str]:
    """The shell words of `command` as written, quotes kept: split at blanks outside quotes."""
    words: list[str] = []
    word = quote = ""
    escaped = False
    for char in command:
        if escaped:
            escaped = False
        elif quote == "'":  # nothing is special inside '...' but its end
            quote = "" if char == "'" else quote
        elif char == "\\":
            escaped = True
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in " \t":
            if word:
                words.append(word)
            word = ""
            continue
        word += char
    if word:
        words.append(word)
    return words


def _prepare(command: Any, ctx: Any) -> None:
    """Apply the rules of the module docstring to `command`, once (help can be asked twice in
    one process, as tests do)."""
    from typer.core import TyperArgument, TyperOption

    if getattr(command, _PREPARED, False):
        return
    setattr(command, _PREPARED, True)
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
        param.help = _default_in_brackets(param, param.help or "") or None
    # Output last; every other panel keeps the place of its first option (a stable sort).
    command.params.sort(key=lambda param: getattr(param, "rich_help_panel", None) == OUTPUT)


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
    """An argument shows its name in upper case (Typer would print `{shell}` or `<text>`)."""
    if param.metavar is None:
        param.metavar = (param.name or "arg").upper() + ("..." if param.nargs != 1 else "")


def _default_in_brackets(param: Any, text: str) -> str:
    """Move a default written in the help text into `[default: X]`, as Typer shows its own."""
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
    return f"{text} [default: {value}]".strip()
