"""Human output of the `mailctl account` commands: one renderer per result type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailctl.cli.output import Output
from mailctl.hosts import endpoint
from mailctl.text import clean

if TYPE_CHECKING:
    from mailctl.core.account import (
        AccountAdded,
        AccountChanged,
        AccountDetails,
        AccountList,
        AccountRemoved,
        AccountTest,
        PasswordStored,
    )
    from mailctl.models import ServerSettings


def render_added(out: Output, result: AccountAdded) -> None:
    verb = "Replaced" if result.replaced else "Added"
    out.print(f"{verb} account {result.name} in {result.path}.")
    if result.is_default:
        out.print(f"{result.name} is the default account.")
    if result.stored_secrets:
        stored = ", ".join(p.value for p in result.stored_secrets)
        out.print(f"Password stored in the system keyring for: {stored}.")
    if result.password_missing:
        missing = ", ".join(p.value for p in result.password_missing)
        out.print(
            f"No password stored for {missing}: run `mailctl account set-password "
            f"{result.name}`, or set password_command, or MAILCTL_PASSWORD."
        )
    out.print(f"Check it with: mailctl account test {result.name}")


def render_changed(out: Output, result: AccountChanged) -> None:
    changed = ", ".join(result.changed) or "nothing (the values were already set)"
    out.print(f"Changed account {result.name} in {result.path}: {changed}.")
    if result.is_default:
        out.print(f"{result.name} is the default account.")
    out.print(f"Check it with: mailctl account test {result.name}")


def render_list(out: Output, result: AccountList) -> None:
    if not result.accounts:
        out.print(f"No accounts in {result.path}.")
        out.print("Add one with: mailctl account add NAME")
        return
    from rich.table import Table
    from rich.text import Text

    from mailctl.cli.layout import fits

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("", "NAME", "FROM", "SERVERS"):
        table.add_column(column, no_wrap=True)
    for summary in result.accounts:
        table.add_row(
            "*" if summary.is_default else "",
            Text(clean(summary.name)),
            Text(clean(summary.from_address or "-")),
            Text(", ".join(p.value for p in summary.blocks)),
        )
    if fits(out.out, table):
        out.out.print(table, soft_wrap=False)
        return
    # Too wide for one line per account: a block per account, values wrapped at spaces.
    for index, summary in enumerate(result.accounts):
        if index:
            out.print("")
        default = " (default)" if summary.is_default else ""
        out.print(f"{summary.name}{default}")
        _value(out, "from", summary.from_address or "-", key_width=8, indent=2)
        _value(out, "servers", ", ".join(p.value for p in summary.blocks), key_width=8, indent=2)


def _line(out: Output, text: str, *, indent: int) -> None:
    """A line of text wrapped at spaces to the terminal, continuation lines indented more."""
    from mailctl.cli.layout import terminal_width, wrapped

    out.print(wrapped(clean(text), terminal_width(), indent=" " * indent, hanging="  "))


def _value(out: Output, key: str, value: str, *, key_width: int, indent: int) -> None:
    """One `key  value` line, the value wrapped at spaces under itself (never cut)."""
    from mailctl.cli.layout import terminal_width, wrapped

    width = terminal_width()
    lead = " " * indent + f"{key:<{key_width}} "
    value = clean(value)
    if max(map(len, value.split()), default=0) > width - len(lead):
        # A word (an address, a path) longer than the value column: the value goes under
        # the key, less indented, rather than cut.
        out.print(lead.rstrip())
        out.print(wrapped(value, width, indent=" " * (indent + 4), hanging=""))
        return
    text = wrapped(value, width - len(lead), hanging="")
    for number, line in enumerate(text.splitlines() or [""]):
        out.print((lead if number == 0 else " " * len(lead)) + line)


def render_details(out: Output, result: AccountDetails) -> None:
    account = result.account
    default = " (default)" if result.is_default else ""
    _value(out, "account", f"{account.name}{default}", key_width=10, indent=0)
    _value(out, "config", str(result.path), key_width=10, indent=0)
    _value(out, "from", account.from_address or "-", key_width=10, indent=0)
    if account.ehlo:
        _value(out, "ehlo", account.ehlo, key_width=10, indent=0)
    for protocol, source in result.secret_sources.items():
        settings = account.server(protocol)
        if settings is None:
            continue
        out.print("")
        out.print(f"[{protocol.value}]")
        for key, value in _settings_rows(settings):
            shown = "-" if value is None else value
            if isinstance(value, bool):
                shown = "true" if value else "false"
            _value(out, key, str(shown), key_width=21, indent=2)
        _value(out, "password from", source.value, key_width=21, indent=2)


def _settings_rows(settings: ServerSettings) -> list[tuple[str, object]]:
    """Every setting of a block under its config-file name (timeouts in seconds, as there)."""
    return [
        ("host", settings.host),
        ("port", settings.port),
        ("security", settings.security.value),
        ("username", settings.username),
        ("auth", settings.auth.value if settings.auth is not None else None),
        ("password_command", settings.password_command),
        ("ca_file", settings.ca_file),
        ("verify", settings.verify),
        ("allow_plaintext_auth", settings.allow_plaintext_auth),
        ("connect_timeout", settings.timeouts.connect),
        ("command_timeout", settings.timeouts.command),
        ("data_timeout", settings.timeouts.data),
    ]


def render_removed(out: Output, result: AccountRemoved, name: str) -> None:
    out.print(f"Removed account {result.name} from {result.path}.")
    if result.new_default is not None and result.new_default != name:
        out.print(f"The default account is {result.new_default}.")
    if result.deleted_secrets:
        deleted = ", ".join(p.value for p in result.deleted_secrets)
        out.print(f"Deleted its keyring entries: {deleted}.")


def render_password_stored(out: Output, result: PasswordStored) -> None:
    stored = ", ".join(p.value for p in result.protocols)
    out.print(f"Stored the password for {result.name} ({stored}) in the system keyring.")


def render_test(out: Output, result: AccountTest) -> None:
    for check in result.checks:
        where = endpoint(check.host, check.port)
        head = f"{check.protocol.value:<5} {where} ({check.security})"
        if check.error is not None:
            out.out.print(f"{clean(head)}  FAILED", markup=False, style="red")
            # An error stays one line (grep-able, as every mailctl error), never wrapped.
            out.print(f"      {check.error.one_line()}")
            continue
        out.out.print(f"{clean(head)}  OK", markup=False, style="green")
        if check.tls is not None:
            out.print(f"      tls: {check.tls.version} {check.tls.cipher}")
        else:
            out.print("      tls: none")
        if check.authenticated is None:
            out.print("      login: not attempted (no username)")
        else:
            how = f" ({check.auth_mechanism})" if check.auth_mechanism else ""
            verdict = "OK" if check.authenticated else "not done"
            _line(out, f"login as {check.username}: {verdict}{how}", indent=6)
        if check.capabilities:
            _value(out, "capabilities:", " ".join(check.capabilities), key_width=13, indent=6)
    if result.status == "partial":
        failed = ", ".join(c.protocol.value for c in result.failures)
        out.print(f"Some servers failed: {failed}.")
