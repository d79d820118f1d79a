"""Exact, lossless conversion of frozen domain dataclasses to plain JSON values and back.

Used to persist state-machine state (orders' `state` column, snapshots). Decimals travel as
strings (never floats), datetimes as ISO-8601 with offset, enums as their values, tuples as
lists, frozensets as sorted lists. Reading is driven by the dataclass's type hints.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from backbone.compiled import compiled

T = TypeVar("T")

#: datetime.isoformat, formatted in C for UTC datetimes where the extension is built (~10x faster)
_isoformat: Callable[[datetime], str] = compiled("isoformat") or datetime.isoformat


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


def _dataclass_encoder(cls: type) -> Callable[[Any], dict[str, Any]]:
    """`to_plain` of a dataclass as one generated dict display: the common conversions (identity,
    enum value, Decimal text, ISO time, optional of those) inline, the rest through their
    `encoder_for`. The per-event writer serializes an order's state per changed order."""
    hints = typing.get_type_hints(cls)
    namespace: dict[str, Any] = {"_str": str, "_iso": _isoformat}

    def convert(tp: Any, i: int, value: str) -> str:
        if encoder_for(tp) is _identity:
            return value
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return f"{value}._value_"  # what .value returns, without the descriptor
        if tp is Decimal:
            return f"_str({value})"
        if tp is datetime:
            return f"_iso({value})"
        namespace[f"_c{i}"] = encoder_for(tp)
        return f"_c{i}({value})"

    items = []
    for i, f in enumerate(dataclasses.fields(cls)):
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
            expr = f"None if (x{i} := v.{f.name}) is None else {convert(args[0], i, f'x{i}')}"
        else:
            expr = convert(tp, i, f"v.{f.name}")
        items.append(f"{f.name!r}: {expr}")
    source = "def plain(v):\n    return {" + ", ".join(items) + "}\n"
    exec(compile(source, f"<plain encoder {cls.__name__}>", "exec"), namespace)  # noqa: S102 - from field names
    plain: Callable[[Any], dict[str, Any]] = namespace["plain"]
    return plain


