"""The sink's SMTP server against real clients on 127.0.0.1: protocol, TLS, AUTH, faults, abuse."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from mailctl.models import Security
from mailctl.sink.config import FaultConfig, Phase, SinkConfig, StoreKind
from mailctl.sink.replies import COMMAND_LINE_LIMIT
from mailctl.sink.server import SinkServer

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
SinkFactory = Callable[..., Awaitable[SinkServer]]


@pytest.fixture
async def sink_factory() -> AsyncIterator[SinkFactory]:
    servers: list[SinkServer] = []

    async def start(**kwargs: Any) -> SinkServer:
        kwargs.setdefault("port", 0)
        server = SinkServer(SinkConfig(**kwargs))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def sink(sink_factory: SinkFactory) -> SinkServer:
    return await sink_factory()


class Raw:
    """A bare-socket SMTP client for what aiosmtplib will not send (pipelining, abuse)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, server: SinkServer, *, ehlo: bool = True) -> Raw:
        reader, writer = await asyncio.open_connection(server.host, server.port, limit=2**20)
        raw = cls(reader, writer)
        assert (await raw.reply()).startswith(b"220 ")
        if ehlo:
            assert (await raw.command(b"EHLO client.test")).startswith(b"250-")
        return raw

    async def reply(self, timeout: float = 5.0) -> bytes:
        """One whole reply (all its lines); b"" when the server closed the connection."""
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), timeout)
            if not line:
                return b"".join(lines)
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    async def command(self, line: bytes) -> bytes:
        self.writer.write(line + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def closed(self, timeout: float = 5.0) -> bool:
        """True when the server has closed: EOF with nothing more to read."""
        return await asyncio.wait_for(self.reader.read(), timeout) == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


async def _send_one(raw: Raw, body: bytes = MESSAGE) -> bytes:
    assert (await raw.command(b"MAIL FROM:<a@example.org>")).startswith(b"250")
    assert (await raw.command(b"RCPT TO:<b@example.org>")).startswith(b"250")
    assert (await raw.command(b"DATA")).startswith(b"354")
    await raw.send(body + b".\r\n")
    return await raw.reply()


async def _still_serves(server: SinkServer) -> None:
    raw = await Raw.connect(server)
    assert (await _send_one(raw)).startswith(b"250 ")
    await raw.command(b"QUIT")
    await raw.close()


# ---------------------------------------------------------------------------- delivery


async def test_delivery_is_counted(sink: SinkServer) -> None:
    smtp = aiosmtplib.SMTP(hostname=sink.host, port=sink.port, start_tls=False, timeout=5)
    await smtp.connect()
    errors, reply = await smtp.sendmail("a@example.org", ["b@example.org", "c@x.org"], MESSAGE)
    await smtp.quit()
    assert errors == {} and reply.startswith("2.0.0")
    assert sink.stats.messages == 1
    assert sink.stats.bytes == len(MESSAGE)
    assert sink.stats.connections == 1


async def test_ehlo_advertises_extensions(sink_factory: SinkFactory) -> None:
    server = await sink_factory(max_size=12345, security=Security.STARTTLS)
    raw = await Raw.connect(server, ehlo=False)
    reply = await raw.command(b"EHLO client.test")
    for keyword in (b"PIPELINING", b"8BITMIME", b"SMTPUTF8", b"SIZE 12345", b"STARTTLS"):
        assert keyword in reply
    assert b"ENHANCEDSTATUSCODES" in reply and b"AUTH" not in reply
    await raw.close()


async def test_starttls_and_auth_plain(sink_factory: SinkFactory) -> None:
    server = await sink_factory(security=Security.STARTTLS, auth=True)
    assert server.cert_file is not None and server.cert_file.exists()
    smtp = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=server.port,
        start_tls=True,
        cert_bundle=str(server.cert_file),
        timeout=5,
    )
    await smtp.connect()
    await smtp.ehlo()  # aiosmtplib sends the post-STARTTLS EHLO lazily
    assert "auth" in smtp.esmtp_extensions  # offered only now, after TLS
    await smtp.auth_plain("mailctl", "mailctl")
    await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
    await smtp.quit()
    assert server.stats.messages == 1


