"""`mailctl parse`: one message (a file or stdin) to data, its attachments saved if asked."""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from mailctl.inputs import max_input_bytes, read_input
from mailctl.mime.parse import ParsedMessage, ParseLimits, parse_with_parts
from mailctl.store.attachments import AttachmentFolder

__all__ = ["ParseRequest", "ParseResult", "SavedAttachment", "parse", "parse_limits"]


@dataclass(frozen=True)
class ParseRequest:
    """The message to read (None: standard input) and where its attachments go (None: not
    saved)."""

    source: Path | None
    attachments_dir: Path | None = None


@dataclass(frozen=True)
class SavedAttachment:
    """An attachment written to disk: its name in the message (untrusted) and where it went."""

    name: str | None
    path: Path
    size: int
    sha256: str


@dataclass(frozen=True)
class ParseResult:
    source: str  # the path as given, or "-" for standard input
    message: ParsedMessage
    saved: tuple[SavedAttachment, ...]


def parse_limits() -> ParseLimits:
    """The limits a message read from the user is parsed within: ParseLimits' defaults, with
    the message size following $MAILCTL_MAX_INPUT like every other message input."""
    limit = max_input_bytes()
    return ParseLimits(max_message_bytes=limit, max_part_bytes=limit)


def parse(request: ParseRequest) -> ParseResult:
    """Read and parse the message; save its attachments into the folder when one is given.

    Raises NoInputError (66) / NotRegularFileError / InputTooLargeError (65) for the input,
    MessageParseError (65) past a ParseLimits bound, CantCreateError (73) when an attachment
    cannot be written, ConfigError (78) for a bad MAILCTL_MAX_INPUT.
    """
    source = "-" if request.source is None else str(request.source)
    data = read_input(source, what="message")
    message, parts = parse_with_parts(data, limits=parse_limits())
    saved: list[SavedAttachment] = []
    if request.attachments_dir is not None:
        with AttachmentFolder(request.attachments_dir) as folder:
            for index, part in enumerate(parts, start=1):
                extension = mimetypes.guess_extension(part.content_type) or ".bin"
                path = folder.save(part.name, part.payload, fallback=f"part-{index}{extension}")
                saved.append(
                    SavedAttachment(
                        name=part.name,
                        path=path,
                        size=len(part.payload),
                        sha256=hashlib.sha256(part.payload).hexdigest(),
                    )
                )
    return ParseResult(source=source, message=message, saved=tuple(saved))
