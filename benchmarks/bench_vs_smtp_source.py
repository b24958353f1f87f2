"""`mailctl bench --mode pipeline -c 10` against Postfix's `smtp-source -d -s 10`, same smtp-sink.

Run: python benchmarks/bench_vs_smtp_source.py [--rounds 3] [--messages 20000]
Needs Postfix's test tools (see FACTS.md: install the postfix package without configuring it).
Starts `smtp-sink` on 127.0.0.1, then alternates, per round, `smtp-source -d -s 10 -m N -l 2000`
and `mailctl bench --server ... --no-tls --mode pipeline -c 10 -n N --size 2000 --json`; prints
both rates, their medians and the ratio (issue 3 target: >= 0.4). smtp-source's rate is N over
its wall time; mailctl's is the QPS it reports (from before its first connect to the last reply,
so without interpreter start-up, which is shown separately). Finally prints `--compare`.
Both programs and the sink share this machine's 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from loopback import free_port, wait_listening


def _tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (
            path
            for path in (f"/usr/sbin/{name}", f"/usr/lib/postfix/{name}")
            if os.path.exists(path)
        ),
        None,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args()
    sink_tool, source_tool = _tool("smtp-sink"), _tool("smtp-source")
    if not sink_tool or not source_tool:
        print(
            "skipped: Postfix's smtp-sink/smtp-source are not installed (apt-get install postfix)"
        )
        return
    port = free_port()
    sink_cmd = [sink_tool]
    if os.geteuid() == 0:
        sink_cmd += ["-u", "nobody"]  # smtp-sink refuses to run as root
    sink_cmd += [f"127.0.0.1:{port}", "1000"]
    sink = subprocess.Popen(sink_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {**os.environ, "NO_COLOR": "1"}
    mailctl = [
        sys.executable,
        "-m",
        "mailctl",
        "bench",
        "--server",
        f"127.0.0.1:{port}",
        "--no-tls",
    ]
    try:
        wait_listening(port, what="smtp-sink")
        source_rates: list[float] = []
        bench_rates: list[float] = []
        bench_walls: list[float] = []
        for round_number in range(1, args.rounds + 1):
            started = time.perf_counter()
            subprocess.run(
                [source_tool, "-d", "-s", "10", "-m", str(args.messages), "-l", "2000",
                 f"127.0.0.1:{port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=300,
            )  # fmt: skip
            source_rates.append(args.messages / (time.perf_counter() - started))

            started = time.perf_counter()
            proc = subprocess.run(
                [*mailctl, "--mode", "pipeline", "-c", "10", "-n", str(args.messages),
                 "--size", "2000", "--json"],
                capture_output=True, env=env, check=False, timeout=300,
            )  # fmt: skip
            wall = time.perf_counter() - started
            if proc.returncode != 0:
                raise SystemExit(
                    f"mailctl bench failed:\n{proc.stdout.decode()}{proc.stderr.decode()}"
                )
            run = json.loads(proc.stdout)["data"]["runs"][0]
            if run["failed"] or run["unknown"]:
                raise SystemExit(f"mailctl bench had failures: {run['errors']}")
            bench_rates.append(float(run["qps"]))
            bench_walls.append(wall)
            print(
                f"round {round_number}: smtp-source {source_rates[-1]:,.0f} msg/s, "
                f"mailctl bench {bench_rates[-1]:,.0f} msg/s "
                f"(process wall {wall:.2f}s incl. start-up), "
                f"ratio {bench_rates[-1] / source_rates[-1]:.2f}"
            )
        source_median = statistics.median(source_rates)
        bench_median = statistics.median(bench_rates)
        print()
        print(f"smtp-source -d -s 10 -m {args.messages} -l 2000: median {source_median:,.0f} msg/s")
        print(f"mailctl bench --mode pipeline -c 10:            median {bench_median:,.0f} msg/s")
        print(f"ratio (mailctl / smtp-source): {bench_median / source_median:.2f} (target >= 0.40)")
        print()
        print("mailctl bench --compare -n 2000 -c 10 (same smtp-sink):")
        compare = subprocess.run(
            [*mailctl, "--compare", "-n", "2000", "-c", "10", "--size", "2000"],
            capture_output=True, env=env, check=False, timeout=300,
        )  # fmt: skip
        sys.stdout.write(compare.stdout.decode())
        sys.stdout.write(compare.stderr.decode())
    finally:
        sink.terminate()
        try:
            sink.wait(5)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait(5)


if __name__ == "__main__":
    main()
