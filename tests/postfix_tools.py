"""Postfix's smtp-sink on 127.0.0.1 for pipelining tests (it advertises PIPELINING).

`smtp_sink_factory(*options, dump=False)` starts one on a free port and stops it at the end;
tests that use it skip when Postfix's tools are not installed (CI: see the lead's notes).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SMTP_SINK = shutil.which("smtp-sink") or (
    "/usr/sbin/smtp-sink" if os.path.exists("/usr/sbin/smtp-sink") else None
)


@dataclass
class PostfixSink:
    port: int
    process: subprocess.Popen[bytes]
    dump: Path | None

    def dumped(self) -> str:
        """Messages as smtp-sink recorded them (dot-unstuffed, LF line ends)."""
        assert self.dump is not None
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not self.dump.exists():
            time.sleep(0.02)
        return self.dump.read_text(encoding="utf-8", errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_smtp_sink(folder: Path, *options: str, dump: bool = False) -> PostfixSink:
    if SMTP_SINK is None:
        pytest.skip("Postfix smtp-sink is not installed")
    port = _free_port()
    command = [SMTP_SINK]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]  # smtp-sink refuses to run as root
    dump_path = None
    if dump:
        if os.geteuid() == 0:
            # Written by "nobody", who cannot enter pytest's 0700 tmp_path: use /tmp itself.
            folder = Path(tempfile.mkdtemp(prefix="mailctl-smtp-sink-"))
            folder.chmod(0o777)
        dump_path = folder / "dump.txt"
        command += ["-D", str(dump_path)]
    command += [*options, f"127.0.0.1:{port}", "100"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return PostfixSink(port, process, dump_path)
        time.sleep(0.02)
    process.kill()
    process.wait()
    raise RuntimeError("smtp-sink did not start")


SinkFactory = Callable[..., PostfixSink]


@pytest.fixture(name="smtp_sink_factory")
def smtp_sink_factory_fixture(tmp_path: Path) -> Iterator[SinkFactory]:
    sinks: list[PostfixSink] = []

    def factory(*options: str, dump: bool = False) -> PostfixSink:
        folder = tmp_path / f"sink{len(sinks)}"
        folder.mkdir()
        sink = start_smtp_sink(folder, *options, dump=dump)
        sinks.append(sink)
        return sink

    yield factory
    for sink in sinks:
        sink.process.terminate()
        try:
            sink.process.wait(5)
        except subprocess.TimeoutExpired:
            sink.process.kill()
            sink.process.wait()
        if sink.dump is not None and not sink.dump.parent.is_relative_to(tmp_path):
            shutil.rmtree(sink.dump.parent, ignore_errors=True)
