"""The one message parser: untrusted bytes -> data, within ParseLimits.

`parse_message` (the whole message as data), `summarize` (the cheap envelope view, never
raises), `attachment_parts` (attachments with their content, for saving), and `read_eml`,
`envelope_sender`, `header_recipients` (an .eml to send as is). Modules: limits (the bounds),
tree (the bounded parse and walk), decode (text out of bytes), fields, parts, received,
authresults, dsn, html (a text view of HTML bodies), message, envelope, model (the result
values).
"""

from mailctl.mime.parse.envelope import envelope_sender, header_recipients, read_eml
from mailctl.mime.parse.html import html_text
from mailctl.mime.parse.limits import ParseLimits
from mailctl.mime.parse.message import (
    attachment_parts,
    parse_message,
    parse_with_parts,
    summarize,
)
from mailctl.mime.parse.model import (
    AddressInfo,
    AttachmentInfo,
    AttachmentPart,
    AuthVerdict,
    DsnInfo,
    DsnRecipient,
    HeaderField,
    MessageSummary,
    ParsedMessage,
    ReceivedHop,
)

__all__ = [
    "AddressInfo",
    "AttachmentInfo",
    "AttachmentPart",
    "AuthVerdict",
    "DsnInfo",
    "DsnRecipient",
    "HeaderField",
    "MessageSummary",
    "ParseLimits",
    "ParsedMessage",
    "ReceivedHop",
    "attachment_parts",
    "envelope_sender",
    "header_recipients",
    "html_text",
    "parse_message",
    "parse_with_parts",
    "read_eml",
    "summarize",
]
