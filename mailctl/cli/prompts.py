"""Secret prompts: the only place mailctl asks a person for a password, and only on a terminal."""

from __future__ import annotations

from collections.abc import Callable

from mailctl.cli.output import Output
from mailctl.models import Protocol, ServerSettings


def secret_provider(
    account: str | None, protocol: Protocol, settings: ServerSettings, output: Output
) -> Callable[[], str]:
    """A callable the protocol layer calls once, right before AUTH; it may prompt on a terminal."""

    def prompt(label: str) -> str:
        import getpass

        from mailctl.errors import CredentialError

        try:
            return getpass.getpass(f"{label}: ")
        except UnicodeDecodeError:  # typed on a terminal in another encoding (Latin-1, ...)
            raise CredentialError(
                "the password typed at the prompt is not valid UTF-8 text",
                hint="set the terminal to UTF-8, or use MAILCTL_PASSWORD or password_command",
            ) from None

    def provide() -> str:
        from mailctl.credentials import resolve_secret

        return resolve_secret(
            account, protocol, settings, prompt=prompt if output.interactive else None
        )

    return provide
