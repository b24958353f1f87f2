"""Start-up and one-message wall time of an installed mailctl, beside swaks, msmtp and bare Typer.

Run: python benchmarks/send_vs_swaks.py [--rounds 8] [--runs 5] [--venv DIR] [--no-install]
                                        [--baseline-venv DIR] [--check]

TAB completion and every shell use run the whole program, so this measures what a person pays
per process, on an INSTALLED mailctl (`pip install .`, not editable, bytecode compiled): by
default the script (re)installs this tree into --venv (created with `python -m venv` when it does
not exist; the first time needs the package index) and runs `compileall` over it, because this
machine sets PYTHONDONTWRITEBYTECODE=1. The measured processes run without that variable, without
PYTHONPATH (which would import the source tree instead) and with an empty config home.
`--baseline-venv DIR` also measures another installed mailctl (say, main's) as it is, in the same
rounds: a before/after table from one run.

One run prints, side by side:
- `python -c pass` and `python -c "import typer"` with the venv's interpreter: the floor;
  every ratio is to the bare `import typer` median (Typer's own import is not ours to cut);
- a bash completion request, what every TAB runs (`_MAILCTL_COMPLETE=complete_bash
  COMP_WORDS="mailctl se" COMP_CWORD=1 mailctl`), and the completion of one of send's options;
- `mailctl --version`; `mailctl --help` as shipped, and with rich help panels forced on (a
  wrapper sets `rich_markup_mode="rich"` on every Typer app) when the shipped help is plain;
- one plaintext loopback `mailctl send` against Postfix's `smtp-sink` (started here on
  127.0.0.1; as root with `-u nobody`), and swaks and msmtp sending the same message to it;
- with aiosmtpd and trustme importable here: the same three over STARTTLS against aiosmtpd.

The machine's 2 cores are shared by the client, the server and whatever else runs, and load
comes in bursts: so every row is measured in each of --rounds rounds (--runs runs a round, the
row order rotating), and a row's figure is the median of all its runs. A round times each row
with hyperfine (`apt-get install -y hyperfine msmtp swaks`) when it is on PATH: `-N` (no
shell), except for msmtp, which reads the message on stdin and so runs through hyperfine's shell
with its spawn time subtracted (hyperfine 1.15 has no --input). Without hyperfine, this script
times the runs itself. A missing peer (swaks, msmtp, smtp-sink) is skipped with a note.
Targets (issue 7), as ratios to bare `import typer`: completion <= 1.3, send <= 2.0, `--help`
with rich panels <= 2.5; `--check` exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from loopback import free_port, wait_listening

ROOT = Path(__file__).resolve().parent.parent
MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: bench\r\n\r\nhi\r\n"
TARGETS = {"completion": 1.3, "send": 2.0, "help": 2.5}
# Forces rich help panels on every Typer app created after it, whatever the app's own setting,
# through Typer's documented `rich_markup_mode` parameter; then runs the console script's main.
FORCE_RICH = """\
import sys
import typer.main
_init = typer.main.Typer.__init__
def _rich(self, *args, **kwargs):
    kwargs["rich_markup_mode"] = "rich"
    _init(self, *args, **kwargs)
typer.main.Typer.__init__ = _rich
from mailctl.__main__ import main
sys.argv = ["mailctl", *sys.argv[1:]]
sys.exit(main())
"""
TYPER = 'python -c "import typer"'
BASE = " [base]"  # label suffix of --baseline-venv rows


@dataclass
class Row:
    label: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    stdin: Path | None = None
    target: str | None = None  # key of TARGETS
    group: str | None = None  # send rows: peers print their ratio to mailctl's
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    places = (f"/usr/sbin/{name}", f"/usr/lib/postfix/{name}")
    return next((p for p in places if Path(p).exists()), None)


# ---------------------------------------------------------------------------------------------
# the installed mailctl


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _prepare_venv(venv: Path, *, install: bool) -> Path:
    """Return the venv's python with this tree installed (not editable) and bytecode compiled."""
    python = venv / "bin" / "python"
    env = _clean_env()
    if install:
        pip = [str(python), "-m", "pip", "install", "-q"]
        if not python.exists():
            print(f"creating {venv} and installing mailctl from {ROOT} ...", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([*pip, str(ROOT)], check=True, env=env)
        else:
            print(f"reinstalling mailctl from {ROOT} into {venv} ...", file=sys.stderr)
            subprocess.run([*pip, "--no-deps", "--force-reinstall", str(ROOT)], check=True, env=env)
    if not python.exists():
        raise SystemExit(f"{python} does not exist (drop --no-install to create it)")
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, env=env,
    ).stdout.strip()  # fmt: skip
    compile_all = [str(python), "-m", "compileall", "-q", site]
    subprocess.run(compile_all, check=True, env=env, stdout=subprocess.DEVNULL)
    where = subprocess.run(
        [str(python), "-c", "import mailctl; print(mailctl.__file__)"],
        capture_output=True, text=True, check=True, env=env, cwd=tempfile.gettempdir(),
    ).stdout.strip()  # fmt: skip
    if not where.startswith(site):
        raise SystemExit(f"mailctl in {venv} is not installed there ({where}): editable?")
    return python


