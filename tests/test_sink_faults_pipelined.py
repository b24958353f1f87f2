"""The sink's faults and argument checks against pipelined input: nothing is answered after a
fault closes the connection, and NUL or control bytes never reach an envelope or the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mailctl.sink.config import FaultConfig, Phase, SinkConfig, StoreKind
from mailctl.sink.server import SinkServer

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
ENVELOPE = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
SinkFactory = Callable[..., Awaitable[SinkServer]]


@pytest.fixture
async def sink_factory(tmp_path: Path) -> AsyncIterator[SinkFactory]:
    servers: list[SinkServer] = []

    async def start(**kwargs: Any) -> SinkServer:
        kwargs.setdefault("port", 0)
        kwargs.setdefault("store", StoreKind.MAILDIR)
        kwargs.setdefault("store_path", tmp_path / f"box{len(servers)}")
        server = SinkServer(SinkConfig(**kwargs))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def stored(server: SinkServer) -> int:
    assert server.config.store_path is not None
    return len(list((server.config.store_path / "new").iterdir()))


async def connect(server: SinkServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"220 ")
    writer.write(b"EHLO client.test\r\n")
    while (line := await asyncio.wait_for(reader.readline(), 5))[3:4] == b"-":
        pass
    assert line.startswith(b"250 ")
    return reader, writer


async def rest(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (bounded in time)."""
    return await asyncio.wait_for(reader.read(), 5)


# -- the fault closes without answering anything more ---------------------------------------


@pytest.mark.parametrize(
    "faults",
    [
        FaultConfig(disconnect_rate=1.0, disconnect_on=Phase.EOD),
        FaultConfig(reject_rate=1.0, reject_code=421, reject_on=Phase.EOD),
    ],
    ids=["disconnect", "421"],
)
async def test_no_reply_after_a_fault_at_the_final_dot(
    sink_factory: SinkFactory, faults: FaultConfig
) -> None:
    server = await sink_factory(faults=faults)
    reader, writer = await connect(server)
    writer.write(ENVELOPE)
    for expected in (b"250 2.1.0", b"250 2.1.5", b"354 "):
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(expected)
    # The body, the final dot and the next transaction in one write (RFC 2920 3.1), the
    # way a pipelining client chains messages.
    writer.write(MESSAGE + b".\r\n" + ENVELOPE)
    after = await rest(reader)
    writer.close()
    if faults.reject_code == 421 and faults.reject_rate:
        assert after == b"421 4.3.0 Injected failure (mailctl sink)\r\n"
    else:
        assert after == b""  # RFC 1047's case: no reply at all, not even to the next MAIL
    assert stored(server) == 0 and server.stats.messages == 0


async def test_no_reply_after_a_fault_in_one_read(sink_factory: SinkFactory) -> None:
    # Envelope, body, dot and a second transaction all in one segment.
    server = await sink_factory(faults=FaultConfig(disconnect_rate=1.0, disconnect_on=Phase.EOD))
    reader, writer = await connect(server)
    writer.write(ENVELOPE + MESSAGE + b".\r\n" + ENVELOPE + MESSAGE + b".\r\nQUIT\r\n")
    after = await rest(reader)
    writer.close()
    # What was answered before the dot may go out; nothing after the fault does.
    assert after in (
        b"",
        b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
    )
    assert b"221" not in after and b"queued" not in after
    assert stored(server) == 0


async def test_quit_in_a_pipelined_batch_ends_it(sink_factory: SinkFactory) -> None:
    server = await sink_factory()
    reader, writer = await connect(server)
    writer.write(b"QUIT\r\n" + ENVELOPE + MESSAGE + b".\r\n")
    assert await rest(reader) == b"221 2.0.0 Bye\r\n"
    writer.close()
    assert stored(server) == 0


