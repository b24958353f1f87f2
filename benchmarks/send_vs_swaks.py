"""Start-up and one-message wall time of an installed mailctl, beside swaks, msmtp and bare Typer.

Run: python benchmarks/send_vs_swaks.py [--runs 30] [--venv DIR] [--no-install] [--check]

TAB completion and every shell use run the whole program, so this measures what a person pays
per process, on an INSTALLED mailctl (`pip install .`, not editable, bytecode compiled): by
default the script (re)installs this tree into --venv (created with `python -m venv` when it does
not exist; the first time needs the package index) and runs `compileall` over it, because this
machine sets PYTHONDONTWRITEBYTECODE=1. The measured processes run without that variable, without
PYTHONPATH (which would import the source tree instead) and with an empty config home.

One run prints, side by side and from the same run:
- `python -c pass` and `python -c "import typer"` with the venv's interpreter: the floor;
  every ratio is to the bare `import typer` median (Typer's own import is not ours to cut);
- a bash completion request, what every TAB runs (`_MAILCTL_COMPLETE=complete_bash
  COMP_WORDS="mailctl se" COMP_CWORD=1 mailctl`), and the completion of one of send's options;
- `mailctl --version`; `mailctl --help` as shipped, and with rich help panels forced on (a
  wrapper sets `rich_markup_mode="rich"` on every Typer app) when the shipped help is plain;
- one plaintext loopback `mailctl send` against Postfix's `smtp-sink` (started here on
  127.0.0.1; as root with `-u nobody`), and swaks and msmtp sending the same message to it;
- with aiosmtpd and trustme importable here: the same three over STARTTLS against aiosmtpd.

Timing uses hyperfine (`apt-get install -y hyperfine msmtp swaks`) when it is on PATH: `-N`
(no shell), except for msmtp, which reads the message on stdin and so runs through hyperfine's
shell with its spawn time subtracted (hyperfine 1.15 has no --input). Without hyperfine, a
median of subprocess runs timed here. A missing peer (swaks, msmtp, smtp-sink) is skipped with a
note. Targets (issue 7), as ratios to bare `import typer`: completion <= 1.3, send <= 2.0,
`--help` with rich panels <= 2.5; `--check` exits 1 when one is missed. The machine has 2 cores
shared by the client, the server and anything else running: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


@dataclass
class Row:
    label: str
    median_s: float | None
    note: str = ""
    target: str | None = None  # key of TARGETS
    peer_of: str | None = None  # a send row's group: peers print their ratio to mailctl's


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/lib/postfix/{name}") if Path(p).exists()), None
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"the SMTP server did not listen on port {port}")


# ---------------------------------------------------------------------------------------------
# the installed mailctl


def _prepare_venv(venv: Path, *, install: bool) -> Path:
    """Return the venv's python with this tree installed (not editable) and bytecode compiled."""
    python = venv / "bin" / "python"
    quiet_env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")
    }
    quiet_env.pop("PYTHONDONTWRITEBYTECODE", None)
    if install:
        if not python.exists():
            print(f"creating {venv} and installing mailctl from {ROOT} ...", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", str(ROOT)], check=True, env=quiet_env
            )
        else:
            print(f"reinstalling mailctl from {ROOT} into {venv} ...", file=sys.stderr)
            subprocess.run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--no-deps",
                    "--force-reinstall",
                    str(ROOT),
                ],
                check=True,
                env=quiet_env,
            )
    if not python.exists():
        raise SystemExit(f"{python} does not exist (drop --no-install to create it)")
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, env=quiet_env,
    ).stdout.strip()  # fmt: skip
    subprocess.run(
        [str(python), "-m", "compileall", "-q", site],
        check=True,
        env=quiet_env,
        stdout=subprocess.DEVNULL,
    )
    where = subprocess.run(
        [str(python), "-c", "import mailctl; print(mailctl.__file__)"],
        capture_output=True, text=True, check=True, env=quiet_env, cwd=tempfile.gettempdir(),
    ).stdout.strip()  # fmt: skip
    if not where.startswith(site):
        raise SystemExit(
            f"mailctl in {venv} is not installed there ({where}): an editable install?"
        )
    return python


# ---------------------------------------------------------------------------------------------
# timing