# ---------------------------------------------------------------------------------------------
# timing


class Timer:
    def __init__(self, runs: int, base_env: dict[str, str], tmp: Path) -> None:
        self.runs = runs
        self.base_env = base_env
        self.tmp = tmp
        self.hyperfine = shutil.which("hyperfine")

    def check(self, row: Row) -> str:
        """Run `row` once; a failure stops the benchmark. Returns its stdout."""
        with open(row.stdin or os.devnull, "rb") as source:
            proc = subprocess.run(
                row.cmd,
                stdin=source,
                capture_output=True,
                env={**self.base_env, **row.env},
                timeout=60,
                check=False,
            )
        if proc.returncode != 0:
            error = proc.stderr.decode(errors="replace")
            raise SystemExit(f"failed ({proc.returncode}): {shlex.join(row.cmd)}\n{error}")
        return proc.stdout.decode(errors="replace")

    def sample(self, row: Row) -> None:
        """Add --runs wall times (seconds) of `row` to its samples."""
        env = {**self.base_env, **row.env}
        if self.hyperfine:
            row.samples += self._hyperfine(row, env)
        else:
            row.samples += self._own(row, env)

    def _hyperfine(self, row: Row, env: dict[str, str]) -> list[float]:
        out = self.tmp / "hyperfine.json"
        args = [self.hyperfine or "hyperfine", "--style", "none", "--warmup", "1"]
        args += ["--runs", str(self.runs), "--export-json", str(out)]
        if row.stdin is None:
            args += ["-N", shlex.join(row.cmd)]
        else:  # through the shell (spawn time subtracted by hyperfine) for the redirection
            args += [f"{shlex.join(row.cmd)} < {shlex.quote(str(row.stdin))}"]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        subprocess.run(args, env=env, check=True, **quiet)  # type: ignore[call-overload]
        return [float(t) for t in json.loads(out.read_text())["results"][0]["times"]]

    def _own(self, row: Row, env: dict[str, str]) -> list[float]:
        samples = []
        for i in range(1 + self.runs):  # one warm-up run
            with open(row.stdin or os.devnull, "rb") as source:
                start = time.perf_counter()
                subprocess.run(
                    row.cmd,
                    stdin=source,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                    check=False,
                )
                if i:
                    samples.append(time.perf_counter() - start)
        return samples


# ---------------------------------------------------------------------------------------------
# servers