async def test_nothing_after_a_421_at_mail(sink_factory: SinkFactory) -> None:
    server = await sink_factory(faults=FaultConfig(close_after=1))
    reader, writer = await connect(server)
    writer.write(ENVELOPE + MESSAGE + b".\r\n" + ENVELOPE + MESSAGE + b".\r\n")
    after = await rest(reader)
    writer.close()
    assert after.endswith(b"421 4.7.0 Error: too many messages on this connection\r\n")
    assert after.count(b"\r\n") == 5  # 250 250 354 250(queued) 421
    assert stored(server) == 1


# -- NUL and control bytes in command arguments ----------------------------------------------


@pytest.mark.parametrize("byte", [b"\x00", b"\x01", b"\x1b", b"\x7f", b"\t"])
@pytest.mark.parametrize("where", ["mail", "rcpt"])
async def test_control_bytes_in_an_address_are_refused(
    sink_factory: SinkFactory, byte: bytes, where: str
) -> None:
    server = await sink_factory()
    reader, writer = await connect(server)
    bad = b"x" + byte + b"y@example.org"
    mail = bad if where == "mail" else b"a@example.org"
    rcpt = bad if where == "rcpt" else b"b@example.org"
    writer.write(b"MAIL FROM:<" + mail + b">\r\n")
    mail_reply = await asyncio.wait_for(reader.readline(), 5)
    writer.write(b"RCPT TO:<" + rcpt + b">\r\n")
    rcpt_reply = await asyncio.wait_for(reader.readline(), 5)
    writer.write(b"DATA\r\n")
    data_reply = await asyncio.wait_for(reader.readline(), 5)
    if data_reply.startswith(b"354"):
        writer.write(MESSAGE + b".\r\n")
        await asyncio.wait_for(reader.readline(), 5)
    writer.write(b"QUIT\r\n")
    await rest(reader)
    writer.close()
    refused = mail_reply if where == "mail" else rcpt_reply
    # NUL is refused as a command error (500 5.5.2), other controls as a bad address (501).
    assert refused.startswith(b"500 5.5.2" if byte == b"\x00" else b"501 5.1."), refused
    assert not data_reply.startswith(b"354")
    assert stored(server) == 0 and server.stats.messages == 0


@pytest.mark.parametrize(
    "command",
    [
        b"EHLO a\x00b",
        b"HELO a\x1bb",
        b"NOOP \x00",
        b"VRFY a\x00b",
        b"RSET\x00",
        b"MAIL FROM:<a@example.org> SIZE=10\x00",
    ],
)
async def test_nul_or_control_bytes_in_any_command_are_refused(
    sink_factory: SinkFactory, command: bytes
) -> None:
    server = await sink_factory()
    reader, writer = await connect(server)
    writer.write(command + b"\r\n")
    reply = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert reply[:1] == b"5", reply


# -- out of descriptors: one warning, never a traceback per refused accept -----------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_out_of_descriptors_is_one_line_not_a_traceback_storm(tmp_path: Path, loop: str) -> None:
    import json
    import resource
    import signal
    import socket
    import subprocess
    import sys
    import time

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    ready = tmp_path / "ready.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "mailctl", "sink", "--listen", "127.0.0.1:0", "--ready-file",
         str(ready), "--quiet", "--loop", loop],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=limit,
    )  # fmt: skip
    clients: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 15
        while not ready.exists():
            assert process.poll() is None and time.monotonic() < deadline, "no sink"
            time.sleep(0.02)
        port = json.loads(ready.read_text())["port"]
        for _ in range(150):  # more than 64 descriptors' worth, bounded
            client = socket.create_connection(("127.0.0.1", port), timeout=2)
            clients.append(client)
        time.sleep(1.5)
    finally:
        for client in clients:
            client.close()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    text = err.decode()
    assert process.returncode == 0, text
    assert "Traceback" not in text
    # At most 4 lines besides the final summary (one fact a line since issue 8).
    before_summary = text.split("mailctl sink: stopped", 1)[0]
    assert len(before_summary.splitlines()) <= 4, text[:2000]
    if loop == "asyncio":  # uvloop retries accept() quietly
        assert "ulimit -n" in text
