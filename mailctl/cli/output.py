"""The one place results reach the terminal: rich for people, a versioned JSON envelope else."""

from __future__ import annotations

import gc
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TextIO

from mailctl.errors import ExitCode, InterruptedByUser, MailctlError
from mailctl.text import clean

if TYPE_CHECKING:
    from rich.console import Console

# "2": keys renamed by one convention (mailctl.serialize; README "JSON version 2").
RESULT_VERSION = "2"
Status = Literal["ok", "partial", "error"]


# One entry of the envelope's `errors`: an error, or a mapping with at least code and message.
ErrorEntry = MailctlError | Mapping[str, Any]


@dataclass
class CommandResult:
    """What a command hands to the renderer: the result for JSON (a result dataclass, written
    by mailctl.serialize's convention), a callable that draws it for people."""

    data: object = None
    status: Status = "ok"
    exit_code: ExitCode = ExitCode.OK
    errors: Sequence[ErrorEntry] = ()
    render: Callable[[Output], None] | None = None
    # What the command was asked to print for people (send --dry-run's bytes): written in
    # human mode after `render`, also with -q/--quiet, which skips only `render`.
    product: Callable[[Output], None] | None = None


class Output:
    """The output mode of one invocation; consoles are made lazily to keep start-up fast."""

    def __init__(self, command: list[str], *, json_mode: bool = False, quiet: bool = False) -> None:
        self.command = command
        self.json_mode = json_mode
        # -q/--quiet: no report and no progress on success (renderers and progress bars ask);
        # errors, warnings, the JSON envelope and a command's product still print.
        self.quiet = quiet
        self._out: Console | None = None
        self._err: Console | None = None

    @property
    def out(self) -> Console:
        if self._out is None:
            self._out = make_console()
        return self._out

    @property
    def err(self) -> Console:
        if self._err is None:
            self._err = make_console(stderr=True)
        return self._err

    @property
    def interactive(self) -> bool:
        """True when prompts and spinners are allowed: a terminal on stdin and stderr, not JSON."""
        return not self.json_mode and sys.stdin.isatty() and sys.stderr.isatty()

    def print(self, text: str, *, style: str | None = None) -> None:
        """Print untrusted text for people: control characters stripped, no markup.

        Plain lines bypass rich: importing it costs ~40 ms, which a one-line report need not pay.
        """
        _write_line(sys.stdout, clean(text), style)

    def note(self, text: str, *, style: str | None = None) -> None:
        """A line for people on stderr (progress, envelopes, transcripts), never in JSON data."""
        _write_line(sys.stderr, clean(text), style)

    def warn(self, text: str) -> None:
        """A warning on stderr (also in JSON mode, where stdout carries only the envelope)."""
        _write_line(sys.stderr, f"warning: {clean(text)}", "yellow")

    def emit(self, result: CommandResult) -> None:
        if self.json_mode:
            self.write_json(result.status, result.exit_code, result.data, result.errors)
        else:
            if result.render is not None and not self.quiet:
                result.render(self)
            if result.product is not None:
                result.product(self)
        for error in result.errors if not self.json_mode else []:
            # The same one line as a raised error: the problem, then the fix (the hint).
            if isinstance(error, MailctlError):
                line = error.one_line()
            else:
                line = str(error.get("message") or "")
                if error.get("hint"):
                    line = f"{line} ({error['hint']})"
            _write_line(sys.stderr, f"mailctl: {clean(line)}", "red")

    def write_json(
        self,
        status: Status,
        exit_code: ExitCode,
        data: object,
        errors: Sequence[ErrorEntry],
    ) -> None:
        """Print the envelope. `data` is written by mailctl.serialize and must be an object;
        every `errors` entry has code, message, hint and details (and may add keys)."""
        import json  # only JSON mode pays for its import (~1 ms, mostly compiling regexes)

        from mailctl.serialize import to_data

        written = to_data(data) if data is not None else {}
        if not isinstance(written, dict):
            raise TypeError(f"the envelope's data must be an object, not {type(data).__name__}")
        envelope = {
            "mailctl_result_version": RESULT_VERSION,
            "command": self.command,
            "status": status,
            "exit_code": int(exit_code),
            "data": written,
            "errors": [{"hint": None, "details": {}, **to_data(error)} for error in errors],
        }
        # allow_nan=False: NaN is not JSON; the serialiser already wrote it as null.
        text = json.dumps(envelope, indent=2, ensure_ascii=False, allow_nan=False)
        # A lone surrogate (a non-UTF-8 path) becomes the JSON escape \udcXX: valid UTF-8 out.
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        # json.dumps escapes C0 controls but, without ensure_ascii, writes DEL, C1 controls
        # (U+009B is CSI), bidi controls (CVE-2021-42574) and line separators raw; they occur
        # only inside strings, so their JSON escapes carry the same data to a terminal inertly.
        text = _json_inert(text)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def fail(self, error: MailctlError) -> NoReturn:
        """Report an error as one line (or the JSON envelope) and exit with its code."""
        if self.json_mode:
            self.write_json("error", error.exit_code, None, [error])
        else:
            _write_line(sys.stderr, f"mailctl: {clean(error.one_line())}", "red")
        raise SystemExit(int(error.exit_code))