async def test_implicit_tls_and_auth_login(sink_factory: SinkFactory) -> None:
    server = await sink_factory(security=Security.TLS, auth=True)
    smtp = aiosmtplib.SMTP(
        hostname="localhost",
        port=server.port,
        use_tls=True,
        cert_bundle=str(server.cert_file),
        timeout=5,
    )
    await smtp.connect()
    await smtp.auth_login("mailctl", "mailctl")
    await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
    await smtp.quit()
    assert server.stats.messages == 1


async def test_wrong_password_is_535(sink_factory: SinkFactory) -> None:
    server = await sink_factory(auth=True)
    smtp = aiosmtplib.SMTP(hostname=server.host, port=server.port, start_tls=False, timeout=5)
    await smtp.connect()
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
        await smtp.auth_plain("mailctl", "wrong")
    assert caught.value.code == 535
    await smtp.quit()


async def test_auth_needs_tls_first_and_mail_needs_auth(sink_factory: SinkFactory) -> None:
    server = await sink_factory(security=Security.STARTTLS, auth=True)
    raw = await Raw.connect(server)
    plain = base64.b64encode(b"\0mailctl\0mailctl")
    assert (await raw.command(b"AUTH PLAIN " + plain)).startswith(b"538 5.7.11")
    assert (await raw.command(b"MAIL FROM:<a@example.org>")).startswith(b"530 5.7.0")
    await raw.close()


async def test_auth_login_exchange_and_cancel(sink_factory: SinkFactory) -> None:
    server = await sink_factory(auth=True)
    raw = await Raw.connect(server)
    assert await raw.command(b"AUTH LOGIN") == b"334 VXNlcm5hbWU6\r\n"
    assert (await raw.command(b"*")).startswith(b"501")
    assert await raw.command(b"AUTH LOGIN") == b"334 VXNlcm5hbWU6\r\n"
    assert await raw.command(base64.b64encode(b"mailctl")) == b"334 UGFzc3dvcmQ6\r\n"
    assert (await raw.command(base64.b64encode(b"mailctl"))).startswith(b"235 2.7.0")
    assert (await raw.command(b"MAIL FROM:<a@example.org>")).startswith(b"250")
    await raw.close()


async def test_pipelined_commands_get_replies_in_order(sink: SinkServer) -> None:
    raw = await Raw.connect(sink)
    await raw.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    assert (await raw.reply()).startswith(b"250 2.1.0")
    assert (await raw.reply()).startswith(b"250 2.1.5")
    assert (await raw.reply()).startswith(b"354 ")
    # The body, the final dot and the next transaction in one write (RFC 2920 3.1).
    await raw.send(MESSAGE + b".\r\nRSET\r\nNOOP\r\n")
    assert (await raw.reply()).startswith(b"250 2.0.0 Ok: queued")
    assert await raw.reply() == b"250 2.0.0 Ok\r\n"
    assert await raw.reply() == b"250 2.0.0 Ok\r\n"
    await raw.close()
    assert sink.stats.messages == 1


async def test_bad_sequences_are_503(sink: SinkServer) -> None:
    raw = await Raw.connect(sink, ehlo=False)
    assert (await raw.command(b"MAIL FROM:<a@example.org>")).startswith(b"503 5.5.1")
    assert (await raw.command(b"HELO client.test")).startswith(b"250 ")
    assert (await raw.command(b"RCPT TO:<b@example.org>")).startswith(b"503 5.5.1")
    assert (await raw.command(b"DATA")).startswith(b"503 5.5.1")
    assert (await raw.command(b"MAIL FROM:<a@example.org>")).startswith(b"250")
    assert (await raw.command(b"MAIL FROM:<a@example.org>")).startswith(b"503 5.5.1")
    assert (await raw.command(b"DATA")).startswith(b"554 5.5.1")  # no valid recipients
    assert (await raw.command(b"BOGUS")).startswith(b"500 5.5.2")
    assert (await raw.command(b"MAIL FROM:<a@example.org> RET=FULL")).startswith(b"503")
    assert (await raw.command(b"RSET")).startswith(b"250")
    assert (await raw.command(b"MAIL FROM:<a@example.org> RET=FULL")).startswith(b"555")
    assert (await raw.command(b"MAIL FROM:<\xc3\xa9@example.org>")).startswith(b"553 5.6.7")
    utf8 = b"MAIL FROM:<\xc3\xa9@example.org> SMTPUTF8 BODY=8BITMIME"
    assert (await raw.command(utf8)).startswith(b"250")
    assert (await raw.command(b"QUIT")).startswith(b"221")
    assert await raw.closed()
    await raw.close()


