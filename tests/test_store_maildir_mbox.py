"""Maildir and mbox delivery: exact bytes, atomic writes, names never taken from messages."""

from __future__ import annotations

import mailbox
import os
from pathlib import Path

import pytest

from mailctl.errors import CantCreateError
from mailctl.store.maildir import Maildir
from mailctl.store.mbox import Mbox, mboxrd_quote


def test_maildir_creates_folders_and_delivers_exact_bytes(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "mail" / "inbox")
    data = b"Subject: ../../etc/passwd\r\nX: y\r\n\r\n\x00\xff body\r\n"
    first = box.deliver(data)
    second = box.deliver(data)
    assert first != second and first.parent == second.parent == tmp_path / "mail/inbox/new"
    assert first.read_bytes() == data
    assert "passwd" not in first.name and "/" not in first.name
    assert not list((tmp_path / "mail/inbox/tmp").iterdir())
    assert oct(first.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "mail/inbox").stat().st_mode & 0o777) == "0o700"
    # Another reader agrees it is a Maildir holding two messages.
    assert len(mailbox.Maildir(str(tmp_path / "mail/inbox"), create=False)) == 2


def test_maildir_failure_leaves_nothing(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "box")
    (tmp_path / "box" / "new").rmdir()
    with pytest.raises(CantCreateError):
        box.deliver(b"Subject: x\r\n\r\n")
    assert not list((tmp_path / "box" / "tmp").iterdir())


def test_maildir_on_a_file_is_cant_create(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(CantCreateError):
        Maildir(tmp_path / "file")


def test_mboxrd_quoting() -> None:
    assert mboxrd_quote(b"From a\n>From b\n>>From c\nFrom\nx From y\n") == (
        b">From a\n>>From b\n>>>From c\nFrom\nx From y\n"
    )


def test_mbox_appends_in_local_format(tmp_path: Path) -> None:
    path = tmp_path / "inbox"
    with Mbox(path) as box:
        box.deliver(b"Subject: one\r\n\r\nFrom me\r\n", sender="a@example.org")
        box.deliver(b"Subject: two\r\n\r\nbye", sender="")
    data = path.read_bytes()
    assert data.startswith(b"From a@example.org ")
    assert b"\r" not in data
    assert b"\n>From me\n\nFrom MAILER-DAEMON " in data
    assert data.endswith(b"\nbye\n\n")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    messages = mailbox.mbox(str(path), create=False)
    assert [message["Subject"] for message in messages] == ["one", "two"]
    messages.close()


def test_mbox_keeps_messages_apart_after_a_foreign_writer(tmp_path: Path) -> None:
    path = tmp_path / "inbox"
    path.write_bytes(b"From x Thu Jan  1 00:00:00 1970\nSubject: old\n\nno newline at end")
    with Mbox(path) as box:
        box.deliver(b"Subject: new\r\n\r\nhi\r\n", sender="b@example.org")
    messages = mailbox.mbox(str(path), create=False)
    assert [message["Subject"] for message in messages] == ["old", "new"]
    messages.close()


def test_mbox_failed_append_is_truncated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "inbox"
    with Mbox(path) as box:
        box.deliver(b"Subject: kept\r\n\r\nok\r\n", sender="a@example.org")
        size = path.stat().st_size

        def full_disk(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", full_disk)
        with pytest.raises(CantCreateError, match="No space left"):
            box.deliver(b"Subject: lost\r\n\r\nno\r\n", sender="a@example.org")
    assert path.stat().st_size == size


def test_mbox_in_a_missing_folder_is_cant_create(tmp_path: Path) -> None:
    with pytest.raises(CantCreateError):
        Mbox(tmp_path / "missing" / "inbox")
