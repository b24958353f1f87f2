"""Whether the config file may be trusted: nobody but its user (or root) can change or swap it.

The config names the commands that print passwords (password_command), the servers those
passwords are sent to, and the CA that vouches for those servers. Whoever can write the file,
or rename entries in any folder above it, can make mailctl run their command or hand a keyring
password to their server. So, as ssh does for ~/.ssh/config and msmtp for its rc file, the
file and every folder up to / must belong to the user or to root, and none may be writable by
group or others, except folders with the sticky bit (/tmp): there others cannot rename or
delete entries they do not own. "The user" is the effective uid; for root that is uid 0 only,
so root does not take orders from a file another account owns.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mailctl.errors import ConfigInsecureError

__all__ = ["check_trusted"]

_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def check_trusted(path: Path, info: os.stat_result, *, uid: int | None = None) -> None:
    """Raise ConfigInsecureError unless only `uid` (default: ours) or root can change `path`.

    `info` is the fstat of the opened file, so the file checked is the file read. The folders
    checked are every ancestor of the path as given and of its resolved target (a symlinked
    config is as safe as the folder holding the link). Does nothing where there are no uids.
    """
    if uid is None:
        if not hasattr(os, "geteuid"):
            return
        uid = os.geteuid()
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid not in (uid, 0):
        raise _insecure(
            f"{path}: the config file is owned by {_who(info.st_uid)}, "
            + ("not by you (root)" if uid == 0 else f"not by you ({_who(uid)}) or root")
            + ": its owner decides what mailctl runs",
            hint=f"chown {_name(uid)} {path}, after checking what is in it",
            path=path,
            mode=mode,
            owner=info.st_uid,
        )
    if mode & _OTHERS_WRITE:
        raise _insecure(
            f"{path}: the config file is mode {mode:04o}, writable by {_writers(mode)}, who "
            "could make mailctl run their commands or send your passwords to their server",
            hint=f"chmod 600 {path}",
            path=path,
            mode=mode,
            owner=info.st_uid,
        )
    for folder in _folders(path):
        _check_folder(path, folder, uid)


def _check_folder(path: Path, folder: Path, uid: int) -> None:
    try:
        info = os.stat(folder)
    except OSError:
        return  # a folder we cannot stat is one we could not have read the file through
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid not in (uid, 0):
        raise _insecure(
            f"{path}: its folder {folder} is owned by {_who(info.st_uid)}, who could replace "
            "the config file",
            hint="keep the config in folders owned by you or root (see --config)",
            path=path,
            mode=mode,
            owner=info.st_uid,
            folder=folder,
        )
    if mode & _OTHERS_WRITE and not mode & stat.S_ISVTX:
        raise _insecure(
            f"{path}: its folder {folder} is mode {mode:04o}, writable by {_writers(mode)}, "
            "who could replace the config file",
            hint=f"chmod go-w {folder}",
            path=path,
            mode=mode,
            owner=info.st_uid,
            folder=folder,
        )


def _folders(path: Path) -> list[Path]:
    """Every folder above the path as given and above its real location, nearest first."""
    given = Path(os.path.abspath(path))
    real = Path(os.path.realpath(path))
    seen: list[Path] = []
    for folder in (*given.parents, *real.parents):
        if folder not in seen:
            seen.append(folder)
    return seen


def _writers(mode: int) -> str:
    group, others = bool(mode & stat.S_IWGRP), bool(mode & stat.S_IWOTH)
    return "group and others" if group and others else "its group" if group else "others"


def _name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def _who(uid: int) -> str:
    name = _name(uid)
    return f"{name} (uid {uid})" if name != str(uid) else f"uid {uid}"


def _insecure(
    message: str,
    *,
    hint: str,
    path: Path,
    mode: int,
    owner: int,
    folder: Path | None = None,
) -> ConfigInsecureError:
    details: dict[str, object] = {"file": str(path), "mode": f"{mode:04o}", "owner_uid": owner}
    if folder is not None:
        details["folder"] = str(folder)
    return ConfigInsecureError(message, hint=hint, details=details)
