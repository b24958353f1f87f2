"""The password prompt: the only place mailctl asks a person for a secret it sends.

The application context hands it to credentials.Secrets only on a terminal (and never with
--json); `account add` and `account set-password` ask through cli/account/prompts.
"""

from __future__ import annotations


def password_prompt(label: str) -> str:
    """Ask for a password without echo (getpass: on the terminal, not on stdout)."""
    import getpass

    from mailctl.errors import CredentialError

    try:
        return getpass.getpass(f"{label}: ")
    except UnicodeDecodeError:  # typed on a terminal in another encoding (Latin-1, ...)
        raise CredentialError(
            "the password typed at the prompt is not valid UTF-8 text",
            hint="set the terminal to UTF-8, or use MAILCTL_PASSWORD or password_command",
        ) from None
