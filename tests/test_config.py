"""Config location, schema validation, atomic writes and the dump/parse round trip."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from mailctl.config.paths import config_path
from mailctl.config.schema import dump_config, parse_config
from mailctl.config.store import account_for_address, find_account, load_config, save_config
from mailctl.errors import CantCreateError, ConfigError, ExitCode
from mailctl.models import (
    Account,
    AuthMechanism,
    Config,
    Protocol,
    Security,
    ServerSettings,
    Timeouts,
)

FILE = Path("/home/u/.config/mailctl/config.toml")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def parse_toml(text: str, path: Path = FILE) -> Config:
    return parse_config(tomllib.loads(text), path=path)


# --- location ------------------------------------------------------------------------------


def test_config_path_precedence() -> None:
    env = {
        "MAILCTL_CONFIG": "/env/config.toml",
        "XDG_CONFIG_HOME": "/xdg",
        "HOME": "/home/u",
    }
    assert config_path(Path("/flag.toml"), env) == Path("/flag.toml")
    assert config_path(None, env) == Path("/env/config.toml")
    del env["MAILCTL_CONFIG"]
    assert config_path(None, env) == Path("/xdg/mailctl/config.toml")
    del env["XDG_CONFIG_HOME"]
    assert config_path(None, env) == Path("/home/u/.config/mailctl/config.toml")


def test_config_path_ignores_empty_and_relative_xdg_and_expands_tilde() -> None:
    env = {"MAILCTL_CONFIG": "", "XDG_CONFIG_HOME": "relative/dir", "HOME": "/home/u"}
    assert config_path(None, env) == Path("/home/u/.config/mailctl/config.toml")
    assert config_path(Path("~/m.toml"), env) == Path("/home/u/m.toml")
    assert config_path(None, {"MAILCTL_CONFIG": "~/x.toml", "HOME": "/h"}) == Path("/h/x.toml")


# --- schema: good files -----------------------------------------------------------------------


def test_minimal_account_gets_secure_defaults() -> None:
    config = parse_toml(
        """
        default_account = "work"
        [accounts.work]
        from = "Me <me@example.com>"
        [accounts.work.smtp]
        host = "smtp.example.com"
        [accounts.work.imap]
        host = "imap.example.com"
        [accounts.work.pop3]
        host = "pop.example.com"
        security = "starttls"
        """
    )
    work = config.accounts["work"]
    assert config.default_account == "work"
    assert config.path == FILE
    assert config.warnings == ()
    assert work.from_address == "Me <me@example.com>"
    assert work.smtp == ServerSettings(host="smtp.example.com", port=587)
    assert work.smtp.security is Security.STARTTLS and work.smtp.verify
    assert work.imap is not None and (work.imap.security, work.imap.port) == (Security.TLS, 993)
    assert work.pop3 is not None and (work.pop3.security, work.pop3.port) == (
        Security.STARTTLS,
        110,
    )


def test_every_key_is_read(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config = parse_toml(
        """
        [accounts.w]
        from = "w@example.com"
        ehlo = "client.example.com"
        [accounts.w.smtp]
        host = "smtp.example.com"
        port = 2525
        security = "none"
        username = "me"
        auth = "CRAM-MD5"
        password_command = "pass show mail"
        ca_file = "certs/ca.pem"
        verify = false
        allow_plaintext_auth = true
        connect_timeout = 5
        command_timeout = 7.5
        data_timeout = 600
        """,
        path,
    )
    account = config.accounts["w"]
    assert account.ehlo == "client.example.com"
    assert account.smtp == ServerSettings(
        host="smtp.example.com",
        port=2525,
        security=Security.NONE,
        username="me",
        auth=AuthMechanism.CRAM_MD5,
        password_command="pass show mail",
        ca_file=tmp_path / "certs" / "ca.pem",  # relative to the config file's directory
        verify=False,
        allow_plaintext_auth=True,
        timeouts=Timeouts(connect=5.0, command=7.5, data=600.0),
    )


# --- schema: errors name the file, the key path and the value ------------------------------------


@pytest.mark.parametrize(
    ("snippet", "key", "hint"),
    [
        ("[accounts.w.smtp]\nhost = 'h'\nprot = 25", "accounts.w.smtp.prot", "did you mean 'port'"),
        ("[accounts.w]\nfrm = 'a@b.c'", "accounts.w.frm", "did you mean 'from'"),
        ("defualt_account = 'w'\n[accounts.w]", "defualt_account", "default_account"),
        (
            "[accounts.w.smtp]\nhost = 'h'\n[accounts.w.smtp.extra]\nx = 1",
            "accounts.w.smtp.extra",
            "",
        ),
    ],
)
def test_unknown_keys_are_errors(snippet: str, key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_toml(snippet)
    error = caught.value
    assert error.exit_code == ExitCode.CONFIG
    assert str(FILE) in error.message and key in error.message
    assert "unknown key" in error.message
    assert hint in (error.hint or "")
    assert error.details["key"] == key


def test_unknown_key_never_shows_its_value() -> None:
    """A misspelt password key must not put the password into an error message."""
    with pytest.raises(ConfigError) as caught:
        parse_toml("[accounts.w.smtp]\nhost = 'h'\npasword = 'hunter2-secret'")
    assert "hunter2-secret" not in caught.value.one_line()
    assert "accounts.w.smtp.pasword" in caught.value.message


@pytest.mark.parametrize(
    ("body", "key", "shown"),
    [
        ("port = 99999", "accounts.w.smtp.port", "99999"),
        ("port = 0", "accounts.w.smtp.port", "0"),
        ("port = '587'", "accounts.w.smtp.port", repr("587")),
        ("port = true", "accounts.w.smtp.port", "true"),
        ("security = 'ssl'", "accounts.w.smtp.security", repr("ssl")),
        ("security = 1", "accounts.w.smtp.security", "1"),
        ("auth = 'oauth'", "accounts.w.smtp.auth", repr("oauth")),
        ("verify = 'yes'", "accounts.w.smtp.verify", repr("yes")),
        ("allow_plaintext_auth = 1", "accounts.w.smtp.allow_plaintext_auth", "1"),
        ("connect_timeout = 0", "accounts.w.smtp.connect_timeout", "0"),
        ("command_timeout = -1.5", "accounts.w.smtp.command_timeout", "-1.5"),
        ("data_timeout = inf", "accounts.w.smtp.data_timeout", "inf"),
        ("username = ''", "accounts.w.smtp.username", repr("")),
        ('username = "a\\nb"', "accounts.w.smtp.username", repr("a\nb")),
        ("ca_file = 3", "accounts.w.smtp.ca_file", "3"),
    ],
)
def test_bad_values(body: str, key: str, shown: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_toml(f"[accounts.w.smtp]\nhost = 'smtp.example.com'\n{body}\n")
    message = caught.value.message
    assert message.startswith(f"{FILE}: {key}: ")
    assert message.endswith(f"got {shown}")
    assert caught.value.exit_code == ExitCode.CONFIG


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[accounts.w.smtp]\nport = 25", "accounts.w.smtp.host"),
        ("[accounts.w.smtp]\nhost = 'a b'", "accounts.w.smtp.host"),
        ("[accounts.w]\nfrom = 'a@b.example, c@d.example'", "accounts.w.from"),
        ("[accounts.w]\nfrom = 'no address'", "accounts.w.from"),
        ("[accounts.w]\nehlo = 'two words'", "accounts.w.ehlo"),
        ("default_account = 'nope'\n[accounts.w]", "default_account"),
        ("accounts = 3", "accounts"),
        ("[accounts]\nw = 3", "accounts.w"),
        ('[accounts."bad name"]', 'accounts."bad name"'),
        ("[accounts.w]\nsmtp = 'h'", "accounts.w.smtp"),
    ],
)
def test_structural_errors(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_toml(text)
    assert f"{FILE}: {key}: " in caught.value.message


def test_password_in_file_is_a_warning_and_is_not_used() -> None:
    config = parse_toml(
        """
        [accounts.w]
        secret = "s3cret-one"
        [accounts.w.smtp]
        host = "h"
        password = "s3cret-two"
        [accounts.w.imap]
        host = "h"
        pass = "s3cret-three"
        """
    )
    assert len(config.warnings) == 3
    text = "\n".join(config.warnings)
    for key in ("accounts.w.secret", "accounts.w.smtp.password", "accounts.w.imap.pass"):
        assert key in text
    assert "ignored" in text and "set-password w" in text and str(FILE) in text
    assert "s3cret" not in text
    # The stored password is dropped: it is not part of any model and is not written back.
    assert "s3cret" not in repr(config)
    assert "password" not in tomli_w.dumps(dump_config(config))


# --- load / save ------------------------------------------------------------------------------


def test_missing_file_is_an_empty_config(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "config.toml"
    assert load_config(path) == Config(accounts={}, path=path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"[accounts.w\n", "invalid TOML"),
        (b"x = \xff\n", "not UTF-8"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in caught.value.message and expected in caught.value.message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(tmp_path) in caught.value.message


def sample_config(path: Path | None = None) -> Config:
    account = Account(
        name="work",
        from_address="Me <me@example.com>",
        smtp=ServerSettings(host="smtp.example.com", port=587, username="me"),
        imap=ServerSettings(host="imap.example.com", port=993, security=Security.TLS),
    )
    return Config(accounts={"work": account}, default_account="work", path=path)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_save_creates_private_dirs_and_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "config.toml"
    save_config(sample_config(), path)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
    assert load_config(path) == sample_config(path)
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temp file left


def test_save_makes_an_existing_file_private(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", "")
    path.chmod(0o644)
    save_config(sample_config(), path)
    assert mode(path) == 0o600


def test_save_writes_through_a_symlink(tmp_path: Path) -> None:
    real = write(tmp_path / "dotfiles" / "mailctl.toml", "")
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    save_config(sample_config(), link)
    assert link.is_symlink()
    assert load_config(real).accounts.keys() == {"work"}


def test_failed_replace_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    save_config(sample_config(), path)
    before = path.read_bytes()

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CantCreateError) as caught:
        save_config(Config(accounts={}, path=path), path)
    assert str(path) in caught.value.message and "No space left" in caught.value.message
    assert caught.value.exit_code == ExitCode.CANTCREAT
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]


def test_failed_write_leaves_the_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    save_config(sample_config(), path)
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(CantCreateError):
        save_config(Config(accounts={}, path=path), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    path = directory / "config.toml"
    save_config(sample_config(), path)
    before = path.read_bytes()
    directory.chmod(0o500)
    try:
        with pytest.raises(CantCreateError) as caught:
            save_config(Config(accounts={}, path=path), path)
    finally:
        directory.chmod(0o700)
    assert str(path) in caught.value.message
    assert path.read_bytes() == before


def test_unwritable_parent_is_cant_create(tmp_path: Path) -> None:
    blocker = write(tmp_path / "file", "")
    with pytest.raises(CantCreateError) as caught:
        save_config(sample_config(), blocker / "sub" / "config.toml")
    assert str(blocker / "sub" / "config.toml") in caught.value.message


def test_save_refuses_an_invalid_config(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    bad = Config(accounts={"a b": Account(name="a b")}, path=path)
    with pytest.raises(ConfigError):
        save_config(bad, path)
    assert not path.exists()


# --- finding accounts -------------------------------------------------------------------------


def test_find_account() -> None:
    config = sample_config(FILE)
    assert find_account(config, None).name == "work"
    assert find_account(config, "work").name == "work"
    with pytest.raises(ConfigError) as caught:
        find_account(config, "home")
    assert "home" in caught.value.message and "work" in (caught.value.hint or "")
    with pytest.raises(ConfigError, match="no accounts"):
        find_account(Config(accounts={}, path=FILE), None)


def test_find_account_without_default() -> None:
    one = Config(accounts={"a": Account(name="a")})
    assert find_account(one, None).name == "a"
    two = Config(accounts={"a": Account(name="a"), "b": Account(name="b")})
    with pytest.raises(ConfigError, match="no default_account"):
        find_account(two, None)


def test_account_for_address() -> None:
    accounts = {
        "a": Account(name="a", from_address="A <Shared@Example.com>"),
        "b": Account(name="b", from_address="shared@example.com"),
        "c": Account(name="c", from_address="c@example.com"),
        "d": Account(name="d"),
    }
    config = Config(accounts=accounts, default_account="b")
    found = account_for_address(config, "SHARED@example.com")
    assert found is not None and found.name == "b"  # the default wins among matches
    found = account_for_address(config, "Someone <c@EXAMPLE.com>")
    assert found is not None and found.name == "c"
    assert account_for_address(config, "nobody@example.com") is None
    assert account_for_address(config, "") is None


# --- round trip -------------------------------------------------------------------------------

# Explicit alphabets: st.characters()/from_regex build Unicode tables first, which costs seconds.
ALNUM = "abcxyzABCXYZ0189"
NAMES = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(ALNUM),
    st.text(alphabet=ALNUM + "._@+-", max_size=12),
)
HOSTS = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from("abz09"),
    st.text(alphabet="abz09.-", max_size=20),
)
# Printable text including what TOML must escape or quote, and non-ASCII.
PRINTABLE = ALNUM + " ._-@#=[]{}\"'`$|~äöü€漢😀"
TEXT = st.text(alphabet=PRINTABLE, min_size=1, max_size=20)
COMMANDS = st.text(alphabet=PRINTABLE + "\t\n\r\x1b\x7f", min_size=1, max_size=30)
PATHS = st.lists(
    st.text(alphabet=ALNUM + "_-", min_size=1, max_size=8), min_size=1, max_size=3
).map(lambda parts: Path("/", *parts))
SECONDS = st.floats(min_value=0.001, max_value=86_400, allow_nan=False, allow_infinity=False)
ADDRESSES = st.builds(
    lambda display, local, domain: (
        f"{display} <{local}@{domain}>" if display else f"{local}@{domain}"
    ),
    st.sampled_from(["", "Me", "Jöe Q", '"Doe, J"']),
    st.text(alphabet="abz09.+_-", min_size=1, max_size=10).filter(lambda s: s[0] not in ".-"),
    st.sampled_from(["example.com", "xn--bcher-kva.example", "b.co"]),
)
SERVERS = st.builds(
    ServerSettings,
    host=HOSTS,
    port=st.integers(1, 65535),
    security=st.sampled_from(Security),
    username=st.none() | TEXT,
    auth=st.none() | st.sampled_from(AuthMechanism),
    password_command=st.none() | COMMANDS,
    ca_file=st.none() | PATHS,
    verify=st.booleans(),
    allow_plaintext_auth=st.booleans(),
    timeouts=st.builds(Timeouts, connect=SECONDS, command=SECONDS, data=SECONDS),
)

MAYBE_ADDRESS = st.none() | ADDRESSES
MAYBE_SERVER = st.none() | SERVERS
# The `ehlo` key holds what EHLO may send (mailctl.hosts' rule): host names, U-labels, literals.
EHLO_NAMES = st.lists(
    st.from_regex(r"[a-z0-9_](?:[a-z0-9_-]{0,6}[a-z0-9_])?", fullmatch=True),
    min_size=1,
    max_size=3,
).map(".".join) | st.sampled_from(["bücher.example", "[192.0.2.1]", "[IPv6:2001:db8::1]"])
MAYBE_EHLO = st.none() | EHLO_NAMES


@st.composite
def configs(draw: st.DrawFn) -> Config:
    names = draw(st.lists(NAMES, max_size=3, unique=True))
    accounts = {
        name: Account(
            name=name,
            from_address=draw(MAYBE_ADDRESS),
            smtp=draw(MAYBE_SERVER),
            imap=draw(MAYBE_SERVER),
            pop3=draw(MAYBE_SERVER),
            ehlo=draw(MAYBE_EHLO),
        )
        for name in names
    }
    default = draw(st.none() | st.sampled_from(names)) if names else None
    return Config(accounts=accounts, default_account=default, path=FILE)


@settings(max_examples=60, deadline=None)
@given(configs())
def test_dump_parse_round_trip(config: Config) -> None:
    document: dict[str, Any] = dump_config(config)
    assert parse_config(document, path=FILE) == config
    # ... and through real TOML text, as save_config/load_config do.
    assert parse_toml(tomli_w.dumps(document)) == config


def test_dump_leaves_defaults_out() -> None:
    document = dump_config(sample_config())
    assert document["accounts"]["work"]["smtp"] == {
        "host": "smtp.example.com",
        "port": 587,
        "security": "starttls",
        "username": "me",
    }
    assert Protocol.POP3.value not in document["accounts"]["work"]