def _json_inert(text: str) -> str:
    import re

    return re.sub(
        "[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]",
        lambda match: f"\\u{ord(match.group()):04x}",
        text,
    )


def make_console(*, stderr: bool = False, file: TextIO | None = None) -> Console:
    """A rich console that prints strings as they are: no markup, no :emoji: codes, no
    highlighting. Server and user text reaches tables and lines, and `[/x]` in a reply must
    neither change the style nor raise MarkupError."""
    from rich.console import Console

    return Console(
        stderr=stderr,
        file=file,
        markup=False,
        emoji=False,
        highlight=False,
        no_color=_no_color(),
        soft_wrap=True,
    )


def _no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))


_ANSI = {"red": "31", "green": "32", "yellow": "33", "cyan": "36", "dim": "2", "bold": "1"}


def _write_line(stream: TextIO, text: str, style: str | None) -> None:
    """One line, coloured only on a terminal and without NO_COLOR (https://no-color.org)."""
    code = _ANSI.get(style or "")
    if code and not _no_color() and stream.isatty():
        text = f"\x1b[{code}m{text}\x1b[0m"
    stream.write(text + "\n")
    stream.flush()


def run_command(output: Output, body: Callable[[], CommandResult]) -> NoReturn:
    """Run a command body under the error contract: every failure is one line and an exit code."""
    _collect_garbage_again()
    try:
        result = body()
        # Inside the contract too: a result the serialiser cannot write is a bug (70), and
        # Ctrl-C while a report prints is still 130.
        output.emit(result)
    except MailctlError as error:
        output.fail(error)
    except KeyboardInterrupt:
        output.fail(InterruptedByUser("interrupted"))
    except Exception as error:
        if type(error).__name__ == "Abort":  # typer.Abort: Ctrl-C or Ctrl-D at a prompt
            output.fail(InterruptedByUser("interrupted at a prompt"))
        _report_bug(output, error)
    raise SystemExit(int(result.exit_code))


def _collect_garbage_again() -> None:
    """Undo mailctl.__main__'s start-up `gc.disable()`: the command's own work may make cycles.

    What start-up made lives until exit: `gc.freeze()` moves it out of the collector's sight,
    so the collections the command triggers do not walk it again. A caller that left the
    collector on (tests invoking the app in-process) is left alone.
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _report_bug(output: Output, error: Exception) -> NoReturn:
    """A bug: one line for the user (exit 70), the traceback only when asked for."""
    if os.environ.get("MAILCTL_DEBUG"):
        traceback.print_exc()
    output.fail(
        MailctlError(
            f"internal error: {type(error).__name__}: {error}",
            hint="a bug in mailctl; rerun with MAILCTL_DEBUG=1 for a traceback and report it",
        )
    )
