"""The `send` use case, also behind sendmail mode: `send(SendRequest) -> SendResult`.

One call does what a send is: prepare the message (core/message.py: parse what was given,
compose or take the bytes as they are), keep a copy with `save`, then, unless it is a dry
run, open one SMTP session, run one transaction and close. The result owns its status and
exit code. The caller (cli's adapters) only settles the server (cli's context) and renders.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from mailctl.core.message import (
    Attachment,
    ComposedMessage,
    Given,
    PreparedMessage,
    RawMessage,
    prepare,
)
from mailctl.errors import ExitCode, InterruptedByUser
from mailctl.hosts import endpoint
from mailctl.models import Envelope, RecipientResult, Reply, ResolvedServer, TranscriptCallback
from mailctl.serialize import SECONDS, SKIP, JsonAttrs

if TYPE_CHECKING:
    from mailctl.models import Account, Config
    from mailctl.protocols.handshake import HandshakeFacts
    from mailctl.protocols.smtp import SessionOptions, SmtpSession, TransactionOutcome

__all__ = [
    "Attachment",
    "ComposedMessage",
    "Given",
    "PreparedMessage",
    "RawMessage",
    "SendRequest",
    "SendResult",
    "account_for_message",
    "send",
]


@dataclass(frozen=True)
class SendRequest:
    """One message to send: what (composed or raw), where, and how.

    `server` may be None only for a dry run (nothing connects). `on_transcript` receives
    each line of the SMTP session as it happens (send --trace, sendmail -v).
    """

    message: ComposedMessage | RawMessage
    server: ResolvedServer | None = None
    dry_run: bool = False
    allow_partial: bool = False  # send to the accepted recipients when some are refused
    save: Path | None = None  # keep a copy of the exact bytes here first
    on_transcript: TranscriptCallback | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SendResult:
    """One send (or dry run). JSON (mailctl.serialize): these fields, the message's
    envelope, size, Message-ID and SMTPUTF8 need, and on a dry run its text."""

    prepared: PreparedMessage = field(metadata=SKIP)  # holds the bytes: never in JSON
    server: str | None = None
    security: str | None = None
    banner: Reply | None = None
    tls: HandshakeFacts | None = None
    auth_mechanism: str | None = None
    recipients: tuple[RecipientResult, ...] = ()
    final_reply: Reply | None = None
    queue_id: str | None = None
    # Seconds per phase: connect, banner, ehlo, starttls, auth, mail_rcpt, data, end_of_data.
    timings: dict[str, float] = field(default_factory=dict, metadata=SECONDS)
    dry_run: bool = False
    saved_to: Path | None = None

    JSON_ATTRS: ClassVar[JsonAttrs] = ("envelope", "size", "message_id", "smtputf8", "message")

    @property
    def refused(self) -> tuple[RecipientResult, ...]:
        return tuple(r for r in self.recipients if not r.accepted)

    @property
    def envelope(self) -> Envelope:
        return self.prepared.envelope

    @property
    def size(self) -> int:
        return len(self.prepared.data)

    @property
    def message_id(self) -> str | None:
        return self.prepared.message_id

    @property
    def smtputf8(self) -> bool:
        return self.prepared.smtputf8

    @property
    def message(self) -> str | None:
        """The message as text on a dry run (what --dry-run prints), else None."""
        return self.prepared.data.decode("utf-8", errors="replace") if self.dry_run else None

    @property
    def status(self) -> Literal["ok", "partial"]:
        """ok, or partial when some recipients were refused (--allow-partial sent to the
        others; without it a refusal is an error raised, not a result)."""
        return "partial" if self.refused else "ok"

    @property
    def exit_code(self) -> ExitCode:
        """0, or the refusals' class (DESIGN.md "Exit codes"): 69 when every refusal is
        permanent, else 75 (RFC 5321 4.5.3.1.10: a 552 to RCPT is a 452)."""
        if not self.refused:
            return ExitCode.OK
        from mailctl.protocols.smtp import refusal_status

        return refusal_status(r.reply.code for r in self.refused).exit_code

    @property
    def errors(self) -> list[dict[str, Any]]:
        """One error entry per refused recipient, with its class."""
        if not self.refused:
            return []
        from mailctl.protocols.smtp import TransactionStatus, rcpt_status

        return [
            {
                "code": "smtp_permanent"
                if rcpt_status(r.reply.code) is TransactionStatus.REFUSED
                else "smtp_transient",
                "message": f"recipient {r.address} refused: {r.reply.code} {r.reply.message}",
            }
            for r in self.refused
        ]


def send(request: SendRequest) -> SendResult:
    """Prepare, save, and (unless a dry run) deliver one message in one SMTP session.

    Raises what preparing raises (UsageError, InputDataError subclasses, NoInputError),
    CantCreateError for `save`, the protocol layer's MailctlErrors for the session
    (refusals, TLS, AUTH, timeouts, OutcomeUnknownError after the final dot), and
    InterruptedByUser saying what became of the message.
    """
    prepared = prepare(request.message)
    saved = save_message(prepared, request.save) if request.save is not None else None
    if request.dry_run:
        return SendResult(prepared=prepared, dry_run=True, saved_to=saved)
    if request.server is None:
        raise ValueError("a server is needed unless dry_run is set")
    result = _deliver_sync(prepared, _session_options(request, request.server), request)
    return replace(result, saved_to=saved)


def account_for_message(
    config: Config, *, account: str | None, sender: str | None, data: bytes
) -> Account:
    """The account sendmail mode relays through: `account` (-a) if named, else the one whose
    `from` is the sender (-f) or the message's From header, else the default account.

    Raises ConfigError: no such account, no account at all, or one without an smtp block.
    """
    from mailctl.config.store import account_for_address, find_account
    from mailctl.errors import ConfigError, InputDataError
    from mailctl.mime.headers import parse_mailbox
    from mailctl.mime.rawmessage import header_value

    if account is not None:
        found = find_account(config, account)
    else:
        matched = None
        for candidate in (sender, header_value(data, "From")):
            if not candidate:
                continue
            try:
                address = parse_mailbox("From", candidate).addr_spec
            except InputDataError:  # an odd From only means no match; it is checked again later
                continue
            matched = account_for_address(config, address)
            if matched:
                break
        if matched is None and not config.accounts:
            raise ConfigError(
                f"sendmail: no account configured in {config.path}",
                hint="run 'mailctl account add NAME' (sendmail mode relays through an account)",
            )
        found = matched or find_account(config, None)
    if found.smtp is None:
        raise ConfigError(
            f"sendmail: account {found.name!r} has no smtp block",
            hint=f"add one with 'mailctl account add {found.name} --force --smtp-host ...'",
        )
    return found


def _session_options(request: SendRequest, server: ResolvedServer) -> SessionOptions:
    from mailctl.protocols.smtp import SessionOptions
    from mailctl.protocols.transcript import Transcript

    transcript = None
    if request.on_transcript is not None:
        transcript = Transcript(on_line=request.on_transcript)
    return SessionOptions(
        settings=server.settings,
        ehlo_name=server.ehlo_name,
        secret=server.secret,
        transcript=transcript,
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
    """Seconds per phase, named as bench names them: mail_rcpt (MAIL and every RCPT), data
    (DATA to the 354), end_of_data (body and dot to the final reply)."""
    timings = outcome.timings
    return {name: timings[name] for name in ("mail_rcpt", "data", "end_of_data")}


async def _deliver(
    prepared: PreparedMessage, options: SessionOptions, *, allow_partial: bool
) -> SendResult:
    import asyncio

    from mailctl.protocols.smtp import SmtpSession

    settings = options.settings
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


def _deliver_sync(
    prepared: PreparedMessage, options: SessionOptions, request: SendRequest
) -> SendResult:
    """Open one session, run one transaction, close. Raises the protocol layer's MailctlErrors."""
    import asyncio  # here, not at the top: --dry-run and --save never pay for it (~30 ms)

    return asyncio.run(_deliver(prepared, options, allow_partial=request.allow_partial))
