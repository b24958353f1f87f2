"""The config file's schema: TOML tables validated once into frozen models, and dumped back."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

from mailctl.errors import ConfigError
from mailctl.hosts import default_port, default_security, ehlo_problem, tls_name, tls_name_problem
from mailctl.models import (
    Account,
    AuthMechanism,
    Config,
    Protocol,
    Security,
    ServerSettings,
    Timeouts,
)
from mailctl.text import quote

# A password in the file is never used (it would sit in plain text next to everything else):
# loading still works, and the caller is handed a warning that says so.
SECRET_KEYS: Final = frozenset({"password", "pass", "passwd", "secret"})
TOP_KEYS: Final = ("default_account", "accounts")
ACCOUNT_KEYS: Final = ("from", "ehlo", "smtp", "imap", "pop3")
SERVER_KEYS: Final = (
    "host",
    "port",
    "security",
    "username",
    "auth",
    "password_command",
    "ca_file",
    "verify",
    "allow_plaintext_auth",
    "connect_timeout",
    "command_timeout",
    "data_timeout",
    "tls_name",
)
MAX_TIMEOUT: Final = 86_400.0

_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
_DEFAULT_TIMEOUTS: Final = Timeouts()
_MISSING: Final = object()
_T = TypeVar("_T")


class FieldError(Exception):
    """One invalid value, located by its key path; callers turn it into a ConfigError/UsageError."""

    def __init__(
        self,
        key: tuple[str, ...],
        problem: str,
        *,
        value: object = _MISSING,
        hint: str | None = None,
    ) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem
        self.value = value
        self.hint = hint

    @property
    def field(self) -> str:
        return self.key[-1] if self.key else ""

    def describe(self, label: str | None = None) -> str:
        """`key.path: problem, got VALUE` (the value only when there is one to show).

        `label` replaces the key path, e.g. with the command-line flag the value came from.
        """
        text = f"{key_path(self.key) if label is None else label}: {self.problem}"
        if self.value is not _MISSING:
            text += f", got {_got(self.value)}"
        return text


def key_path(parts: Iterable[str]) -> str:
    """Render a key path the way TOML spells it: `accounts.work.smtp.port`, quoting odd keys."""
    return ".".join(p if _BARE_KEY.fullmatch(p) else json.dumps(p) for p in parts)


def _got(value: object) -> str:
    """What the file holds, for "got ..." in an error: TOML's words for tables, arrays and
    booleans, else the value quoted (mailctl.text.quote)."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "true" if value else "false"
    return quote(value)


def account_name_problem(name: str) -> str | None:
    """Why `name` cannot name an account, or None when it can.

    Names appear in TOML keys, keyring entries (`NAME:smtp`) and command lines, so they are kept
    to letters, digits and `. _ @ + -`, starting with a letter or digit, at most 64 characters.
    """
    if _ACCOUNT_NAME.fullmatch(name):
        return None
    return (
        "an account name must start with a letter or digit and contain only letters, digits "
        "and . _ @ + - (at most 64 characters)"
    )


def parse_config(data: dict[str, Any], *, path: Path) -> Config:
    """Validate a parsed TOML document into a Config.

    Raises ConfigError naming the file, the key path and the bad value, with a hint. Unknown
    keys are errors (a typo must not be silently ignored). A password stored in the file is
    not an error but is ignored: the returned Config carries a warning for each.
    """
    secret_keys: list[tuple[str, ...]] = []
    try:
        config = _parse_document(data, path=path, secret_keys=secret_keys)
    except FieldError as err:
        raise ConfigError(
            f"{path}: {err.describe()}",
            hint=err.hint,
            details={"file": str(path), "key": key_path(err.key)},
        ) from None
    if not secret_keys:
        return config
    warnings = tuple(_secret_warning(path, key) for key in secret_keys)
    return Config(
        accounts=config.accounts,
        default_account=config.default_account,
        path=config.path,
        warnings=warnings,
    )


