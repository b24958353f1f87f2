"""Where secrets come from: $MAILCTL_PASSWORD, a password command, the OS keyring, a prompt.

This module never prompts by itself (the prompt is a callable handed in by cli), never logs or
returns a secret in an error, and imports keyring only when a keyring is actually consulted.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, Final, TypeVar

from mailctl.errors import CredentialError, KeyringUnavailableError
from mailctl.inputs import SECRET_LIMIT, describe
from mailctl.models import Protocol, ServerSettings
from mailctl.text import quote

SERVICE: Final = "mailctl"
ENV_PASSWORD: Final = "MAILCTL_PASSWORD"  # noqa: S105 (a variable name)
PASSWORD_COMMAND_TIMEOUT: Final = 30.0
# All of a password command's output (a secret is its first line; an OAuth2 token fits too).
PASSWORD_OUTPUT_LIMIT: Final = SECRET_LIMIT
# Unlocking a Secret Service collection may show a dialog; a headless session may never answer.
KEYRING_TIMEOUT: float = 60.0

# Characters that only a shell gives meaning to. A password_command containing none of them is
# split with shlex and run directly; one that has any (a pipe, $VAR, ~, a glob, ...) runs under
# /bin/sh -c, exactly as written.
_SHELL_SYNTAX = re.compile(r"[|&;<>()$`*?\[\]{}~\n]")
# PEP 383: bytes that are not UTF-8 arrive from the environment as lone surrogates.
_SURROGATE = re.compile("[\ud800-\udfff]")
_T = TypeVar("_T")

THREE_WAYS: Final = (
    "set MAILCTL_PASSWORD, set password_command in the account's config block, "
    "or store it in the keyring with `mailctl account set-password NAME`"
)


class SecretSource(StrEnum):
    """Where resolve_secret would find a secret (reported by `account show`, never the secret)."""

    ENV = "env"
    PASSWORD_COMMAND = "password_command"  # noqa: S105 (a source name)
    KEYRING = "keyring"
    NONE = "none found"


def keyring_key(account: str, protocol: Protocol) -> str:
    """The keyring user name for an account's block: `work:smtp`."""
    return f"{account}:{protocol.value}"


def resolve_secret(
    account: str | None,
    protocol: Protocol,
    settings: ServerSettings,
    *,
    prompt: Callable[[str], str] | None = None,
    env: Mapping[str, str] = os.environ,
) -> str:
    """Return the password for one server block, from the first source that has one.

    Order: $MAILCTL_PASSWORD (non-empty), the block's password_command, the OS keyring (only
    for a named account), `prompt` (cli passes one only on a terminal).

    Raises CredentialError when a source fails (the command exits non-zero, times out or prints
    nothing; the keyring errors), when its secret is not UTF-8 text (see require_text) or none
    has a secret; KeyringUnavailableError when nothing
    else applies and the keyring is unusable. No message ever contains the secret.
    """
    from_env = env.get(ENV_PASSWORD, "")
    if from_env:
        return require_text(from_env, source=ENV_PASSWORD)
    label = _label(account, protocol)
    if settings.password_command is not None:
        return run_password_command(settings.password_command, label=label)
    keyring_problem: KeyringUnavailableError | None = None
    if account is not None:
        try:
            stored = _keyring_get(account, protocol)
        except KeyringUnavailableError as err:
            keyring_problem = err
        else:
            if stored is not None:
                key = keyring_key(account, protocol)
                return require_text(stored, source=f"the keyring entry {key}")
    if prompt is not None:
        secret = prompt(_prompt_text(account, protocol, settings))
        if secret:
            return require_text(secret, source="the password typed at the prompt")
        raise CredentialError(f"no password entered for {label}", hint=THREE_WAYS)
    if keyring_problem is not None:
        raise KeyringUnavailableError(
            f"no password for {label}: {keyring_problem.message}",
            hint="set password_command in the account's config block or MAILCTL_PASSWORD",
        )
    raise CredentialError(f"no password found for {label}", hint=THREE_WAYS)


