"""One transaction outcome for both SMTP paths: the lock-step session and the pipeline agree.

Against the scripted server (tests/servers/scripted_smtp.py) on 127.0.0.1: the same replies
are given to `SmtpSession.send` (aiosmtplib, one command at a time) and to the pipelined
path, and both must come to the same status.
"""

from __future__ import annotations

import pytest
from servers.scripted_smtp import Reply, ScriptedFactory, standard_reply

from mailctl.errors import SmtpPermanentError
from mailctl.models import Envelope, Security, ServerSettings, Timeouts
from mailctl.protocols.pipeline import (
    TransactionStatus,
    pipelined,
    prepare_message,
    prepare_transaction,
)
from mailctl.protocols.smtp import SessionOptions, SmtpSession

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
        with pytest.raises(SmtpPermanentError, match="552 5.3.4"):
            await session.send(ENVELOPE, MESSAGE)
        prepared = prepare_transaction(
            ENVELOPE, prepare_message(MESSAGE), extensions=session.info.extensions
        )
        async with pipelined(session) as pipe:
            result = await pipe.send(prepared)
    assert (result.status, result.reason) == (TransactionStatus.REFUSED, "552"), result.error
