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
    convert = _BY_TYPE.get(type(value))
    if convert is not None:
        return convert(value)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: to_plain(getattr(value, name)) for name in _slots(type(value))}
    for kind, convert in _BY_BASE:
        if isinstance(value, kind):
            return convert(value)
    raise TypeError(f"cannot convert {type(value).__name__} to a plain value")


def _identity(value: Any) -> Any:
    return value


_BY_BASE: tuple[tuple[type | types.UnionType, Any], ...] = (
    (bool | int | str, _identity),
    (Decimal, str),
    (datetime, datetime.isoformat),
    (frozenset | set, lambda v: sorted(to_plain(x) for x in v)),
    (tuple | list, lambda v: [to_plain(x) for x in v]),
    (dict, lambda v: {str(k): to_plain(x) for k, x in v.items()}),
)
# Exact-type dispatch first: the per-event writer serializes order states on the hot path.
_BY_TYPE: dict[type, Any] = {type(None): _identity, bool: _identity, int: _identity, str: _identity,
                             Decimal: str, datetime: datetime.isoformat,
                             tuple: _BY_BASE[4][1], list: _BY_BASE[4][1], frozenset: _BY_BASE[3][1],
                             set: _BY_BASE[3][1], dict: _BY_BASE[5][1]}


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


_MISSING = object()


@functools.cache
def _replacer(cls: type) -> Any:
    """A `replace` specialised for one class: straight-line slot copies, no loops or dicts."""
    names = _slots(cls)
    params = ", ".join(f"{n}=_M" for n in names)
    body = "".join(f"    _set(new, {n!r}, o.{n} if {n} is _M else {n})\n" for n in names)
    source = f"def replace(o, *, {params}):\n    new = _new(_cls)\n{body}    return new\n"
    namespace: dict[str, Any] = {"_M": _MISSING, "_new": object.__new__, "_set": object.__setattr__, "_cls": cls}
    exec(compile(source, f"<replace {cls.__name__}>", "exec"), namespace)  # noqa: S102 - generated from field names
    return namespace["replace"]


def fast_replace(obj: T, /, **changes: Any) -> T:
    """`dataclasses.replace` for the frozen, slotted domain dataclasses (none has __post_init__),
    several times faster: it copies the slots instead of calling the generated __init__, which
    matters on the projector's per-event path. An unknown field name raises TypeError."""
    return _replacer(type(obj))(obj, **changes)
