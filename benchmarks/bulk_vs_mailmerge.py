"""`mailctl bulk-send` against mailmerge and `smtp-source -d -s 10`, same CSV, same smtp-sink.

Run: python benchmarks/bulk_vs_mailmerge.py [--rows 2000] [--rounds 3] [--mailmerge PATH]
     python benchmarks/bulk_vs_mailmerge.py --memory-rows 1000000    # peak RSS of a big run

Needs Postfix's test tools (FACTS.md) and mailmerge (`pip install mailmerge` in a venv of its
own; --mailmerge names its executable). Starts `smtp-sink` on 127.0.0.1, writes a CSV of
--rows rows and a plain-text template (~2 KB messages), then per round runs mailmerge
(--no-dry-run --no-limit, no TLS, no AUTH), `mailctl bulk-send --send -c 4` (journal on
/dev/shm, so the figure is the program's, not this disk's fsync; a run with the journal
beside the CSV is printed too) and `smtp-source -d -s 10 -m ROWS -l SIZE` with SIZE the size
of a rendered message. Rates are rows over each process's wall time, start-up and
validation included; mailctl's own rate (from its first message) is shown beside it. Prints
the medians and the ratios (issue 9 targets: >= 10x mailmerge, >= 0.25x smtp-source). All
three programs and the sink share this machine's 2 cores.

--memory-rows N runs bulk-send once on an N-row CSV and prints its peak RSS (target: under
100 MB, independent of the row count).

First the mailctl the runs import is byte-compiled, as installing it does (mailmerge, from
pip, has its bytecode): from a checkout under PYTHONDONTWRITEBYTECODE=1 every run would
otherwise compile its ~70 modules from source, ~70 ms of each run's start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loopback import free_port, wait_listening

TEMPLATE = (
    "From: Sender <sender@example.org>\n"
    "To: {{ name }} <{{ email }}>\n"
    "Subject: Your numbers, {{ name }}\n"
    "\n"
    "Dear {{ name }},\n\n"
    "your number is {{ number }}.\n\n"
    + "This line makes the message about two kilobytes long.\n"
    * 34
)
# mailmerge's own template syntax: the same message.
MAILMERGE_TEMPLATE = (
    TEMPLATE.replace("From:", "FROM:").replace("To:", "TO:").replace("Subject:", "SUBJECT:")
)


def _tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/lib/postfix/{name}") if os.path.exists(p)), None
    )


_BYTE_COMPILE = (
    "import compileall, importlib.util, pathlib\n"
    "spec = importlib.util.find_spec('mailctl')\n"
    "assert spec is not None and spec.origin is not None\n"
    "folder = pathlib.Path(spec.origin).parent\n"
    "print(folder if compileall.compile_dir(folder, quiet=1) else '')\n"
)


def _byte_compile() -> None:
    """Byte-compile the mailctl that `python -m mailctl` imports here (same path, same
    environment as the runs), as an install does."""
    proc = subprocess.run(
        [sys.executable, "-c", _BYTE_COMPILE], capture_output=True, text=True, check=False
    )
    folder = proc.stdout.strip()
    if proc.returncode != 0 or not folder:
        raise SystemExit(f"could not byte-compile mailctl:\n{proc.stdout}{proc.stderr}")
    print(f"mailctl byte-compiled as an install would be: {folder}")


def _write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("email,name,number\n")
        for n in range(rows):
            out.write(f"person{n}@example.org,Person {n},{n:07d}\n")


def _bulk(csv: Path, template: Path, port: int, journal: Path, *extra: str) -> tuple[float, float]:
    """One bulk-send run: (wall seconds, mailctl's own msg/s)."""
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(f"{journal}{suffix}").unlink(missing_ok=True)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mailctl", "bulk-send", str(csv), str(template), "--send",
         "--json", "--server", f"127.0.0.1:{port}", "--no-tls", "--journal", str(journal),
         *extra],
        capture_output=True, env={**os.environ, "NO_COLOR": "1"}, check=False, timeout=3600,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"bulk-send failed:\n{proc.stdout.decode()}{proc.stderr.decode()}")
    return wall, float(json.loads(proc.stdout)["data"]["qps"])


def _message_size(csv: Path, template: Path) -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "mailctl", "bulk-send", str(csv), str(template), "--json"],
        capture_output=True, env={**os.environ, "NO_COLOR": "1"}, check=True, timeout=600,
    )  # fmt: skip
    message: str = json.loads(proc.stdout)["data"]["previews"][0]["message"]
    return len(message.encode("utf-8"))


