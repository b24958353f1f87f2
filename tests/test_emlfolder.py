"""store.emlfolder.EmlFolder (`fetch --eml-dir`): whole files only, never over another one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailctl.errors import CantCreateError
from mailctl.store import emlfolder
from mailctl.store.emlfolder import EmlFolder


def test_writes_one_whole_file_per_message_and_no_temp_file(tmp_path: Path) -> None:
    folder = EmlFolder(tmp_path / "eml")
    paths = [folder.write(b"Subject: %d\r\n\r\nbody\r\n" % n) for n in range(3)]
    assert sorted(os.listdir(tmp_path / "eml")) == sorted(p.name for p in paths)
    assert all(p.suffix == ".eml" and oct(p.stat().st_mode & 0o777) == "0o600" for p in paths)
    assert paths[1].read_bytes() == b"Subject: 1\r\n\r\nbody\r\n"


@pytest.fixture
def fixed_names(monkeypatch: pytest.MonkeyPatch) -> str:
    """Pin the random part and the clock so the next name is known (a 1-in-2^32 clash)."""
    monkeypatch.setattr(emlfolder.secrets, "token_hex", lambda n: "cafe0001")
    monkeypatch.setattr(emlfolder.time, "time", lambda: 1_800_000_000.0)
    return f"1800000000-{os.getpid()}-1-cafe0001"


def test_an_existing_eml_is_never_replaced(tmp_path: Path, fixed_names: str) -> None:
    (tmp_path / f"{fixed_names}.eml").write_bytes(b"theirs")
    with pytest.raises(CantCreateError, match="cannot write into"):
        EmlFolder(tmp_path).write(b"ours")
    assert (tmp_path / f"{fixed_names}.eml").read_bytes() == b"theirs"
    assert sorted(os.listdir(tmp_path)) == [f"{fixed_names}.eml"]  # our temp file is gone


def test_another_writers_temp_file_is_left_alone(tmp_path: Path, fixed_names: str) -> None:
    # O_EXCL refused the name: the file there is not ours to remove.
    (tmp_path / f".{fixed_names}.tmp").write_bytes(b"theirs")
    with pytest.raises(CantCreateError, match="cannot write into"):
        EmlFolder(tmp_path).write(b"ours")
    assert (tmp_path / f".{fixed_names}.tmp").read_bytes() == b"theirs"