class Secrets:
    """The secrets of one run: each server block's looked up on first use, then kept.

    `for_server` hands the protocol layer a callable it calls right before AUTH; the lookup
    (resolve_secret: environment, password command, keyring, `prompt`) runs once per block,
    so bench's hundred connections, or a send after an account test of the same block, ask
    the keyring or the user once. A failed lookup is not kept: the next call tries again.
    """

    def __init__(
        self,
        *,
        prompt: Callable[[str], str] | None = None,
        env: Mapping[str, str] = os.environ,
    ) -> None:
        self._prompt = prompt
        self._env = env
        self._found: dict[tuple[object, ...], str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the secrets, even in a traceback with locals
        return f"<Secrets: {len(self._found)} kept>"

    def for_server(
        self, account: str | None, protocol: Protocol, settings: ServerSettings
    ) -> Callable[[], str]:
        """The secret of one server block, as a callable (see the class docstring).

        The callable raises what resolve_secret raises.
        """
        key: tuple[object, ...] = (account, protocol, settings.host, settings.port)
        key += (settings.username, settings.password_command)

        def secret() -> str:
            with self._lock:
                if key not in self._found:
                    self._found[key] = resolve_secret(
                        account, protocol, settings, prompt=self._prompt, env=self._env
                    )
                return self._found[key]

        return secret


def require_text(secret: str, *, source: str) -> str:
    """Return `secret` if it is text that UTF-8 can carry; raise CredentialError otherwise.

    Python hands environment bytes that are not UTF-8 over as surrogate escapes (PEP 383). AUTH
    PLAIN carries UTF-8 (RFC 4616), and so do LOGIN, CRAM-MD5's HMAC key and IMAP/POP3 in
    practice: no server could check such a password, and encoding it would fail later under a
    misleading name. The message names the source only: a byte or its position would tell
    part of the secret.
    """
    if _SURROGATE.search(secret):
        raise CredentialError(
            f"{source} is not valid UTF-8 text",
            hint="a password is sent as UTF-8 (RFC 4616); set it from UTF-8 text "
            "(iconv -f LATIN1 -t UTF-8 converts it)",
        )
    return secret


def secret_source(
    account: str | None,
    protocol: Protocol,
    settings: ServerSettings,
    *,
    env: Mapping[str, str] = os.environ,
) -> SecretSource:
    """Say which source resolve_secret would use, without running the password command.

    Looks in the keyring (a stored entry is read but not returned); an unusable keyring or a
    keyring error counts as "none found".
    """
    if env.get(ENV_PASSWORD, ""):
        return SecretSource.ENV
    if settings.password_command is not None:
        return SecretSource.PASSWORD_COMMAND
    if account is not None:
        try:
            if _keyring_get(account, protocol) is not None:
                return SecretSource.KEYRING
        except CredentialError:
            pass
    return SecretSource.NONE


def run_password_command(command: str, *, label: str = "password_command") -> str:
    """Run a password command and return the first line of its output, without the line end.

    The command runs directly (split with shlex) unless it contains shell syntax, then with
    `/bin/sh -c`. Its stdin is /dev/null (sendmail mode reads the message from our stdin), its
    stderr goes to ours, uncaptured, so gpg or pass can explain themselves. It runs in a
    session of its own: at most PASSWORD_OUTPUT_LIMIT bytes of its output are read, and on a
    timeout, too much output or any other failure its whole process group is killed (a shell
    pipeline's children too). Raises CredentialError on a non-zero exit (naming the status,
    never the output), after PASSWORD_COMMAND_TIMEOUT seconds, past the output limit, or when
    it prints nothing. Messages name the program, not the whole command line, which could
    itself hold a secret.
    """
    argv = _command_argv(command, label=label)
    program = os.path.basename(argv[0]) if argv[0] != "/bin/sh" else "sh -c"
    what = f"password_command for {label} (program {quote(program)})"
    try:
        # start_new_session: its own process group to kill as a whole, and no controlling
        # terminal (a prompt on /dev/tty fails at once instead of hanging in the background).
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,
        )
    except OSError as err:
        raise CredentialError(
            f"{what} cannot run: {err.strerror or type(err).__name__}",
            hint="check that the program is installed and on PATH",
        ) from None
    try:
        output = _collect_output(process, what)
        if process.returncode != 0:
            status = (
                f"was killed by signal {-process.returncode}"
                if process.returncode < 0
                else f"exited with status {process.returncode}"
            )
            raise CredentialError(f"{what} {status}", hint="run the command by hand to see why")
        # Only the first line is the secret: `pass show` prints notes after it, which may be
        # in any encoding, so only that line is decoded.
        first_line = output.splitlines()[0] if output else b""
        try:
            text = first_line.decode("utf-8")
        except UnicodeDecodeError:
            raise CredentialError(
                f"{what} printed a first line that is not valid UTF-8 text",
                hint="a password is sent as UTF-8 (RFC 4616); make the command print UTF-8",
            ) from None
        first = text.splitlines()[0] if text else ""
        if not first:
            raise CredentialError(
                f"{what} printed nothing on its first line",
                hint="the first line of its output must be the password",
            )
    except BaseException:
        _kill_group(process)
        raise
    return first