def _secret_warning(path: Path, key: tuple[str, ...]) -> str:
    account = key[1] if len(key) > 2 and key[0] == "accounts" else None
    fix = (
        f"run `mailctl account set-password {account}`"
        if account
        else "run `mailctl account set-password NAME`"
    )
    return (
        f"{path}: {key_path(key)} is ignored: mailctl never reads passwords from the config "
        f"file; remove it and {fix}, or set password_command"
    )


def _parse_document(
    data: Mapping[str, Any], *, path: Path, secret_keys: list[tuple[str, ...]]
) -> Config:
    _check_keys(data, (), TOP_KEYS, secret_keys)
    raw_accounts = data.get("accounts", {})
    if not isinstance(raw_accounts, dict):
        raise FieldError(
            ("accounts",),
            "must be a table of accounts",
            value=raw_accounts,
            hint="write one [accounts.NAME] table per account",
        )
    accounts: dict[str, Account] = {}
    for name, raw in raw_accounts.items():
        accounts[name] = parse_account(name, raw, base_dir=path.parent, secret_keys=secret_keys)
    default = data.get("default_account")
    if default is not None:
        if not isinstance(default, str):
            raise FieldError(
                ("default_account",), "must be a string naming an account", value=default
            )
        if default not in accounts:
            names = ", ".join(sorted(accounts)) or "none defined"
            raise FieldError(
                ("default_account",),
                "names no account in this file",
                value=default,
                hint=f"accounts: {names}",
            )
    return Config(accounts=accounts, default_account=default, path=path)


def parse_account(
    name: str,
    raw: object,
    *,
    base_dir: Path | None = None,
    secret_keys: list[tuple[str, ...]] | None = None,
) -> Account:
    """Validate one `[accounts.NAME]` table. Raises FieldError."""
    key = ("accounts", name)
    problem = account_name_problem(name)
    if problem is not None:
        raise FieldError(key, "invalid account name", hint=problem)
    if not isinstance(raw, dict):
        raise FieldError(key, "must be a table", value=raw, hint=f"write it as [{key_path(key)}]")
    found_secrets: list[tuple[str, ...]] = [] if secret_keys is None else secret_keys
    _check_keys(raw, key, ACCOUNT_KEYS, found_secrets)
    from_address = _optional(raw, key, "from", _from_address)
    ehlo = _optional(raw, key, "ehlo", _ehlo)
    blocks: dict[Protocol, ServerSettings | None] = {}
    for protocol in Protocol:
        block = raw.get(protocol.value)
        blocks[protocol] = (
            None
            if block is None
            else parse_server_block(
                block,
                protocol,
                key=(*key, protocol.value),
                base_dir=base_dir,
                secret_keys=found_secrets,
            )
        )
    return Account(
        name=name,
        from_address=from_address,
        smtp=blocks[Protocol.SMTP],
        imap=blocks[Protocol.IMAP],
        pop3=blocks[Protocol.POP3],
        ehlo=ehlo,
    )