async def test_size_limits(sink_factory: SinkFactory) -> None:
    server = await sink_factory(max_size=1000)
    raw = await Raw.connect(server)
    assert (await raw.command(b"MAIL FROM:<a@example.org> SIZE=1001")).startswith(b"552 5.3.4")
    reply = await _send_one(raw, b"x" * 600 + b"\r\n" + b"y" * 600 + b"\r\n")
    assert reply.startswith(b"552 5.3.4")
    assert (await _send_one(raw)).startswith(b"250 ")  # the session goes on
    await raw.close()
    assert server.stats.messages == 1


# ---------------------------------------------------------------------------- line endings


async def test_bare_lf_in_message_is_refused(sink: SinkServer) -> None:
    raw = await Raw.connect(sink)
    # The smuggling shape (CVE-2023-51764): "\n.\r\n" must neither end nor pass.
    reply = await _send_one(raw, b"Subject: x\r\n\r\nhi\n.\r\nMAIL FROM:<evil@x>\r\n")
    assert reply.startswith(b"550 5.5.2")
    assert (await _send_one(raw, b"Subject: x\r\n\r\nbare\rcr\r\n")).startswith(b"550 5.5.2")
    assert (await raw.command(b"NOOP\nNOOP")).startswith(b"500 5.5.2")
    await raw.close()
    assert sink.stats.messages == 0


async def test_stored_bytes_are_exact_and_unstuffed(
    sink_factory: SinkFactory, tmp_path: Path
) -> None:
    server = await sink_factory(store=StoreKind.MAILDIR, store_path=tmp_path / "box")
    raw = await Raw.connect(server)
    bodies = [
        b"",  # an empty message: DATA then ".\r\n"
        b"Subject: dots\r\n\r\n..leading dot\r\n...two\r\n.\r\n"[:-3],  # no trailing "."
        b"Subject: split\r\n\r\n" + b"z" * 5000 + b"\r\n",
    ]
    wires = [b".\r\n", b"Subject: dots\r\n\r\n..leading dot\r\n...two\r\n.\r\n"]
    assert (await raw.command(b"MAIL FROM:<a@example.org>")).startswith(b"250")
    assert (await raw.command(b"RCPT TO:<b@example.org>")).startswith(b"250")
    assert (await raw.command(b"DATA")).startswith(b"354")
    await raw.send(wires[0])
    assert (await raw.reply()).startswith(b"250")
    assert (await _send_one(raw, wires[1][:-3])).startswith(b"250")
    # The terminator split over many writes, one byte at a time at the end.
    assert (await raw.command(b"MAIL FROM:<>")).startswith(b"250")
    assert (await raw.command(b"RCPT TO:<c@example.org>")).startswith(b"250")
    assert (await raw.command(b"DATA")).startswith(b"354")
    await raw.send(bodies[2])
    for byte in b".\r\n":
        await raw.send(bytes([byte]))
        await asyncio.sleep(0.01)
    assert (await raw.reply()).startswith(b"250")
    await raw.close()
    # Delivery order is in the unique name's Q<counter> (mtimes tick too coarsely).
    files = sorted(
        (tmp_path / "box" / "new").iterdir(), key=lambda p: int(p.name.split("Q")[1].split(".")[0])
    )
    assert not list((tmp_path / "box" / "tmp").iterdir())
    stored = [path.read_bytes() for path in files]
    trace = b"Return-Path: <a@example.org>\r\nX-Mailctl-Rcpt: <b@example.org>\r\n"
    assert stored[0] == trace
    assert stored[1] == trace + b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\n"
    assert stored[2] == b"Return-Path: <>\r\nX-Mailctl-Rcpt: <c@example.org>\r\n" + bodies[2]


