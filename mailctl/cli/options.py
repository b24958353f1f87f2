"""Typer option declarations shared by every command: the global options and the server group.

One declaration per flag keeps `send`, `bench`, `account` (and later `bulk-send`, `probe`)
spelling, help text and panels identical. Commands do not list these themselves:
`cli.context.command` adds GLOBAL to every command (so they work after the command name as
well as before it) and SERVER to those taking a `server: ServerFlags` parameter. A command
that needs another help text for one of them declares a parameter of the same name, which
replaces the shared one (bench's --auth turns AUTH on in its embedded sink).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final

import typer

from mailctl.cli.choices import complete_account

# Help panels (cli/helptext.py puts undeclared options into them by flag, and Output last).
SERVER = "Server"
TLS = "TLS"
OUTPUT = "Output"

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Config file (default: $MAILCTL_CONFIG, else $XDG_CONFIG_HOME/mailctl/config.toml).",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print the JSON result envelope."),
]
QuietOpt = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        help="Print nothing on success (the exit code says it); errors and warnings still go "
        "to stderr, --json still prints its envelope.",
    ),
]
AccountOpt = Annotated[
    str | None,
    typer.Option(
        "--account",
        "-A",
        help="Account name (default: the default account).",
        autocompletion=complete_account,
    ),
]
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        help="The server to use without an account (port: by security).",
        rich_help_panel=SERVER,
    ),
]
UserOpt = Annotated[
    str | None,
    typer.Option(
        "--user",
        "-u",
        help="AUTH user (password from MAILCTL_PASSWORD, --password-command or a prompt).",
        rich_help_panel=SERVER,
    ),
]
PasswordCommandOpt = Annotated[
    str | None,
    typer.Option(
        "--password-command", help="Command printing the password.", rich_help_panel=SERVER
    ),
]
AuthOpt = Annotated[
    str | None,
    typer.Option(
        "--auth", help="AUTH mechanism: plain, login, cram-md5, xoauth2.", rich_help_panel=SERVER
    ),
]
EhloOpt = Annotated[str | None, typer.Option("--ehlo", help="EHLO name.", rich_help_panel=SERVER)]
TlsOpt = Annotated[
    bool, typer.Option("--tls", help="Implicit TLS (port 465).", rich_help_panel=TLS)
]
StartTlsOpt = Annotated[
    bool, typer.Option("--starttls", help="Required STARTTLS (port 587).", rich_help_panel=TLS)
]
NoTlsOpt = Annotated[
    bool, typer.Option("--no-tls", help="No encryption at all.", rich_help_panel=TLS)
]
CaFileOpt = Annotated[
    Path | None, typer.Option("--ca-file", help="Trust this CA bundle.", rich_help_panel=TLS)
]
TlsNameOpt = Annotated[
    str | None,
    typer.Option(
        "--tls-name",
        help="Check the certificate against this name (and send it as SNI) instead of the "
        "--server host, e.g. when connecting to an IP address.",
        rich_help_panel=TLS,
    ),
]
InsecureOpt = Annotated[
    bool,
    typer.Option("--insecure", help="Do not verify the certificate (warned).", rich_help_panel=TLS),
]
AllowPlaintextAuthOpt = Annotated[
    bool,
    typer.Option(
        "--allow-plaintext-auth",
        help="Allow AUTH on an unencrypted connection.",
        rich_help_panel=TLS,
    ),
]
ConnectTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--connect-timeout",
        help="Seconds to connect and get the greeting (default 30, or the account's).",
    ),
]
CommandTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        help="Seconds per command; also the longest wait for a message (SMTP: the reply "
        "after the final dot) unless --data-timeout (or data_timeout in the account) asks "
        "for more (default 60, or the account's).",
    ),
]

DataTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--data-timeout",
        help="Seconds to wait for the reply after the final dot (default 300, "
        "or --timeout if shorter).",
    ),
]
# The same setting (Timeouts.data) as fetch reads it: the wait for one message's bytes.
FetchDataTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--data-timeout",
        help="Seconds to receive one message (default 300, or --timeout if shorter).",
    ),
]

# name -> (annotation, default), in --help order. The names are the fields of GlobalOptions
# and ServerFlags, which cli.context builds from them.
GLOBAL_OPTIONS: Final[dict[str, tuple[Any, Any]]] = {
    "config": (ConfigOpt, None),
    "json_mode": (JsonOpt, False),
    "quiet": (QuietOpt, False),
}
SERVER_OPTIONS: Final[dict[str, tuple[Any, Any]]] = {
    "account": (AccountOpt, None),
    "server": (ServerOpt, None),
    "user": (UserOpt, None),
    "password_command": (PasswordCommandOpt, None),
    "auth": (AuthOpt, None),
    "ehlo": (EhloOpt, None),
    "tls": (TlsOpt, False),
    "starttls": (StartTlsOpt, False),
    "no_tls": (NoTlsOpt, False),
    "ca_file": (CaFileOpt, None),
    "tls_name": (TlsNameOpt, None),
    "insecure": (InsecureOpt, False),
    "allow_plaintext_auth": (AllowPlaintextAuthOpt, False),
    "connect_timeout": (ConnectTimeoutOpt, None),
    "command_timeout": (CommandTimeoutOpt, None),
}
