"""RFC 2920 pipelined transactions against real servers: Postfix smtp-sink and aiosmtpd.

smtp-sink advertises PIPELINING and injects 421s and disconnects; aiosmtpd records the
exact bytes (and is taught to advertise PIPELINING here: it processes pipelined commands
in order, it just does not say so). Without the advertisement, the lock-step fallback runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from postfix_tools import SinkFactory, smtp_sink_factory_fixture  # noqa: F401
from servers.scripted_smtp import Reply, ScriptedFactory, standard_reply
from servers.smtp_server import SmtpServerFactory, SmtpTestServer

from mailctl.errors import AddressError, InputDataError, MessageTooLargeError, ProtocolError
from mailctl.models import Envelope, Security, ServerSettings, Timeouts
from mailctl.protocols.pipeline import (
    PreparedTransaction,
    TransactionStatus,
    pipelined,
    prepare_message,
    prepare_transaction,
)
from mailctl.protocols.smtp import SessionOptions, SmtpSession

FAST = Timeouts(connect=5.0, command=5.0, data=5.0)
ENVELOPE = Envelope("a@example.org", ("b@example.org",))
MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"


def advertise_pipelining(server: SmtpTestServer) -> None:
    """aiosmtpd handles pipelined commands in order but does not advertise PIPELINING."""
    original = server.handler.handle_EHLO

    # aiosmtpd picks the hook's calling convention from its exact signature.
    async def handle_ehlo(
        server_: object, session: object, envelope: object, hostname: str, responses: list[str]
    ) -> list[str]:
        found: list[str] = await original(server_, session, envelope, hostname, responses)
        return [found[0], "250-PIPELINING", *found[1:]]

    server.handler.handle_EHLO = handle_ehlo  # type: ignore[method-assign]


async def sink_session(port: int) -> SmtpSession:
    return await SmtpSession.open(
        SessionOptions(settings=ServerSettings("127.0.0.1", port, Security.NONE, timeouts=FAST))
    )


def item(
    session: SmtpSession, data: bytes = MESSAGE, envelope: Envelope = ENVELOPE, tag: object = None
) -> PreparedTransaction:
    return prepare_transaction(
        envelope,
        prepare_message(data),
        extensions=session.info.extensions,
        tag=tag,  # type: ignore[arg-type]
    )


# -- preparing ------------------------------------------------------------------------


def test_prepare_message_normalises_and_stuffs_once() -> None:
    wire = prepare_message(b".lead\nbare lf\rbare cr\r\n.\r\nend")
    assert wire.payload == b"..lead\r\nbare lf\r\nbare cr\r\n..\r\nend\r\n.\r\n"
    # RFC 1870: SIZE counts the CRLF text before stuffing.
    assert wire.size == len(b".lead\r\nbare lf\r\nbare cr\r\n.\r\nend\r\n")


def test_prepare_refuses_unsafe_input_before_any_io() -> None:
    message = prepare_message(MESSAGE)
    for bad in ("b@example.org\r\nRCPT TO:<x@y>", "<b@example.org>", "b@exa mple.org", "a\x00b"):
        with pytest.raises(AddressError):
            prepare_transaction(Envelope("a@example.org", (bad,)), message, extensions={})
    with pytest.raises(AddressError):
        prepare_transaction(Envelope("a\n@example.org", ("b@example.org",)), message, extensions={})
    with pytest.raises(InputDataError):
        prepare_transaction(Envelope("a@example.org", ()), message, extensions={})
    with pytest.raises(InputDataError):
        prepare_message(b"x" * 1200 + b"\r\n")
    with pytest.raises(MessageTooLargeError):
        prepare_transaction(ENVELOPE, message, extensions={"SIZE": "10"})
    found = prepare_transaction(ENVELOPE, message, extensions={"SIZE": "0"})
    assert found.commands == (
        b"MAIL FROM:<a@example.org> SIZE=%d\r\nRCPT TO:<b@example.org>\r\nDATA\r\n" % message.size
    )


# -- against Postfix smtp-sink (PIPELINING) ---------------------------------------------


async def test_many_transactions_arrive_intact(smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory(dump=True)
    bodies = [f"Subject: {i}\r\n\r\n.line {i}\r\n..two\r\nbare\nlf\r\n".encode() for i in range(20)]
    session = await sink_session(sink.port)
    async with session:
        assert session.supports("PIPELINING")
        items = [item(session, body, tag=i) for i, body in enumerate(bodies)]
        async with pipelined(session) as pipe:
            results = [r async for r in pipe.send_all(items)]
        assert [r.tag for r in results] == list(range(20)), results[0].error
        assert all(r.status is TransactionStatus.SENT for r in results)
        assert sum(r.chained for r in results) == 19  # each rode on the previous final dot
        first = results[0]
        assert first.final_reply is not None and first.final_reply.code == 250
        assert first.started <= first.envelope_done <= first.dot_sent <= first.finished
        # The session is aiosmtplib's again: a plain send still works afterwards.
        await session.send(ENVELOPE, MESSAGE)
    dumped = sink.dumped()
    for i in range(20):
        assert f"Subject: {i}\n\n.line {i}\n..two\nbare\nlf\n" in dumped
    assert dumped.count("X-Mail-Args: <a@example.org>") == 21


async def test_421_after_the_dot_is_transient_and_stops(smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("-Q", ".")
    session = await sink_session(sink.port)
    async with session:
        prepared = item(session)
        async with pipelined(session) as pipe:
            results = [r async for r in pipe.send_all([prepared] * 5)]
            assert not pipe.usable
        assert not session.connected
    # The first got 421 after its dot; the chained second was never processed.
    assert [r.status for r in results] == [TransactionStatus.TRANSIENT] * 2
    assert results[0].reason == "421"
    assert results[1].reason is not None


async def test_disconnect_after_the_dot_is_unknown(smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("-q", ".")
    session = await sink_session(sink.port)
    async with session, pipelined(session) as pipe:
        results = [r async for r in pipe.send_all([item(session)] * 3)]
    # RFC 1047: it may have been delivered; the chained one was not sent.
    assert results[0].status is TransactionStatus.UNKNOWN
    assert results[0].reason == "connection_lost"
    assert [r.status for r in results[1:]] == [TransactionStatus.TRANSIENT]


async def test_disconnect_before_the_dot_is_transient(smtp_sink_factory: SinkFactory) -> None:
    sink = smtp_sink_factory("-q", "RCPT")
    session = await sink_session(sink.port)
    async with session, pipelined(session) as pipe:
        result = await pipe.send(item(session))
    assert result.status is TransactionStatus.TRANSIENT


async def test_async_source_with_gaps(smtp_sink_factory: SinkFactory) -> None:
    import asyncio

    sink = smtp_sink_factory()
    session = await sink_session(sink.port)
    async with session:
        prepared = item(session)

        async def slow() -> AsyncIterator[PreparedTransaction]:
            for _ in range(4):
                await asyncio.sleep(0.01)
                yield prepared

        async with pipelined(session) as pipe:
            results = [r async for r in pipe.send_all(slow())]
    assert [r.status for r in results] == [TransactionStatus.SENT] * 4


# -- against aiosmtpd (exact bytes, refusals, TLS and AUTH) ------------------------------


async def test_over_starttls_and_auth_bytes_arrive_exactly(
    smtp_server_factory: SmtpServerFactory,
) -> None:
    server = smtp_server_factory(security=Security.STARTTLS, auth=True)
    advertise_pipelining(server)
    data = b"Subject: dots\r\n\r\n.\r\n..\r\n.x\nbare lf\rbare cr\r\n"
    session = await SmtpSession.open(
        SessionOptions(settings=server.settings(), secret=lambda: "pw-Sekr3t!correct horse")
    )
    async with session, pipelined(session) as pipe:
        results = [r async for r in pipe.send_all([item(session, data)] * 3)]
    assert [r.status for r in results] == [TransactionStatus.SENT] * 3
    assert len(server.messages) == 3
    received = server.messages[0]
    assert received.tls and received.authenticated_as == "alice"
    assert received.data == b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\nbare lf\r\nbare cr\r\n"


async def test_recipient_refusals(smtp_server_factory: SmtpServerFactory) -> None:
    server = smtp_server_factory(security=Security.NONE, auth=False)
    advertise_pipelining(server)
    server.reject("gone@example.org", 550)
    server.reject("busy@example.org", 450)
    server.reject("full@example.org", 552)
    session = await SmtpSession.open(SessionOptions(settings=server.settings()))
    async with session:
        cases = [
            Envelope("a@example.org", ("gone@example.org",)),  # permanent
            Envelope("a@example.org", ("busy@example.org",)),  # transient
            Envelope("a@example.org", ("full@example.org",)),  # 552 to RCPT = 452
            Envelope("a@example.org", ("b@example.org",)),  # fine, after an RSET
        ]
        async with pipelined(session) as pipe:
            results = [r async for r in pipe.send_all(item(session, envelope=e) for e in cases)]
        statuses = [r.status for r in results]
        assert statuses == [
            TransactionStatus.REFUSED,
            TransactionStatus.TRANSIENT,
            TransactionStatus.TRANSIENT,
            TransactionStatus.SENT,
        ]
        assert [r.reason for r in results[:3]] == ["550", "450", "552"]
        assert results[0].refused[0].address == "gone@example.org"
        # Partial refusal: by default nothing is sent (the connection is closed before the dot).
        mixed = Envelope("a@example.org", ("gone@example.org", "b@example.org"))
        async with pipelined(session) as pipe:
            partial = await pipe.send(item(session, envelope=mixed))
        assert partial.status is TransactionStatus.REFUSED
        assert partial.reason == "partial_refusal"
        assert not session.connected
    assert [m.rcpt_tos for m in server.messages] == [["b@example.org"]]


async def test_partial_refusal_allowed_sends_to_the_rest(
    smtp_server_factory: SmtpServerFactory,
) -> None:
    server = smtp_server_factory(security=Security.NONE, auth=False)
    advertise_pipelining(server)
    server.reject("gone@example.org", 550)
    session = await SmtpSession.open(SessionOptions(settings=server.settings()))
    async with session:
        mixed = Envelope("a@example.org", ("gone@example.org", "b@example.org"))
        async with pipelined(session, allow_partial=True) as pipe:
            result = await pipe.send(item(session, envelope=mixed))
    assert result.status is TransactionStatus.SENT
    assert result.accepted == ("b@example.org",)
    assert [m.rcpt_tos for m in server.messages] == [["b@example.org"]]


async def test_final_reply_refusals_and_timeouts(smtp_server_factory: SmtpServerFactory) -> None:
    server = smtp_server_factory(security=Security.NONE, auth=False)
    advertise_pipelining(server)
    session = await SmtpSession.open(SessionOptions(settings=server.settings()))
    async with session:
        server.final_reply = "554 5.7.1 spam"
        async with pipelined(session) as pipe:
            refused = await pipe.send(item(session))
        server.final_reply = "451 4.3.0 try later"
        async with pipelined(session) as pipe:
            deferred = await pipe.send(item(session))
        assert (refused.status, refused.reason) == (TransactionStatus.REFUSED, "554")
        assert (deferred.status, deferred.reason) == (TransactionStatus.TRANSIENT, "451")
    server.final_reply = None
    server.data_delay = 2.0
    short = server.settings(timeouts=Timeouts(connect=5.0, command=5.0, data=0.3))
    session = await SmtpSession.open(SessionOptions(settings=short))
    async with session, pipelined(session) as pipe:
        late = await pipe.send(item(session))
    assert (late.status, late.reason) == (TransactionStatus.UNKNOWN, "timeout")


async def test_without_pipelining(smtp_server_factory: SmtpServerFactory) -> None:
    server = smtp_server_factory(security=Security.NONE, auth=False)
    server.reject("gone@example.org", 550)
    session = await SmtpSession.open(SessionOptions(settings=server.settings()))
    async with session:
        assert not session.supports("PIPELINING")
        with pytest.raises(ProtocolError, match="PIPELINING"):
            async with pipelined(session):
                pass
        envelopes = [ENVELOPE, Envelope("a@example.org", ("gone@example.org",)), ENVELOPE]
        async with pipelined(session, lockstep_fallback=True) as pipe:
            results = [r async for r in pipe.send_all(item(session, envelope=e) for e in envelopes)]
        assert [r.status for r in results] == [
            TransactionStatus.SENT,
            TransactionStatus.REFUSED,
            TransactionStatus.SENT,
        ]
        assert session.connected
    assert len(server.messages) == 2


@pytest.mark.parametrize("closing", ["after the lone dot", "queued"])
async def test_a_421_after_the_refusals_past_354_is_named(
    scripted_smtp: ScriptedFactory, closing: str
) -> None:
    """RFC 2920 3.1: a server may answer 354 although every RCPT failed; mailctl sends a
    lone dot. If it then closes with 421, the refusal still decides and the 421 is named."""

    def respond(line: str) -> Reply:
        if line.startswith("EHLO"):
            return b"250-scripted.test\r\n250 PIPELINING\r\n"
        if line.startswith("RCPT"):
            return b"550 5.1.1 no such user\r\n"
        if line == "." and closing == "after the lone dot":
            return b"421 4.3.2 scripted.test closing\r\n"
        if line == ".":
            return b"554 5.5.1 no valid recipients\r\n421 4.3.2 scripted.test closing\r\n"
        return standard_reply(line)

    server = scripted_smtp(respond)
    session = await sink_session(server.port)
    try:
        async with pipelined(session) as pipe:
            result = await pipe.send(item(session))
            assert not pipe.usable
    finally:
        await session.close()
    assert (result.status, result.reason) == (TransactionStatus.REFUSED, "550"), result.error
    assert result.error is not None and "550 5.1.1 no such user" in result.error
    assert "then it closed the connection: 421 4.3.2 scripted.test closing" in result.error


_ADDRESS_CHARS = st.sampled_from(
    ["a", "@", ".", "x.test", " ", "<", ">", '"', "\\", "\t", "\x00", "\x7f", "\x85", "é", "\udcff"]
)


@given(address=st.lists(_ADDRESS_CHARS, max_size=6).map("".join), smtputf8=st.booleans())
@settings(max_examples=3000, deadline=None)
def test_the_envelope_fast_path_is_the_full_check(address: str, smtputf8: bool) -> None:
    # envelope_path writes printable ASCII without blanks, quotes or <> directly (twice a
    # message in a bulk run): the same bytes, or the same refusal, as the full checks.
    from mailctl.errors import AddressError
    from mailctl.protocols.smtp.envelope import _checked_path, envelope_path

    def outcome(call: Callable[[], bytes]) -> bytes | type[Exception]:
        try:
            return call()
        except (AddressError, InputDataError) as err:
            return type(err)

    got = outcome(lambda: envelope_path("recipient", address, smtputf8=smtputf8, allow_empty=False))
    full = outcome(lambda: _checked_path("recipient", address, smtputf8=smtputf8))
    assert got == full, repr(address)


@given(lines=st.lists(st.integers(0, 1200), min_size=1, max_size=5))
@settings(max_examples=300, deadline=None)
def test_a_long_line_is_named_whatever_its_place(lines: list[int]) -> None:
    from mailctl.protocols.smtp.envelope import MAX_LINE_OCTETS, require_short_lines

    wire = b"\r\n".join(b"x" * n for n in lines) + b"\r\n"
    too_long = [number for number, n in enumerate(lines, start=1) if n > MAX_LINE_OCTETS]
    if not too_long:
        require_short_lines(wire)
        return
    with pytest.raises(InputDataError, match=f"message line {too_long[0]} is"):
        require_short_lines(wire)
