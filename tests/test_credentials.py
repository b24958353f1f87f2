"""Secret resolution: env, password_command, keyring, prompt; unusable keyrings refused clearly."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail, null
from keyring_backend import InMemoryKeyring, LockedKeyring, SlowKeyring, use_keyring

from mailctl import credentials
from mailctl.credentials import (
    SERVICE,
    SecretSource,
    delete_secret,
    keyring_key,
    resolve_secret,
    secret_source,
    store_secret,
    usable_keyring,
)
from mailctl.errors import CredentialError, ExitCode, KeyringUnavailableError
from mailctl.models import Protocol, ServerSettings

SECRET = "s3cret-Pa55"
SMTP = Protocol.SMTP
NO_ENV: dict[str, str] = {}


@pytest.fixture(autouse=True)
def memory_keyring() -> Iterator[InMemoryKeyring]:
    """Every test gets a fresh in-memory keyring: the real one is never touched."""
    backend = InMemoryKeyring()
    with use_keyring(backend):
        yield backend


def server(**kwargs: object) -> ServerSettings:
    return ServerSettings(host="smtp.example.com", port=587, username="me", **kwargs)  # type: ignore[arg-type]


def script(tmp_path: Path, body: str, name: str = "pw") -> str:
    """An executable shell script; returns its path (a command without shell syntax)."""
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o700)
    return str(path)


def never_prompt(label: str) -> str:
    raise AssertionError(f"prompted: {label}")


# --- order ------------------------------------------------------------------------------------


def test_keyring_key() -> None:
    assert keyring_key("work", Protocol.SMTP) == "work:smtp"
    assert keyring_key("work", Protocol.POP3) == "work:pop3"


def test_env_wins_over_everything(tmp_path: Path, memory_keyring: InMemoryKeyring) -> None:
    memory_keyring.set_password(SERVICE, "work:smtp", "from-keyring")
    settings = server(password_command=script(tmp_path, "echo from-command"))
    env = {"MAILCTL_PASSWORD": SECRET}
    assert resolve_secret("work", SMTP, settings, prompt=never_prompt, env=env) == SECRET
    assert secret_source("work", SMTP, settings, env=env) is SecretSource.ENV


def test_empty_env_counts_as_unset(memory_keyring: InMemoryKeyring) -> None:
    memory_keyring.set_password(SERVICE, "work:smtp", SECRET)
    assert resolve_secret("work", SMTP, server(), env={"MAILCTL_PASSWORD": ""}) == SECRET


def test_command_wins_over_keyring(tmp_path: Path, memory_keyring: InMemoryKeyring) -> None:
    memory_keyring.set_password(SERVICE, "work:smtp", "from-keyring")
    settings = server(password_command=script(tmp_path, f"echo {SECRET}"))
    assert resolve_secret("work", SMTP, settings, prompt=never_prompt, env=NO_ENV) == SECRET
    assert secret_source("work", SMTP, settings, env=NO_ENV) is SecretSource.PASSWORD_COMMAND


def test_keyring_wins_over_prompt(memory_keyring: InMemoryKeyring) -> None:
    memory_keyring.set_password(SERVICE, "work:smtp", SECRET)
    assert resolve_secret("work", SMTP, server(), prompt=never_prompt, env=NO_ENV) == SECRET
    assert secret_source("work", SMTP, server(), env=NO_ENV) is SecretSource.KEYRING
    # Another account's or protocol's entry is not used.
    assert secret_source("home", SMTP, server(), env=NO_ENV) is SecretSource.NONE
    assert secret_source("work", Protocol.IMAP, server(), env=NO_ENV) is SecretSource.NONE


def test_prompt_comes_last() -> None:
    labels: list[str] = []

    def prompt(label: str) -> str:
        labels.append(label)
        return SECRET

    assert resolve_secret("work", SMTP, server(), prompt=prompt, env=NO_ENV) == SECRET
    assert labels == ["Password for work SMTP (me@smtp.example.com)"]


def test_keyring_is_skipped_without_an_account() -> None:
    # Settings built from --server flags have no account: no keyring entry can belong to them.
    assert resolve_secret(None, SMTP, server(), prompt=lambda _: SECRET, env=NO_ENV) == SECRET


def test_empty_prompt_answer_is_an_error() -> None:
    with pytest.raises(CredentialError, match="no password entered"):
        resolve_secret("work", SMTP, server(), prompt=lambda _: "", env=NO_ENV)


def test_nothing_found_names_the_three_ways() -> None:
    with pytest.raises(CredentialError) as caught:
        resolve_secret("work", SMTP, server(), env=NO_ENV)
    error = caught.value
    assert type(error) is CredentialError and error.exit_code == ExitCode.CONFIG
    assert "accounts.work.smtp" in error.message
    hint = error.hint or ""
    assert "MAILCTL_PASSWORD" in hint and "password_command" in hint and "set-password" in hint


# --- password_command -------------------------------------------------------------------------


def test_command_output_first_line_without_line_end(tmp_path: Path) -> None:
    command = script(tmp_path, f"printf '{SECRET} \\r\\nsecond line\\n'")
    # Only the line end goes: a trailing space may be part of a password.
    assert resolve_secret("w", SMTP, server(password_command=command), env=NO_ENV) == SECRET + " "


def test_command_is_split_without_a_shell(tmp_path: Path) -> None:
    script(tmp_path, 'printf "%s|%s" "$1" "$2"', name="two args")
    command = f"'{tmp_path}/two args' 'a b' \"c'd\""
    assert credentials.run_password_command(command) == "a b|c'd"


def test_command_with_shell_syntax_runs_under_sh(tmp_path: Path) -> None:
    command = f"echo {SECRET}-extra | cut -d- -f1 && true"
    assert credentials.run_password_command(command) == SECRET.split("-", maxsplit=1)[0]


def test_command_does_not_read_our_stdin() -> None:
    # sendmail mode reads the message from stdin: the command gets /dev/null.
    with pytest.raises(CredentialError, match="printed nothing"):
        credentials.run_password_command("cat")


def test_failing_command_names_the_status_never_the_output(tmp_path: Path) -> None:
    command = script(tmp_path, f"echo {SECRET}\nexit 3")
    with pytest.raises(CredentialError) as caught:
        resolve_secret("work", SMTP, server(password_command=command), env=NO_ENV)
    text = caught.value.one_line()
    assert "exited with status 3" in text and "accounts.work.smtp" in text and "'pw'" in text
    assert SECRET not in text and SECRET not in repr(caught.value.details)
    assert caught.value.exit_code == ExitCode.CONFIG


def test_failing_shell_command_does_not_repeat_the_command_line() -> None:
    # A command line may itself hold a secret ("echo hunter2"): only the program is named.
    with pytest.raises(CredentialError) as caught:
        credentials.run_password_command(f"echo {SECRET} >/dev/null; exit 4")
    assert "exited with status 4" in caught.value.message
    assert SECRET not in caught.value.one_line()


def test_missing_program(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match="cannot run"):
        credentials.run_password_command(str(tmp_path / "no-such-program"))


def test_unbalanced_quotes() -> None:
    with pytest.raises(CredentialError, match="cannot be split"):
        credentials.run_password_command("pass show 'mail")


def test_command_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials, "PASSWORD_COMMAND_TIMEOUT", 0.3)
    started = time.monotonic()
    with pytest.raises(CredentialError, match=r"did not finish within 0\.3 s"):
        credentials.run_password_command("sleep 30")
    assert time.monotonic() - started < 5


# --- the keyring ------------------------------------------------------------------------------


def test_store_and_delete(memory_keyring: InMemoryKeyring) -> None:
    store_secret("work", Protocol.IMAP, SECRET)
    assert memory_keyring.entries == {(SERVICE, "work:imap"): SECRET}
    assert delete_secret("work", Protocol.IMAP) is True
    assert delete_secret("work", Protocol.IMAP) is False
    assert memory_keyring.entries == {}


def test_fail_backend_gives_the_clear_message() -> None:
    with use_keyring(fail.Keyring()):
        with pytest.raises(KeyringUnavailableError) as caught:
            resolve_secret("work", SMTP, server(), env=NO_ENV)
        error = caught.value
        assert error.exit_code == ExitCode.CONFIG
        assert "no system keyring" in error.message and "accounts.work.smtp" in error.message
        assert "password_command" in (error.hint or "") and "MAILCTL_PASSWORD" in (error.hint or "")
        with pytest.raises(KeyringUnavailableError):
            store_secret("work", SMTP, SECRET)
        # With a prompt, an unusable keyring just means "nothing stored there".
        assert (
            resolve_secret("work", SMTP, server(), prompt=lambda _: "typed", env=NO_ENV) == "typed"
        )
        assert secret_source("work", SMTP, server(), env=NO_ENV) is SecretSource.NONE


class PlaintextKeyring(InMemoryKeyring):
    """Stands in for keyrings.alt.file.PlaintextKeyring (not installed here)."""


PlaintextKeyring.__module__ = "keyrings.alt.file"


class UnrecommendedKeyring(InMemoryKeyring):
    priority = 0.5


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        (fail.Keyring(), "no system keyring"),
        (null.Keyring(), "no system keyring"),
        (PlaintextKeyring(), "does not protect secrets"),
        (UnrecommendedKeyring(), "does not recommend"),
    ],
    ids=["fail", "null", "keyrings.alt", "low-priority"],
)
def test_unusable_backends_are_refused(backend: KeyringBackend, expected: str) -> None:
    with use_keyring(backend), pytest.raises(KeyringUnavailableError) as caught:
        usable_keyring()
    assert expected in caught.value.message
    assert "password_command" in (caught.value.hint or "")


def chainer(children: list[KeyringBackend]) -> KeyringBackend:
    from keyring.backends.chainer import ChainerBackend

    class Chain(ChainerBackend):
        backends = children  # type: ignore[assignment]
        viable = False  # never picked by keyring's own discovery

    Chain.__name__ = "ChainerBackend"
    Chain.__module__ = ChainerBackend.__module__
    return Chain()


def test_chainer_backends() -> None:
    good = InMemoryKeyring()
    for unusable in ([], [PlaintextKeyring(), fail.Keyring()]):
        with use_keyring(chainer(unusable)), pytest.raises(KeyringUnavailableError, match="chain"):
            usable_keyring()
    mixed = chainer([good, PlaintextKeyring()])
    with use_keyring(mixed):
        assert usable_keyring() is good  # the safe one alone, never the plaintext one
    whole = chainer([good, InMemoryKeyring()])
    with use_keyring(whole):
        assert usable_keyring() is whole


def test_locked_keyring_is_a_credential_error() -> None:
    with use_keyring(LockedKeyring()):
        with pytest.raises(CredentialError, match="locked") as caught:
            resolve_secret("work", SMTP, server(), prompt=never_prompt, env=NO_ENV)
        assert caught.value.exit_code == ExitCode.CONFIG
        with pytest.raises(CredentialError, match="locked"):
            store_secret("work", SMTP, SECRET)


def test_hanging_keyring_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(credentials, "KEYRING_TIMEOUT", 0.2)
    backend = SlowKeyring()
    backend.delay = 1.0
    with (
        use_keyring(backend),
        pytest.raises(CredentialError, match=r"did not answer within 0\.2 s"),
    ):
        resolve_secret("work", SMTP, server(), env=NO_ENV)


def test_keyring_is_imported_lazily() -> None:
    code = "import sys, mailctl.credentials, mailctl.config.store; print('keyring' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
