"""The `send` use case (also behind `sendmail`): a prepared message in, a SendResult out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailctl.errors import AddressError, InterruptedByUser, UsageError
from mailctl.hosts import endpoint
from mailctl.models import Envelope, RecipientResult, Reply, ServerSettings

if TYPE_CHECKING:
    from mailctl.mime.compose import ComposeRequest
    from mailctl.mime.headers import Mailbox
    from mailctl.protocols.smtp import SessionOptions, SmtpSession, TransactionOutcome
    from mailctl.protocols.tls import TlsInfo


@dataclass(frozen=True)
class PreparedMessage:
    """Exactly what goes on the wire: the envelope and the message bytes (before dot-stuffing)."""

    envelope: Envelope
    data: bytes
    smtputf8: bool = False
    message_id: str | None = None

    @property
    def eight_bit(self) -> bool:
        return any(byte > 127 for byte in self.data)


@dataclass(frozen=True)
class SendResult:
    prepared: PreparedMessage
    server: str | None = None
    security: str | None = None
    banner: Reply | None = None
    tls: TlsInfo | None = None
    auth_mechanism: str | None = None
    recipients: tuple[RecipientResult, ...] = ()
    final_reply: Reply | None = None
    queue_id: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    dry_run: bool = False
    saved_to: Path | None = None

    @property
    def refused(self) -> tuple[RecipientResult, ...]:
        return tuple(r for r in self.recipients if not r.accepted)

    def to_json(self) -> dict[str, Any]:
        envelope = self.prepared.envelope
        return {
            "dry_run": self.dry_run,
            "envelope": {"from": envelope.sender, "to": list(envelope.recipients)},
            "size": len(self.prepared.data),
            "message_id": self.prepared.message_id,
            "smtputf8": self.prepared.smtputf8,
            "server": self.server,
            "security": self.security,
            "banner": self.banner.to_json() if self.banner else None,
            "tls": self.tls.to_json() if self.tls else None,
            "auth_mechanism": self.auth_mechanism,
            "recipients": [r.to_json() for r in self.recipients],
            "final_reply": self.final_reply.to_json() if self.final_reply else None,
            "queue_id": self.queue_id,
            "timings": {name: round(value, 6) for name, value in self.timings.items()},
            "saved_to": str(self.saved_to) if self.saved_to else None,
        }


def _unique(addresses: Iterable[str]) -> tuple[str, ...]:
    """One RCPT per mailbox, in order; RFC 5321 2.4: only the domain is case-insensitive."""
    seen: set[str] = set()
    out: list[str] = []
    for address in addresses:
        local, at, domain = address.rpartition("@")
        key = f"{local}{at}{domain.lower()}" if at else address
        if key not in seen:
            seen.add(key)
            out.append(address)
    return tuple(out)


def prepare_composed(request: ComposeRequest) -> PreparedMessage:
    """Build the message from flags; Bcc goes to the envelope only, never into the headers.

    Raises InputDataError subclasses for bad input and NoInputError for missing attachments.
    """
    from mailctl.mime.compose import compose, serialize

    everyone = (*request.to, *request.cc, *request.bcc)
    if not everyone:
        raise UsageError("no recipients", hint="give --to, --cc or --bcc")
    smtputf8 = any(m.needs_smtputf8 for m in (request.sender, *everyone))
    message = compose(request)
    data = serialize(message, utf8=smtputf8)
    envelope = Envelope(
        sender=request.sender.envelope_address(smtputf8=smtputf8),
        recipients=_unique(m.envelope_address(smtputf8=smtputf8) for m in everyone),
    )
    return PreparedMessage(
        envelope=envelope,
        data=data,
        smtputf8=smtputf8,
        message_id=str(message["Message-ID"]) if message["Message-ID"] else None,
    )


def prepare_raw(
    data: bytes,
    *,
    sender: Mailbox | None,
    recipients: tuple[Mailbox, ...],
    recipients_from_headers: bool,
) -> PreparedMessage:
    """Send an existing RFC 5322 message as is, except that Bcc never leaves with it.

    The envelope sender is `sender` if given, else the message's Sender/From; recipients are
    the given ones plus, with `recipients_from_headers`, its To/Cc/Bcc.
    Raises InputDataError for a malformed message and UsageError when there is no recipient.
    """
    from mailctl.mime.compose import envelope_sender, header_recipients, read_eml, strip_bcc

    message = read_eml(data)
    if sender is None:
        sender = envelope_sender(message)
        if sender is None:
            raise AddressError(
                "no envelope sender: the message has no From header",
                hint="pass --from ADDRESS (or -f ADDRESS in sendmail mode)",
            )
    everyone = list(recipients)
    if recipients_from_headers:
        everyone.extend(header_recipients(message))
    if not everyone:
        raise UsageError(
            "no recipients",
            hint="give --to, --cc or --bcc (send --eml), or recipients as arguments or -t "
            "to read them from the headers (sendmail mode)",
        )
    smtputf8 = any(m.needs_smtputf8 for m in (sender, *everyone))
    message_id = message.get("Message-ID")
    return PreparedMessage(
        envelope=Envelope(
            sender=sender.envelope_address(smtputf8=smtputf8),
            recipients=_unique(m.envelope_address(smtputf8=smtputf8) for m in everyone),
        ),
        data=strip_bcc(data),
        smtputf8=smtputf8,
        message_id=str(message_id) if message_id else None,
    )


def save_message(prepared: PreparedMessage, path: Path) -> Path:
    """Keep a copy as .eml before sending, so a failed send still leaves the exact bytes.

    Written by the output-file rule (store.outputs): a regular file atomically, /dev/null, a
    FIFO or /dev/stdout in place. Raises CantCreateError.
    """
    from mailctl.store.outputs import write_output

    write_output(path, prepared.data, mode=0o600, what="message copy")
    return path


def _interrupted(
    where: str, session: SmtpSession | None, transaction: TransactionOutcome | None
) -> InterruptedByUser:
    """Ctrl-C (asyncio.run turns SIGINT into a cancel): say what became of the message.

    RFC 1047: after the final dot and before its reply the message may or may not have
    been delivered, exactly as when the connection drops there (OutcomeUnknownError).
    """
    if transaction is not None and transaction.final_reply is not None:
        final = transaction.final_reply
        return InterruptedByUser(
            f"interrupted after {where} accepted the message "
            f"({final.code} {' '.join(final.message.split())}): it was sent",
            hint="do not send it again",
            details={"outcome": "sent", "queue_id": transaction.queue_id},
        )
    if session is not None and session.outcome_unknown:
        return InterruptedByUser(
            f"interrupted after the end of the message was sent to {where}, before its "
            "reply: it may or may not have been delivered",
            hint="check the recipient's mailbox or the server log before resending",
            details={"outcome": "unknown"},
        )
    return InterruptedByUser(
        "interrupted before the end of the message: nothing was sent",
        details={"outcome": "not_sent"},
    )


def _send_timings(outcome: TransactionOutcome) -> dict[str, float]:
    """Seconds per step as send reports them: mail, rcpt, data (DATA to the final reply)."""
    return {
        "mail": outcome.mail_done - outcome.started,
        "rcpt": outcome.envelope_done - outcome.mail_done,
        "data": outcome.finished - outcome.envelope_done,
    }


async def _deliver(
    prepared: PreparedMessage, options: SessionOptions, *, allow_partial: bool
) -> SendResult:
    import asyncio

    from mailctl.protocols.smtp import SmtpSession

    settings: ServerSettings = options.settings
    where = endpoint(settings.host, settings.port)
    session: SmtpSession | None = None
    transaction: TransactionOutcome | None = None
    try:
        session = await SmtpSession.open(options)
        transaction = await session.send(
            prepared.envelope,
            prepared.data,
            smtputf8=prepared.smtputf8,
            eight_bit=prepared.eight_bit,
            allow_partial=allow_partial,
        )
        await session.close()
    except asyncio.CancelledError:
        if session is not None:
            session.abort()  # mid-exchange (maybe mid-QUIT): no more commands
        raise _interrupted(where, session, transaction) from None
    finally:
        if session is not None:
            await session.close()  # after a failure: QUIT if still in step; never raises
    info = session.info
    return SendResult(
        prepared=prepared,
        server=where,
        security=settings.security.value,
        banner=info.banner,
        tls=info.tls,
        auth_mechanism=info.auth_mechanism,
        recipients=transaction.recipients,
        final_reply=transaction.final_reply,
        queue_id=transaction.queue_id,
        timings={**info.timings, **_send_timings(transaction)},
    )


def deliver(
    prepared: PreparedMessage, options: SessionOptions, *, allow_partial: bool = False
) -> SendResult:
    """Open one session, run one transaction, close. Raises the protocol layer's MailctlErrors."""
    import asyncio  # here, not at the top: --dry-run and --save never pay for it (~30 ms)

    return asyncio.run(_deliver(prepared, options, allow_partial=allow_partial))
