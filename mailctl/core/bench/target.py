"""Bench targets: the loopback rule for real servers, and the embedded sink as a child process."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailctl.core.bench.models import SinkSpec, Target
from mailctl.errors import ConnectError, MailctlError, ProtocolError, UsageError
from mailctl.inputs import KIB, read_file
from mailctl.models import Security, ServerSettings, Timeouts
from mailctl.protocols.resolve import is_loopback_only

__all__ = ["SINK_READY_TIMEOUT", "SINK_STOP_TIMEOUT", "EmbeddedSink", "check_target"]

SINK_READY_TIMEOUT = 15.0
SINK_STOP_TIMEOUT = 5.0
_READY_LIMIT = 64 * KIB  # {host, port, pid, security, cert_file, auth}: a few hundred bytes
_LOG_TAIL = 4 * KIB


def check_target(target: Target) -> None:
    """Refuse a non-loopback server unless the user said they own it, before any connect.

    Every address the host resolves to must be loopback: a name alone proves nothing.
    Raises UsageError, HostNotFoundError, TimeoutFailure (the lookup, within connect_timeout).
    """
    settings = target.settings
    if settings is None or target.allow_remote:
        return
    loopback, addresses = is_loopback_only(
        settings.host, settings.port, timeout=settings.timeouts.connect
    )
    if not loopback:
        shown = ", ".join(addresses) or "no address"
        raise UsageError(
            f"{settings.host} ({shown}) is not a loopback address; a benchmark floods the "
            "server with mail",
            hint="pass --i-own-this-server if you run this server and may load it",
        )


class EmbeddedSink:
    """`mailctl sink` in a child process, per its ready-file contract; always stopped."""

    def __init__(self, process: subprocess.Popen[bytes], folder: Path) -> None:
        self.process = process
        self.folder = folder

    @classmethod
    def start(cls, spec: SinkSpec) -> tuple[EmbeddedSink, ServerSettings, Callable[[], str] | None]:
        """Start it and wait (bounded) for the ready file. Raises ConnectError."""
        folder = Path(tempfile.mkdtemp(prefix="mailctl-bench-"))
        ready = folder / "ready.json"
        command = [
            sys.executable, "-m", "mailctl", "sink", "--listen", "127.0.0.1:0",
            "--ready-file", str(ready), "--quiet",
        ]  # fmt: skip
        if spec.security is Security.STARTTLS:
            command.append("--starttls")
        elif spec.security is Security.TLS:
            command.append("--tls")
        if spec.auth:
            command.append("--auth")
        log = (folder / "sink.log").open("wb")
        try:
            # Its own session: a terminal's Ctrl-C reaches only us, and we stop it after
            # printing the partial report, instead of it dying under in-flight messages.
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        except OSError as err:
            log.close()
            raise ConnectError(f"cannot start the embedded sink: {err}") from err
        finally:
            if not log.closed:
                log.close()
        sink = cls(process, folder)
        try:
            info = sink._wait_ready(ready)
            settings, secret = sink._settings(info)
        except BaseException:
            sink.stop()
            raise
        return sink, settings, secret

    def _wait_ready(self, ready: Path) -> dict[str, Any]:
        deadline = time.monotonic() + SINK_READY_TIMEOUT
        while time.monotonic() < deadline:
            if ready.exists():
                with contextlib.suppress(ValueError, OSError, MailctlError):
                    raw = read_file(ready, what="the sink's ready file", limit=_READY_LIMIT)
                    info = json.loads(raw.decode("utf-8"))
                    if isinstance(info, dict):
                        return info
            if self.process.poll() is not None:
                raise ConnectError(
                    f"the embedded sink exited with status {self.process.returncode}: "
                    f"{self._log_tail()}",
                    hint="run 'mailctl sink' by hand to see why, or pass --server",
                )
            time.sleep(0.02)
        raise ConnectError(
            f"the embedded sink was not ready within {SINK_READY_TIMEOUT:g}s",
            hint="pass --server HOST:PORT to benchmark a running server",
        )

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError), (self.folder / "sink.log").open("rb") as log:
            # Only the end matters, and the log has no size limit of its own.
            log.seek(max(os.fstat(log.fileno()).st_size - _LOG_TAIL, 0))
            text = log.read(_LOG_TAIL).decode("utf-8", errors="replace")
            return " ".join(text.strip().splitlines()[-3:])[-300:] or "no output"
        return "no output"

    def _settings(self, info: dict[str, Any]) -> tuple[ServerSettings, Callable[[], str] | None]:
        try:
            security = Security(info.get("security") or "none")
            auth = info.get("auth")
            username = auth["username"] if isinstance(auth, dict) else None
            password = str(auth["password"]) if isinstance(auth, dict) else None
            cert = info.get("cert_file")
            settings = ServerSettings(
                host=str(info["host"]),
                port=int(info["port"]),
                security=security,
                username=str(username) if username else None,
                ca_file=Path(cert) if cert else None,
                # Loopback test credentials of our own sink: clear text is harmless here.
                allow_plaintext_auth=True,
                timeouts=Timeouts(connect=10.0, command=30.0, data=60.0),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ProtocolError(f"the embedded sink wrote an unusable ready file: {err}") from err
        return settings, ((lambda: password) if password is not None else None)

    def stop(self) -> None:
        """SIGTERM, wait, then SIGKILL to its whole process group (its own session); never
        raises."""
        process = self.process
        if process.poll() is None:
            with contextlib.suppress(OSError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(SINK_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(process.pid, signal.SIGKILL)  # start_new_session: pgid == pid
                with contextlib.suppress(OSError):
                    process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(SINK_STOP_TIMEOUT)
        # Our mkdtemp folder: the ready file, the log, and whatever the sink put next to
        # the ready file (its throwaway CA certificate).
        shutil.rmtree(self.folder, ignore_errors=True)
