"""Exact, lossless conversion of frozen domain dataclasses to plain JSON values and back.

Used to persist state-machine state (orders' `state` column, snapshots). Decimals travel as
strings (never floats), datetimes as ISO-8601 with offset, enums as their values, tuples as
lists, frozensets as sorted lists. Reading is driven by the dataclass's type hints.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

T = TypeVar("T")


def to_plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, frozenset | set):
        return sorted(to_plain(v) for v in value)
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    raise TypeError(f"cannot convert {type(value).__name__} to a plain value")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_plain(tp: Any, data: Any) -> Any:
    """Rebuild a value of type `tp` (a dataclass or any annotation used in one) from plain data."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if data is None:
            return None
        return from_plain(args[0], data)
    if tp is Any:
        return data
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_plain(args[0], v) for v in data)
        return tuple(from_plain(a, v) for a, v in zip(args, data, strict=True))
    if origin in (frozenset, set):
        (arg,) = typing.get_args(tp)
        return origin(from_plain(arg, v) for v in data)
    if origin is list:
        (arg,) = typing.get_args(tp)
        return [from_plain(arg, v) for v in data]
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        return {from_plain(key_t, k): from_plain(val_t, v) for k, v in data.items()}
    if origin is typing.Literal:
        return data
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            hints = _hints(tp)
            kwargs = {f.name: from_plain(hints[f.name], data[f.name])
                      for f in dataclasses.fields(tp) if f.init and f.name in data}
            return tp(**kwargs)
        if issubclass(tp, enum.Enum):
            return tp(data)
        if tp is Decimal:
            return Decimal(data)
        if tp is datetime:
            return datetime.fromisoformat(data)
        if tp in (int, str, bool):
            return tp(data)
    raise TypeError(f"cannot rebuild {tp!r} from plain data")


@functools.cache
def _slots(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def fast_replace(obj: T, /, **changes: Any) -> T:
    """`dataclasses.replace` for the frozen, slotted domain dataclasses (no __post_init__),
    several times faster: it copies the slots instead of calling the generated __init__, which
    matters on the projector's per-event path."""
    cls = type(obj)
    new = object.__new__(cls)
    set_ = object.__setattr__
    for name in _slots(cls):
        set_(new, name, changes[name] if name in changes else getattr(obj, name))
    if len(changes) and not set(changes) <= set(_slots(cls)):
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(set(changes) - set(_slots(cls)))}")
    return new
