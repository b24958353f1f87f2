"""The application context of one run: global options, config, output, secrets and servers.

`command` (the decorator every command uses) builds one `AppContext` per run from the global
options, given before the command name (stored by the root callback in app.py) or after it
(added to every command's own options), and runs the command under the error contract.
Commands get the context; they never load the config, look up a secret or print a config
warning themselves, and they turn server flags into a server with one call,
`app.resolve_server(flags, protocol)`.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, get_args, get_origin

import typer
from typer.models import ArgumentInfo, ParameterInfo

from mailctl.cli.hints import HintWords, command_flags
from mailctl.cli.options import GLOBAL_OPTIONS, SERVER_OPTIONS
from mailctl.cli.output import CommandResult, Output, run_command
from mailctl.cli.serverflags import ServerFlags

if TYPE_CHECKING:
    from mailctl.credentials import Secrets
    from mailctl.models import Account, Config, Protocol, ResolvedServer

# Global options that take a value: app.py skips them when it looks for the command name.
VALUE_OPTIONS = frozenset({"--config", "--account", "-A"})
_SERVER_FIELDS = frozenset(field.name for field in fields(ServerFlags))


@dataclass(frozen=True)
class GlobalOptions:
    config: Path | None = None
    account: str | None = None
    json_mode: bool = False
    quiet: bool = False  # -q: nothing on success but what was asked for (--json, --dry-run)

    def over(self, before: GlobalOptions) -> GlobalOptions:
        """These options (given after the command name) over those given before it."""
        return GlobalOptions(
            config=self.config if self.config is not None else before.config,
            account=self.account if self.account is not None else before.account,
            json_mode=self.json_mode or before.json_mode,
            quiet=self.quiet or before.quiet,
        )


def root_options(ctx: typer.Context) -> GlobalOptions:
    """The global options given before the command name: after `mailctl` or after a group's
    name (`mailctl account --config F list`); none when a command runs alone."""
    obj = ctx.obj  # Click hands a parent's obj down to the contexts below it
    return obj if isinstance(obj, GlobalOptions) else GlobalOptions()


def remember_options(
    ctx: typer.Context,
    *,
    config: Path | None,
    account: str | None,
    json_mode: bool,
    quiet: bool = False,
) -> None:
    """For the callback of the root and of each group: keep the global options given there,
    over those given before it, for the commands below (root_options)."""
    given = GlobalOptions(config=config, account=account, json_mode=json_mode, quiet=quiet)
    ctx.obj = given.over(root_options(ctx))


class AppContext:
    """What one run of one command shares: options, output, config, secrets, servers."""

    def __init__(self, command: list[str], options: GlobalOptions) -> None:
        self.command = command
        self.options = options
        self.output = Output(command, json_mode=options.json_mode, quiet=options.quiet)
        self._config: Config | None = None
        self._secrets: Secrets | None = None
        self._warned: set[str] = set()
        # For the hints (cli/hints.py): the command's long options and, per protocol, the
        # account a server came from and the settings its flags set.
        self.flags: frozenset[str] = frozenset()
        self._accounts: dict[str, str] = {}
        self._given: set[str] = set()

    @property
    def hint_words(self) -> HintWords:
        """How fixes read in this run: the command's flags, the accounts its servers came from."""
        return HintWords(
            flags=self.flags, accounts=dict(self._accounts), given=frozenset(self._given)
        )

    @property
    def interactive(self) -> bool:
        """Prompts allowed: a terminal on stdin and stderr, and no --json."""
        return self.output.interactive

    @property
    def config_path(self) -> Path:
        from mailctl.config.paths import config_path

        return config_path(self.options.config)

    @property
    def config(self) -> Config:
        """The config file, loaded on first use; its warnings are printed then, once.

        A file named with --config (sendmail's -C) must exist; only the default location
        ($MAILCTL_CONFIG, XDG) may be missing, which means no accounts. Raises NoInputError
        (a named file is missing), ConfigError (and ConfigInsecureError) as
        config.store.load_config does.
        """
        return self._load(must_exist=self.options.config is not None)

    def config_to_write(self) -> Config:
        """`config` for a command that writes the file (account add): it may be missing, even
        when named with --config, and is created. Raises as `config` does."""
        return self._load(must_exist=False)

    def _load(self, *, must_exist: bool) -> Config:
        if self._config is None:
            from mailctl.config.store import load_config

            path = self.config_path
            if must_exist and not path.exists():
                from mailctl.config.paths import config_path
                from mailctl.errors import NoInputError

                raise NoInputError(
                    f"config file {path} (named with --config) does not exist",
                    hint="fix the path, or create it with `mailctl --config PATH account add "
                    f"NAME`; without --config mailctl reads {config_path()}",
                    details={"file": str(path)},
                )
            self._config = load_config(path)
            self.warn(self._config.warnings)
        return self._config

    def warn(self, warnings: Iterable[str]) -> None:
        """Print each warning on stderr, once per run however many results repeat it."""
        for warning in warnings:
            if warning not in self._warned:
                self._warned.add(warning)
                self.output.warn(warning)

    @property
    def secrets(self) -> Secrets:
        """The run's secret source: looked up once per server block; a prompt on a terminal."""
        if self._secrets is None:
            from mailctl.cli.prompts import password_prompt
            from mailctl.credentials import Secrets

            self._secrets = Secrets(prompt=password_prompt if self.interactive else None)
        return self._secrets

    def account(self, name: str | None = None) -> Account:
        """The named account, else --account's, else the default one. Raises ConfigError."""
        from mailctl.config.store import find_account
        from mailctl.mime.header_safety import require_utf8

        if name is None and self.options.account is not None:
            name = require_utf8("--account", self.options.account)
        return find_account(self.config, name)

    def server_account(self, flags: ServerFlags, *, required: bool = True) -> Account | None:
        """The account whose block `flags` complete: None with --server, which stands alone.

        Without --server and --account, the default account; when the file has none,
        ConfigError, or None when not `required` (send --dry-run needs no server).
        """
        from mailctl.errors import ConfigError

        if flags.server is not None:
            return None
        if not self.config.accounts and self.options.account is None:
            if not required:
                return None
            raise ConfigError(
                f"no account configured in {self.config_path} and no --server given",
                hint="run 'mailctl account add NAME' or pass --server HOST:PORT",
            )
        return self.account()

    def resolve_server(
        self, flags: ServerFlags, protocol: Protocol, *, account: Account | None = None
    ) -> ResolvedServer:
        """Settle the server from flags over an account's block (server_account's, or
        `account` when the command chose one itself, as sendmail does by sender).

        One rule per value: --tls/--starttls/--no-tls exclude each other; the security of a
        port and the EHLO name follow mailctl.hosts; --ehlo wins over the account's `ehlo`.
        Warns when certificates go unchecked. Raises UsageError/InputDataError for flags,
        ConfigError when there is no server to use.
        """
        from mailctl.cli.serverflags import settings_from_flags
        from mailctl.hosts import ehlo_name, endpoint
        from mailctl.models import Protocol as Protocols
        from mailctl.models import ResolvedServer

        ehlo = check_server_flags(flags)
        if account is None:
            account = self.server_account(flags)
        name = account.name if account is not None else None
        base = account.server(protocol) if account is not None else None
        settings = settings_from_flags(flags, base, account_name=name, protocol=protocol)
        if not settings.verify:
            self.output.warn(
                f"certificate verification is off for {endpoint(settings.host, settings.port)}:"
                " anyone on the path can read and change this session"
            )
        if ehlo is None and account is not None and account.ehlo is not None:
            ehlo = ehlo_name(account.ehlo)  # checked by the same rule when the file was loaded
        if name is not None:
            self._accounts[protocol.value] = name
        self._given.update(_given_settings(flags))
        return ResolvedServer(
            settings=settings,
            account=name,
            ehlo_name=ehlo if protocol is Protocols.SMTP else None,
            secret=self.secrets.for_server(name, protocol, settings) if settings.username else None,
        )

    def run(self, body: Callable[[], CommandResult]) -> NoReturn:
        """Run `body` under the error contract: one line (or the envelope) and an exit code.

        An error's fixes are worded for this command (`hint_words`) on the way out.
        """
        from mailctl.errors import MailctlError

        def worded() -> CommandResult:
            try:
                return body()
            except MailctlError as error:
                error.reword(self.hint_words)
                raise

        run_command(self.output, worded)


