"""Entry point for `python -m mailctl`, the `mailctl` console script, and a `sendmail` symlink."""

from __future__ import annotations

import gc
import os
import sys


def main() -> None:
    """Run the CLI; sendmail mode skips Typer's parser, whose option syntax is not sendmail's."""
    # Start-up (imports, building the Click commands) allocates tens of thousands of objects that
    # live until exit and almost no garbage, yet the cyclic collector runs 30-60 times over them:
    # 6-8 ms of every run here, TAB completion included. It is switched back on where a command's
    # own work starts (mailctl.cli.output.run_command), so long runs (sink, bench) collect.
    gc.disable()
    try:
        _dispatch(sys.argv[1:])
    finally:
        # The interpreter's exit runs full collections over every object still alive: 5-15 ms
        # for 25,000-45,000 objects here, to free memory the OS takes back anyway. Frozen objects
        # are skipped. Nothing waits on those collections for a flush: commands close their
        # files, sockets and subprocesses themselves, and the interpreter flushes stdout/stderr.
        gc.freeze()


def _dispatch(argv: list[str]) -> None:
    if argv == ["--version"]:
        from mailctl import __version__

        print(f"mailctl {__version__}")
        return
    invoked_as = os.path.basename(sys.argv[0]) if sys.argv else ""
    if invoked_as == "sendmail" or (argv[:1] == ["sendmail"] and "--help" not in argv):
        from mailctl.cli.sendmail import run_sendmail

        run_sendmail(argv if invoked_as == "sendmail" else argv[1:])
        return
    from mailctl.cli.app import run

    run()


if __name__ == "__main__":
    main()
