"""Typer option declarations shared by every command that talks to an SMTP server.

One declaration per flag keeps `send`, `bench` (and later `bulk-send`, `probe`) spelling, help
text and panels identical; each command takes them as `name: XOpt = default`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SERVER = "Server (without an account)"
TLS = "Transport security"

AccountOpt = Annotated[
    str | None,
    typer.Option("--account", "-A", help="Account name (default: the default account)."),
]
ServerOpt = Annotated[
    str | None,
    typer.Option("--server", help="HOST[:PORT] to use without an account.", rich_help_panel=SERVER),
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
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the JSON result envelope.")]
