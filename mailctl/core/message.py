"""What `send` sends: a message built from parts or taken as it is, made into wire bytes and
an envelope (PreparedMessage), with every value checked where it was given.

The request types hold text as the user gave it, with where it came from (`Given`), so every
error names the flag, the account key or the header; parsing happens here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mailctl.errors import AddressError, InputDataError, UsageError
from mailctl.models import Envelope

if TYPE_CHECKING:
    from mailctl.mime.compose import ComposeRequest
    from mailctl.mime.headers import Mailbox


@dataclass(frozen=True)
class Given:
    """A value as the user gave it, and where: "--from", "-f", "account work from", ..."""

    value: str
    source: str


@dataclass(frozen=True)
class Attachment:
    path: Path
    name: str | None = None  # the file name the part carries (default: the path's)
    inline: bool = False  # an image for the HTML, referenced as cid:NAME


@dataclass(frozen=True)
class ComposedMessage:
    """A message built from parts (`send` without --eml). Bcc reaches the envelope only.

    At most one of `text`/`text_file` and of `html`/`html_file`; with none of them the
    body is empty (the caller reads stdin first when it should).
    """

    sender: Given | None
    to: tuple[Given, ...] = ()
    cc: tuple[Given, ...] = ()
    bcc: tuple[Given, ...] = ()
    reply_to: tuple[Given, ...] = ()
    subject: str = ""
    text: str | None = None
    text_file: Path | None = None
    html: str | None = None
    html_file: Path | None = None
    attachments: tuple[Attachment, ...] = ()
    headers: tuple[str, ...] = ()  # "Name: value"
    in_reply_to: str | None = None
    references: str | None = None


@dataclass(frozen=True)
class RawMessage:
    """An existing RFC 5322 message sent as it is, except that Bcc never leaves with it
    (`send --eml`, sendmail mode).

    The envelope sender is `sender`, else the message's Sender/From; the recipients are
    `recipients`, plus its To/Cc/Bcc with `recipients_from_headers`. With
    `complete_headers` (sendmail), From (display name `full_name`), Date and Message-ID are
    added when missing, and the From header is the sender when none is given.
    """

    data: bytes
    sender: Given | None = None
    recipients: tuple[Given, ...] = ()
    recipients_from_headers: bool = False
    complete_headers: bool = False
    full_name: str | None = None


@dataclass(frozen=True)
class PreparedMessage:
    """Exactly what goes on the wire: the envelope and the message bytes as SMTP carries
    them (mime.compose.crlf_lines: CRLF line ends, a final CRLF), before dot-stuffing.
    That is what --dry-run prints, --save keeps, the server receives and SIZE counts."""

    envelope: Envelope
    data: bytes
    smtputf8: bool = False
    message_id: str | None = None

    @property
    def eight_bit(self) -> bool:
        return any(byte > 127 for byte in self.data)


def prepare(message: ComposedMessage | RawMessage) -> PreparedMessage:
    """The wire bytes and envelope of `message`.

    Raises UsageError (no sender, no recipients, both --body and --body-file, ...),
    InputDataError subclasses naming the value (addresses, header injection, text that is
    not UTF-8), NoInputError for a missing file, MessageTooLargeError.
    """
    if isinstance(message, RawMessage):
        return _prepare_raw(message)
    return _prepare_composed(_compose_request(message))


def _mailbox(given: Given) -> Mailbox:
    from mailctl.mime.headers import parse_mailbox

    return parse_mailbox(given.source, given.value)


def _mailboxes(values: tuple[Given, ...]) -> tuple[Mailbox, ...]:
    from mailctl.mime.headers import parse_mailbox_list

    return tuple(box for given in values for box in parse_mailbox_list(given.source, [given.value]))


def _compose_request(message: ComposedMessage) -> ComposeRequest:
    from mailctl.mime.compose import AttachmentSpec, ComposeRequest
    from mailctl.mime.headers import parse_header_option, require_clean

    if message.sender is None:
        raise UsageError("no sender", hint="pass --from ADDRESS or set 'from' in the account")
    if message.text is not None and message.text_file is not None:
        raise UsageError("--body and --body-file exclude each other", hint="pick one")
    if message.html is not None and message.html_file is not None:
        raise UsageError("--html and --html-file exclude each other", hint="pick one")
    text = (
        message.text if message.text_file is None else _read_text(message.text_file, "--body-file")
    )
    html = (
        message.html if message.html_file is None else _read_text(message.html_file, "--html-file")
    )
    return ComposeRequest(
        sender=_mailbox(message.sender),
        to=_mailboxes(message.to),
        cc=_mailboxes(message.cc),
        bcc=_mailboxes(message.bcc),
        reply_to=_mailboxes(message.reply_to),
        subject=require_clean("--subject", message.subject),
        text=text,
        html=html,
        attachments=tuple(
            AttachmentSpec(path=a.path, filename=a.name, inline=a.inline)
            for a in message.attachments
        ),
        extra_headers=tuple(parse_header_option(raw) for raw in message.headers),
        in_reply_to=message.in_reply_to,
        references=message.references,
    )


def _prepare_composed(request: ComposeRequest) -> PreparedMessage:
    """Build the message; Bcc goes to the envelope only, never into the headers."""
    from mailctl.mime.compose import (
        compose,
        crlf_lines,
        envelope_for,
        request_needs_smtputf8,
        serialize,
    )

    if not (request.to or request.cc or request.bcc):
        raise UsageError("no recipients", hint="give --to, --cc or --bcc")
    smtputf8 = request_needs_smtputf8(request)
    message = compose(request)
    return PreparedMessage(
        envelope=envelope_for(request, smtputf8=smtputf8),
        data=crlf_lines(serialize(message, utf8=smtputf8)),
        smtputf8=smtputf8,
        message_id=str(message["Message-ID"]) if message["Message-ID"] else None,
    )


def _prepare_raw(raw: RawMessage) -> PreparedMessage:
    from mailctl.mime.compose import crlf_lines, envelope_of, strip_bcc
    from mailctl.mime.parse import envelope_sender, header_recipients, read_eml
    from mailctl.mime.rawmessage import add_missing_headers, header_value

    data = raw.data
    given = raw.sender
    if given is None and raw.complete_headers:
        from_header = header_value(data, "From")
        given = Given(from_header, "From header") if from_header else None
    sender = _mailbox(given) if given is not None else None
    if sender is not None and raw.complete_headers:
        data = add_missing_headers(data, sender=sender, full_name=raw.full_name)
    recipients = _mailboxes(raw.recipients)
    message = read_eml(data)
    if sender is None:
        sender = envelope_sender(message)
        if sender is None:
            raise AddressError(
                "no envelope sender: the message has no From header",
                hint="pass --from ADDRESS (or -f ADDRESS in sendmail mode)",
            )
    everyone = list(recipients)
    if raw.recipients_from_headers:
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
        envelope=envelope_of(sender, everyone, smtputf8=smtputf8),
        # An .eml saved with LF line ends goes out with CRLF: say so everywhere by
        # holding the bytes in that form from here on (RFC 5321 2.3.8).
        data=crlf_lines(strip_bcc(data)),
        smtputf8=smtputf8,
        message_id=str(message_id) if message_id else None,
    )


def _read_text(path: Path, field: str) -> str:
    """A body file (bounded by mailctl.inputs), which must be UTF-8 text."""
    from mailctl.inputs import read_input

    data = read_input(str(path), what=field)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputDataError(
            f"{field} {path} is not UTF-8 text (byte {err.start})",
            hint="convert it with iconv, or attach it with --attach",
        ) from err