def parse_server_block(
    raw: object,
    protocol: Protocol,
    *,
    key: tuple[str, ...],
    base_dir: Path | None = None,
    secret_keys: list[tuple[str, ...]] | None = None,
) -> ServerSettings:
    """Validate one `[accounts.NAME.smtp|imap|pop3]` table. Raises FieldError.

    A missing security follows the port (mailctl.hosts.default_security: 465 is implicit
    TLS), a missing port the security (default_port); a relative ca_file is taken relative
    to `base_dir` (the config file's directory).
    """
    if not isinstance(raw, dict):
        raise FieldError(key, "must be a table", value=raw, hint=f"write it as [{key_path(key)}]")
    _check_keys(raw, key, SERVER_KEYS, [] if secret_keys is None else secret_keys)
    if "host" not in raw:
        raise FieldError((*key, "host"), "is required", hint="the server's host name")
    host = _host((*key, "host"), raw["host"])
    port = _optional(raw, key, "port", _port)
    security = _optional(raw, key, "security", _security) or default_security(protocol, port)
    username = _optional(raw, key, "username", _username)
    auth = _optional(raw, key, "auth", _auth)
    password_command = _optional(raw, key, "password_command", _password_command)
    ca_file = _optional(raw, key, "ca_file", _path)
    if ca_file is not None and not ca_file.is_absolute() and base_dir is not None:
        ca_file = base_dir / ca_file
    verify = _optional(raw, key, "verify", _bool)
    tls_name = _optional(raw, key, "tls_name", _tls_name)
    allow_plaintext = _optional(raw, key, "allow_plaintext_auth", _bool)
    timeouts = Timeouts(
        connect=_optional(raw, key, "connect_timeout", _timeout) or _DEFAULT_TIMEOUTS.connect,
        command=_optional(raw, key, "command_timeout", _timeout) or _DEFAULT_TIMEOUTS.command,
        data=_optional(raw, key, "data_timeout", _timeout) or _DEFAULT_TIMEOUTS.data,
    )
    return ServerSettings(
        host=host,
        port=port if port is not None else default_port(protocol, security),
        security=security,
        username=username,
        auth=auth,
        password_command=password_command,
        ca_file=ca_file,
        verify=True if verify is None else verify,
        allow_plaintext_auth=bool(allow_plaintext),
        timeouts=timeouts,
        tls_name=tls_name,
    )


def _check_keys(
    raw: Mapping[str, Any],
    key: tuple[str, ...],
    allowed: tuple[str, ...],
    secret_keys: list[tuple[str, ...]],
) -> None:
    for name in raw:
        if name in allowed:
            continue
        if name.lower() in SECRET_KEYS:
            secret_keys.append((*key, name))
            continue
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        hint = f"did you mean {quote(close[0])}? " if close else ""
        # The value is not shown: a misspelt key may well hold a password.
        raise FieldError(
            (*key, name), "unknown key", hint=f"{hint}allowed here: {', '.join(allowed)}"
        )


def _optional(
    raw: Mapping[str, Any],
    key: tuple[str, ...],
    name: str,
    check: Callable[[tuple[str, ...], object], _T],
) -> _T | None:
    """Validate raw[name] with `check` when present (TOML has no null: absent means unset)."""
    if name not in raw:
        return None
    return check((*key, name), raw[name])


def _string(key: tuple[str, ...], value: object, what: str) -> str:
    if not isinstance(value, str):
        raise FieldError(key, f"must be a string ({what})", value=value)
    if not value:
        raise FieldError(key, f"must not be empty ({what})", value=value, hint="leave the key out")
    return value


def _host(key: tuple[str, ...], value: object) -> str:
    host = _string(key, value, "a host name or IP address")
    if _SPACE_OR_CONTROL.search(host) or len(host) > 255:
        raise FieldError(key, "is not a valid host name", value=value)
    return host


