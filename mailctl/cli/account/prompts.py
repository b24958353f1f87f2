"""`mailctl account` terminal questions (add's missing values, passwords) and stdin secrets."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import typer

from mailctl.text import quote

if TYPE_CHECKING:
    from mailctl.cli.output import Output
    from mailctl.core.account import ServerInput
    from mailctl.models import Protocol


def ask_missing(
    sender: str | None, inputs: dict[Protocol, ServerInput]
) -> tuple[str | None, dict[Protocol, ServerInput]]:
    """Prompt (on stderr) for what the flags left out: From, a server, its security/port/user."""
    from dataclasses import replace
    from email.utils import parseaddr

    from mailctl.hosts import default_port, default_security
    from mailctl.models import Protocol, Security

    if sender is None:
        sender = ask(
            'From address ("Name <addr@example.com>", empty for none)',
            default="",
            show_default=False,
            err=True,
        ).strip()
    if all(given.empty for given in inputs.values()):
        host = ask("SMTP server host (empty for none)", default="", err=True).strip()
        if host:
            inputs[Protocol.SMTP] = replace(inputs[Protocol.SMTP], host=host)
        for protocol in (Protocol.IMAP, Protocol.POP3):
            label = protocol.value.upper()
            article = "an" if protocol is Protocol.IMAP else "a"
            if confirm(f"Add {article} {label} server?", default=False, err=True):
                host = ask(f"{label} server host", err=True).strip()
                inputs[protocol] = replace(inputs[protocol], host=host or None)
    address = parseaddr(sender or "")[1]
    choices = [s.value for s in Security]
    for protocol, given in inputs.items():
        if given.host is None:
            continue
        label = protocol.value.upper()
        security = given.security
        while security is None or security.lower() not in choices:
            security = ask(
                f"{label} security ({', '.join(choices)})",
                default=default_security(protocol, _port_number(given.port)).value,
                err=True,
            ).strip()
        port = given.port
        if port is None:
            port = ask(
                f"{label} port",
                default=default_port(protocol, Security(security.lower())),
                type=int,
                err=True,
            )
        username = given.username
        if username is None and given.password_command is None:
            answer = ask(
                f"{label} username ('-' for no login)", default=address or "-", err=True
            ).strip()
            username = None if answer in ("", "-") else answer
        inputs[protocol] = replace(given, security=security, port=port, username=username)
    return sender, inputs


def _port_number(port: str | int | None) -> int | None:
    """The port typed so far, if it is a number (a bad one is refused later, naming the flag)."""
    if isinstance(port, int):
        return port
    return int(port) if port is not None and port.strip().isdigit() else None


def offer_keyring(output: Output, name: str) -> str | None:
    """On a terminal, offer (not force) to store a password in the keyring now."""
    from mailctl.credentials import usable_keyring
    from mailctl.errors import KeyringUnavailableError

    try:
        usable_keyring()
    except KeyringUnavailableError as err:
        output.warn(
            f"no password stored: {err.message}; set password_command in the config file "
            "or MAILCTL_PASSWORD when running mailctl"
        )
        return None
    if not confirm("Store the password in the system keyring now?", default=True, err=True):
        output.warn(f"no password stored; later: mailctl account set-password {name}")
        return None
    secret: str = ask("Password", hide_input=True, confirmation_prompt=True, err=True)
    return secret or None


def read_stdin_secret(flag: str) -> str:
    """The first line of stdin, without its line end (what `--password-stdin` promises).

    At most SECRET_LIMIT bytes are read (mailctl.inputs): a password is one short line.
    """
    from mailctl.errors import InputDataError, UsageError
    from mailctl.inputs import SECRET_LIMIT, read_line

    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(f"{flag} reads the password from a pipe", hint="echo ... | mailctl ...")
    line = read_line(sys.stdin.buffer, what=flag, limit=SECRET_LIMIT)
    try:
        secret = line.decode("utf-8")
    except UnicodeDecodeError:
        raise InputDataError(f"{flag}: the password on stdin is not UTF-8") from None
    if not secret:
        raise UsageError(f"{flag}: stdin held no password", hint="nothing was stored")
    return secret


def ask(text: str, **kwargs: Any) -> Any:
    """typer.prompt, with Ctrl-C/Ctrl-D (click's Abort) reported as an interruption."""
    from mailctl.errors import InputDataError, InterruptedByUser

    not_utf8 = InputDataError(
        f"the answer to {quote(text)} is not valid UTF-8 text",
        hint="set the terminal to UTF-8; nothing was changed",
    )
    try:
        answer = typer.prompt(text, **kwargs)
    except typer.Abort:
        raise InterruptedByUser("interrupted at a prompt", hint="nothing was changed") from None
    except UnicodeDecodeError:  # typed on a terminal in another encoding; never echo it
        raise not_utf8 from None
    # In the C locale Python reads the terminal with surrogateescape (PEP 538/540) instead.
    if isinstance(answer, str) and any("\ud800" <= char <= "\udfff" for char in answer):
        raise not_utf8
    return answer


def confirm(text: str, **kwargs: Any) -> bool:
    """typer.confirm, with Ctrl-C/Ctrl-D (click's Abort) reported as an interruption."""
    from mailctl.errors import InterruptedByUser

    try:
        return bool(typer.confirm(text, **kwargs))
    except typer.Abort:
        raise InterruptedByUser("interrupted at a prompt", hint="nothing was changed") from None
