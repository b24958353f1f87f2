"""Stand-ins for the parser of `mailctl parse` (mime/parse), each behind ONE function.

fetch needs three things from a message: its envelope (`summarize_headers`), its
attachments to save (`save_attachments`), and with --full the whole parsed view
(`parse_full`). Until mime.parse (summarize, attachment_parts, parse_message) and
store.attachments.AttachmentFolder land, these minimal versions keep their shapes, so
swapping them is a change to this module only. They never raise on a bad message: what
fails is said in `problem`.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from mailctl.errors import CantCreateError

# Bounds on what the stand-in walks (the real parser has ParseLimits).
MAX_PARTS = 1000
MAX_DEPTH = 50
MAX_NAME_BYTES = 200
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f/\\:*?\"<>|\u202a-\u202e\u2066-\u2069]")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_ATTACHMENT = re.compile(rb"^content-disposition:[ \t]*attachment", re.IGNORECASE | re.MULTILINE)
_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class MessageSummary:
    """The cheap view of a message (mime.parse.MessageSummary's fields)."""

    message_id: str | None
    date_iso: str | None
    from_: str | None
    to: str | None
    subject: str | None
    size: int
    attachment_count: int | None
    problem: str | None = None


def summarize_headers(data: bytes) -> MessageSummary:
    """The envelope of `data` (a whole message); never raises.

    Cheap on purpose (it runs for every message fetched): the header block alone is
    parsed, encoded words decoded; attachments are counted as the parts whose
    Content-Disposition says attachment, at most MAX_PARTS.
    """
    from email.header import decode_header, make_header
    from email.utils import parsedate_to_datetime

    values: dict[str, str | None] = {}
    problem: str | None = None
    count: int | None = None
    try:
        end = _HEADER_END.search(data)
        headers = _wanted_headers(data[: end.start()] if end else data)
        for name in ("Message-ID", "From", "To", "Subject"):
            raw = headers.get(name)
            if raw is None:
                values[name] = None
                continue
            try:
                text = str(make_header(decode_header(str(raw))))
            except (LookupError, UnicodeError, ValueError) as err:  # an unknown charset
                text = str(raw)
                problem = f"{name}: {type(err).__name__}"
            values[name] = " ".join(text.split())
        date = headers.get("Date")
        try:
            values["Date"] = parsedate_to_datetime(str(date)).isoformat() if date else None
        except (TypeError, ValueError):
            values["Date"] = None
        body = data[end.end() :] if end else b""
        count = 0
        if b"ttachment" in body:  # bytes.find in C; the regex only for messages that may have some
            count = sum(1 for _ in zip(range(MAX_PARTS), _ATTACHMENT.finditer(body), strict=False))
    except Exception as err:  # never raise on a bad message
        problem = f"unparseable: {type(err).__name__}"
    return MessageSummary(
        message_id=values.get("Message-ID"),
        date_iso=values.get("Date"),
        from_=values.get("From"),
        to=values.get("To"),
        subject=values.get("Subject"),
        size=len(data),
        attachment_count=count,
        problem=problem,
    )


_WANTED = {b"message-id", b"from", b"to", b"subject", b"date"}


def _wanted_headers(block: bytes) -> dict[str, str]:
    """The first Message-ID, From, To, Subject and Date of a header block, unfolded (RFC
    5322 2.2.3), bytes that are not ASCII read as UTF-8 (RFC 6532) with replacement."""
    found: dict[str, str] = {}
    name: bytes | None = None
    value: list[bytes] = []
    names = {"message-id": "Message-ID", "from": "From", "to": "To", "subject": "Subject"}
    names["date"] = "Date"
    for raw in [*block.split(b"\n"), b"end:"]:
        line = raw.rstrip(b"\r")
        if line[:1] in (b" ", b"\t") and name is not None:
            value.append(line)
            continue
        if name is not None and names[name.decode()] not in found:
            found[names[name.decode()]] = b" ".join(value).decode("utf-8", "replace").strip()
        field, colon, rest = line.partition(b":")
        key = field.strip().lower()
        name, value = (key, [rest]) if colon and key in _WANTED else (None, [])
    return found


def _count_attachments(message: object) -> int | None:
    parts = list(_parts(message))
    if parts is None:
        return None
    return sum(1 for part in parts if _is_attachment(part))


def _parts(message: object, depth: int = 0) -> list[object]:
    """Leaf parts, at most MAX_PARTS, MAX_DEPTH deep (no recursion error on a MIME bomb)."""
    out: list[object] = []
    stack: list[tuple[object, int]] = [(message, depth)]
    while stack and len(out) < MAX_PARTS:
        part, level = stack.pop()
        if getattr(part, "is_multipart", lambda: False)() and level < MAX_DEPTH:
            payload = part.get_payload()  # type: ignore[attr-defined]
            if isinstance(payload, list):
                stack.extend((child, level + 1) for child in reversed(payload))
        else:
            out.append(part)
    return out


def _is_attachment(part: object) -> bool:
    disposition = getattr(part, "get_content_disposition", lambda: None)()
    return disposition == "attachment" or (
        disposition is None and getattr(part, "get_filename", lambda: None)() is not None
    )


def parse_full(data: bytes) -> dict[str, object]:
    """With --full: the parsed message (the stand-in: headers and the text body)."""
    import email
    from email import policy

    summary = summarize_headers(data)
    text: str | None = None
    try:
        message = email.message_from_bytes(data, policy=policy.default)
        body = message.get_body(("plain",)) if hasattr(message, "get_body") else None
        if body is not None:
            text = str(body.get_content())
    except Exception:  # the envelope says what failed
        text = None
    return {
        "message_id": summary.message_id,
        "date_iso": summary.date_iso,
        "from": summary.from_,
        "to": summary.to,
        "subject": summary.subject,
        "text": text,
        "size": summary.size,
        "problem": summary.problem,
    }


@dataclass(frozen=True)
class Saved:
    name: str
    path: Path
    size: int
    sha256: str


def save_attachments(folder: Path, data: bytes) -> list[Saved]:
    """Save every attachment of `data` in `folder` under a sanitised, unique name.

    The stand-in for AttachmentFolder(folder).save over attachment_parts(data): the name
    the message gives loses separators, controls and dots in front, is capped in bytes,
    and is created O_EXCL|O_NOFOLLOW relative to the folder's descriptor (never through
    a planted symlink, never over an existing file: "name (1).ext"). Raises CantCreateError.
    """
    import email
    from email import policy

    try:
        message = email.message_from_bytes(data, policy=policy.default)
        parts = [part for part in _parts(message) if _is_attachment(part)]
    except Exception:  # an unreadable message has no attachments to save
        return []
    if not parts:
        return []
    dir_fd = _open_folder(folder)
    saved: list[Saved] = []
    try:
        for part in parts:
            try:
                payload = part.get_payload(decode=True)  # type: ignore[attr-defined]
                name = part.get_filename()  # type: ignore[attr-defined]
            except Exception:  # noqa: S112  # one broken part skips only itself
                continue
            if not isinstance(payload, bytes):
                continue
            written = _create(dir_fd, _safe_name(name), payload, folder)
            saved.append(
                Saved(
                    name=written,
                    path=folder / written,
                    size=len(payload),
                    sha256=hashlib.sha256(payload).hexdigest(),
                )
            )
    finally:
        os.close(dir_fd)
    return saved


def _open_folder(folder: Path) -> int:
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as err:
        raise CantCreateError(
            f"cannot open the attachments folder {folder}: {err.strerror or err}",
            hint="name a folder you can write to",
        ) from err
    if not stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise CantCreateError(f"{folder} is not a folder", hint="name a folder")
    return fd


def _safe_name(name: object) -> str:
    text = str(name) if isinstance(name, str) else ""
    text = _UNSAFE_NAME.sub("_", text).strip().lstrip(".").strip()
    if _RESERVED.match(text):
        text = "_" + text
    encoded = text.encode("utf-8", "replace")
    if len(encoded) > MAX_NAME_BYTES:
        stem, dot, ext = text.rpartition(".")
        keep = ext if dot and len(ext.encode()) <= 16 else ""
        budget = MAX_NAME_BYTES - len(keep.encode()) - 1
        cut = (stem if keep else text).encode("utf-8")[:budget].decode("utf-8", "ignore")
        text = f"{cut}.{keep}" if keep else cut
    return text or "attachment"


def _create(dir_fd: int, name: str, payload: bytes, folder: Path) -> str:
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for attempt in range(1000):
        candidate = name if attempt == 0 else f"{stem} ({attempt})" + (f".{ext}" if ext else "")
        try:
            fd = os.open(candidate, flags, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            continue
        except OSError as err:
            raise CantCreateError(f"cannot write {folder / candidate}: {err.strerror}") from err
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        return candidate
    raise CantCreateError(f"too many files named like {name!r} in {folder}")
