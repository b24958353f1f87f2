"""How a fix (`mailctl.errors.Fix`) reads for the running command: its flag, or an account key.

A hint must name something the user can type now. The layers below cli only say which
setting would help; this module knows what the command has (its long options: sendmail mode
has none, `account test` no server flags) and where the server came from (flags alone, or an
account's block), and words each fix accordingly: a server given with --server gets the
flag; one from an account gets the `account set` command that keeps the fix (else the key
of its block), plus the flag for one run when the command has it; a fix the command cannot
express is left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mailctl.errors import PLACEHOLDERS, Fix, key_words

# setting -> value -> the flag that sets it (None: any value, written after the flag).
_FLAGS: dict[str, dict[str | None, str]] = {
    "security": {"none": "--no-tls", "tls": "--tls", "starttls": "--starttls"},
    "tls_name": {None: "--tls-name"},
    "username": {None: "--user"},
    "ca_file": {None: "--ca-file"},
    "auth": {None: "--auth"},
    "verify": {"false": "--insecure"},
    "allow_plaintext_auth": {"true": "--allow-plaintext-auth"},
    "allow_partial": {None: "--allow-partial"},
    "connect_timeout": {None: "--connect-timeout"},
}


def flag_words(fix: Fix) -> str | None:
    """The fix as a command-line flag (`--no-tls`, `--tls-name NAME`), None if none sets it."""
    by_value = _FLAGS.get(fix.setting)
    if by_value is None:
        return None
    if fix.value is not None and fix.value in by_value:
        return by_value[fix.value]
    flag = by_value.get(None)
    if flag is None:
        return None
    if fix.setting == "allow_partial":
        return flag
    return f"{flag} {fix.value or PLACEHOLDERS.get(fix.setting, 'VALUE')}"


@dataclass(frozen=True)
class HintWords:
    """The words of one command run: its flags and the account block each server came from.

    `accounts` maps a protocol ("smtp", "imap", "pop3") to the account whose block the server
    came from; `given` holds the settings the command line set, which the user changes there.
    """

    flags: frozenset[str] = frozenset()
    accounts: dict[str, str] = field(default_factory=dict)
    given: frozenset[str] = frozenset()

    def __call__(self, fix: Fix) -> str | None:
        flag = flag_words(fix)
        if flag is not None and flag.split()[0] not in self.flags:
            flag = None
        account = self.accounts.get(fix.protocol)
        if account is None or fix.setting in self.given:
            return flag
        where = _account_set_words(fix, account)
        if where is None:
            key = key_words(fix)
            if key is None:
                return flag
            where = f"{key} in [accounts.{_table_key(account)}.{fix.protocol}]"
        return f"{where} (or {flag} for one run)" if flag else where


# setting -> the `account set` flag after `--PROTOCOL-` (ca_file is account-wide: no prefix).
_ACCOUNT_SET_FLAGS: dict[str, str] = {
    "security": "security",
    "tls_name": "tls-name",
    "username": "user",
    "auth": "auth",
}


def _account_set_words(fix: Fix, account: str) -> str | None:
    """The fix as the command that keeps it (`mailctl account set work --smtp-security none`):
    something to type, from any command, sendmail mode included. None when `account set` has
    no flag for the setting (the caller names the config key instead)."""
    import shlex

    value = fix.value if fix.value is not None else PLACEHOLDERS.get(fix.setting, "VALUE")
    if fix.setting == "ca_file":
        flag = "--ca-file"
    elif fix.setting in _ACCOUNT_SET_FLAGS:
        flag = f"--{fix.protocol}-{_ACCOUNT_SET_FLAGS[fix.setting]}"
    else:
        return None
    return f"mailctl account set {shlex.quote(account)} {flag} {value}"


def _table_key(name: str) -> str:
    """An account name as a TOML table key: bare when it can be, else quoted."""
    if name and all(c.isascii() and (c.isalnum() or c in "-_") for c in name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def command_flags(params: Iterable[object]) -> frozenset[str]:
    """The long options of a Click command's parameters."""
    found: set[str] = set()
    for param in params:
        for name in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())):
            if isinstance(name, str) and name.startswith("--"):
                found.add(name)
    return frozenset(found)
