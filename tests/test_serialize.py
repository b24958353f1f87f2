"""mailctl.serialize: the one naming convention that turns results into JSON `data`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailctl.errors import AuthError, MailctlError
from mailctl.serialize import SECONDS, SKIP, meta, to_data


class Colour(StrEnum):
    RED = "red"


@dataclass(frozen=True)
class Inner:
    code: int
    message: str

    JSON_ATTRS: ClassVar = ("shout",)

    @property
    def shout(self) -> str:
        return self.message.upper()


@dataclass
class Outer:
    name: str
    colour: Colour
    path: Path
    when: datetime
    inner: Inner | None
    items: tuple[Inner, ...]
    counts: dict[int, int]
    elapsed: float = field(default=0.0, metadata=SECONDS)
    timings: dict[str, float] = field(default_factory=dict, metadata=SECONDS)
    edges: tuple[float, ...] = field(default=(), metadata=SECONDS)
    qps: float = field(default=0.0, metadata=meta(digits=1))
    sender: str = field(default="", metadata=meta(key="from"))
    body: bytes = field(default=b"", metadata=SKIP)
    secret: str = field(default="", metadata={"json": False})
    missing: str | None = None

    JSON_ATTRS: ClassVar = (("total", SECONDS),)

    @property
    def total(self) -> float:
        return self.elapsed * 2


def sample() -> Outer:
    return Outer(
        name="x",
        colour=Colour.RED,
        path=Path("/tmp/caf\udce9"),
        when=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        inner=Inner(250, "ok"),
        items=(Inner(550, "no"),),
        counts={451: 2},
        elapsed=0.0012345,
        timings={"connect": 0.5, "never": math.nan},
        edges=(0.001, 0.002),
        qps=1234.5678,
        sender="a@example.org",
        body=b"message bytes",
        secret="pw",
    )


def test_the_convention() -> None:
    assert to_data(sample()) == {
        "name": "x",
        "colour": "red",
        "path": "/tmp/caf\udce9",
        "when": "2024-05-01T12:00:00+00:00",
        "inner": {"code": 250, "message": "ok", "shout": "OK"},
        "items": [{"code": 550, "message": "no", "shout": "NO"}],
        "counts": {"451": 2},
        "elapsed_ms": 1.234,
        "timings_ms": {"connect": 500.0, "never": None},
        "edges_ms": [1.0, 2.0],
        "qps": 1234.6,
        "from": "a@example.org",
        "missing": None,
        "total_ms": 2.469,
    }


def test_bytes_never_reach_json() -> None:
    @dataclass
    class Leaky:
        data: bytes

    with pytest.raises(TypeError, match="bytes"):
        to_data(Leaky(b"x"))


def test_unknown_objects_are_refused() -> None:
    with pytest.raises(TypeError, match="JSON_ATTRS"):
        to_data(object())


def test_flatten_merges_a_nested_object() -> None:
    @dataclass
    class Block:
        inner: Inner = field(metadata=meta(flatten=True))
        source: str = "env"

    assert to_data(Block(Inner(1, "a"))) == {
        "code": 1,
        "message": "a",
        "shout": "A",
        "source": "env",
    }


def test_two_members_under_one_key_are_refused() -> None:
    @dataclass
    class Clash:
        a: int = field(default=0, metadata=meta(key="b"))
        b: int = 0

    with pytest.raises(TypeError, match="same JSON key"):
        to_data(Clash())


def test_errors_serialise_through_json_attrs() -> None:
    error = AuthError(
        "login refused", hint="check the password", details={"reply": Inner(535, "x")}
    )
    assert to_data(error) == {
        "code": "auth_failed",
        "message": "login refused",
        "hint": "check the password",
        "details": {"reply": {"code": 535, "message": "x", "shout": "X"}},
    }
    assert to_data(MailctlError("bug")) == {
        "code": "internal_error", "message": "bug", "hint": None, "details": {},
    }  # fmt: skip


FLOATS = st.floats(allow_nan=True, allow_infinity=True)


@given(st.dictionaries(st.text(), FLOATS), st.lists(FLOATS))
def test_output_is_always_valid_json(timings: dict[str, float], edges: list[float]) -> None:
    @dataclass
    class Report:
        timings: dict[str, float] = field(metadata=SECONDS)
        edges: list[float] = field(metadata=SECONDS)
        raw: list[float] = field(default_factory=list)

    data = to_data(Report(timings, edges, edges))
    text = json.dumps(data, allow_nan=False)  # NaN/inf became null
    assert json.loads(text) == data