async def test_mbox_store_quotes_from_lines(sink_factory: SinkFactory, tmp_path: Path) -> None:
    path = tmp_path / "inbox.mbox"
    server = await sink_factory(store=StoreKind.MBOX, store_path=path)
    raw = await Raw.connect(server)
    body = b"Subject: q\r\n\r\nFrom here\r\n>From there\r\n..dot\r\n"
    assert (await _send_one(raw, body)).startswith(b"250")
    assert (await _send_one(raw)).startswith(b"250")
    await raw.close()
    text = path.read_bytes()
    first, second = text.split(b"\n\nFrom a@example.org ")
    assert first.startswith(b"From a@example.org ")
    assert first.split(b"\n", 1)[1] == (
        b"Return-Path: <a@example.org>\nX-Mailctl-Rcpt: <b@example.org>\n"
        b"Subject: q\n\n>From here\n>>From there\n.dot"
    )
    assert second.endswith(b"hello\n\n")


async def test_failed_store_answers_451(sink_factory: SinkFactory, tmp_path: Path) -> None:
    box = tmp_path / "box"
    server = await sink_factory(store=StoreKind.MAILDIR, store_path=box)
    (box / "tmp").rmdir()  # every delivery now fails (root ignores permission bits)
    raw = await Raw.connect(server)
    assert (await _send_one(raw)).startswith(b"451 4.3.0")
    await raw.close()
    assert server.stats.messages == 0
    assert not list((box / "new").iterdir())


# ---------------------------------------------------------------------------- faults


async def test_latency_on_one_phase(sink_factory: SinkFactory) -> None:
    server = await sink_factory(faults=FaultConfig(latency=0.3, latency_on=Phase.RCPT))
    raw = await Raw.connect(server)
    started = time.monotonic()
    await raw.command(b"MAIL FROM:<a@example.org>")
    mail_took = time.monotonic() - started
    started = time.monotonic()
    # Pipelined after the delayed reply: order is kept, so NOOP waits behind RCPT.
    await raw.send(b"RCPT TO:<b@example.org>\r\nNOOP\r\n")
    assert (await raw.reply()).startswith(b"250 2.1.5")
    assert (await raw.reply()).startswith(b"250 2.0.0")
    rcpt_took = time.monotonic() - started
    assert mail_took < 0.2 <= 0.28 <= rcpt_took
    await raw.close()


async def test_reject_rate_one_and_zero(sink_factory: SinkFactory) -> None:
    always = await sink_factory(
        faults=FaultConfig(reject_rate=1.0, reject_code=550, reject_on=Phase.RCPT)
    )
    never = await sink_factory(faults=FaultConfig(reject_rate=0.0, reject_on=Phase.RCPT))
    smtp = aiosmtplib.SMTP(hostname=always.host, port=always.port, start_tls=False, timeout=5)
    await smtp.connect()
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as caught:
        await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)
    assert caught.value.recipients[0].code == 550
    await smtp.quit()
    assert always.stats.rejected == 1 and always.stats.errors[550] == 1
    raw = await Raw.connect(never)
    for _ in range(20):
        assert (await _send_one(raw)).startswith(b"250")
    await raw.close()
    assert never.stats.rejected == 0


async def test_reject_at_end_of_data(sink_factory: SinkFactory) -> None:
    server = await sink_factory(
        faults=FaultConfig(reject_rate=1.0, reject_code=451, reject_on=Phase.EOD)
    )
    raw = await Raw.connect(server)
    assert (await _send_one(raw)).startswith(b"451 4.3.0")
    await raw.close()
    assert server.stats.messages == 0


async def test_seeded_faults_are_reproducible(sink_factory: SinkFactory) -> None:
    async def pattern() -> list[bool]:
        server = await sink_factory(
            faults=FaultConfig(reject_rate=0.5, reject_on=Phase.MAIL, seed=42)
        )
        raw = await Raw.connect(server)
        out = []
        for _ in range(30):
            reply = await raw.command(b"MAIL FROM:<a@example.org>")
            out.append(reply.startswith(b"451"))
            await raw.command(b"RSET")
        await raw.close()
        return out

    first, second = await pattern(), await pattern()
    assert first == second
    assert 0 < sum(first) < 30


