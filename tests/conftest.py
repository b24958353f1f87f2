"""Shared pytest configuration: fixture plugins live in tests/servers/."""

from __future__ import annotations

# tests/ has no __init__.py, so pytest puts tests/ itself on sys.path (rootdir-relative
# "prepend" import mode): the plugins are importable as `servers.*` under both
# `pytest` and `python -m pytest`.
pytest_plugins = ["servers.smtp_server", "servers.dovecot"]
