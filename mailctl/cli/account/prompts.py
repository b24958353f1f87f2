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
    sender: str | None, inputs: dict[Protocol, ServerInput], *, keyring_problem: str | None
) -> tuple[str | None, dict[Protocol, ServerInput]]:
    """Prompt (on stderr) for what the flags left out, one server block at a time.

    From first; then, when no block was given by flags, the SMTP host; each block's
    security, port, user and password command in turn; then whether to add IMAP and POP3,
    with host and user suggested from the SMTP answers. A bad answer is explained and asked
    again. `keyring_problem` (None when the keyring works) is said where a password is
    discussed, so nobody types a password that cannot be stored.
    """
    from dataclasses import replace
    from email.utils import parseaddr

    from mailctl.models import Protocol

    while sender is None:
        sender = ask(
            'From address ("Name <addr@example.com>", empty for none)',
            default="",
            show_default=False,
            err=True,
        ).strip()
        problem = _from_problem(sender) if sender else None
        if problem is not None:
            _explain(f"From address: {problem}, got {quote(sender)}")
            sender = None
    address = parseaddr(sender or "")[1]
    asking_hosts = all(given.empty for given in inputs.values())
    carried = _Carried(user=address or None)
    for protocol in Protocol:
        given = inputs[protocol]
        if asking_hosts:
            host = _ask_host(protocol, carried)
            if host is None:
                continue
            given = replace(given, host=host)
        if given.host is None:
            continue
        given = _ask_block(protocol, given, carried, keyring_problem=keyring_problem)
        inputs[protocol] = given
        carried = _Carried(
            user=given.username if given.username is not None else carried.user,
            password_command=given.password_command or carried.password_command,
            host=carried.host or given.host,
        )
    return sender, inputs


class _Carried:
    """Answers that suggest the next block's defaults: the SMTP user and host, a command."""

    def __init__(
        self,
        *,
        user: str | None = None,
        password_command: str | None = None,
        host: str | None = None,
    ) -> None:
        self.user = user
        self.password_command = password_command
        self.host = host


def _ask_host(protocol: Protocol, carried: _Carried) -> str | None:
    """The block's host, or None when the user wants no such block."""
    from mailctl.models import Protocol as Protocols

    label = protocol.value.upper()
    if protocol is Protocols.SMTP:
        question, default = "SMTP server host (empty for none)", ""
    else:
        article = "an" if protocol is Protocols.IMAP else "a"
        if not confirm(f"Add {article} {label} server?", default=False, err=True):
            return None
        question, default = f"{label} server host", _suggest_host(protocol, carried.host)
    while True:
        host = str(ask(question, default=default, show_default=bool(default), err=True)).strip()
        if not host:
            if protocol is Protocols.SMTP:
                return None
            _explain(f"{label} server host: give a host name or address")
            continue
        problem = _problem(protocol, {"host": host}, "host")
        if problem is None:
            return host
        _explain(f"{label} server host: {problem}")


def _suggest_host(protocol: Protocol, smtp_host: str | None) -> str:
    """imap.example.com for smtp.example.com; the same host otherwise (one server for all)."""
    if not smtp_host:
        return ""
    prefix = {"imap": "imap.", "pop3": "pop."}.get(protocol.value, "")
    if smtp_host.lower().startswith("smtp.") and prefix:
        return prefix + smtp_host[len("smtp.") :]
    return smtp_host