_BY_BASE: tuple[tuple[type | types.UnionType, Any], ...] = (
    (bool | int | str, _identity),
    (Decimal, str),
    (datetime, _isoformat),
    (frozenset | set, lambda v: sorted(to_plain(x) for x in v)),
    (tuple | list, lambda v: [to_plain(x) for x in v]),
    (dict, lambda v: {str(k): to_plain(x) for k, x in v.items()}),
    (collections.abc.Sequence, lambda v: [to_plain(x) for x in v]),  # e.g. a position's History
)
# Exact-type dispatch first: the per-event writer serializes order states on the hot path.
_BY_TYPE: dict[type, Any] = {type(None): _identity, bool: _identity, int: _identity, str: _identity,
                             Decimal: str, datetime: _isoformat,
                             tuple: _BY_BASE[4][1], list: _BY_BASE[4][1], frozenset: _BY_BASE[3][1],
                             set: _BY_BASE[3][1], dict: _BY_BASE[5][1]}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_plain(tp: Any, data: Any) -> Any:
    """Rebuild a value of type `tp` (a dataclass or any annotation used in one) from plain data."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        return from_plain([a for a in typing.get_args(tp) if a is not type(None)][0], data)
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


def replacer(cls: type[T]) -> Callable[..., T]:
    """`fast_replace` specialised for one class (hot paths bind it once): straight-line slot
    copies into a new object (see `_generated`)."""
    klass: type = cls  # type[T] is hashable, but typeshed does not say so (mypy#11470)
    made: Callable[..., T] = _replacer(klass)
    return made


# The generated functions are cached per class untyped (mypy cannot type a functools.cache of a
# generic function); the typed wrappers above and below give them back their class.
@functools.cache
def _replacer(cls: type) -> Callable[..., Any]:
    names = _slots(cls)
    params = ", ".join(f"{n}=_M" for n in names)
    values = [f"o.{n} if {n} is _M else {n}" for n in names]
    return _generated(cls, f"def replace(o, *, {params}):", names, values, f"<replace {cls.__name__}>",
                      {"_M": _MISSING})


def _twin(cls: type) -> type | None:
    """A class with exactly `cls`'s own slots and no behaviour, whose objects may become `cls`
    objects by `__class__` assignment (which Python allows between classes of the same slot
    layout); None for a class without such a layout."""
    slots = cls.__dict__.get("__slots__")
    if slots is None or cls.__bases__ != (object,) or isinstance(slots, str):
        return None
    twin = type(f"{cls.__name__}Fields", (), {"__slots__": tuple(slots), "__module__": cls.__module__})
    probe: Any = object.__new__(twin)
    try:
        probe.__class__ = cls
    except TypeError:  # not the same layout after all
        return None
    return twin


def _generated(cls: type, head: str, names: tuple[str, ...], values: list[str], filename: str,
               namespace: dict[str, Any]) -> Callable[..., Any]:
    """A function `head` that returns a new `cls` whose fields `names` hold `values` (source
    expressions), without calling `__init__`.

    A frozen dataclass refuses attribute stores (its __setattr__ raises), and object.__setattr__
    for each field costs a call with an argument tuple: a 21-field order state took ~3x as long to
    build that way (and the tuples made the young collections more frequent). So its fields are
    stored into an object of its `_twin`, which then becomes a `cls`: plain attribute stores and
    one `__class__` assignment, all through Python's own rules. A class that takes attribute
    stores is filled directly; anything else field by field through object.__setattr__."""
    namespace.update({"_new": object.__new__, "_cls": cls, "_set": object.__setattr__})
    twin = None if cls.__setattr__ is object.__setattr__ else _twin(cls)  # type: ignore[comparison-overlap]
    lines = [head]
    if twin is not None or cls.__setattr__ is object.__setattr__:  # type: ignore[comparison-overlap]
        namespace["_twin"] = twin or cls
        lines.append("    new = _new(_twin)")
        lines += [f"    new.{n} = {v}" for n, v in zip(names, values, strict=True)]
        if twin is not None:
            lines.append("    new.__class__ = _cls")
    else:
        lines.append("    new = _new(_cls)")
        lines += [f"    _set(new, {n!r}, {v})" for n, v in zip(names, values, strict=True)]
    lines += ["    return new", ""]
    exec(compile("\n".join(lines), filename, "exec"), namespace)  # noqa: S102 - generated from field names
    made: Callable[..., Any] = namespace[head[4:head.index("(")]]
    return made


def fast_replace(obj: T, /, **changes: Any) -> T:
    """`dataclasses.replace` for the frozen, slotted domain dataclasses (none has __post_init__),
    several times faster: it copies the slots instead of calling the generated __init__, which
    matters on the projector's per-event path. An unknown field name raises TypeError."""
    klass: type = type(obj)
    replaced: T = _replacer(klass)(obj, **changes)
    return replaced


def builder(cls: type[T]) -> Callable[..., T]:
    """``builder(cls)(*values)`` is ``cls(*values)`` (every field, in field order) for the
    frozen, slotted domain dataclasses, without the per-field object.__setattr__ of a frozen
    __init__ (hot paths: a position or an execution per fill). Any other class: cls itself."""
    klass: type = cls
    made: Callable[..., T] = _builder(klass)
    return made


@functools.cache
def _builder(cls: type) -> Callable[..., Any]:
    if ("__slots__" not in cls.__dict__ or hasattr(cls, "__post_init__")
            or not all(f.init for f in dataclasses.fields(cls))):
        return cls
    return slots_builder(cls, _slots(cls))


def slots_builder(cls: type[T], names: tuple[str, ...]) -> Callable[..., T]:
    """``slots_builder(cls, names)(*values)``: a new `cls` (any class with `__slots__` and no
    `__dict__`) whose slots `names` hold `values`, set without calling `__init__` (`_generated`)."""
    return _generated(cls, f"def build({', '.join(names)}):", names, list(names),
                      f"<build {cls.__name__}>", {})


# -- compiled per type ----------------------------------------------------------------------------
#
# `from_plain` and `to_plain` inspect every value; restoring a snapshot converts every field of
# every order, so a large partition took seconds. `decoder_for(tp)` and `encoder_for(tp)` build,
# once per type, a function that does the same conversion with the per-field work decided in
# advance. Same results (tests/unit/projections/test_snapshots.py checks it on a session).