def _given_settings(flags: ServerFlags) -> Iterable[str]:
    """The server settings the command line set (hints then name the flag, not the key)."""
    if flags.security is not None:
        yield "security"
    for setting, value in (
        ("username", flags.user),
        ("ca_file", flags.ca_file),
        ("auth", flags.auth),
        ("tls_name", flags.tls_name),
    ):
        if value is not None:
            yield setting
    if flags.insecure:
        yield "verify"


def check_server_flags(flags: ServerFlags) -> str | None:
    """Check the server flags that need no server yet; return --ehlo's ASCII form.

    resolve_server calls it; a command that may not resolve a server (send --dry-run) calls
    it first, so a bad flag is refused the same way with or without a connection. Raises
    UsageError (--tls, --starttls and --no-tls together), InputDataError (--ehlo).
    """
    from mailctl.errors import UsageError
    from mailctl.hosts import ehlo_name
    from mailctl.mime.header_safety import require_utf8

    if sum([flags.tls, flags.starttls, flags.no_tls]) > 1:
        raise UsageError("--tls, --starttls and --no-tls exclude each other", hint="pick one")
    if flags.ehlo is None:
        return None
    return ehlo_name(require_utf8("--ehlo", flags.ehlo), field="--ehlo")


def with_completion(command: tuple[str, ...], key: str, annotation: Any) -> Any:
    """`annotation` with TAB completion for its value when it is a closed set or an account.

    cli/choices.py has the rule: an option in its CHOICES table completes those values; an
    account option, or the NAME argument of an `account` subcommand other than `add`, completes
    the configured account names. A declaration with its own `autocompletion` keeps it.
    """
    from mailctl.cli.choices import ACCOUNT_FLAGS, CHOICES, choice_completer, complete_account

    if get_origin(annotation) is not Annotated:
        return annotation
    base, *metadata = get_args(annotation)
    for index, info in enumerate(metadata):
        if not isinstance(info, ParameterInfo) or info.autocompletion is not None:
            continue
        flags = _flags(info)
        completer: Callable[..., list[str]] | None = None
        if ACCOUNT_FLAGS.intersection(flags) or (
            isinstance(info, ArgumentInfo)
            and command[:1] == ("account",)
            and key == "name"
            and command[1:] != ("add",)
        ):
            completer = complete_account
        else:
            closed = [flag for flag in flags if flag in CHOICES]
            completer = choice_completer(closed[0]) if closed else None
        if completer is not None:
            completing = copy.copy(info)  # the declaration may be shared: leave it as it is
            completing.autocompletion = completer
            metadata[index] = completing
            return Annotated[(base, *metadata)]
    return annotation


