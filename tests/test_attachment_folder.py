"""store/attachments: hostile attachment names land inside the folder, under a safe name,
never through a planted symlink and never over an existing file (issue 10, hostile input)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailctl.errors import CantCreateError
from mailctl.mime.parse import attachment_parts
from mailctl.store.attachments import MAX_NAME_BYTES, AttachmentFolder, safe_name


def tree(root: Path) -> set[str]:
    """Every path under `root` (relative), links included, without following them."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    ("given_name", "saved"),
    [
        ("../../x", "x"),
        ("/etc/passwd", "passwd"),
        ("..\\..\\x", "x"),
        ("C:\\Windows\\system32\\evil.dll", "evil.dll"),
        ("..", "attachment"),
        ("../..", "attachment"),
        ("", "attachment"),
        (None, "attachment"),
        ("a\x00b.txt", "ab.txt"),
        ("a\r\nBcc: x.txt", "aBcc x.txt"),
        ("\x1b[31mred.txt", "[31mred.txt"),
        ("report\u202efdp.exe", "reportfdp.exe"),
        (".bashrc", "bashrc"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("com1.tar.gz", "_com1.tar.gz"),
        ("LPT9", "_LPT9"),
        ("name. . .", "name"),
        ("a  \t b.pdf", "a b.pdf"),
        ("what?<>|*.txt", "what.txt"),
    ],
)
def test_safe_names(tmp_path: Path, given_name: str | None, saved: str) -> None:
    outside = tmp_path / "x"
    folder = tmp_path / "inbox" / "files"
    with AttachmentFolder(folder) as target:
        path = target.save(given_name, b"data")
    assert path == folder / saved
    assert path.read_bytes() == b"data"
    assert tree(tmp_path) == {"inbox", "inbox/files", f"inbox/files/{saved}"}
    assert not outside.exists()


@pytest.mark.parametrize("stem", ["a" * 300, "é" * 300, "日本" * 150])
def test_long_names_are_cut_in_bytes_keeping_the_extension(tmp_path: Path, stem: str) -> None:
    with AttachmentFolder(tmp_path) as target:
        first = target.save(stem + ".pdf", b"1")
        second = target.save(stem + ".pdf", b"2")
    for path in (first, second):
        assert len(path.name.encode()) <= MAX_NAME_BYTES
        assert path.suffix == ".pdf"
        assert path.parent == tmp_path
    assert second.name.endswith(" (1).pdf")
    assert (first.read_bytes(), second.read_bytes()) == (b"1", b"2")


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "report.pdf").write_bytes(b"mine")
    (tmp_path / "report (1).pdf").write_bytes(b"mine too")
    with AttachmentFolder(tmp_path) as target:
        path = target.save("report.pdf", b"theirs")
    assert path.name == "report (2).pdf"
    assert (tmp_path / "report.pdf").read_bytes() == b"mine"
    assert (tmp_path / "report (1).pdf").read_bytes() == b"mine too"
    assert path.read_bytes() == b"theirs"


@pytest.mark.parametrize("dangling", [False, True])
def test_a_planted_symlink_is_never_followed(tmp_path: Path, dangling: bool) -> None:
    folder = tmp_path / "att"
    folder.mkdir()
    victim = tmp_path / "victim"
    if not dangling:
        victim.write_bytes(b"precious")
    (folder / "x.txt").symlink_to(victim)
    with AttachmentFolder(folder) as target:
        path = target.save("../x.txt", b"payload")
    assert path == folder / "x (1).txt"
    assert (folder / "x.txt").is_symlink()
    if dangling:
        assert not victim.exists()
    else:
        assert victim.read_bytes() == b"precious"
    assert path.read_bytes() == b"payload"
    assert not path.is_symlink()


def test_a_symlinked_name_in_a_numbered_slot_is_skipped_too(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    folder = tmp_path / "att"
    folder.mkdir()
    (folder / "a").write_bytes(b"mine")
    (folder / "a (1)").symlink_to(victim)
    with AttachmentFolder(folder) as target:
        assert target.save("a", b"x").name == "a (2)"
    assert victim.read_bytes() == b"precious"


def test_the_folder_swapped_for_a_symlink_after_opening_changes_nothing(tmp_path: Path) -> None:
    """Saves go through the descriptor opened first: renaming the path away redirects nothing."""
    folder = tmp_path / "att"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with AttachmentFolder(folder) as target:
        folder.rename(tmp_path / "moved")
        folder.symlink_to(elsewhere)
        target.save("a.txt", b"x")
    assert (tmp_path / "moved" / "a.txt").read_bytes() == b"x"
    assert list(elsewhere.iterdir()) == []


def test_a_folder_that_cannot_be_made_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(CantCreateError, match=r"attachment folder .* cannot be used"):
        AttachmentFolder(tmp_path / "file" / "sub")


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        # RFC 2231 (percent-encoded, with and without continuations)
        ("attachment; filename*=utf-8''..%2F..%2Fevil.sh", "../../evil.sh"),
        ("attachment; filename*0*=utf-8''..%2F; filename*1*=..%2Fevil.sh", "../../evil.sh"),
        # RFC 2047 encoded word in a quoted name (not standard; what mailers write)
        ('attachment; filename="=?utf-8?q?=2E=2E=2F=2E=2E=2Fevil=2Esh?="', "../../evil.sh"),
        ('attachment; filename="=?utf-8?b?Li4vLi4vZXZpbC5zaA==?="', "../../evil.sh"),
        ("attachment; filename*=utf-8''%00%2Fetc%2Fpasswd", "\x00/etc/passwd"),
        ("attachment; filename*=utf-8''..%5C..%5Cevil.sh", "..\\..\\evil.sh"),
    ],
)
def test_traversal_names_from_a_message_are_saved_inside(
    tmp_path: Path, disposition: str, expected: str
) -> None:
    message = (
        b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\nhi\r\n--b\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: " + disposition.encode() + b"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nZXZpbA==\r\n--b--\r\n"
    )
    parts = list(attachment_parts(message))
    assert [part.name for part in parts] == [expected]
    folder = tmp_path / "in"
    with AttachmentFolder(folder) as target:
        path = target.save(parts[0].name, parts[0].payload)
    assert path.parent == folder
    assert path.read_bytes() == b"evil"
    assert tree(tmp_path) == {"in", f"in/{path.name}"}


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=st.lists(st.one_of(st.none(), st.text(max_size=400)), max_size=8))
def test_any_name_stays_in_the_folder(tmp_path: Path, names: list[str | None]) -> None:
    folder = tmp_path / f"f{os.urandom(6).hex()}"
    with AttachmentFolder(folder) as target:
        saved = [target.save(name, b"x") for name in names]
    assert len(set(saved)) == len(saved)
    for path in saved:
        assert path.parent == folder
        assert path.name not in ("", ".", "..")
        assert not path.name.startswith(".")
        assert len(path.name.encode()) <= MAX_NAME_BYTES + len(" (9)")
        assert path.read_bytes() == b"x"
    assert sorted(os.listdir(folder)) == sorted(p.name for p in saved)


def test_safe_name_is_stable() -> None:
    """A safe name is its own safe name: fetch and parse name the same file the same way."""
    for name in ("../../x", "CON", "a" * 300 + ".pdf", "\u202eexe.pdf", " .x. "):
        once = safe_name(name)
        assert safe_name(once) == once