def _mailmerge(tool: str, folder: Path, port: int) -> float:
    config = folder / "mailmerge_server.conf"
    config.write_text(
        f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nsecurity = Never\nratelimit = 0\n"
    )
    started = time.perf_counter()
    subprocess.run(
        [tool, "--no-dry-run", "--no-limit", "--output-format", "raw",
         "--template", str(folder / "mailmerge_template.txt"),
         "--database", str(folder / "rows.csv"), "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=3600,
    )  # fmt: skip
    return time.perf_counter() - started


def _memory(rows: int, port: int) -> None:
    with tempfile.TemporaryDirectory(prefix="mailctl-bulk-mem-") as name:
        folder = Path(name)
        csv, template = folder / "rows.csv", folder / "letter.txt"
        _write_csv(csv, rows)
        template.write_text(TEMPLATE)
        journal = Path("/dev/shm") / f"bulk-mem-{os.getpid()}.journal"
        try:
            wall, qps = _bulk(csv, template, port, journal)
        finally:
            for suffix in ("", "-wal", "-shm", ".lock"):
                Path(f"{journal}{suffix}").unlink(missing_ok=True)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"bulk-send --send, {rows:,} rows: {wall:.1f}s wall, {qps:,.0f} msg/s sending,")
        print(f"peak RSS of the largest child (bulk-send): {peak:.1f} MB (target < 100 MB)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mailmerge", default=shutil.which("mailmerge"))
    parser.add_argument("--memory-rows", type=int, default=None)
    parser.add_argument(
        "--concurrency", "-c", type=int, default=4, help="bulk-send's -c (its default: 4)"
    )
    args = parser.parse_args()
    sink_tool, source_tool = _tool("smtp-sink"), _tool("smtp-source")
    if not sink_tool or not source_tool:
        print(
            "skipped: Postfix's smtp-sink/smtp-source are not installed (apt-get install postfix)"
        )
        return
    port = free_port()
    sink_cmd = [
        sink_tool,
        *(["-u", "nobody"] if os.geteuid() == 0 else []),
        f"127.0.0.1:{port}",
        "1000",
    ]
    _byte_compile()
    sink = subprocess.Popen(sink_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, what="smtp-sink")
        if args.memory_rows:
            _memory(args.memory_rows, port)
            return
        _compare(args, port, source_tool)
    finally:
        sink.terminate()
        try:
            sink.wait(5)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait(5)


def _compare(args: argparse.Namespace, port: int, source_tool: str) -> None:
    rows = args.rows
    with tempfile.TemporaryDirectory(prefix="mailctl-bulk-bench-") as name:
        folder = Path(name)
        csv, template = folder / "rows.csv", folder / "letter.txt"
        _write_csv(csv, rows)
        template.write_text(TEMPLATE)
        (folder / "mailmerge_template.txt").write_text(MAILMERGE_TEMPLATE)
        size = _message_size(csv, template)
        shm = Path("/dev/shm") / f"bulk-bench-{os.getpid()}.journal"
        disk = folder / "rows.csv.journal"
        figures: dict[str, list[float]] = {"mailmerge": [], "bulk": [], "disk": [], "source": []}
        own: list[float] = []
        for round_number in range(1, args.rounds + 1):
            if args.mailmerge:
                figures["mailmerge"].append(rows / _mailmerge(args.mailmerge, folder, port))
            wall, qps = _bulk(csv, template, port, shm, "-c", str(args.concurrency))
            figures["bulk"].append(rows / wall)
            own.append(qps)
            wall, _qps = _bulk(csv, template, port, disk, "-c", str(args.concurrency))
            figures["disk"].append(rows / wall)
            started = time.perf_counter()
            subprocess.run(
                [source_tool, "-d", "-s", "10", "-m", str(rows), "-l", str(size),
                 f"127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=600,
            )  # fmt: skip
            figures["source"].append(rows / (time.perf_counter() - started))
            line = ", ".join(f"{k} {v[-1]:,.0f}" for k, v in figures.items() if v)
            print(f"round {round_number} (msg/s over each process's wall time): {line}")
        for path in (shm, Path(f"{shm}-wal"), Path(f"{shm}-shm"), Path(f"{shm}.lock")):
            path.unlink(missing_ok=True)
    median = {k: statistics.median(v) for k, v in figures.items() if v}
    print()
    print(
        f"{rows:,} rows, {size:,}-byte messages, smtp-sink on loopback, medians of {args.rounds}:"
    )
    if "mailmerge" in median:
        print(
            f"  mailmerge (a connection per message):             {median['mailmerge']:>8,.0f}"
            " msg/s"
        )
    else:
        print("  mailmerge: not found (pip install mailmerge; --mailmerge PATH)")
    print(
        f"  mailctl bulk-send -c {args.concurrency}, journal on tmpfs:          "
        f"{median['bulk']:>8,.0f} msg/s"
        f" (sending alone: {statistics.median(own):,.0f} msg/s)"
    )
    print(
        f"  mailctl bulk-send -c {args.concurrency}, journal beside the CSV:    "
        f"{median['disk']:>8,.0f} msg/s"
    )
    print(f"  smtp-source -d -s 10 -l {size}:                   {median['source']:>8,.0f} msg/s")
    if "mailmerge" in median:
        print(
            f"ratio bulk-send / mailmerge: {median['bulk'] / median['mailmerge']:.1f}x"
            " (target >= 10)"
        )
    print(
        f"ratio bulk-send / smtp-source: {median['bulk'] / median['source']:.2f}x (target >= 0.25)"
    )


if __name__ == "__main__":
    main()