def _ask_block(
    protocol: Protocol, given: ServerInput, carried: _Carried, *, keyring_problem: str | None
) -> ServerInput:
    """Security, port, user and password command of one block, each asked until valid."""
    from dataclasses import replace

    from mailctl.core.account import NO_LOGIN
    from mailctl.hosts import default_port, default_security
    from mailctl.models import Security

    label = protocol.value.upper()
    host = given.host
    choices = [s.value for s in Security]
    listed = ", ".join(choices)
    security = given.security
    while security is None or security.strip().lower() not in choices:
        if security is not None:
            _explain(f"{label} security: must be one of {listed}, got {quote(security)}")
        security = str(
            ask(
                f"{label} security ({listed})",
                default=default_security(protocol, _port_number(given.port)).value,
                err=True,
            )
        ).strip()
    security = security.strip().lower()
    port = given.port
    while port is None:
        answer = str(
            ask(
                f"{label} port",
                default=str(default_port(protocol, Security(security))),
                type=str,  # checked below, so a refusal says why in mailctl's words
                err=True,
            )
        ).strip()
        problem = (
            _problem(protocol, {"host": host, "port": int(answer)}, "port")
            if answer.isdigit()
            else "must be a number from 1 to 65535"
        )
        if problem is None:
            port = answer
        else:
            _explain(f"{label} port: {problem}, got {quote(answer)}")
    username = given.username
    if username is None and given.password_command is None:
        username = str(
            ask(
                f"{label} user ('{NO_LOGIN}' for no login)",
                default=carried.user or NO_LOGIN,
                err=True,
            )
        ).strip()
    if username is not None and username.strip() in ("", NO_LOGIN):
        username = None
    command = given.password_command
    if username is not None and command is None:
        later = (
            f"no system keyring here ({keyring_problem}): set one, or MAILCTL_PASSWORD"
            if keyring_problem
            else "store the password in the keyring instead"
        )
        answer = str(
            ask(
                f"{label} password command, e.g. 'pass show mail/{protocol.value}' "
                f"('{NO_LOGIN}' or empty for none: {later})",
                default=carried.password_command or "",
                show_default=bool(carried.password_command),
                err=True,
            )
        ).strip()
        command = None if answer in ("", NO_LOGIN) else answer
    return replace(given, security=security, port=port, username=username, password_command=command)


def _problem(protocol: Protocol, raw: dict[str, object], field: str) -> str | None:
    """What the config rules say about `field` of a partial block (None: acceptable)."""
    from mailctl.config.schema import FieldError, parse_server_block

    try:
        parse_server_block(raw, protocol, key=(protocol.value,))
    except FieldError as err:
        if err.field == field:
            return err.problem
    return None


def _from_problem(sender: str) -> str | None:
    """What the config rules say about a From answer (None: acceptable)."""
    from mailctl.config.schema import FieldError, parse_account

    try:
        parse_account("x", {"from": sender})
    except FieldError as err:
        return err.problem
    return None


def _explain(text: str) -> None:
    """Say why an answer is asked again (stderr, beside the questions)."""
    typer.echo(f"  {text}; please answer again.", err=True)


def _port_number(port: str | int | None) -> int | None:
    """The port typed so far, if it is a number (a bad one is refused later, naming the flag)."""
    if isinstance(port, int):
        return port
    return int(port) if port is not None and port.strip().isdigit() else None


def keyring_problem() -> str | None:
    """Why the system keyring cannot hold a password here, or None when it can."""
    from mailctl.credentials import usable_keyring
    from mailctl.errors import KeyringUnavailableError

    try:
        usable_keyring()
    except KeyringUnavailableError as err:
        return err.message
    return None


def require_keyring(name: str, *, exists: bool = True) -> None:
    """Raise KeyringUnavailableError (78) naming the ways that work, before asking anything.

    `exists`: the account is in the file already (set-password), so `account set` can add
    a password command; else (add) its own flags can.
    """
    from mailctl.errors import KeyringUnavailableError

    problem = keyring_problem()
    if problem is not None:
        command = f"mailctl account set {name} " if exists else ""
        raise KeyringUnavailableError(
            problem,
            hint=f"use a password_command instead: {command}--smtp-password-command CMD, "
            "likewise --imap-password-command and --pop3-password-command; or MAILCTL_PASSWORD",
        )


def offer_keyring(output: Output, name: str) -> str | None:
    """On a terminal, offer (not force) to store a password in the keyring now."""
    problem = keyring_problem()
    if problem is not None:
        output.warn(
            f"no password stored: {problem}; set a password command (mailctl account set "
            f"{name} --smtp-password-command CMD) or MAILCTL_PASSWORD when running mailctl"
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
