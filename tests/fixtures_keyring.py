"""Keyring fixtures: a fresh in-memory keyring, or keyring's fail backend (a headless Linux).

tests/conftest.py may re-export them for every test module:
    from fixtures_keyring import fail_keyring, memory_keyring  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from keyring.backends import fail
from keyring_backend import InMemoryKeyring, use_keyring


@pytest.fixture
def memory_keyring() -> Iterator[InMemoryKeyring]:
    """A working, empty keyring for the test; the previous backend comes back afterwards."""
    backend = InMemoryKeyring()
    with use_keyring(backend):
        yield backend


@pytest.fixture
def fail_keyring() -> Iterator[fail.Keyring]:
    """What keyring picks on a headless Linux without Secret Service."""
    backend = fail.Keyring()
    with use_keyring(backend):
        yield backend