class Timer:
    def __init__(self, runs: int, warmup: int, base_env: dict[str, str], tmp: Path) -> None:
        self.runs = runs
        self.warmup = warmup
        self.base_env = base_env
        self.tmp = tmp
        self.hyperfine = shutil.which("hyperfine")

    def median(
        self, cmd: list[str], *, env: dict[str, str] | None = None, stdin: Path | None = None
    ) -> float:
        """Median wall time in seconds of `cmd` (a failing run stops the benchmark)."""
        full_env = {**self.base_env, **(env or {})}
        self._check_once(cmd, full_env, stdin)
        if self.hyperfine:
            return self._hyperfine(cmd, full_env, stdin)
        return self._own(cmd, full_env, stdin)

    def _check_once(self, cmd: list[str], env: dict[str, str], stdin: Path | None) -> None:
        with open(stdin or os.devnull, "rb") as source:
            proc = subprocess.run(
                cmd, stdin=source, capture_output=True, env=env, timeout=60, check=False
            )
        if proc.returncode != 0:
            error = proc.stderr.decode(errors="replace")
            raise SystemExit(f"failed ({proc.returncode}): {shlex.join(cmd)}\n{error}")

    def _hyperfine(self, cmd: list[str], env: dict[str, str], stdin: Path | None) -> float:
        out = self.tmp / "hyperfine.json"
        args = [self.hyperfine or "hyperfine", "--style", "none", "--warmup", str(self.warmup)]
        args += ["--runs", str(self.runs), "--export-json", str(out)]
        if stdin is None:
            args += ["-N", shlex.join(cmd)]
        else:  # through the shell (spawn time subtracted by hyperfine) for the redirection
            args += [f"{shlex.join(cmd)} < {shlex.quote(str(stdin))}"]
        subprocess.run(
            args, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        result = json.loads(out.read_text())["results"][0]
        return float(result["median"])

    def _own(self, cmd: list[str], env: dict[str, str], stdin: Path | None) -> float:
        samples = []
        for i in range(self.warmup + self.runs):
            with open(stdin or os.devnull, "rb") as source:
                start = time.perf_counter()
                subprocess.run(
                    cmd,
                    stdin=source,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                    check=False,
                )
                if i >= self.warmup:
                    samples.append(time.perf_counter() - start)
        return statistics.median(samples)


# ---------------------------------------------------------------------------------------------
# servers


def _start_smtp_sink(tmp: Path) -> tuple[subprocess.Popen[bytes] | None, int | None, str]:
    tool = _tool("smtp-sink")
    if tool is None:
        return None, None, "smtp-sink not found (install postfix without configuring it, FACTS.md)"
    port = _free_port()
    cmd = [tool]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root
    cmd += [f"127.0.0.1:{port}", "128"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=(tmp / "smtp-sink.log").open("wb")
    )
    _wait_listening(port)
    return proc, port, ""


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--venv",
        type=Path,
        default=Path(tempfile.gettempdir()) / "mailctl-startup-venv",
        help="venv holding the installed mailctl (created when missing)",
    )
    parser.add_argument(
        "--no-install", action="store_true", help="measure the venv as it is (no reinstall)"
    )
    parser.add_argument("--no-starttls", action="store_true", help="skip the STARTTLS rows")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    python = _prepare_venv(args.venv.resolve(), install=not args.no_install)
    mailctl = str(python.parent / "mailctl")
    tmp = Path(tempfile.mkdtemp(prefix="mailctl-startup-"))
    home = tmp / "home"
    (home / ".config").mkdir(parents=True)
    base_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "MAILCTL_CONFIG", "PYTHONSTARTUP")
        and not k.startswith("_MAILCTL_COMPLETE")
    }
    base_env.update(
        {
            "NO_COLOR": "1",
            "COLUMNS": "100",
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
        }
    )
    timer = Timer(args.runs, args.warmup, base_env, tmp)
    notes: list[str] = []
    if timer.hyperfine is None:
        notes.append("hyperfine not found: own median-of-runs timer (apt-get install -y hyperfine)")
    message = tmp / "message.eml"
    message.write_bytes(MESSAGE)
    force_rich = tmp / "force_rich.py"
    force_rich.write_text(FORCE_RICH)
    rows: list[Row] = []
    measure: Callable[..., float] = timer.median

    rows.append(Row("python -c pass", measure([str(python), "-c", "pass"])))
    rows.append(Row('python -c "import typer"', measure([str(python), "-c", "import typer"])))
    complete = {"_MAILCTL_COMPLETE": "complete_bash", "COMP_WORDS": "mailctl se", "COMP_CWORD": "1"}
    rows.append(Row("TAB: mailctl se<TAB>", measure([mailctl], env=complete), target="completion"))
    option = {**complete, "COMP_WORDS": "mailctl send --st", "COMP_CWORD": "2"}
    rows.append(
        Row("TAB: mailctl send --st<TAB>", measure([mailctl], env=option), target="completion")
    )
    rows.append(Row("mailctl --version", measure([mailctl, "--version"])))
    shipped = subprocess.run(
        [mailctl, "--help"], capture_output=True, text=True, env=base_env, check=False
    )
    rich_shipped = "─ Options ─" in shipped.stdout
    rows.append(
        Row(
            f"mailctl --help ({'rich panels' if rich_shipped else 'plain, as shipped'})",
            measure([mailctl, "--help"]),
            target="help" if rich_shipped else None,
        )
    )
    if not rich_shipped:
        rows.append(
            Row(
                "mailctl --help (rich forced on)",
                measure([str(python), str(force_rich), "--help"]),
                target="help",
            )
        )
    rows.append(Row("mailctl send --help", measure([mailctl, "send", "--help"])))

    sink, port, why = _start_smtp_sink(tmp)
    try:
        if sink is None or port is None:
            notes.append(f"plaintext send rows skipped: {why}")
        else:
            rows += _send_rows(measure, mailctl, port, [], message, "plain", notes)
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait(timeout=10)
    if not args.no_starttls:
        rows += _starttls_rows(measure, mailctl, tmp, message, notes)
    shutil.rmtree(tmp, ignore_errors=True)
    missed = _print(rows, notes, args.runs, timer.hyperfine is not None)
    if args.check and missed:
        raise SystemExit(1)


