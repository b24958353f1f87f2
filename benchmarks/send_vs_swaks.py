"""Wall time of one `mailctl send` against `swaks` on the same local server, plus `--help` start-up.

Run: python benchmarks/send_vs_swaks.py [--runs 15]
Needs swaks (apt-get install -y swaks). Starts an aiosmtpd server on 127.0.0.1 (plain and
STARTTLS with a throwaway trustme CA); every run is one process start + one message, which is what
a person or a cron job pays. Prints medians and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiosmtpd.controller import Controller


class _Discard:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


def _free_port() -> int:
    """aiosmtpd's Controller cannot bind port 0 (it connects to its own port to start)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _time(cmd: list[str], runs: int, env: dict[str, str]) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, env=env, timeout=60, check=False)
        samples.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.decode(errors='replace')}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    mailctl = [sys.executable, "-m", "mailctl"]
    env = {**os.environ, "NO_COLOR": "1"}

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    tmp = Path(tempfile.mkdtemp(prefix="mailctl-bench-"))
    ca_pem = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    server_ctx = __import__("ssl").create_default_context(__import__("ssl").Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)

    plain = Controller(_Discard(), hostname="127.0.0.1", port=_free_port())
    plain.start()
    starttls = Controller(
        _Discard(),
        hostname="127.0.0.1",
        port=_free_port(),
        tls_context=server_ctx,
        require_starttls=True,
    )
    starttls.start()
    rows: list[tuple[str, float, float | None]] = []
    try:
        help_ours = _time([*mailctl, "--help"], args.runs, env)
        rows.append(("--help (start-up)", statistics.median(help_ours), None))
        have_swaks = shutil.which("swaks") is not None
        common = ["--from", "a@example.org", "--to", "b@example.org", "--subject", "bench"]
        for label, port, ours_flags, swaks_flags in [
            ("send, plain SMTP", plain.port, ["--no-tls"], []),
            (
                "send, STARTTLS",
                starttls.port,
                ["--starttls", "--ca-file", str(ca_pem)],
                ["-tls"],
            ),
        ]:
            ours = _time(
                [
                    *mailctl,
                    "send",
                    f"--server=127.0.0.1:{port}",
                    *ours_flags,
                    *common,
                    "--body",
                    "hi",
                ],
                args.runs,
                env,
            )
            theirs = None
            if have_swaks:
                swaks = [
                    "swaks", "--server", f"127.0.0.1:{port}", *swaks_flags,
                    "--from", "a@example.org", "--to", "b@example.org",
                    "--header", "Subject: bench", "--body", "hi",
                ]  # fmt: skip
                theirs = statistics.median(_time(swaks, args.runs, env))
            rows.append((label, statistics.median(ours), theirs))
    finally:
        plain.stop()
        starttls.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"{'what':<22} {'mailctl ms':>11} {'swaks ms':>9} {'ratio':>6}"
        f"   (median of {args.runs} runs)"
    )
    for label, ours_s, theirs_s in rows:
        theirs_text = f"{theirs_s * 1000:9.1f}" if theirs_s is not None else f"{'-':>9}"
        ratio = f"{theirs_s / ours_s:6.2f}" if theirs_s else f"{'-':>6}"
        print(f"{label:<22} {ours_s * 1000:11.1f} {theirs_text} {ratio}")
    print("ratio = swaks time / mailctl time (above 1: mailctl is faster)")


if __name__ == "__main__":
    main()