def _port(key: tuple[str, ...], value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise FieldError(
            key,
            "must be an integer from 1 to 65535",
            value=value,
            hint="leave it out to use the standard port for the security setting",
        )
    return value


def _security(key: tuple[str, ...], value: object) -> Security:
    choices = ", ".join(quote(s.value) for s in Security)
    if not isinstance(value, str):
        raise FieldError(key, f"must be one of {choices}", value=value)
    try:
        return Security(value.lower())
    except ValueError:
        raise FieldError(
            key,
            f"must be one of {choices}",
            value=value,
            hint='"tls" is implicit TLS (465/993/995), "starttls" upgrades a plain connection',
        ) from None


def _auth(key: tuple[str, ...], value: object) -> AuthMechanism:
    choices = ", ".join(quote(a.value) for a in AuthMechanism)
    if not isinstance(value, str):
        raise FieldError(key, f"must be one of {choices}", value=value)
    try:
        return AuthMechanism(value.lower())
    except ValueError:
        raise FieldError(
            key,
            f"must be one of {choices}",
            value=value,
            hint="leave it out to use one mechanism the server offers",
        ) from None


def _username(key: tuple[str, ...], value: object) -> str:
    username = _string(key, value, "the login name")
    if _CONTROL.search(username):
        raise FieldError(key, "must not contain control characters", value=value)
    return username


def _password_command(key: tuple[str, ...], value: object) -> str:
    command = _string(key, value, "a command that prints the password")
    if "\x00" in command:
        raise FieldError(key, "must not contain NUL characters")
    return command


def _path(key: tuple[str, ...], value: object) -> Path:
    text = _string(key, value, "a file path")
    if "\x00" in text:
        raise FieldError(key, "must not contain NUL characters", value=value)
    return Path(text).expanduser()


def _tls_name(key: tuple[str, ...], value: object) -> str:
    """The name the certificate is checked against (mailctl.hosts.tls_name's rule)."""
    name = _string(key, value, "a DNS name or IP address")
    problem = tls_name_problem(name)
    if problem is not None:
        raise FieldError(
            key, problem, value=value, hint="the name the server's certificate is issued for"
        )
    return tls_name(name, field=key_path(key))


def _bool(key: tuple[str, ...], value: object) -> bool:
    if not isinstance(value, bool):
        raise FieldError(key, "must be true or false", value=value)
    return value


def _timeout(key: tuple[str, ...], value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= MAX_TIMEOUT
    ):
        raise FieldError(
            key, f"must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}", value=value
        )
    return float(value)


def _from_address(key: tuple[str, ...], value: object) -> str:
    from email.utils import getaddresses

    text = _string(key, value, '"Name <addr@example.com>"')
    if _CONTROL.search(text):
        raise FieldError(key, "must not contain control characters", value=value)
    found = getaddresses([text])
    if len(found) != 1 or "@" not in found[0][1]:
        raise FieldError(
            key,
            "must be exactly one address",
            value=value,
            hint='write it as "Name <addr@example.com>" or "addr@example.com"',
        )
    return text


def _ehlo(key: tuple[str, ...], value: object) -> str:
    """The name as written (shown back as is); EHLO sends its ASCII form (hosts.ehlo_name)."""
    text = _string(key, value, "the name sent in EHLO")
    problem = ehlo_problem(text)
    if problem is not None:
        raise FieldError(
            key,
            f"{problem} (the name sent in EHLO)",
            value=value,
            hint="a host name (letters, digits, '-', '_' and '.') or an address literal "
            "such as [192.0.2.1]",
        )
    return text


def dump_config(config: Config) -> dict[str, Any]:
    """Turn a Config back into the TOML document parse_config reads (defaults left out)."""
    out: dict[str, Any] = {}
    if config.default_account is not None:
        out["default_account"] = config.default_account
    if config.accounts:
        out["accounts"] = {name: dump_account(a) for name, a in config.accounts.items()}
    return out


def dump_account(account: Account) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if account.from_address is not None:
        out["from"] = account.from_address
    if account.ehlo is not None:
        out["ehlo"] = account.ehlo
    for protocol in Protocol:
        settings = account.server(protocol)
        if settings is not None:
            out[protocol.value] = dump_server(settings)
    return out


def dump_server(settings: ServerSettings) -> dict[str, Any]:
    out: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "security": settings.security.value,
    }
    if settings.username is not None:
        out["username"] = settings.username
    if settings.auth is not None:
        out["auth"] = settings.auth.value
    if settings.password_command is not None:
        out["password_command"] = settings.password_command
    if settings.ca_file is not None:
        out["ca_file"] = str(settings.ca_file)
    if not settings.verify:
        out["verify"] = False
    if settings.allow_plaintext_auth:
        out["allow_plaintext_auth"] = True
    if settings.tls_name is not None:
        out["tls_name"] = settings.tls_name
    timeouts = settings.timeouts
    for name, value, default in (
        ("connect_timeout", timeouts.connect, _DEFAULT_TIMEOUTS.connect),
        ("command_timeout", timeouts.command, _DEFAULT_TIMEOUTS.command),
        ("data_timeout", timeouts.data, _DEFAULT_TIMEOUTS.data),
    ):
        if value != default:
            out[name] = float(value)
    return out
