"""Results -> the JSON `data` of the envelope, by one naming convention (stdlib only).

The convention (README "JSON output"), so no result writes its own `to_json`:
- A dataclass becomes an object whose keys are its field names, in order, followed by the
  computed attributes its `JSON_ATTRS` class variable names. Any other object (an exception)
  is serialised only through `JSON_ATTRS`.
- `field(metadata=meta(...))` adjusts one field: `key=` renames it (`from` is a keyword),
  `skip=True` leaves it out, `seconds=True` marks a duration held in seconds, `digits=` rounds
  a float, `flatten=True` merges a nested object's keys into this one. The metadata is a plain
  dict (`{"json": False}`, `{"json": "from"}`, `{"json_unit": "s"}`, `{"json_digits": 1}`,
  `{"json_flatten": True}`), so the stdlib-only leaves (models, errors) can use it without an
  import. A `JSON_ATTRS` entry is a name or a `(name, meta(...))` pair.
- Durations: one unit everywhere, milliseconds, a float rounded to the microsecond, and the unit
  is in the key: a `seconds` field `elapsed` is written `elapsed_ms`. That holds for a number, a
  list of them (`edges_ms`) and a map of names to them (`timings_ms: {"connect": 1.2}`).
- Rates are messages per second in keys named `qps` (or `*_qps`): a naming rule for results.
- Enums are written as their value, paths as text, datetimes in ISO 8601, mappings as objects
  with text keys, tuples, lists and sets as arrays (sets sorted).
- None is kept as null: every key of a result is always present, so scripts and the contract
  tests see one key set. NaN and infinities (no JSON form) are null too.
- Bytes are never written (a message body or a secret has no place in a report): a bytes value
  raises TypeError, so such a field must say `skip=True`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any, Final

__all__ = ["SECONDS", "SKIP", "JsonAttrs", "meta", "to_data"]

# The metadata keys (plain values, see the module docstring).
_KEY: Final = "json"  # False: left out; a str: the JSON key
_UNIT: Final = "json_unit"  # "s": a duration in seconds, written in milliseconds as <key>_ms
_DIGITS: Final = "json_digits"  # a float rounded to this many decimals
_FLATTEN: Final = "json_flatten"  # a nested object's keys merged into this one

# The type of a `JSON_ATTRS` class variable: names, or (name, meta(...)) pairs.
JsonAttrs = tuple[str | tuple[str, Mapping[str, Any]], ...]
_Container = Mapping[Any, Any] | list[Any] | tuple[Any, ...] | set[Any] | frozenset[Any]


@dataclasses.dataclass(frozen=True)
class _Spec:
    key: str | None = None
    seconds: bool = False
    digits: int | None = None
    flatten: bool = False


def meta(
    *,
    key: str | None = None,
    skip: bool = False,
    seconds: bool = False,
    digits: int | None = None,
    flatten: bool = False,
) -> dict[str, Any]:
    """Field metadata for `dataclasses.field(metadata=...)` or a `JSON_ATTRS` entry."""
    out: dict[str, Any] = {}
    if skip or key is not None:
        out[_KEY] = False if skip else key
    if seconds:
        out[_UNIT] = "s"
    if digits is not None:
        out[_DIGITS] = digits
    if flatten:
        out[_FLATTEN] = True
    return out


SECONDS: Final = meta(seconds=True)
SKIP: Final = meta(skip=True)


def to_data(value: object) -> Any:
    """Return `value` as JSON-ready data (dict, list, str, int, float, bool, None).

    Raises TypeError for bytes and for objects the convention does not cover.
    """
    if isinstance(value, Enum):
        value = value.value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (Mapping, list, tuple, set, frozenset)):
        return _container(value)
    if isinstance(value, os.PathLike):
        return os.fsdecode(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return _object(value)


def _container(
    value: Mapping[Any, Any] | list[Any] | tuple[Any, ...] | set[Any] | frozenset[Any],
) -> Any:
    if isinstance(value, Mapping):
        return {_map_key(key): to_data(item) for key, item in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((to_data(item) for item in value), key=repr)
    return [to_data(item) for item in value]


def _object(value: object) -> dict[str, Any]:
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("bytes are never written to JSON: mark the field meta(skip=True)")
    plan = _plan(type(value))
    if plan is None:
        raise TypeError(f"{type(value).__name__} is not a dataclass and has no JSON_ATTRS")
    out: dict[str, Any] = {}
    for attribute, key, spec in plan:
        item = getattr(value, attribute)
        if spec.flatten:
            if item is not None:
                nested = to_data(item)
                if not isinstance(nested, dict):
                    raise TypeError(f"{attribute}: only an object can be flattened")
                out.update(nested)
            continue
        out[key] = _convert(item, spec)
    return out


def _convert(item: object, spec: _Spec) -> Any:
    if spec.seconds:
        return _milliseconds(item)
    if spec.digits is not None and isinstance(item, float) and math.isfinite(item):
        return round(item, spec.digits)
    return to_data(item)


def _milliseconds(item: object) -> Any:
    if item is None:
        return None
    if isinstance(item, Mapping):
        return {_map_key(key): _milliseconds(value) for key, value in item.items()}
    if isinstance(item, (list, tuple)):
        return [_milliseconds(value) for value in item]
    if isinstance(item, (int, float)) and not isinstance(item, bool):
        try:
            milliseconds = item * 1000.0  # may overflow to inf (or OverflowError for an int)
        except OverflowError:
            return None
        return round(milliseconds, 3) if math.isfinite(milliseconds) else None
    raise TypeError(f"a duration must be a number of seconds, got {type(item).__name__}")


def _map_key(key: object) -> str:
    if isinstance(key, Enum):
        key = key.value
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    raise TypeError(f"a JSON object key must be text or an integer, got {type(key).__name__}")


_Plan = tuple[tuple[str, str, _Spec], ...]
_PLANS: dict[type, _Plan | None] = {}


def _plan(cls: type) -> _Plan | None:
    """(attribute, key, spec) for each member written, computed once per class."""
    if cls not in _PLANS:
        _PLANS[cls] = _make_plan(cls)
    return _PLANS[cls]


def _make_plan(cls: type) -> _Plan | None:
    entries: list[tuple[str, dict[str, Any] | Mapping[str, Any]]] = []
    if dataclasses.is_dataclass(cls):
        entries += [(f.name, f.metadata) for f in dataclasses.fields(cls)]
    extra = getattr(cls, "JSON_ATTRS", None)
    if extra is None and not dataclasses.is_dataclass(cls):
        return None
    for entry in extra or ():
        name, metadata = (entry, {}) if isinstance(entry, str) else entry
        entries.append((name, metadata))
    plan: list[tuple[str, str, _Spec]] = []
    for name, metadata in entries:
        key = metadata.get(_KEY, name)
        if key is False:
            continue
        unit = metadata.get(_UNIT)
        if not isinstance(key, str) or unit not in (None, "s"):
            raise TypeError(f"{cls.__name__}.{name}: bad JSON metadata {dict(metadata)!r}")
        spec = _Spec(
            key=key,
            seconds=unit == "s",
            digits=metadata.get(_DIGITS),
            flatten=bool(metadata.get(_FLATTEN)),
        )
        plan.append((name, f"{key}_ms" if spec.seconds else key, spec))
    keys = [key for _, key, spec in plan if not spec.flatten]
    if len(keys) != len(set(keys)):
        raise TypeError(f"{cls.__name__}: two members are written under the same JSON key")
    return tuple(plan)