@contextmanager
def _smtp_sink(tmp: Path, notes: list[str]) -> Iterator[int | None]:
    tool = _tool("smtp-sink")
    if tool is None:
        notes.append("plain send rows skipped: smtp-sink not found (postfix, see FACTS.md)")
        yield None
        return
    port = free_port()
    cmd = [tool]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root
    cmd += [f"127.0.0.1:{port}", "128"]
    with (tmp / "smtp-sink.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_listening(port)
            yield port
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@contextmanager
def _starttls_server(tmp: Path, notes: list[str]) -> Iterator[tuple[int, Path] | None]:
    try:
        import ssl

        import trustme
        from aiosmtpd.controller import Controller
    except ImportError:
        notes.append("STARTTLS rows skipped: run with a python that has aiosmtpd and trustme")
        yield None
        return

    class _Discard:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 OK"

    ca = trustme.CA()
    ca_pem = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    # aiosmtpd's Controller cannot bind port 0 (it connects to its own port to start).
    controller = Controller(
        _Discard(),
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=server_ctx,
        require_starttls=True,
    )
    controller.start()
    try:
        yield controller.port, ca_pem
    finally:
        controller.stop()


# ---------------------------------------------------------------------------------------------
# rows


def _mailctl_rows(python: Path, tmp: Path, timer: Timer, tag: str) -> list[Row]:
    """The start-up rows of one installed mailctl; `tag` marks a baseline's labels."""
    mailctl = str(python.parent / "mailctl")
    force_rich = tmp / "force_rich.py"
    force_rich.write_text(FORCE_RICH)
    complete = {"_MAILCTL_COMPLETE": "complete_bash", "COMP_WORDS": "mailctl se", "COMP_CWORD": "1"}
    option = {**complete, "COMP_WORDS": "mailctl send --st", "COMP_CWORD": "2"}
    rows = [
        Row(f"python -c pass{tag}", [str(python), "-c", "pass"]),
        Row(f"{TYPER}{tag}", [str(python), "-c", "import typer"]),
        Row(f"TAB: mailctl se<TAB>{tag}", [mailctl], complete, target="completion"),
        Row(f"TAB: mailctl send --st<TAB>{tag}", [mailctl], option, target="completion"),
        Row(f"mailctl --version{tag}", [mailctl, "--version"]),
    ]
    shipped = Row("", [mailctl, "--help"])
    if "─ Options ─" in timer.check(shipped):
        rows.append(Row(f"mailctl --help (rich panels){tag}", shipped.cmd, target="help"))
    else:
        rows.append(Row(f"mailctl --help (plain, as shipped){tag}", shipped.cmd))
        forced = [str(python), str(force_rich), "--help"]
        rows.append(Row(f"mailctl --help (rich forced on){tag}", forced, target="help"))
    rows.append(Row(f"mailctl send --help{tag}", [mailctl, "send", "--help"]))
    return rows


def _send_rows(
    mailctl: str,
    port: int,
    group: str,
    tag: str,
    *,
    ours_tls: tuple[str, ...] = ("--no-tls",),
    peers: bool,
    message: Path,
    notes: list[str],
    swaks_tls: tuple[str, ...] = (),
    msmtp_tls: tuple[str, ...] = ("--tls=off",),
) -> list[Row]:
    server = f"127.0.0.1:{port}"
    ours = [mailctl, "send", f"--server={server}", *ours_tls, "--from", "a@example.org", "--to"]
    ours += ["b@example.org", "--subject", "bench", "--body", "hi"]
    target = "send" if group == "plain" else None
    rows = [Row(f"mailctl send ({group}){tag}", ours, target=target, group=group + tag)]
    if not peers:
        return rows
    swaks = _tool("swaks")
    if swaks is None:
        notes.append("swaks not found: apt-get install -y swaks")
    else:
        cmd = [swaks, "--server", server, *swaks_tls, "--from", "a@example.org", "--to"]
        cmd += ["b@example.org", "--header", "Subject: bench", "--body", "hi"]
        rows.append(Row(f"swaks ({group})", cmd, group=group))
    msmtp = _tool("msmtp")
    if msmtp is None:
        notes.append("msmtp not found: apt-get install -y msmtp")
    else:
        cmd = [msmtp, "-C", "/dev/null", "--host=127.0.0.1", f"--port={port}", "--auth=off"]
        cmd += [*msmtp_tls, "--from=a@example.org", "b@example.org"]
        rows.append(Row(f"msmtp ({group})", cmd, stdin=message, group=group))
    return rows


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5, help="runs of each row per round")
    parser.add_argument(
        "--venv",
        type=Path,
        default=Path(tempfile.gettempdir()) / "mailctl-startup-venv",
        help="venv holding the installed mailctl (created when missing)",
    )
    parser.add_argument(
        "--no-install", action="store_true", help="measure --venv as it is (no reinstall)"
    )
    parser.add_argument(
        "--baseline-venv", type=Path, help="another installed mailctl to measure as it is"
    )
    parser.add_argument("--no-starttls", action="store_true", help="skip the STARTTLS rows")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    python = _prepare_venv(args.venv.resolve(), install=not args.no_install)
    venvs = [(python, "")]
    if args.baseline_venv:
        venvs.insert(0, (_prepare_venv(args.baseline_venv.resolve(), install=False), BASE))
    tmp = Path(tempfile.mkdtemp(prefix="mailctl-startup-"))
    home = tmp / "home"
    (home / ".config").mkdir(parents=True)
    base_env = {
        k: v
        for k, v in _clean_env().items()
        if k != "MAILCTL_CONFIG" and not k.startswith("_MAILCTL_COMPLETE")
    }
    config_home = str(home / ".config")
    base_env.update({"NO_COLOR": "1", "COLUMNS": "100", "HOME": str(home)})
    base_env["XDG_CONFIG_HOME"] = config_home
    timer = Timer(args.runs, base_env, tmp)
    notes: list[str] = []
    if timer.hyperfine is None:
        notes.append("hyperfine not found: this script's own timer (apt-get install -y hyperfine)")
    message = tmp / "message.eml"
    message.write_bytes(MESSAGE)

    try:
        with ExitStack() as servers:
            port = servers.enter_context(_smtp_sink(tmp, notes))
            tls = None if args.no_starttls else servers.enter_context(_starttls_server(tmp, notes))
            rows: list[Row] = []
            for venv_python, tag in venvs:
                rows += _mailctl_rows(venv_python, tmp, timer, tag)
                mailctl = str(venv_python.parent / "mailctl")
                first = tag == venvs[-1][1]  # peers once, beside the measured mailctl
                if port is not None:
                    rows += _send_rows(
                        mailctl, port, "plain", tag, peers=first, message=message, notes=notes
                    )
                if tls is not None:
                    rows += _send_rows(
                        mailctl, tls[0], "STARTTLS, aiosmtpd", tag,
                        ours_tls=("--starttls", "--ca-file", str(tls[1])),
                        peers=first, message=message, notes=notes, swaks_tls=("-tls",),
                        msmtp_tls=("--tls=on", "--tls-starttls=on", f"--tls-trust-file={tls[1]}"),
                    )  # fmt: skip
            for row in rows:
                timer.check(row)
            for round_no in range(args.rounds):
                shift = round_no % len(rows)  # rotate so no row always runs after the same one
                for row in rows[shift:] + rows[:shift]:
                    timer.sample(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    missed = _print(rows, notes, args, timer.hyperfine is not None)
    if args.check and missed:
        raise SystemExit(1)


def _print(rows: list[Row], notes: list[str], args: argparse.Namespace, hyperfine: bool) -> bool:
    """One line per row: the baseline's figures (if any) beside the measured mailctl's."""
    base = {r.label.removesuffix(BASE): r for r in rows if r.label.endswith(BASE)}
    typer_s = {tag: r.median for r in rows for tag in ("", BASE) if r.label == TYPER + tag}
    ours_by_group = {r.group: r.median for r in rows if r.group and r.label.startswith("mailctl")}
    how = "hyperfine" if hyperfine else "own timer"
    print(f"median wall ms and ratio to `{TYPER}` ({how}; {args.rounds} rounds x {args.runs} runs)")
    head = f"{'what':<36} " + (f"{'base ms':>8} {'x typer':>7}  " if base else "")
    print(head + f"{'ms':>8} {'x typer':>7} {'vs mailctl':>10}  target")
    missed = False
    for row in rows:
        if row.label.endswith(BASE):
            continue
        before = base.get(row.label)
        line = f"{row.label:<36} "
        if base:
            line += (
                f"{before.median * 1000:8.1f} {before.median / typer_s[BASE]:7.2f}  "
                if before
                else f"{'':8} {'':7}  "
            )
        ratio = row.median / typer_s[""]
        versus = ""
        if row.group and not row.label.startswith("mailctl"):
            ours = ours_by_group.get(row.group)
            versus = f"{ours / row.median:9.2f}x" if ours else ""
        check = ""
        if row.target:
            limit = TARGETS[row.target]
            missed |= ratio > limit
            check = f"<= {limit}: {'ok' if ratio <= limit else 'MISSED'}"
        print(line + f"{row.median * 1000:8.1f} {ratio:7.2f} {versus:>10}  {check}")
    print("vs mailctl = mailctl send's median / the peer's (above 1: the peer is faster)")
    for note in dict.fromkeys(notes):
        print(f"note: {note}")
    return missed


if __name__ == "__main__":
    main()