def _send_rows(
    measure: Callable[..., float],
    mailctl: str,
    port: int,
    ours_tls: list[str],
    message: Path,
    group: str,
    notes: list[str],
    *,
    swaks_tls: tuple[str, ...] = (),
    msmtp_tls: tuple[str, ...] = ("--tls=off",),
) -> list[Row]:
    server = f"127.0.0.1:{port}"
    tls = ours_tls or ["--no-tls"]
    ours = [mailctl, "send", f"--server={server}", *tls, "--from", "a@example.org", "--to"]
    ours += ["b@example.org", "--subject", "bench", "--body", "hi"]
    target = "send" if group == "plain" else None
    rows = [Row(f"mailctl send ({group})", measure(ours), target=target, peer_of=group)]
    swaks = _tool("swaks")
    if swaks is None:
        notes.append("swaks not found: apt-get install -y swaks")
    else:
        cmd = [swaks, "--server", server, *swaks_tls, "--from", "a@example.org", "--to"]
        cmd += ["b@example.org", "--header", "Subject: bench", "--body", "hi"]
        rows.append(Row(f"swaks ({group})", measure(cmd), peer_of=group))
    msmtp = _tool("msmtp")
    if msmtp is None:
        notes.append("msmtp not found: apt-get install -y msmtp")
    else:
        cmd = [msmtp, "-C", "/dev/null", "--host=127.0.0.1", f"--port={port}", "--auth=off"]
        cmd += [*msmtp_tls, "--from=a@example.org", "b@example.org"]
        rows.append(Row(f"msmtp ({group})", measure(cmd, stdin=message), peer_of=group))
    return rows


def _starttls_rows(
    measure: Callable[..., float], mailctl: str, tmp: Path, message: Path, notes: list[str]
) -> list[Row]:
    try:
        import ssl

        import trustme
        from aiosmtpd.controller import Controller
    except ImportError:
        notes.append("STARTTLS rows skipped: run with a python that has aiosmtpd and trustme")
        return []

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
        port=_free_port(),
        tls_context=server_ctx,
        require_starttls=True,
    )
    controller.start()
    try:
        return _send_rows(
            measure,
            mailctl,
            controller.port,
            ["--starttls", "--ca-file", str(ca_pem)],
            message,
            "STARTTLS, aiosmtpd",
            notes,
            swaks_tls=("-tls",),
            msmtp_tls=("--tls=on", "--tls-starttls=on", f"--tls-trust-file={ca_pem}"),
        )
    finally:
        controller.stop()


def _print(rows: list[Row], notes: list[str], runs: int, hyperfine: bool) -> bool:
    typer_s = next(r.median_s for r in rows if "import typer" in r.label)
    assert typer_s
    print(
        f"{'what':<36} {'median ms':>9} {'x typer':>8}  {'vs mailctl':>10}  target"
        f"   ({'hyperfine' if hyperfine else 'own timer'}, median of {runs} runs)"
    )
    missed = False
    ours_by_group = {
        r.peer_of: r.median_s for r in rows if r.peer_of and r.label.startswith("mailctl")
    }
    for row in rows:
        if row.median_s is None:
            continue
        ratio = row.median_s / typer_s
        versus = ""
        if row.peer_of and not row.label.startswith("mailctl"):
            ours = ours_by_group.get(row.peer_of)
            versus = f"{ours / row.median_s:9.2f}x" if ours else ""
        check = ""
        if row.target:
            limit = TARGETS[row.target]
            ok = ratio <= limit
            missed |= not ok
            check = f"<= {limit}: {'ok' if ok else 'MISSED'}"
        print(f"{row.label:<36} {row.median_s * 1000:9.1f} {ratio:8.2f}  {versus:>10}  {check}")
    print('x typer = median / median of `python -c "import typer"` (same venv, same run)')
    print("vs mailctl = mailctl send's median / the peer's (above 1: the peer is faster)")
    for note in notes:
        print(f"note: {note}")
    return missed


if __name__ == "__main__":
    main()