@functools.cache
def decoder_for(tp: Any) -> Callable[[Any], Any]:
    """`from_plain(tp, …)` with the per-field work decided once per type (same result)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = decoder_for([a for a in typing.get_args(tp) if a is not type(None)][0])
        return lambda v: None if v is None else inner(v)
    if tp is Any or origin is typing.Literal or tp in (str, int, bool):
        return _identity  # JSON already carries these types (to_plain wrote them)
    if origin is tuple or origin is collections.abc.Sequence:  # a Sequence comes back as a tuple
        args = typing.get_args(tp)
        if origin is collections.abc.Sequence or (len(args) == 2 and args[1] is Ellipsis):
            item = decoder_for(args[0])
            return (lambda v: tuple(v)) if item is _identity else (lambda v: tuple(map(item, v)))
        items = [decoder_for(a) for a in args]
        return lambda v: tuple(f(x) for f, x in zip(items, v, strict=True))
    if origin in (frozenset, set):
        item = decoder_for(typing.get_args(tp)[0])
        return (lambda v: origin(v)) if item is _identity else (lambda v: origin(map(item, v)))
    if origin is list:
        item = decoder_for(typing.get_args(tp)[0])
        return lambda v: list(map(item, v))
    if origin is dict:
        key_f, val_f = (decoder_for(a) for a in typing.get_args(tp))
        return lambda v: {key_f(k): val_f(x) for k, x in v.items()}
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return _dataclass_decoder(tp)
        if issubclass(tp, enum.Enum):
            members = {m.value: m for m in tp}
            return lambda v: members[v] if v in members else tp(v)
        if tp is Decimal:
            return Decimal
        if tp is datetime:
            return datetime.fromisoformat
    return functools.partial(from_plain, tp)


def _dataclass_decoder(cls: type) -> Callable[[dict[str, Any]], Any]:
    """Build `cls` from its plain dict. For the frozen, slotted domain classes (no
    __post_init__, every field in __init__) a generated function sets the slots directly, with
    the identity conversions inlined: restoring a large snapshot builds hundreds of thousands of
    these. A dict that lacks a field (an older payload) takes the general path, which lets the
    field's default apply."""
    hints = typing.get_type_hints(cls)
    all_fields = dataclasses.fields(cls)
    fields = [(f.name, decoder_for(hints[f.name])) for f in all_fields if f.init]

    def general(v: dict[str, Any]) -> Any:
        return cls(**{n: f(v[n]) for n, f in fields if n in v})

    if "__slots__" not in cls.__dict__ or hasattr(cls, "__post_init__") or len(fields) != len(all_fields):
        return general
    namespace: dict[str, Any] = {"_build": builder(cls), "_general": general}

    def convert(tp: Any, i: int, value: str) -> str:
        # enums by a dict of their values: an unknown value raises KeyError, and the general
        # path then raises what from_plain raises
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            namespace[f"_m{i}"] = {m.value: m for m in tp}
            return f"_m{i}[{value}]"
        decode = decoder_for(tp)
        if decode is _identity:
            return value
        namespace[f"_c{i}"] = decode
        return f"_c{i}({value})"

    values = []
    for i, (name, _convert) in enumerate(fields):
        tp = hints[name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
            values.append(f"None if (x{i} := v[{name!r}]) is None else {convert(args[0], i, f'x{i}')}")
        else:
            values.append(convert(tp, i, f"v[{name!r}]"))
    lines = ["def build(v):", "    try:", f"        return _build({', '.join(values)})",
             "    except KeyError:", "        return _general(v)", ""]
    exec(compile("\n".join(lines), f"<plain decoder {cls.__name__}>", "exec"), namespace)  # noqa: S102
    build: Callable[[dict[str, Any]], Any] = namespace["build"]
    return build


@functools.cache
def encoder_for(tp: Any) -> Callable[[Any], Any]:
    """`to_plain` with the per-field work decided once per type (same output)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = encoder_for([a for a in typing.get_args(tp) if a is not type(None)][0])
        return lambda v: None if v is None else inner(v)
    if origin is typing.Literal or tp in (str, int, bool):
        return _identity
    if origin is tuple or origin is collections.abc.Sequence:
        args = typing.get_args(tp)
        if origin is collections.abc.Sequence or (len(args) == 2 and args[1] is Ellipsis):
            item = encoder_for(args[0])
            return (lambda v: list(v)) if item is _identity else (lambda v: list(map(item, v)))
    if origin in (frozenset, set):
        item = encoder_for(typing.get_args(tp)[0])
        return (lambda v: sorted(v)) if item is _identity else (lambda v: sorted(map(item, v)))
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return _dataclass_encoder(tp)
        if issubclass(tp, enum.Enum):
            return lambda v: v.value
        if tp is Decimal:
            return str
        if tp is datetime:
            return _isoformat
    return to_plain
