"""Where mailctl's files live: the config file (--config, $MAILCTL_CONFIG, XDG, ~/.config) and
the state directory ($XDG_STATE_HOME/mailctl, else ~/.local/state/mailctl)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENV_CONFIG = "MAILCTL_CONFIG"
APP_DIR = "mailctl"
FILE_NAME = "config.toml"


def config_path(override: Path | None = None, env: Mapping[str, str] = os.environ) -> Path:
    """Return the config file to use; the first of these wins.

    1. `override` (the global `--config` option),
    2. `$MAILCTL_CONFIG`,
    3. `$XDG_CONFIG_HOME/mailctl/config.toml` (only an absolute XDG_CONFIG_HOME counts, as the
       XDG Base Directory spec says),
    4. `~/.config/mailctl/config.toml`.

    `~` is expanded in 1 and 2. Empty environment variables count as unset. Raises nothing:
    the file need not exist.
    """
    if override is not None:
        return _expand(Path(override), env)
    explicit = env.get(ENV_CONFIG, "")
    if explicit:
        return _expand(Path(explicit), env)
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / APP_DIR / FILE_NAME
    return _home(env) / ".config" / APP_DIR / FILE_NAME


def state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Return mailctl's state directory (the XDG Base Directory spec's $XDG_STATE_HOME).

    Kept data that is not configuration, such as the sink's certificate. Only an absolute
    XDG_STATE_HOME counts; else ~/.local/state/mailctl. Raises nothing: it need not exist.
    """
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / APP_DIR
    return _home(env) / ".local" / "state" / APP_DIR


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME", "")
    return Path(home) if home else Path.home()


def _expand(path: Path, env: Mapping[str, str]) -> Path:
    parts = path.parts
    if parts and parts[0] == "~":
        return _home(env).joinpath(*parts[1:])
    return path.expanduser()
