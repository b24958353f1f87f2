"""Where fetched messages are written (`Keeper`): Maildir, mbox, a folder of .eml files,
attachments, and the manifest. Each message file is written whole and fsynced before it is
renamed into place when `write` returns; `sync` makes the renames durable too (one folder
fsync for a batch), and the fetch calls it before the state records a message as taken
or the server changes: that order is what makes a kill -9 or a power cut lose nothing.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from types import TracebackType

from mailctl.core.fetch.models import Destinations, FetchedMessage, SavedAttachment
from mailctl.core.fetch.summary import save_attachments
from mailctl.errors import CantCreateError
from mailctl.serialize import to_data
from mailctl.store.emlfolder import EmlFolder
from mailctl.store.files import file_kind, write_all_and_sync
from mailctl.store.maildir import Maildir
from mailctl.store.mbox import Mbox

_RETURN_PATH = re.compile(rb"^return-path:[ \t]*<([^<>\s]*)>", re.IGNORECASE | re.MULTILINE)


class Keeper:
    """The destinations of one fetch, opened once; `keep` writes one message to all."""

    def __init__(self, destinations: Destinations) -> None:
        self.destinations = destinations
        maildir, eml_dir = destinations.maildir, destinations.eml_dir
        self._maildir = Maildir(maildir, sync_each=False) if maildir else None
        self._mbox = Mbox(destinations.mbox) if destinations.mbox else None
        self._eml = EmlFolder(eml_dir, sync_each=False) if eml_dir else None
        self._manifest = Manifest(destinations.manifest) if destinations.manifest else None

    @property
    def manifest(self) -> bool:
        """True when each kept message gets a manifest line (which carries its envelope)."""
        return self._manifest is not None

    def write(self, data: bytes) -> tuple[Path | None, tuple[SavedAttachment, ...]]:
        """Write `data` everywhere asked for: (the Maildir or .eml file, the attachments
        saved). Raises CantCreateError (nothing half-written is left in a Maildir or .eml
        folder; an mbox append is truncated back)."""
        path: Path | None = None
        if self._maildir is not None:
            path = self._maildir.deliver(data)
        if self._eml is not None:
            written = self._eml.write(data)
            path = path or written
        if self._mbox is not None:
            match = _RETURN_PATH.search(data[:65536])
            sender = match.group(1).decode("ascii", "replace") if match else "MAILER-DAEMON"
            self._mbox.deliver(data, sender=sender or "MAILER-DAEMON")
        attachments: tuple[SavedAttachment, ...] = ()
        if self.destinations.attachments is not None:
            attachments = tuple(
                SavedAttachment(name=s.name, path=s.path, size=s.size, sha256=s.sha256)
                for s in save_attachments(self.destinations.attachments, data)
            )
        return path, attachments

    def written(self, record: FetchedMessage) -> None:
        """`record`'s message is written (`write` returned): its manifest line, if asked,
        once the message is durable (a line means the message is there). Raises
        CantCreateError."""
        if self._manifest is not None:
            self.sync()
            self._manifest.append(record)

    def sync(self) -> None:
        """Make every message written so far durable (the renames into their folders)."""
        if self._maildir is not None:
            self._maildir.sync()
        if self._eml is not None:
            self._eml.sync()

    def close(self) -> None:
        self.sync()
        if self._mbox is not None:
            self._mbox.close()
        if self._manifest is not None:
            self._manifest.close()

    def __enter__(self) -> Keeper:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Manifest:
    """`--manifest FILE.jsonl`: one JSON line per message kept, appended and fsynced after
    the message itself is durable (a line means the message is there)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as err:
            raise CantCreateError(
                f"cannot open the manifest {self.path}: {err.strerror or err}",
                hint="name a file in a folder you can write to",
            ) from err
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise CantCreateError(
                f"the manifest {self.path} is not a regular file (it is {file_kind(mode)})",
                hint="name a regular file or a new path",
            )
        os.set_blocking(fd, True)
        self._fd = fd

    def append(self, record: FetchedMessage) -> None:
        data = to_data(record)
        if isinstance(data, dict):
            data.pop("parsed", None)
        line = json.dumps(data, ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n"
        try:
            write_all_and_sync(self._fd, line)
        except OSError as err:
            raise CantCreateError(
                f"cannot append to the manifest {self.path}: {err.strerror or err}",
                hint="check free space",
            ) from err

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
