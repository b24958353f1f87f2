"""Wire messages and prepared MAIL/RCPT/DATA commands for pipelined transactions."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

from mailctl.errors import InputDataError, MessageTooLargeError
from mailctl.mime.compose import dot_stuff
from mailctl.models import Envelope
from mailctl.protocols.smtp.envelope import envelope_path as _envelope_path
from mailctl.protocols.smtp.envelope import require_short_lines
from mailctl.protocols.smtp.envelope import size_limit as _size_limit

__all__ = [
    "LONE_DOT",
    "PreparedTransaction",
    "WireMessage",
    "prepare_message",
    "prepare_transaction",
]

LONE_DOT = b".\r\n"


@dataclass(frozen=True, slots=True)
class WireMessage:
    """A message as it goes on the wire after 354: CRLF-only, dot-stuffed, final dot added."""

    payload: bytes
    size: int  # RFC 1870 SIZE: CRLF line endings, before dot-stuffing, without the final dot


@dataclass(frozen=True, slots=True)
class PreparedTransaction:
    """MAIL/RCPT/DATA encoded once (reusable for any number of sends) plus the message."""

    envelope: Envelope
    commands: bytes  # "MAIL FROM:<..> ...\r\nRCPT TO:<..>\r\n...DATA\r\n"
    message: WireMessage
    tag: Hashable | None = None  # the caller's key (a bulk row id), copied into the result

    @property
    def reply_count(self) -> int:
        return len(self.envelope.recipients) + 2


def prepare_message(data: bytes) -> WireMessage:
    """Normalise line endings to CRLF, dot-stuff (RFC 5321 4.5.2) and add the final dot, once.

    A bare CR or LF never reaches the wire (SMTP smuggling, CVE-2023-51764).
    Raises InputDataError for a line over 998 octets (RFC 5321 4.5.3.1.6).
    """
    stuffed = dot_stuff(data)
    require_short_lines(stuffed)
    # SIZE counts the unstuffed CRLF text: one octet less per stuffed dot.
    stuffed_dots = stuffed.count(b"\r\n..") + (1 if stuffed.startswith(b"..") else 0)
    return WireMessage(payload=stuffed + LONE_DOT, size=len(stuffed) - stuffed_dots)


def prepare_transaction(
    envelope: Envelope,
    message: WireMessage,
    *,
    extensions: Mapping[str, str],
    smtputf8: bool = False,
    eight_bit: bool = False,
    tag: Hashable | None = None,
) -> PreparedTransaction:
    """Encode MAIL FROM (with SIZE/BODY/SMTPUTF8 as the server offers), RCPT TO and DATA.

    `extensions` is the post-TLS EHLO reply (`session.info.extensions`). Addresses with
    CR, LF, NUL, spaces or <> are refused here, before anything reaches the wire.
    Raises AddressError, InputDataError (no recipients, SMTPUTF8 not offered) and
    MessageTooLargeError (RFC 1870 SIZE limit).
    """
    if not envelope.recipients:
        raise InputDataError("the envelope has no recipients")
    sender = _envelope_path("sender", envelope.sender, smtputf8=smtputf8, allow_empty=True)
    parts = [b"MAIL FROM:" + sender]
    if "SIZE" in extensions:
        limit = _size_limit(extensions["SIZE"])
        if limit is not None and message.size > limit:
            raise MessageTooLargeError(
                f"the message is {message.size} octets; the server accepts at most {limit}",
                details={"size": message.size, "limit": limit},
            )
        parts.append(b" SIZE=%d" % message.size)  # RFC 1870 6
    if eight_bit and "8BITMIME" in extensions:
        parts.append(b" BODY=8BITMIME")  # RFC 6152
    if smtputf8:
        if "SMTPUTF8" not in extensions:
            raise InputDataError(
                "the message needs SMTPUTF8, which the server does not offer (RFC 6531)",
                hint="use ASCII addresses (IDNA domains) or another server",
            )
        parts.append(b" SMTPUTF8")
    parts.append(b"\r\n")
    for address in envelope.recipients:
        path = _envelope_path("recipient", address, smtputf8=smtputf8, allow_empty=False)
        parts.append(b"RCPT TO:" + path + b"\r\n")
    parts.append(b"DATA\r\n")
    return PreparedTransaction(
        envelope=envelope, commands=b"".join(parts), message=message, tag=tag
    )
