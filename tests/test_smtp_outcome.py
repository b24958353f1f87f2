"""One transaction outcome for both SMTP paths: the lock-step session and the pipeline agree.

Against the scripted server (tests/servers/scripted_smtp.py) on 127.0.0.1: the same replies
are given to `SmtpSession.send` (aiosmtplib, one command at a time) and to the pipelined
path, and both must come to the same status.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from servers.scripted_smtp import Reply, ScriptedFactory, standard_reply
from servers.smtp_server import SmtpServerFactory

from mailctl.errors import (
    AddressError,
    ConnectionLostError,
    InputDataError,
    OutcomeUnknownError,
    SmtpPermanentError,
    SmtpTransientError,
)
from mailctl.models import Envelope, RecipientResult, Security, ServerSettings, Timeouts
from mailctl.models import Reply as ModelReply
from mailctl.protocols.pipeline import (
    TransactionStatus,
    pipelined,
    prepare_message,
    prepare_transaction,
)
from mailctl.protocols.smtp import (
    SessionOptions,
    SmtpSession,
    deciding_refusal,
    rcpt_status,
    refusal_status,
    reply_status,
    worst,
)

FAST = Timeouts(connect=5.0, command=5.0, data=5.0)
ENVELOPE = Envelope("a@example.org", ("b@example.org",))
MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"


def pipelining(refuse: str, reply: bytes) -> object:
    """A server with PIPELINING that answers the command starting with `refuse` with `reply`."""

    def respond(line: str) -> Reply:
        if line.startswith("EHLO"):
            return b"250-scripted.test\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n"
        if line == refuse or line.startswith(refuse + " "):
            return reply
        return standard_reply(line)

    return respond


async def open_session(port: int) -> SmtpSession:
    settings = ServerSettings("127.0.0.1", port, Security.NONE, timeouts=FAST)
    return await SmtpSession.open(SessionOptions(settings=settings))


# RFC 5321 4.5.3.1.10 makes 552 a "452" only in reply to RCPT ("too many recipients"); to
# MAIL (SIZE), to DATA or after the final dot it is what it says: permanent.
@pytest.mark.parametrize(
    "refuse",
    [
        pytest.param("MAIL", id="MAIL"),
        pytest.param("DATA", id="DATA"),
        pytest.param(".", id="final-dot"),
    ],
)
async def test_552_outside_rcpt_is_permanent_on_both_paths(
    scripted_smtp: ScriptedFactory, refuse: str
) -> None:
    reply = b"552 5.3.4 Message size exceeds fixed limit\r\n"
    server = scripted_smtp(pipelining(refuse, reply))
    session = await open_session(server.port)
    async with session:
        with pytest.raises(SmtpPermanentError, match=r"552 5\.3\.4"):
            await session.send(ENVELOPE, MESSAGE)
        prepared = prepare_transaction(
            ENVELOPE, prepare_message(MESSAGE), extensions=session.info.extensions
        )
        async with pipelined(session) as pipe:
            result = await pipe.send(prepared)
    assert (result.status, result.reason) == (TransactionStatus.REFUSED, "552"), result.error


# -- the same server, both paths, the same outcome ------------------------------------------

CLOSE = None  # the scripted server closes the connection instead of answering


def answering(verb: str, reply: Reply) -> object:
    """A PIPELINING server that answers the first command starting with `verb` with `reply`."""
    used = []

    def respond(line: str) -> Reply:
        if line.startswith("EHLO"):
            return b"250-scripted.test\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n"
        if not used and (line == verb or line.startswith(verb + " ") or line.startswith(verb)):
            used.append(line)
            return reply
        return standard_reply(line)

    return respond


CASES = [
    # (command, reply, status, reason, closed_before_mail)
    ("MAIL", b"550 5.7.1 sender refused\r\n", "refused", "550", False),
    ("MAIL", b"451 4.3.0 try later\r\n", "transient", "451", False),
    ("MAIL", b"421 4.4.2 idle too long\r\n", "transient", "421", True),
    ("MAIL", CLOSE, "transient", "connection_lost", True),
    ("RCPT", b"550 5.1.1 no such user\r\n", "refused", "550", False),
    ("RCPT", b"552 5.5.3 too many recipients\r\n", "transient", "552", False),
    ("RCPT", CLOSE, "transient", "connection_lost", False),
    ("DATA", b"554 5.5.1 no valid recipients\r\n", "refused", "554", False),
    (".", b"554 5.7.1 spam\r\n", "refused", "554", False),
    (".", b"451 4.3.0 try later\r\n", "transient", "451", False),
    (".", CLOSE, "unknown", "connection_lost", False),
]


@pytest.mark.parametrize(
    ("verb", "reply", "status", "reason", "before_mail"),
    CASES,
    ids=[f"{c[0]}-{(c[1] or b'close')[:3].decode()}" for c in CASES],
)
async def test_both_paths_come_to_the_same_outcome(
    scripted_smtp: ScriptedFactory,
    verb: str,
    reply: Reply,
    status: str,
    reason: str,
    before_mail: bool,
) -> None:
    outcomes = []
    for path in ("lock-step", "pipelined"):
        server = scripted_smtp(answering(verb, reply))
        session = await open_session(server.port)
        async with session:
            if path == "lock-step":
                outcome = await session.transact(ENVELOPE, MESSAGE, tag="row-1")
            else:
                prepared = prepare_transaction(
                    ENVELOPE, prepare_message(MESSAGE), extensions=session.info.extensions,
                    tag="row-1",
                )  # fmt: skip
                async with pipelined(session) as pipe:
                    outcome = await pipe.send(prepared)
        assert (outcome.status.value, outcome.reason) == (status, reason), (path, outcome.error)
        assert outcome.tag == "row-1"
        assert outcome.closed_before_mail is before_mail, path
        assert outcome.error and outcome.finished >= outcome.started > 0
        if reply is not CLOSE:
            assert outcome.failure_reply is not None
            assert outcome.failure_reply.code == int(reason), path
        error = outcome.to_error()
        assert error is not None and error.message == outcome.error
        expected = {
            "refused": SmtpPermanentError,
            "unknown": OutcomeUnknownError,
            "transient": SmtpTransientError if reply is not CLOSE else ConnectionLostError,
        }[status]
        assert isinstance(error, expected), (path, type(error))
        outcomes.append(outcome)
    lockstep, pipelined_ = outcomes
    assert lockstep.mail_reply == pipelined_.mail_reply
    if verb != "MAIL":  # pipelined, the RCPTs went with MAIL and were answered too
        assert lockstep.recipients == pipelined_.recipients


async def test_sent_outcome_is_the_same_on_both_paths(scripted_smtp: ScriptedFactory) -> None:
    server = scripted_smtp(answering("NOOP", b""))
    session = await open_session(server.port)
    async with session:
        lockstep = await session.transact(ENVELOPE, MESSAGE)
        sent = await session.send(ENVELOPE, MESSAGE)  # raises only for failures
        prepared = prepare_transaction(
            ENVELOPE, prepare_message(MESSAGE), extensions=session.info.extensions
        )
        async with pipelined(session) as pipe:
            pipelined_ = await pipe.send(prepared)
    for outcome in (lockstep, sent, pipelined_):
        assert outcome.status is TransactionStatus.SENT
        assert outcome.to_error() is None and outcome.reason is None
        assert outcome.queue_id == "SCRIPTED1"
        assert outcome.accepted == ("b@example.org",)
        assert outcome.data_reply is not None and outcome.data_reply.code == 354
        timings = outcome.timings
        assert set(timings) == {"mail_rcpt", "data", "end_of_data", "total"}
        # Pipelined, MAIL to 354 come in one read: the "data" phase may be 0.0 there.
        assert all(value >= 0 for value in timings.values()), timings
        assert timings["total"] > 0 and timings["mail_rcpt"] > 0
        assert outcome.started <= outcome.mail_done <= outcome.envelope_done
        assert outcome.envelope_done <= outcome.data_accepted <= outcome.dot_sent
        assert outcome.dot_sent <= outcome.finished


async def test_send_raises_the_outcomes_typed_error(scripted_smtp: ScriptedFactory) -> None:
    server = scripted_smtp(answering("RCPT", b"550 5.1.1 no such user\r\n"))
    session = await open_session(server.port)
    async with session:
        with pytest.raises(SmtpPermanentError) as caught:
            await session.send(ENVELOPE, MESSAGE)
        assert session.connected  # refused, then RSET: the session carries on
        again = await session.transact(ENVELOPE, MESSAGE)
    assert again.status is TransactionStatus.SENT
    # The refusal as send has always reported it: the recipients in its details.
    assert caught.value.details["recipients"][0]["reply"]["code"] == 550
    assert "nothing was sent" in caught.value.message


async def test_a_bad_request_raises_before_anything_is_written(
    scripted_smtp: ScriptedFactory,
) -> None:
    server = scripted_smtp(answering("NOOP", b""))
    session = await open_session(server.port)
    async with session:
        with pytest.raises(InputDataError, match="no recipients"):
            await session.transact(Envelope("a@example.org", ()), MESSAGE)
        with pytest.raises(AddressError):
            await session.transact(Envelope("a@example.org", ("b@exa mple.org",)), MESSAGE)
        with pytest.raises(InputDataError, match="998"):
            await session.transact(ENVELOPE, b"x" * 1200 + b"\r\n")
        assert session.connected
    assert not any(line.startswith(("MAIL", "RCPT")) for line in server.lines)


async def test_a_closed_session_is_an_outcome_not_an_exception(
    scripted_smtp: ScriptedFactory,
) -> None:
    server = scripted_smtp(answering("NOOP", b""))
    session = await open_session(server.port)
    session.abort()
    outcome = await session.transact(ENVELOPE, MESSAGE)
    assert (outcome.status, outcome.reason) == (TransactionStatus.TRANSIENT, "connection_lost")
    assert outcome.closed_before_mail
    with pytest.raises(ConnectionLostError, match="is closed") as caught:
        await session.send(ENVELOPE, MESSAGE)
    assert caught.value.hint == "open a new session"
    await session.close()


# -- the rules, written once -------------------------------------------------------------


def test_552_is_a_452_only_in_reply_to_rcpt() -> None:
    assert rcpt_status(552) is TransactionStatus.TRANSIENT
    assert reply_status(552) is TransactionStatus.REFUSED
    assert rcpt_status(250) is rcpt_status(251) is TransactionStatus.SENT
    assert refusal_status([550, 552]) is TransactionStatus.TRANSIENT
    assert refusal_status([550, 553]) is TransactionStatus.REFUSED


def _refused(code: int) -> RecipientResult:
    return RecipientResult(f"r{code}@example.org", False, ModelReply(code, "x"))


@given(st.lists(st.sampled_from([421, 450, 451, 452, 550, 551, 552, 553, 554]), min_size=1))
def test_refusals_decide_by_the_mildest_class(codes: list[int]) -> None:
    """Permanent only if every refusal is (552 counting as 452); the deciding reply is of
    the transaction's own class, the first such in order."""
    refused = [_refused(code) for code in codes]
    status = refusal_status(codes)
    permanent = all(500 <= c <= 599 and c != 552 for c in codes)
    assert (status is TransactionStatus.REFUSED) is permanent
    decided = deciding_refusal(refused)
    assert rcpt_status(decided.reply.code) is status
    assert decided is next(r for r in refused if rcpt_status(r.reply.code) is status)


