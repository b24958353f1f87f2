"""In-memory keyring backends for tests: the OS keyring is the one thing we cannot run here."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import keyring
import keyring.core
from keyring.backend import KeyringBackend
from keyring.errors import KeyringLocked, PasswordDeleteError


class InMemoryKeyring(KeyringBackend):
    """A working keyring that keeps secrets in a dict: {(service, username): password}."""

    priority = 10  # a plain number, as keyring's docs show
    # Never chosen by keyring's own discovery (get_all_keyring), only through use_keyring():
    # a test elsewhere that lets keyring pick a backend must not get one of these.
    viable = False

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        try:
            del self.entries[(service, username)]
        except KeyError:
            raise PasswordDeleteError("not found") from None


class LockedKeyring(InMemoryKeyring):
    """A Secret Service whose collection stays locked: every operation raises KeyringLocked."""

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringLocked("Failed to unlock the collection!")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringLocked("Failed to unlock the collection!")


class SlowKeyring(InMemoryKeyring):
    """A keyring that hangs (an unlock dialog nobody answers) for `delay` seconds."""

    delay = 5.0

    def get_password(self, service: str, username: str) -> str | None:
        time.sleep(self.delay)
        return None


@contextlib.contextmanager
def use_keyring(backend: KeyringBackend) -> Iterator[KeyringBackend]:
    """Install `backend` as keyring's backend for the block, then restore the previous one."""
    previous = keyring.core._keyring_backend
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.core._keyring_backend = previous