def _collect_output(process: subprocess.Popen[bytes], what: str) -> bytes:
    """Read the command's stdout to its end and wait for it, within the deadline and limit.

    Raises CredentialError on timeout or past PASSWORD_OUTPUT_LIMIT; the caller kills.
    """
    assert process.stdout is not None
    deadline = time.monotonic() + PASSWORD_COMMAND_TIMEOUT
    chunks: list[bytes] = []
    total = 0
    with process.stdout, selectors.DefaultSelector() as selector:
        fd = process.stdout.fileno()
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _timed_out(what)
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            total += len(chunk)
            if total > PASSWORD_OUTPUT_LIMIT:
                raise CredentialError(
                    f"{what} printed more than {describe(PASSWORD_OUTPUT_LIMIT)}; "
                    "a password is one short line",
                    hint="make it print only the secret, e.g. 'pass show NAME | head -n 1'",
                )
            chunks.append(chunk)
    try:  # it closed its output; it may still be running
        process.wait(max(deadline - time.monotonic(), 0.001))
    except subprocess.TimeoutExpired:
        raise _timed_out(what) from None
    return b"".join(chunks)


def _timed_out(what: str) -> CredentialError:
    return CredentialError(
        f"{what} did not finish within {PASSWORD_COMMAND_TIMEOUT:g} s",
        hint="run the command by hand to see what it waits for",
    )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command's process group (its own session) and reap the command.

    The group outlives a reaped leader while any member lives, so its id cannot have been
    reused by then; ProcessLookupError means nobody was left.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _command_argv(command: str, *, label: str) -> list[str]:
    if _SHELL_SYNTAX.search(command):
        return ["/bin/sh", "-c", command]
    try:
        argv = shlex.split(command)
    except ValueError as err:
        raise CredentialError(
            f"password_command for {label} cannot be split into words: {err}",
            hint="check its quotes",
        ) from None
    if not argv:
        raise CredentialError(f"password_command for {label} is empty")
    return argv


def store_secret(account: str, protocol: Protocol, secret: str) -> None:
    """Store `secret` in the OS keyring as service "mailctl", user `account:protocol`.

    Raises KeyringUnavailableError (no usable keyring) or CredentialError (the keyring
    refused, e.g. a locked collection).
    """
    backend = usable_keyring()
    key = keyring_key(account, protocol)
    _keyring_call(lambda: backend.set_password(SERVICE, key, secret), what=f"storing {key}")


def delete_secret(account: str, protocol: Protocol) -> bool:
    """Delete the keyring entry for an account's block; False when there was none.

    Raises KeyringUnavailableError or CredentialError like store_secret.
    """
    from keyring.errors import PasswordDeleteError

    backend = usable_keyring()
    key = keyring_key(account, protocol)

    def delete() -> bool:
        if backend.get_password(SERVICE, key) is None:
            return False
        try:
            backend.delete_password(SERVICE, key)
        except PasswordDeleteError:
            return False
        return True

    return _keyring_call(delete, what=f"deleting {key}")


