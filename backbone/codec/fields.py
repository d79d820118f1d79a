"""The fields of a record: each schema field's kind, and the dataclass field it maps onto.

A `Kind` is what the codec needs to know of a field's Avro type (its tag, nullability, enum
symbols, decimal scale and precision); kinds the generated and compiled paths do not handle
are tagged ``other`` and left to fastavro. `to_wire` and `from_wire` convert values for the
fastavro (reference) path; `RECORD_TYPES` names the dataclass of each record.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from backbone.codec.wire import (
    EPOCH,
    Invalid,
    int_bytes,
    long_bytes,
    make_decimal_from,
    make_decimal_raw,
    timestamp_micros,
)
from backbone.domain.events import Alert, MarketMark, OrderEvent

Record = OrderEvent | MarketMark | Alert

#: Avro full name -> dataclass. The short name (after the last dot) is what the API reports.
RECORD_TYPES: dict[str, type] = {
    "trading.backbone.OrderEvent": OrderEvent,
    "trading.backbone.MarketMark": MarketMark,
    "trading.backbone.Alert": Alert,
}


# Field kinds: what the fast paths and the conversions need to know about a field's type

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


@dataclass(frozen=True, slots=True)
class Kind:
    """The shape of a field type. tag: string, long, int, boolean, double, float, bytes,
    decimal, timestamp-micros, enum, or other (anything the fast paths do not handle)."""

    tag: str
    nullable: bool = False  # ["null", T]
    symbols: tuple[str, ...] = ()  # enum
    enum_default: str | None = None  # enum
    scale: int = 0  # decimal
    precision: int = 0  # decimal

    def same_shape(self, other: Kind) -> bool:
        """Same wire layout and Python type, ignoring enum symbols (they resolve by name)."""
        return (self.tag, self.nullable, self.scale, self.precision) == (
            other.tag,
            other.nullable,
            other.scale,
            other.precision,
        )

    def describe(self) -> str:
        base = {
            "string": "str",
            "long": "int (64-bit)",
            "int": "int (32-bit)",
            "boolean": "bool",
            "double": "float",
            "float": "float",
            "bytes": "bytes",
            "decimal": f"Decimal with at most {self.scale} fractional digits and "
                       f"{self.precision - self.scale} integer digits",
            "timestamp-micros": "timezone-aware datetime",
            "enum": f"one of {', '.join(self.symbols)}",
        }.get(self.tag, "a value of the schema's type")
        return f"{base} or None" if self.nullable else base


class _Named:
    """Named types (enums, records, fixed) defined so far while walking one schema."""

    def __init__(self) -> None:
        self.types: dict[str, dict[str, Any]] = {}

    def resolve(self, name: str, namespace: str) -> dict[str, Any] | None:
        full = name if "." in name else f"{namespace}.{name}" if namespace else name
        return self.types.get(full) or self.types.get(name)

    def define(self, t: dict[str, Any], namespace: str) -> str:
        name = t["name"]
        ns = t.get("namespace", namespace)
        full = name if "." in name else f"{ns}.{name}" if ns else name
        self.types[full] = t
        return ns if "." not in name else name.rpartition(".")[0]


def _kind_of(t: Any, namespace: str, named: _Named) -> Kind:
    """Classify a field type, registering named types it defines."""
    if isinstance(t, list):
        for branch in t:  # register named types defined inside the union
            _kind_of(branch, namespace, named)
        if len(t) == 2 and t[0] == "null":
            inner = _kind_of(t[1], namespace, named)
            if inner.tag != "other" and not inner.nullable:
                return dataclasses.replace(inner, nullable=True)
        return Kind("other")
    if isinstance(t, str):
        if t in _PRIMITIVES:
            return Kind(t) if t != "null" else Kind("other")
        ref = named.resolve(t, namespace)
        return _kind_of_named(ref) if ref is not None else Kind("other")
    if isinstance(t, dict):
        type_name = t.get("type")
        logical = t.get("logicalType")
        if type_name == "bytes" and logical == "decimal" and isinstance(t.get("precision"), int):
            return Kind("decimal", scale=int(t.get("scale", 0)), precision=t["precision"])
        if type_name == "long" and logical == "timestamp-micros":
            return Kind("timestamp-micros")
        if type_name in ("enum", "record", "error", "fixed"):
            ns = named.define(t, namespace)
            if type_name == "record":
                for f in t.get("fields", []):
                    _kind_of(f["type"], ns, named)
            return _kind_of_named(t)
        if isinstance(type_name, str) and type_name in _PRIMITIVES and logical is None:
            return _kind_of(type_name, namespace, named)
        if type_name in ("array", "map"):
            _kind_of(t.get("items", t.get("values")), namespace, named)
    return Kind("other")


def _kind_of_named(t: dict[str, Any]) -> Kind:
    if t.get("type") == "enum":
        return Kind("enum", symbols=tuple(t["symbols"]), enum_default=t.get("default"))
    return Kind("other")


@dataclass(frozen=True, slots=True)
class SchemaField:
    name: str
    kind: Kind
    has_default: bool
    default: Any  # the JSON default as written


def fields_of(schema: dict[str, Any]) -> list[SchemaField]:
    named = _Named()
    ns = named.define(schema, "")
    out = []
    for f in schema["fields"]:
        out.append(SchemaField(f["name"], _kind_of(f["type"], ns, named), "default" in f, f.get("default")))
    return out


def strip_converted_logical_types(t: Any) -> Any:
    """The schema fastavro sees: the logical types this module converts itself become plain."""
    if isinstance(t, list):
        return [strip_converted_logical_types(x) for x in t]
    if isinstance(t, dict):
        if (t.get("type"), t.get("logicalType")) in (("bytes", "decimal"), ("long", "timestamp-micros")):
            return t["type"]
        out = dict(t)
        if "fields" in out:
            out["fields"] = [dict(f, type=strip_converted_logical_types(f["type"])) for f in out["fields"]]
        for key in ("items", "values"):
            if key in out:
                out[key] = strip_converted_logical_types(out[key])
        return out
    return t


# The dataclass side

PY_TYPE_OF_TAG: dict[str, type] = {
    "string": str,
    "long": int,
    "int": int,
    "boolean": bool,
    "double": float,
    "float": float,
    "bytes": bytes,
    "decimal": Decimal,
    "timestamp-micros": datetime,
}


def annotation_parts(annotation: Any) -> tuple[Any, bool]:
    """(inner type, nullable) of `T` or `T | None` / `Optional[T]`."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(annotation))
        return (args[0] if len(args) == 1 else annotation), nullable
    return annotation, False


