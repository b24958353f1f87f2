"""Reading the config file and writing it atomically (temp file, fsync, rename; 0600 in 0700)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from mailctl.config.schema import dump_config, parse_config
from mailctl.errors import CantCreateError, ConfigError, InputDataError, NoInputError
from mailctl.models import Account, Config
from mailctl.store.files import write_atomic
from mailctl.text import quote

FILE_MODE = 0o600
DIR_MODE = 0o700


def load_config(path: Path) -> Config:
    """Read and validate the config file; a missing file (or /dev/null) is an empty Config.

    The file must be a regular file of at most CONFIG_LIMIT bytes that only the user (or
    root) can change (config/trust.py), checked on the open file before it is read.
    Raises ConfigInsecureError when others could change it; ConfigError (unreadable, not a
    regular file, too large, not UTF-8, invalid TOML, invalid values), naming the file and,
    for values, the key path. Warnings (a password in the file) are in `Config.warnings`
    for the caller to show.
    """
    import tomllib

    from mailctl.config.trust import check_trusted
    from mailctl.inputs import CONFIG_LIMIT, read_optional_file

    if _is_devnull(path):
        return Config(accounts={}, path=path)
    try:
        raw = read_optional_file(
            path,
            what="config file",
            limit=CONFIG_LIMIT,
            hint="a mailctl config is a few KiB: check the path, or choose another with --config",
            check=lambda info: check_trusted(path, info),
        )
    except (InputDataError, NoInputError) as err:
        # A config problem whatever the reason (sysexits EX_CONFIG), with the reader's words.
        raise ConfigError(
            err.message,
            hint=err.hint or "check the path and its permissions, or choose another with --config",
            details={"file": str(path)},
        ) from err
    if raw is None:
        return Config(accounts={}, path=path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: the config file is not UTF-8 (byte {err.start})",
            hint="save it as UTF-8",
            details={"file": str(path)},
        ) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(
            f"{path}: invalid TOML: {err}",
            hint="see https://toml.io for the syntax",
            details={"file": str(path)},
        ) from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ConfigError(
            f"{path}: invalid TOML: arrays or tables nested too deeply",
            details={"file": str(path)},
        ) from None
    return parse_config(document, path=path)


def _is_devnull(path: Path) -> bool:
    """`--config /dev/null` means "no config", as `ssh -F /dev/null` does."""
    try:
        return os.path.samefile(path, os.devnull)
    except OSError:
        return False


def save_config(config: Config, path: Path) -> None:
    """Write `config` to `path` atomically: readers see the old file or the new one, never half.

    The document is validated before writing (never write a file we could not read back). A
    symlinked config file is written through the link, so dotfile managers keep working. The
    file is 0600; directories that have to be created are 0700. Raises CantCreateError naming
    the path when anything fails, leaving the old file untouched.
    """
    import tomli_w

    document = dump_config(config)
    parse_config(document, path=path)
    payload = tomli_w.dumps(document).encode("utf-8")
    target = Path(os.path.realpath(path))
    try:
        _make_dirs(target.parent)
    except OSError as err:
        raise CantCreateError(
            f"{path}: cannot create the directory {target.parent}: "
            f"{err.strerror or type(err).__name__}",
            hint="check the permissions of the parent directory, or choose another with --config",
            details={"file": str(path)},
        ) from err
    write_atomic(target, payload, mode=FILE_MODE, shown=path, what="config file")


def _make_dirs(directory: Path) -> None:
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for created in reversed(missing):
        with contextlib.suppress(FileExistsError):
            created.mkdir(mode=DIR_MODE)
        os.chmod(created, DIR_MODE)  # mkdir's mode is filtered by the umask


def find_account(config: Config, name: str | None) -> Account:
    """Return the named account, or the default one when `name` is None.

    With no name and no default_account, a config holding exactly one account uses it.
    Raises ConfigError when there is no such account (listing those there are).
    """
    where = str(config.path) if config.path is not None else "the config file"
    if not config.accounts:
        raise ConfigError(
            f"no accounts are configured in {where}",
            hint="add one with `mailctl account add NAME`",
        )
    if name is None:
        if config.default_account is not None:
            name = config.default_account
        elif len(config.accounts) == 1:
            return next(iter(config.accounts.values()))
        else:
            raise ConfigError(
                f"no account given and no default_account set in {where}",
                hint="pass --account NAME (-a NAME in sendmail mode), or set default_account "
                "in the file",
            )
    account = config.accounts.get(name)
    if account is None:
        raise ConfigError(
            f"no account named {quote(name)} in {where}",
            hint=f"accounts: {', '.join(sorted(config.accounts))}",
        )
    return account


def account_for_address(config: Config, address: str) -> Account | None:
    """The account whose `from` address is `address` (case-insensitive), for sendmail's -f.

    `address` may be a bare addr-spec or "Name <addr>". When several accounts match, the
    default account wins, then the first in the file. None when nothing matches.
    """
    wanted = _addr_spec(address)
    if not wanted:
        return None
    matches = [
        account
        for account in config.accounts.values()
        if account.from_address is not None and _addr_spec(account.from_address) == wanted
    ]
    if not matches:
        return None
    for account in matches:
        if account.name == config.default_account:
            return account
    return matches[0]


def _addr_spec(value: str) -> str:
    from email.utils import parseaddr

    return parseaddr(value)[1].strip().lower()