def usable_keyring() -> Any:
    """Return the keyring backend if it really stores secrets safely.

    Raises KeyringUnavailableError for keyring's fail and null backends (what a headless
    Linux without Secret Service gets), for any keyrings.alt backend (plaintext files, or an
    "encrypted" file that prompts on its own), for backends keyring itself ranks as not
    recommended (priority below 1), and for a chainer with no usable backend inside.
    """
    try:
        import keyring

        backend = keyring.get_keyring()
    except Exception as err:  # keyring's own start-up (a bad keyringrc.cfg, a broken plugin)
        raise _unavailable(f"keyring failed to start: {type(err).__name__}") from None
    children = _chained(backend)
    if children is None:
        problem = _backend_problem(backend)
        if problem is not None:
            raise _unavailable(problem)
        return backend
    usable = [child for child in children if _backend_problem(child) is None]
    if not usable:
        raise _unavailable("no usable backend in keyring's chain of backends")
    # When some chained backends are unsafe, use the best safe one alone rather than the chain.
    return backend if len(usable) == len(children) else usable[0]


def _chained(backend: Any) -> list[Any] | None:
    """The backends inside keyring's ChainerBackend, or None for any other backend."""
    cls = type(backend)
    if cls.__name__ != "ChainerBackend" or not cls.__module__.startswith("keyring."):
        return None
    try:
        return list(backend.backends)
    except Exception:
        return []


def _backend_problem(backend: Any) -> str | None:
    cls = type(backend)
    module, name = cls.__module__, cls.__name__
    described = f"{module}.{name}"
    if module.startswith(("keyring.backends.fail", "keyring.backends.null")):
        return f"no system keyring was found (keyring chose {described})"
    if module.startswith("keyrings.alt") or "plaintext" in name.lower():
        return f"the keyring backend {described} does not protect secrets well enough"
    try:
        priority = float(backend.priority)
    except Exception:
        return f"the keyring backend {described} is not available here"
    return None if priority >= 1 else f"keyring itself does not recommend {described}"


def _unavailable(problem: str) -> KeyringUnavailableError:
    return KeyringUnavailableError(
        problem,
        hint="use password_command in the account's config block, or MAILCTL_PASSWORD",
    )


def _keyring_get(account: str, protocol: Protocol) -> str | None:
    backend = usable_keyring()
    key = keyring_key(account, protocol)
    found: object = _keyring_call(lambda: backend.get_password(SERVICE, key), what=f"reading {key}")
    if found is None:
        return None
    if not isinstance(found, str):
        raise CredentialError(f"the keyring returned something that is not text for {key}")
    return found or None


def _keyring_call(call: Callable[[], _T], *, what: str) -> _T:
    """Run one keyring operation with a deadline; keyring exceptions become CredentialError.

    The call runs in a daemon thread: a Secret Service waiting on an unlock dialog nobody can
    see must not hang mailctl forever (and cannot keep the process alive at exit).
    """
    result: list[_T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(call())
        except BaseException as err:
            failure.append(err)

    worker = threading.Thread(target=target, name="mailctl-keyring", daemon=True)
    worker.start()
    worker.join(KEYRING_TIMEOUT)
    if worker.is_alive():
        raise CredentialError(
            f"the keyring did not answer within {KEYRING_TIMEOUT:g} s while {what}",
            hint="unlock the keyring (it may be waiting for a password dialog), or use "
            "password_command or MAILCTL_PASSWORD",
        )
    if failure:
        err = failure[0]
        if isinstance(err, CredentialError):
            raise err
        if not isinstance(err, Exception):
            raise err
        raise _keyring_error(err, what=what) from None
    return result[0]


def _keyring_error(err: Exception, *, what: str) -> CredentialError:
    kind = type(err).__name__
    if kind == "KeyringLocked":
        return CredentialError(
            f"the keyring is locked (while {what})",
            hint="unlock it (log in to the desktop session), or use password_command or "
            "MAILCTL_PASSWORD",
        )
    if kind == "NoKeyringError":
        return _unavailable("no system keyring was found")
    detail = " ".join(str(err).split())[:200]
    return CredentialError(
        f"the keyring failed while {what}: {kind}" + (f": {detail}" if detail else ""),
        hint="use password_command or MAILCTL_PASSWORD instead",
    )


def _label(account: str | None, protocol: Protocol) -> str:
    from mailctl.config.schema import key_path

    return key_path(("accounts", account, protocol.value)) if account else protocol.value


def _prompt_text(account: str | None, protocol: Protocol, settings: ServerSettings) -> str:
    who = f"{settings.username}@" if settings.username else ""
    name = f"{account} " if account else ""
    return f"Password for {name}{protocol.value.upper()} ({who}{settings.host})"
