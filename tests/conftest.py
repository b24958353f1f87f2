"""Shared pytest configuration: fixtures from tests/servers/ and tests/fixtures_keyring.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# tests/ has no __init__.py, so pytest puts tests/ itself on sys.path (rootdir-relative
# "prepend" import mode): the plugins are importable as `servers.*` under both
# `pytest` and `python -m pytest`.
pytest_plugins = [
    "servers.smtp_server",
    "servers.dovecot",
    "servers.postfix",
    "servers.scripted_smtp",
    "servers.dns",
    "servers.probe_servers",
    "fixtures_keyring",
]


@pytest.fixture(autouse=True)
def _no_real_keyring(memory_keyring: object) -> Iterator[object]:
    """Every test gets a fresh in-memory keyring: no test may touch a developer's real one."""
    yield memory_keyring


@pytest.fixture(autouse=True)
def _private_state_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mailctl's state directory (the sink's kept certificate) in a temp dir, never ~/.local."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
