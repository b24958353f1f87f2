"""Per-row attachments of a bulk template: paths confined to one folder, each file encoded once.

A path that row data helped write is untrusted: it must name a regular file inside the
attachments folder after every `..` and symbolic link is resolved, so a CSV cell cannot
attach /etc/passwd or ~/.ssh/id_ed25519. A file used by many rows (the same brochure, a
per-customer invoice used twice) is read and base64-encoded once; the cache is keyed by the
resolved path, size and modification time, so a file changed during a run is read again,
and bounded in entries and bytes so a run over a million distinct files stays small.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Final

from mailctl.errors import InputDataError
from mailctl.inputs import read_file
from mailctl.mime.compiled import EncodedAttachment, encode_attachment
from mailctl.mime.compose import AttachmentSpec, attachment_name, guess_content_type
from mailctl.text import quote

__all__ = ["AttachmentCache", "confined_path"]

MAX_ENTRIES: Final = 256
MAX_CACHED_BYTES: Final = 64 * 1024 * 1024  # encoded parts kept; bigger files are re-read


def confined_path(root: Path, rendered: str, *, field: str) -> AttachmentSpec:
    """The file `rendered` names (relative to `root`), refused unless it stays inside `root`.

    `root` must already be resolved. Absolute paths, `..` and symbolic links are all judged
    by where they end up (os.path.realpath); the part is named after the path as written,
    not after a link's target. Raises InputDataError naming `field`.
    """
    text = rendered.strip()
    if not text or "\x00" in text:
        raise InputDataError(f"{field}: the attachment path {quote(rendered)} is empty or invalid")
    real = Path(os.path.realpath(root / text))
    if real != root and root in real.parents:
        return AttachmentSpec(real, filename=Path(text).name)
    raise InputDataError(
        f"{field}: the attachment path {quote(rendered)} leads outside {quote(str(root))}",
        hint="per-row attachments must stay inside the attachments folder",
    )


class AttachmentCache:
    """Encoded attachment parts by (real path, size, mtime, name); least recently used first."""

    def __init__(
        self, *, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_CACHED_BYTES
    ) -> None:
        self._parts: OrderedDict[tuple[str, int, int, str], EncodedAttachment] = OrderedDict()
        self._bytes = 0
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.reads = 0  # files read from disk (tests and the benchmark look)

    def get(self, spec: AttachmentSpec, *, limit: int) -> EncodedAttachment:
        """The encoded part for the file `spec` names (already confined), at most `limit` bytes.

        Raises NoInputError (66) for a missing or unreadable file, NotRegularFileError or
        InputTooLargeError (65) as mailctl.inputs does, InputDataError for a bad file name.
        """
        name = attachment_name(spec)
        try:
            info = os.stat(spec.path)
        except OSError:
            info = None
        key = (str(spec.path), info.st_size, info.st_mtime_ns, name) if info else None
        if key is not None:
            found = self._parts.get(key)
            if found is not None and found.size <= limit:
                self._parts.move_to_end(key)
                return found
        data = read_file(spec.path, what="attachment", limit=limit)
        self.reads += 1
        part = encode_attachment(data, filename=name, content_type=guess_content_type(name))
        if key is not None and len(data) == key[1]:
            self._keep(key, part)
        return part

    def _keep(self, key: tuple[str, int, int, str], part: EncodedAttachment) -> None:
        size = len(part.part)
        if size > self.max_bytes:
            return
        self._parts[key] = part
        self._bytes += size
        while len(self._parts) > self.max_entries or self._bytes > self.max_bytes:
            _, dropped = self._parts.popitem(last=False)
            self._bytes -= len(dropped.part)