def _flags(info: ParameterInfo) -> tuple[str, ...]:
    """The flags an option declares; in `Annotated`, Typer reads the first one from `default`."""
    decls = tuple(getattr(info, "param_decls", None) or ())
    if isinstance(info.default, str) and info.default.startswith("-"):
        return (info.default, *decls)
    return decls


def command(*name: str) -> Callable[[Callable[..., CommandResult]], Callable[..., None]]:
    """Turn `func(app: AppContext, ...) -> CommandResult` into a Typer command named `name`.

    The command gets the global options (--config, --json, -q/--quiet) as its own too, so they work
    after its name; a `server: ServerFlags` parameter gets the server group (--account,
    --server, --user, --tls, ..., cli/options.SERVER_OPTIONS) collected into ServerFlags. A
    parameter `func` declares with a shared option's name replaces that declaration (and is
    passed to `func` as well as into ServerFlags). Every parameter gets TAB completion of its
    value by the rule of `with_completion` (closed sets, account names).
    """

    def decorate(func: Callable[..., CommandResult]) -> Callable[..., None]:
        signature = inspect.signature(func, eval_str=True)
        own = {key: p for key, p in signature.parameters.items() if key not in ("app", "server")}
        wants_ctx = "ctx" in own
        wants_server = "server" in signature.parameters
        shared = {**GLOBAL_OPTIONS, **(SERVER_OPTIONS if wants_server else {})}
        keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
        params = [] if wants_ctx else [inspect.Parameter("ctx", keyword, annotation=typer.Context)]
        params += [
            p.replace(annotation=with_completion(name, key, p.annotation)) for key, p in own.items()
        ]
        params += [
            inspect.Parameter(
                key, keyword, default=default, annotation=with_completion(name, key, annotation)
            )
            for key, (annotation, default) in shared.items()
            if key not in own
        ]

        def run(**values: Any) -> None:
            ctx: typer.Context = values["ctx"] if wants_ctx else values.pop("ctx")
            given = GlobalOptions(
                config=values.get("config"),
                account=values.get("account"),
                json_mode=bool(values.get("json_mode")),
                quiet=bool(values.get("quiet")),
            )
            extra: dict[str, Any] = {}
            if wants_server:
                server = {key: values[key] for key in _SERVER_FIELDS if key in values}
                extra["server"] = ServerFlags(**server)
            for key in shared:
                if key not in own:
                    values.pop(key, None)
            app = AppContext(list(name), given.over(root_options(ctx)))
            app.flags = command_flags(ctx.command.params)
            app.run(lambda: func(app=app, **extra, **values))

        run.__name__ = func.__name__
        run.__qualname__ = func.__qualname__
        run.__doc__ = func.__doc__
        run.__module__ = func.__module__
        run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return decorate
