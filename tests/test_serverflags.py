"""Server flags: secure defaults and clear errors."""

from __future__ import annotations

import pytest

from mailctl.cli.serverflags import ServerFlags, settings_from_flags, split_host_port
from mailctl.errors import ConfigError, ExitCode, UsageError
from mailctl.models import AuthMechanism, Security, ServerSettings, Timeouts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mail.example.org", ("mail.example.org", None)),
        ("mail.example.org:2525", ("mail.example.org", 2525)),
        ("[::1]:25", ("::1", 25)),
        ("[::1]", ("::1", None)),
    ],
)
def test_split_host_port(value: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(value) == expected


@pytest.mark.parametrize(
    "value", ["host:0", "host:99999", "host:x", "[::1", "", "a b:25", "h\r\n:25"]
)
def test_bad_server_values(value: str) -> None:
    with pytest.raises(UsageError):
        split_host_port(value)


def test_secure_defaults() -> None:
    assert (
        settings_from_flags(ServerFlags(server="h"), None, account_name=None).security
        is Security.STARTTLS
    )
    implicit = settings_from_flags(ServerFlags(server="h:465"), None, account_name=None)
    assert (implicit.security, implicit.port) == (Security.TLS, 465)
    assert settings_from_flags(ServerFlags(server="h"), None, account_name=None).port == 587
    assert (
        settings_from_flags(ServerFlags(server="h", no_tls=True), None, account_name=None).port
        == 25
    )


def test_flags_override_account() -> None:
    base = ServerSettings(host="smtp.example.org", port=587, username="alice")
    out = settings_from_flags(
        ServerFlags(auth="LOGIN", insecure=True, connect_timeout=3), base, account_name="work"
    )
    assert out.auth is AuthMechanism.LOGIN and out.verify is False
    assert out.timeouts.connect == 3 and out.username == "alice"


def test_no_server_anywhere_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_flags(ServerFlags(), None, account_name="work")
    assert info.value.exit_code == ExitCode.CONFIG
    assert "work" in info.value.message


def test_unknown_auth_mechanism() -> None:
    with pytest.raises(UsageError, match="gssapi"):
        settings_from_flags(ServerFlags(server="h", auth="gssapi"), None, account_name=None)


@pytest.mark.parametrize(
    ("account_data", "flags", "expected"),
    [
        (None, {}, (30.0, 60.0, 300.0)),  # defaults unchanged
        (None, {"command_timeout": 5}, (30.0, 5.0, 5.0)),  # --timeout is the ceiling
        (None, {"command_timeout": 500}, (30.0, 500.0, 300.0)),  # ... not a floor
        (None, {"command_timeout": 5, "data_timeout": 30}, (30.0, 5.0, 30.0)),  # by name
        (None, {"data_timeout": 900}, (30.0, 60.0, 900.0)),
        (600.0, {"command_timeout": 5}, (30.0, 5.0, 600.0)),  # the account asked by name
    ],
)
def test_timeout_is_the_ceiling_of_the_data_wait_unless_asked_by_name(
    account_data: float | None, flags: dict[str, float], expected: tuple[float, float, float]
) -> None:
    base = ServerSettings("h", 587)
    if account_data is not None:
        base = ServerSettings("h", 587, timeouts=Timeouts(data=account_data))
    settings = settings_from_flags(ServerFlags(**flags), base, account_name="a")
    timeouts = settings.timeouts
    assert (timeouts.connect, timeouts.command, timeouts.data) == expected


def test_data_timeout_must_be_positive() -> None:
    with pytest.raises(UsageError, match="--data-timeout"):
        settings_from_flags(ServerFlags(server="h", data_timeout=0), None, account_name=None)