async def test_disconnect_after_final_dot(sink_factory: SinkFactory) -> None:
    server = await sink_factory(faults=FaultConfig(disconnect_rate=1.0, disconnect_on=Phase.EOD))
    raw = await Raw.connect(server)
    assert await _send_one(raw) == b""  # RFC 1047: no reply at all, the connection drops
    await raw.close()
    assert server.stats.disconnected == 1 and server.stats.messages == 0
    smtp = aiosmtplib.SMTP(hostname=server.host, port=server.port, start_tls=False, timeout=5)
    await smtp.connect()
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await smtp.sendmail("a@example.org", ["b@example.org"], MESSAGE)


async def test_421_after_n_messages(sink_factory: SinkFactory) -> None:
    server = await sink_factory(faults=FaultConfig(close_after=2))
    raw = await Raw.connect(server)
    assert (await _send_one(raw)).startswith(b"250")
    assert (await _send_one(raw)).startswith(b"250")
    assert (await raw.command(b"MAIL FROM:<a@example.org>")).startswith(b"421 4.7.0")
    assert await raw.closed()
    await raw.close()


async def test_max_connections(sink_factory: SinkFactory) -> None:
    server = await sink_factory(max_connections=1)
    first = await Raw.connect(server)
    reader, writer = await asyncio.open_connection(server.host, server.port)
    assert (await reader.readline()).startswith(b"421 4.4.5")
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    assert (await first.command(b"NOOP")).startswith(b"250")
    await first.close()


# ---------------------------------------------------------------------------- hostile clients


async def test_huge_line_without_crlf(sink: SinkServer) -> None:
    raw = await Raw.connect(sink)
    raw.writer.write(b"X" * 1_000_000)
    with pytest.raises((ConnectionError, AssertionError)):  # may reset while we still write
        await raw.writer.drain()
        raise AssertionError("the whole megabyte was accepted")
    reply = await raw.reply()
    assert reply in (b"500 5.5.6 Error: line too long\r\n", b"")
    await raw.close()
    assert all(connection.buffered < COMMAND_LINE_LIMIT for connection in sink.connections)
    await _still_serves(sink)


async def test_no_crlf_then_close_and_disconnect_mid_data(sink: SinkServer) -> None:
    raw = await Raw.connect(sink)
    await raw.send(b"NOOP without an end")
    await raw.close()
    raw = await Raw.connect(sink)
    await raw.command(b"MAIL FROM:<a@example.org>")
    await raw.command(b"RCPT TO:<b@example.org>")
    await raw.command(b"DATA")
    await raw.send(b"Subject: cut\r\n\r\nhalf a mess")
    await raw.close()
    await _still_serves(sink)
    assert sink.stats.messages == 1


async def test_ten_thousand_pipelined_noops(sink: SinkServer) -> None:
    raw = await Raw.connect(sink)
    await raw.send(b"NOOP\r\n" * 10_000 + b"QUIT\r\n")
    data = await asyncio.wait_for(raw.reader.read(), 10)
    assert data.count(b"250 2.0.0 Ok\r\n") == 10_000
    assert data.endswith(b"221 2.0.0 Bye\r\n")
    await raw.close()
    await _still_serves(sink)


async def test_too_many_errors_closes(sink: SinkServer) -> None:
    raw = await Raw.connect(sink)
    await raw.send(b"BOGUS\r\n" * 25)
    data = await asyncio.wait_for(raw.reader.read(), 5)
    assert data.count(b"500 5.5.2") == 20 and data.endswith(b"421 4.7.0 Error: too many errors\r\n")
    await raw.close()


async def test_idle_connections_are_closed(sink_factory: SinkFactory) -> None:
    server = await sink_factory(idle_timeout=0.2)
    raw = await Raw.connect(server)
    assert (await raw.reply(timeout=3)).startswith(b"421 4.4.2")
    assert await raw.closed()
    await raw.close()


async def test_max_messages_requests_stop(sink_factory: SinkFactory) -> None:
    server = await sink_factory(max_messages=2)
    raw = await Raw.connect(server)
    await _send_one(raw)
    assert not server.stop_requested.is_set()
    await _send_one(raw)
    assert server.stop_requested.is_set()
    await raw.close()