@functools.cache
def dataclass_fields(cls: type) -> dict[str, tuple[Any, bool, dataclasses.Field]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (*annotation_parts(hints[f.name]), f) for f in dataclasses.fields(cls)}


def has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


# Values of the reference (fastavro) path and of schema defaults


def to_wire(kind: Kind, value: Any) -> Any:
    """Python value -> what fastavro writes for the stripped schema (the reference path).

    Validates like the fast path and says precisely why a value is refused (`Invalid`).
    """
    if value is None or kind.tag == "other":
        return value
    tag = kind.tag
    if tag == "decimal":
        return make_decimal_raw(kind.scale, kind.precision)(value)
    if tag == "timestamp-micros":
        if not isinstance(value, datetime):
            raise Invalid(f"expected a timezone-aware datetime, got {type(value).__name__}")
        return timestamp_micros(value)
    if tag == "enum":
        if not isinstance(value, str) or value not in kind.symbols:
            raise Invalid(f"{value!r} is not one of {', '.join(kind.symbols)}")
        return str(value)
    if tag == "string":
        if not isinstance(value, str):
            raise Invalid(f"expected str, got {type(value).__name__}")
        try:
            value.encode()
        except UnicodeEncodeError as e:
            raise Invalid(f"not encodable as UTF-8 ({e.reason}; a lone surrogate?)") from None
        return value
    if tag in ("long", "int"):
        if not isinstance(value, int):
            raise Invalid(f"expected int, got {type(value).__name__}")
        (long_bytes if tag == "long" else int_bytes)(value)
        return value
    if tag == "boolean" and not isinstance(value, bool):
        raise Invalid(f"expected bool, got {type(value).__name__}")
    if tag in ("double", "float") and not isinstance(value, (float, int)):
        raise Invalid(f"expected float, got {type(value).__name__}")
    if tag == "bytes" and not isinstance(value, bytes):
        raise Invalid(f"expected bytes, got {type(value).__name__}")
    return value


def from_wire(kind: Kind, value: Any, py_type: Any) -> Any:
    """What fastavro read with the stripped schema -> Python value (the reference path)."""
    if value is None or kind.tag == "other":
        return value
    if kind.tag == "decimal":
        return make_decimal_from(kind.scale, kind.precision)(value)
    if kind.tag == "timestamp-micros":
        return EPOCH + timedelta(0, 0, value)
    if kind.tag == "enum" and isinstance(py_type, type) and issubclass(py_type, enum.Enum):
        return py_type(value)
    return value


def default_value(kind: Kind, default: Any, py_type: Any) -> Any:
    """A schema field default (JSON) as a Python value."""
    if default is None:
        return None
    if kind.tag == "decimal":
        return from_wire(kind, default.encode("latin-1"), py_type)  # Avro JSON bytes: code points 0-255
    return from_wire(kind, default, py_type)
