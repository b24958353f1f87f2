"""What TAB offers for an option's value: the closed sets by flag name, and account names.

Flags that take one of a closed set are declared as plain strings (the command validates them
itself, with mailctl's own error and exit code), so Click knows no choices: this table gives
them, keyed by flag (a flag means the same thing in every command). `command` (cli/context.py)
attaches `complete_choice` to every option named here and `complete_account` to every option or
argument that names an account. tests/test_completion.py checks the table against the enums
that validate the values.

Completion runs the whole program on every TAB: nothing here may prompt, touch the keyring,
print, or import more than the config file's reader (tomllib), and any failure completes
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

_AUTH = ("plain", "login", "cram-md5", "xoauth2")  # models.AuthMechanism
_SECURITY = ("tls", "starttls", "none")  # models.Security
_COMMAND_PHASES = ("mail", "rcpt", "data", "eod")  # sink.config.COMMAND_PHASES

CHOICES: Final[dict[str, tuple[str, ...]]] = {
    "--auth": _AUTH,
    "--smtp-auth": _AUTH,
    "--imap-auth": _AUTH,
    "--pop3-auth": _AUTH,
    "--smtp-security": _SECURITY,
    "--imap-security": _SECURITY,
    "--pop3-security": _SECURITY,
    "--protocol": ("smtp", "imap", "pop3", "all"),  # models.Protocol, or every block
    "--mode": ("new", "reuse", "pipeline"),  # core.bench.models.BenchMode
    "--latency-on": ("banner", "ehlo", *_COMMAND_PHASES),  # sink.config.Phase
    "--reject-on": _COMMAND_PHASES,
    "--disconnect-on": _COMMAND_PHASES,
    "--loop": ("auto", "asyncio", "uvloop"),  # sink.run.LoopKind
}
# Options whose value is an account name.
ACCOUNT_FLAGS: Final = frozenset({"--account", "-A"})


def choice_completer(flag: str) -> Callable[[str], list[str]]:
    """Typer `autocompletion` for a closed-set flag: the values starting with the word."""
    values = CHOICES[flag]

    def complete(incomplete: str) -> list[str]:
        return [value for value in values if value.startswith(incomplete.lower())]

    return complete


def complete_account(ctx: Any, incomplete: str) -> list[str]:
    """Typer `autocompletion` of an account name: the accounts of the config the line uses."""
    return [name for name in account_names(_config_given(ctx)) if name.startswith(incomplete)]


def complete_sendmail_arg(ctx: Any, incomplete: str) -> list[str]:
    """`mailctl sendmail ... -a <TAB>`: account names after msmtp's -a; else nothing."""
    before = ctx.params.get("args") or ()
    if before and before[-1] == "-a":
        return complete_account(ctx, incomplete)
    return []


def account_names(config: Path | None) -> list[str]:
    """The account names in the config file (--config's, else the default path), or none.

    The file is read as a run reads it (the same size limit and ownership check, then TOML),
    but only the table names are taken: validating every value would import the `email`
    package for the From addresses, too slow for a key press. Any problem completes nothing,
    quietly (the command itself reports it when run).
    """
    import tomllib

    from mailctl.config.paths import config_path
    from mailctl.config.trust import check_trusted
    from mailctl.errors import MailctlError
    from mailctl.inputs import CONFIG_LIMIT, read_optional_file

    try:
        path = config_path(config)
        raw = read_optional_file(
            path, what="config file", limit=CONFIG_LIMIT, check=lambda i: check_trusted(path, i)
        )
        accounts = tomllib.loads(raw.decode("utf-8")).get("accounts") if raw else None
    except (MailctlError, OSError, ValueError, RecursionError):
        return []
    if not isinstance(accounts, dict):
        return []
    return sorted(name for name, table in accounts.items() if isinstance(table, dict))


def _config_given(ctx: Any) -> Path | None:
    """--config from the line being completed: after the command name, or before it."""
    while ctx is not None:
        value = ctx.params.get("config")
        if value is not None:
            return Path(value)
        ctx = ctx.parent
    return None
