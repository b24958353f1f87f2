"""`mailctl account`: the Typer sub-app (`commands`), its prompts and its human renderers."""

from mailctl.cli.account.commands import app

__all__ = ["app"]
