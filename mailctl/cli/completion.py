"""`mailctl completion SHELL`: print the completion script also committed in completions/."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class Shell(StrEnum):
    BASH = "bash"
    ZSH = "zsh"
    FISH = "fish"


def completion_script(shell: Shell) -> str:
    """Typer's script for `shell`, bound to the `mailctl` program name, ending in a newline.

    Typer's scripts end without one, so `mailctl completion bash > FILE` wrote a file whose last
    line is incomplete (POSIX text files end in a newline; `cat`ing two glues them together).
    """
    from typer._completion_shared import get_completion_script

    script = get_completion_script(
        prog_name="mailctl", complete_var="_MAILCTL_COMPLETE", shell=shell.value
    )
    return script if script.endswith("\n") else script + "\n"


def completion_command(
    shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish")],
) -> None:
    """Print a shell completion script."""
    typer.echo(completion_script(shell), nl=False)