@given(st.lists(st.sampled_from(list(TransactionStatus))))
def test_worst_status_orders_refused_unknown_transient_sent(
    statuses: list[TransactionStatus],
) -> None:
    found = worst(statuses)
    order = ["sent", "transient", "unknown", "refused"]
    expected = max(statuses, key=lambda s: order.index(s.value), default=TransactionStatus.SENT)
    assert found is expected
    assert found.exit_code == {"sent": 0, "refused": 69}.get(found.value, 75)


async def test_mixed_refusals_are_decided_alike_on_both_paths(
    smtp_server_factory: SmtpServerFactory,
) -> None:
    """Every recipient refused, one for good (550) and one for now (450): retrying can help,
    so the transaction is transient and the 450 decides, on both paths."""
    server = smtp_server_factory(security=Security.NONE, auth=False)
    server.reject("gone@example.org", 550)
    server.reject("busy@example.org", 450)
    envelope = Envelope("a@example.org", ("gone@example.org", "busy@example.org"))
    session = await SmtpSession.open(SessionOptions(settings=server.settings()))
    async with session:
        lockstep = await session.transact(envelope, MESSAGE)
        prepared = prepare_transaction(
            envelope, prepare_message(MESSAGE), extensions=session.info.extensions
        )
        async with pipelined(session, lockstep_fallback=True) as pipe:
            fallback = await pipe.send(prepared)
    for outcome in (lockstep, fallback):
        assert (outcome.status, outcome.reason) == (TransactionStatus.TRANSIENT, "450")
        assert outcome.failure_reply is not None and outcome.failure_reply.code == 450
        assert [r.reply.code for r in outcome.refused] == [550, 450]
    assert server.messages == []
