"""The root command group that lists commands from a table and builds one only when it runs.

Typer turns every registered command function into a Click command when the program starts:
it imports the function's module, reads its signature and evaluates each annotation (~3 ms a
command, ~35 ms for all of mailctl's, plus ~15 ms of imports). TAB completion of a command name
and `mailctl --help` need only each command's name and one-line summary; `mailctl send ...`
needs `send` alone. So the table gives names and summaries, and a command is built (its module
imported) the first time Click asks for it outside a listing.

Use: `typer.Typer(cls=lazy_group(LazyCommand("send", "Send one message...", register_send)))`,
where `register_send(app)` imports the command's module and registers it on `app` as usual
(`app.command("send")(send_command)` or `app.add_typer(sub_app, name="account")`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup


class LazyCommand:
    """One row of the command table: name, the summary shown in listings, how to register it.

    `summary` must be the first paragraph of the command's own help (its docstring):
    tests/test_startup.py compares the listing before and after every command is built.
    """

    __slots__ = ("name", "register", "summary")

    def __init__(self, name: str, summary: str, register: Callable[[typer.Typer], None]) -> None:
        self.name = name
        self.summary = summary
        self.register = register


# Click's Context and HelpFormatter are vendored inside Typer (typer._click, private): the
# overrides below take `Any` where Click passes them.


class _Listed(TyperCommand):
    """A command's place in a listing (name and summary) until it is built."""

    def __init__(self, spec: LazyCommand, *, rich_markup_mode: Any) -> None:
        super().__init__(spec.name, help=spec.summary, rich_markup_mode=rich_markup_mode)
        self.spec = spec

    def invoke(self, ctx: Any) -> Any:
        # LazyGroup.get_command builds the real command before anything can run it.
        raise RuntimeError(f"command {self.name!r} was run before it was built")


HelpRenderer = Callable[[Any, Any], str]  # (command, ctx) -> the help text


class LazyGroup(TyperGroup):
    """A TyperGroup whose table commands are built on first use (see the module docstring).

    With a `help_renderer` (a staticmethod: `render(command, ctx) -> text`), that text is the
    help of this group and of every command it builds, instead of Click's formatter's.
    """

    table: ClassVar[tuple[LazyCommand, ...]] = ()
    help_renderer: ClassVar[HelpRenderer | None] = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._listing = 0
        # Placeholders keep Typer's own behaviour: list_commands() keeps the table's order and
        # "Did you mean 'send'?" suggestions (which read self.commands) see every name.
        for spec in self.table:
            self.commands.setdefault(
                spec.name, _Listed(spec, rich_markup_mode=self.rich_markup_mode)
            )

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The command, built now unless a listing (help, TAB on a name) needs only its summary."""
        command = self.commands.get(cmd_name)
        if isinstance(command, _Listed) and not self._listing:
            command = self.commands[cmd_name] = self._build(command.spec)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        render = type(self).help_renderer
        with self._listing_only():
            if render is None:
                super().format_help(ctx, formatter)
            else:
                formatter.write(render(self, ctx))

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        # Reached only when the word being completed is this group's own (a command name or a
        # group option); completing inside a command resolves it through get_command first.
        with self._listing_only():
            return super().shell_complete(ctx, incomplete)

    @contextmanager
    def _listing_only(self) -> Iterator[None]:
        self._listing += 1
        try:
            yield
        finally:
            self._listing -= 1

    def _build(self, spec: LazyCommand) -> Any:
        holder = typer.Typer(
            rich_markup_mode=self.rich_markup_mode,
            add_completion=False,
            pretty_exceptions_show_locals=False,  # a traceback must never print a password
        )
        spec.register(holder)
        command = typer.main.get_command(holder)
        if command.name != spec.name:  # a sub-app (add_typer) comes wrapped in a group
            command = command.commands[spec.name]  # type: ignore[attr-defined]
        render = type(self).help_renderer
        if render is not None:
            _render_help_with(command, render)
        return command


def _render_help_with(command: Any, render: HelpRenderer) -> None:
    """Make `command` (and the commands of a group, all the way down) print help with `render`.

    Typer builds plain TyperCommand/TyperGroup objects and takes no command class per app; the
    built objects get a subclass that changes format_help alone (parsing and running are the
    class's own), so every command, whoever registers it, gets the same help.
    """
    base = type(command)
    helped = _HELPED.get((base, render))
    if helped is None:

        def format_help(self: Any, ctx: Any, formatter: Any) -> None:
            formatter.write(render(self, ctx))

        helped = type(base.__name__, (base,), {"format_help": format_help})
        _HELPED[(base, render)] = helped
    command.__class__ = helped
    for sub in getattr(command, "commands", {}).values():
        _render_help_with(sub, render)


_HELPED: dict[tuple[type, HelpRenderer], type] = {}


def lazy_group(*table: LazyCommand, help_renderer: HelpRenderer | None = None) -> type[LazyGroup]:
    """A LazyGroup class for `typer.Typer(cls=...)`, which takes a class, not an instance."""
    attributes: dict[str, Any] = {"table": table}
    if help_renderer is not None:
        attributes["help_renderer"] = staticmethod(help_renderer)
    return type("LazyCommands", (LazyGroup,), attributes)
