"""Extra-header policy and msg-id checks; the import path for the whole header-safety API."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from typing import Final

from mailctl.errors import HeaderInjectionError, InputDataError
from mailctl.mime.addresses import (
    Mailbox,
    parse_address_header,
    parse_mailbox,
    parse_mailbox_list,
)
from mailctl.mime.domains import validate_domain
from mailctl.mime.header_safety import line_problem, require_clean, require_utf8
from mailctl.mime.wire_policy import WirePolicy, wire_policy
from mailctl.text import quote

# The public header-safety API keeps its import path here; each name lives in its owner module.
__all__ = [
    "Mailbox",
    "WirePolicy",
    "check_extra_header",
    "is_msg_id",
    "line_problem",
    "parse_address_header",
    "parse_header_option",
    "parse_mailbox",
    "parse_mailbox_list",
    "parse_msg_ids",
    "require_clean",
    "require_utf8",
    "validate_domain",
    "wire_policy",
]

# RFC 5322 2.2: field-name = 1*ftext; ftext = %d33-57 / %d59-126 (printable ASCII but ':').
_FIELD_NAME: Final = re.compile(r"[\x21-\x39\x3b-\x7e]+")

# RFC 5322 3.6.4 msg-id, read leniently on the left (obs-id-left is common in the wild) but
# always ASCII, without whitespace, angle brackets or a second '@'.
_ID_PART: Final = r"[\x21-\x3b\x3d\x3f\x41-\x7e]+"
_MSG_ID: Final = re.compile(rf"<{_ID_PART}@(?:{_ID_PART}|\[[\x21-\x5a\x5e-\x7e]*\])>")
_MSG_ID_LIST: Final = re.compile(rf"\s*(?:{_MSG_ID.pattern}\s*)+")
# RFC 5322 2.1.1: a line is at most 998 octets; leave room for "References: ".
MAX_MSG_ID_LENGTH: Final = 900

# Header names compose owns; setting them with --header would duplicate or break the MIME tree.
_STRUCTURAL: Final = frozenset(
    {
        "content-type",
        "content-transfer-encoding",
        "mime-version",
        "content-disposition",
        "content-id",
    }
)
_DEDICATED: Final = {
    "from": "--from",
    "to": "--to",
    "cc": "--cc",
    "bcc": "--bcc",
    "reply-to": "--reply-to",
    "subject": "--subject",
    "in-reply-to": "--in-reply-to",
    "references": "--references",
}


def is_msg_id(value: str) -> bool:
    """True if `value` is one msg-id, `<left@right>` (RFC 5322 3.6.4).

    "=?" is refused although atext allows it: the email package decodes an RFC 2047 encoded
    word inside In-Reply-To and References, so the id sent would not be the one given.
    """
    return (
        len(value) <= MAX_MSG_ID_LENGTH
        and "=?" not in value
        and _MSG_ID.fullmatch(value) is not None
    )


def parse_msg_ids(field: str, value: str) -> str:
    """Validate one or more whitespace-separated msg-ids; return them joined by one space.

    Raises HeaderInjectionError for line breaks, InputDataError for anything else.
    """
    require_clean(field, value)
    if not _MSG_ID_LIST.fullmatch(value):
        raise InputDataError(
            f"{field}: {quote(value)} is not a list of message ids",
            hint="each id looks like <id@host>, angle brackets included",
        )
    if "=?" in value:  # see is_msg_id
        raise InputDataError(
            f"{field}: {quote(value)} holds '=?', which readers decode as an RFC 2047 word"
        )
    ids = _MSG_ID.findall(value)
    if any(len(item) > MAX_MSG_ID_LENGTH for item in ids):
        raise InputDataError(f"{field}: a message id is longer than {MAX_MSG_ID_LENGTH} characters")
    return " ".join(ids)


def check_extra_header(name: str, value: str) -> tuple[str, str]:
    """Validate a custom header for compose; return (name, value) with the value trimmed.

    Policy: names must be RFC 5322 field names; headers compose builds from the parts
    (Content-Type, Content-Transfer-Encoding, MIME-Version, Content-Disposition, Content-ID)
    and those with their own option (From, To, Cc, Bcc, Reply-To, Subject, In-Reply-To,
    References) are refused, as are Resent-*, Orig-Date and Return-Path (added by servers,
    RFC 5321 4.4).
    Date and Message-ID may be given and then replace the generated ones, after validation;
    Sender must be exactly one mailbox.
    Raises HeaderInjectionError for line breaks and bad names, InputDataError otherwise.
    """
    require_clean("--header name", name)
    if not _FIELD_NAME.fullmatch(name):
        raise HeaderInjectionError(
            f"--header name {quote(name)} is not a valid header field name",
            hint="RFC 5322 2.2: printable ASCII without spaces or ':'",
        )
    field = f"--header {name}"
    require_clean(field, value)
    value = value.strip(" \t")
    key = name.lower()
    if key in _STRUCTURAL:
        raise InputDataError(
            f"--header {name}: this header is set by mailctl from the message parts",
            hint="use --body, --html and attachments instead",
        )
    if key in _DEDICATED:
        raise InputDataError(
            f"--header {name}: use {_DEDICATED[key]} instead",
            hint="Bcc is never written into the message" if key == "bcc" else None,
        )
    if key.startswith("resent-") or key in {"return-path", "orig-date"}:
        raise InputDataError(f"--header {name}: this header cannot be set by mailctl")
    if key == "date":
        try:
            parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError) as err:
            raise InputDataError(
                f"{field}: {quote(value)} is not an RFC 5322 date",
                hint="for example 'Tue, 07 Jan 2025 10:00:00 +0100'",
            ) from err
    elif key == "message-id":
        if not is_msg_id(value):
            raise InputDataError(
                f"{field}: {quote(value)} is not a message id", hint="it looks like <id@host>"
            )
    elif key == "sender":
        value = parse_mailbox(field, value).formatted()
    return name, value


def parse_header_option(raw: str) -> tuple[str, str]:
    """Split a --header "Name: value" argument and validate both halves.

    Raises HeaderInjectionError for line breaks or a bad field name, InputDataError for a
    missing colon or a header mailctl manages itself (see check_extra_header).
    """
    name, colon, value = raw.partition(":")
    if not colon:
        require_clean("--header", raw)
        raise InputDataError(
            f"--header {quote(raw)} has no ':'", hint="write it as --header 'Name: value'"
        )
    return check_extra_header(name, value)
