"""Avro codec: versioned schemas, single-object encoding, a fast path and a fastavro path.

Wire format (Avro "single-object encoding", Avro spec 1.12 section "Single-object encoding")::

    offset 0  2 bytes   marker C3 01
    offset 2  8 bytes   CRC-64-AVRO (Rabin) fingerprint of the writer schema's Parsing
                        Canonical Form, little-endian
    offset 10 ...       Avro binary encoding of the record with the writer schema

Every record therefore names its writer schema. Schemas live in ``schemas/<dir>/v<N>.avsc``
(see ``schemas/__init__.py``); a published version is never edited or removed. The codec
loads every version at construction, **encodes** with the newest version of the record's
schema and **decodes** any version it knows: it finds the writer schema by fingerprint and
reads with the newest version of that record as reader schema (Avro schema resolution), so
a consumer decodes every version ever published. Roll-out order: consumers first, then
producers (BACKWARD compatibility, checked by ``backbone schemas check``); an older codec
cannot decode data written with a newer version and says so (unknown fingerprint).

Value mapping (schema type -> Python):

* ``bytes`` + ``decimal(precision, scale)`` <-> ``Decimal``. Encoding never rounds: a value
  that is not exactly representable with ``scale`` fractional digits (``Decimal("1.123456789")``
  at scale 8) or has more than ``precision - scale`` integer digits raises `EncodeError`; fewer
  digits are scaled (``Decimal("1.5")`` encodes as 150000000 at scale 8). Trailing zeros beyond
  the scale are fine (``Decimal("1.500000000")`` is exactly 1.5). Decoded values carry exactly
  ``scale`` fractional digits (``Decimal("1.50000000")``), numerically equal to the original.
* ``long`` + ``timestamp-micros`` <-> timezone-aware ``datetime``. Naive datetimes are refused;
  aware ones in any zone are converted to UTC; decoded values are UTC with microseconds.
* ``enum`` <-> the ``StrEnum`` class of the dataclass field (symbols must equal its values).
* ``["null", T]`` with default null <-> ``T | None``; ``string``/``long``/``int``/``boolean``/
  ``double`` <-> ``str``/``int``/``int``/``bool``/``float``.

Records map onto the dataclasses of `backbone.domain.events` field by field (by name). The
newest schema of a record may carry a field the dataclass lacks only if the field has a
default (it is written as its default and dropped on decode), and the dataclass may carry a
field the schema lacks only if the field has a default there (decoding gives the default,
encoding a non-default value raises `EncodeError`: data would be lost). Anything else is a
`ConfigError` at construction.

Speed: the Avro body of flat records (the fields above) is written and read by Python code
generated per schema version at construction (``_FastCodecBuilder``), several times faster
than fastavro's per-field dispatch. Schemas using other shapes (nested records, arrays,
maps, non-null unions, ...) and old writer versions whose field types differ from the
reader's use fastavro ``schemaless_writer``/``schemaless_reader`` with schema resolution. The
two paths produce identical bytes and values (checked by the tests). Where the C extension
``backbone._speedups`` is built, a compiled Encoder/Decoder runs the same plan in front of each
generated function and falls back to it for anything but the plain case (same bytes, records
and errors; ``tests/unit/codec/test_compiled_codec.py``), 4-5x faster again.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import io
import json
import re
import struct
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import SchemaParseException, UnknownType, to_parsing_canonical_form
from fastavro.schema import fingerprint as _fastavro_fingerprint

from backbone.domain.events import Alert, MarketMark, OrderEvent
from backbone.errors import BackboneError, ConfigError, DecodeError

try:  # the compiled fast paths (backbone/_speedups.c); optional, see pyproject.toml
    from backbone import _speedups
except ImportError:  # pragma: no cover - built on every supported install with a C compiler
    _speedups = None  # type: ignore[assignment]

__all__ = [
    "MAGIC",
    "HEADER_SIZE",
    "RECORD_TYPES",
    "AvroCodec",
    "EncodeError",
    "Record",
    "SchemaFile",
    "LayoutProblem",
    "default_schemas_dir",
    "read_schemas_dir",
    "model_mismatches",
    "logical_type_changes",
    "bad_defaults",
    "canonical_fingerprint",
]

#: The two marker bytes that start every single-object-encoded record.
MAGIC = b"\xc3\x01"
#: Marker + 8-byte fingerprint.
HEADER_SIZE = 10

Record = OrderEvent | MarketMark | Alert

#: Avro full name -> dataclass. The short name (after the last dot) is what the API reports.
RECORD_TYPES: dict[str, type] = {
    "trading.backbone.OrderEvent": OrderEvent,
    "trading.backbone.MarketMark": MarketMark,
    "trading.backbone.Alert": Alert,
}

_VERSION_FILE = re.compile(r"v([1-9][0-9]*)\.avsc")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_MIN_LONG, _MAX_LONG = -(1 << 63), (1 << 63) - 1
_MIN_INT, _MAX_INT = -(1 << 31), (1 << 31) - 1
#: Exact decimal arithmetic for scaling (scaleb never rounds with MAX_PREC).
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


class EncodeError(BackboneError):
    """A record that cannot be encoded: wrong type, naive datetime, decimal needing rounding...

    Raised before anything is produced; `field` names the offending field (None when the
    record as a whole is the problem, e.g. not a known record type).
    """

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


class _Invalid(ValueError):
    """Internal: a value the fast paths refuse; the message says why (no field name)."""


# --------------------------------------------------------------------------------------------
# Schema files
# --------------------------------------------------------------------------------------------


def default_schemas_dir() -> Path:
    """The schemas shipped with the package (``schemas/``)."""
    from schemas import SCHEMAS_DIR

    return SCHEMAS_DIR


def canonical_fingerprint(canonical_form: str) -> bytes:
    """CRC-64-AVRO fingerprint of a Parsing Canonical Form, as the 8 little-endian wire bytes."""
    return bytes.fromhex(_fastavro_fingerprint(canonical_form, "CRC-64-AVRO"))


@dataclass(frozen=True, slots=True)
class SchemaFile:
    """One parsed ``<directory>/v<version>.avsc``."""

    directory: str
    version: int
    path: Path
    schema: dict[str, Any]  # the JSON as written (docs, logical types and all)
    fullname: str  # e.g. "trading.backbone.OrderEvent"
    canonical_form: str
    fingerprint: bytes  # 8 bytes, little-endian, as on the wire

    @property
    def name(self) -> str:
        return self.fullname.rpartition(".")[2]


@dataclass(frozen=True, slots=True)
class LayoutProblem:
    """A schemas-directory problem found while reading it (not a compatibility problem)."""

    directory: str  # record directory ("order_event"), or "" for the schemas dir itself
    version: int | None
    kind: str  # MISSING_DIR, BAD_FILE_NAME, PARSE_ERROR, VERSION_GAP, NAME_MISMATCH, NO_VERSIONS
    message: str


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def read_schemas_dir(schemas_dir: Path) -> tuple[dict[str, list[SchemaFile]], list[LayoutProblem]]:
    """Read every ``<dir>/v<N>.avsc`` under `schemas_dir`; never raises for file contents.

    Returns record directory -> its schema files ordered by version (only directories whose
    files all parsed and are numbered v1..vN without gaps), and the problems found: files not
    named ``v<N>.avsc``, files that do not parse as Avro, numbering gaps, a record whose name
    differs between versions or does not match its directory (``OrderEvent`` lives in
    ``order_event``), an empty directory.
    """
    schemas_dir = Path(schemas_dir)
    problems: list[LayoutProblem] = []
    result: dict[str, list[SchemaFile]] = {}
    if not schemas_dir.is_dir():
        problems.append(LayoutProblem("", None, "MISSING_DIR", f"schemas directory {schemas_dir} does not exist"))
        return result, problems
    for record_dir in sorted(p for p in schemas_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        files: dict[int, SchemaFile] = {}
        ok = True
        for path in sorted(record_dir.iterdir()):
            if path.suffix != ".avsc" or not path.is_file():
                continue  # READMEs and the like
            match = _VERSION_FILE.fullmatch(path.name)
            if match is None:
                problems.append(
                    LayoutProblem(
                        record_dir.name,
                        None,
                        "BAD_FILE_NAME",
                        f"{path}: schema files must be named v<N>.avsc (v1.avsc, v2.avsc, ...)",
                    )
                )
                ok = False
                continue
            version = int(match.group(1))
            try:
                files[version] = _parse_schema_file(record_dir.name, version, path)
            except (SchemaParseException, UnknownType, OSError, ValueError, TypeError, KeyError, AttributeError) as e:
                problems.append(
                    LayoutProblem(record_dir.name, version, "PARSE_ERROR", f"{path}: {type(e).__name__}: {e}")
                )
                ok = False
        if not files and ok:
            problems.append(LayoutProblem(record_dir.name, None, "NO_VERSIONS", f"{record_dir}: no v<N>.avsc files"))
            continue
        versions = sorted(files)
        expected = list(range(1, (versions[-1] if versions else 0) + 1))
        missing = sorted(set(expected) - set(files) - {p.version for p in problems if p.directory == record_dir.name})
        if missing:
            problems.append(
                LayoutProblem(
                    record_dir.name,
                    missing[0],
                    "VERSION_GAP",
                    f"{record_dir}: versions must be v1..vN without gaps; missing {', '.join(f'v{v}.avsc' for v in missing)}",
                )
            )
            ok = False
        names = {f.fullname for f in files.values()}
        if len(names) > 1:
            problems.append(
                LayoutProblem(
                    record_dir.name,
                    None,
                    "NAME_MISMATCH",
                    f"{record_dir}: versions name different records: {', '.join(sorted(names))}",
                )
            )
            ok = False
        for f in files.values():
            if _snake_case(f.name) != record_dir.name:
                problems.append(
                    LayoutProblem(
                        record_dir.name,
                        f.version,
                        "NAME_MISMATCH",
                        f"{f.path}: record {f.name} belongs in directory {_snake_case(f.name)}/, not {record_dir.name}/",
                    )
                )
                ok = False
        if ok:
            result[record_dir.name] = [files[v] for v in versions]
    return result, problems


def _parse_schema_file(directory: str, version: int, path: Path) -> SchemaFile:
    schema = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise ValueError("top-level schema must be an Avro record")
    parsed = parse_schema(schema, _write_hint=False)  # validates; raises on bad schemas
    canonical = to_parsing_canonical_form(parsed)
    return SchemaFile(
        directory=directory,
        version=version,
        path=path,
        schema=schema,
        fullname=parsed["name"],
        canonical_form=canonical,
        fingerprint=canonical_fingerprint(canonical),
    )


# --------------------------------------------------------------------------------------------
# Field kinds: what the fast paths and the conversions need to know about a field's type
# --------------------------------------------------------------------------------------------

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


@dataclass(frozen=True, slots=True)
class _Kind:
    """The shape of a field type. tag: string, long, int, boolean, double, float, bytes,
    decimal, timestamp-micros, enum, or other (anything the fast paths do not handle)."""

    tag: str
    nullable: bool = False  # ["null", T]
    symbols: tuple[str, ...] = ()  # enum
    enum_default: str | None = None  # enum
    scale: int = 0  # decimal
    precision: int = 0  # decimal

    def same_shape(self, other: _Kind) -> bool:
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
            "decimal": f"Decimal with at most {self.scale} fractional digits and {self.precision - self.scale} integer digits",
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


def _kind_of(t: Any, namespace: str, named: _Named) -> _Kind:
    """Classify a field type, registering named types it defines."""
    if isinstance(t, list):
        for branch in t:  # register named types defined inside the union
            _kind_of(branch, namespace, named)
        if len(t) == 2 and t[0] == "null":
            inner = _kind_of(t[1], namespace, named)
            if inner.tag != "other" and not inner.nullable:
                return dataclasses.replace(inner, nullable=True)
        return _Kind("other")
    if isinstance(t, str):
        if t in _PRIMITIVES:
            return _Kind(t) if t != "null" else _Kind("other")
        ref = named.resolve(t, namespace)
        return _kind_of_named(ref) if ref is not None else _Kind("other")
    if isinstance(t, dict):
        type_name = t.get("type")
        logical = t.get("logicalType")
        if type_name == "bytes" and logical == "decimal" and isinstance(t.get("precision"), int):
            return _Kind("decimal", scale=int(t.get("scale", 0)), precision=t["precision"])
        if type_name == "long" and logical == "timestamp-micros":
            return _Kind("timestamp-micros")
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
    return _Kind("other")


def _kind_of_named(t: dict[str, Any]) -> _Kind:
    if t.get("type") == "enum":
        return _Kind("enum", symbols=tuple(t["symbols"]), enum_default=t.get("default"))
    return _Kind("other")


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    kind: _Kind
    has_default: bool
    default: Any  # the JSON default as written


def _fields_of(schema: dict[str, Any]) -> list[_Field]:
    named = _Named()
    ns = named.define(schema, "")
    out = []
    for f in schema["fields"]:
        out.append(_Field(f["name"], _kind_of(f["type"], ns, named), "default" in f, f.get("default")))
    return out


def _strip_converted_logical_types(t: Any) -> Any:
    """The schema fastavro sees: the logical types this module converts itself become plain."""
    if isinstance(t, list):
        return [_strip_converted_logical_types(x) for x in t]
    if isinstance(t, dict):
        if (t.get("type"), t.get("logicalType")) in (("bytes", "decimal"), ("long", "timestamp-micros")):
            return t["type"]
        out = dict(t)
        if "fields" in out:
            out["fields"] = [dict(f, type=_strip_converted_logical_types(f["type"])) for f in out["fields"]]
        for key in ("items", "values"):
            if key in out:
                out[key] = _strip_converted_logical_types(out[key])
        return out
    return t


# --------------------------------------------------------------------------------------------
# Dataclass <-> schema model
# --------------------------------------------------------------------------------------------

_PY_TYPE_OF_TAG: dict[str, type] = {
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


def _annotation_parts(annotation: Any) -> tuple[Any, bool]:
    """(inner type, nullable) of `T` or `T | None` / `Optional[T]`."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(annotation))
        return (args[0] if len(args) == 1 else annotation), nullable
    return annotation, False


@functools.cache
def _dataclass_fields(cls: type) -> dict[str, tuple[Any, bool, dataclasses.Field]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (*_annotation_parts(hints[f.name]), f) for f in dataclasses.fields(cls)}


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def model_mismatches(schema_file: SchemaFile) -> list[tuple[str | None, str]]:
    """Why the dataclass of `schema_file`'s record cannot be mapped onto it: [(field, message)].

    Empty when the mapping works (see the module docstring for the rules).
    """
    cls = RECORD_TYPES.get(schema_file.fullname)
    if cls is None:
        known = ", ".join(sorted(RECORD_TYPES))
        return [(None, f"record {schema_file.fullname} has no dataclass (known records: {known})")]
    problems: list[tuple[str | None, str]] = []
    py_fields = _dataclass_fields(cls)
    avro_fields = {f.name: f for f in _fields_of(schema_file.schema)}
    for name, (_, _, dc_field) in py_fields.items():
        if name not in avro_fields and not _has_default(dc_field):
            problems.append((name, f"{cls.__name__}.{name} has no default and is missing from the schema"))
    for name, af in avro_fields.items():
        if name not in py_fields:
            if not af.has_default:
                problems.append((name, f"schema field {name} is not in {cls.__name__} and has no default"))
            continue
        py_type, py_nullable, _ = py_fields[name]
        kind = af.kind
        if kind.tag == "other":
            continue  # passed through as fastavro returns it
        if kind.nullable != py_nullable:
            problems.append(
                (
                    name,
                    f"{cls.__name__}.{name} is {'optional' if py_nullable else 'required'} but the schema field "
                    f"is {'nullable' if kind.nullable else 'not nullable'}",
                )
            )
        if kind.tag == "enum":
            if not (isinstance(py_type, type) and issubclass(py_type, enum.Enum)):
                shown = getattr(py_type, "__name__", repr(py_type))
                problems.append((name, f"schema field {name} is an enum but {cls.__name__}.{name} is {shown}"))
            elif set(kind.symbols) != {m.value for m in py_type}:
                extra = sorted(set(kind.symbols) - {m.value for m in py_type})
                lacking = sorted({m.value for m in py_type} - set(kind.symbols))
                problems.append(
                    (
                        name,
                        f"enum symbols of {name} differ from {py_type.__name__}: "
                        f"only in schema {extra}, only in Python {lacking}",
                    )
                )
        elif py_type is not _PY_TYPE_OF_TAG[kind.tag]:
            shown = getattr(py_type, "__name__", repr(py_type))
            problems.append(
                (name, f"schema field {name} ({_describe_type(kind)}) does not match {cls.__name__}.{name}: {shown}")
            )
    return problems


def bad_defaults(schema_file: SchemaFile) -> list[tuple[str, str]]:
    """Field defaults that do not match the field's type: [(field, message)].

    Avro requires a union's default to match its *first* branch (``["null", T]`` defaults to
    null), and Java's schema parser refuses a schema that breaks this, although neither fastavro
    nor the Python library checks it. Only the field shapes of `_Kind` are checked.
    """
    out = []
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda d: isinstance(d, str),
        "bytes": lambda d: isinstance(d, str),
        "decimal": lambda d: isinstance(d, str),
        "long": lambda d: isinstance(d, int) and not isinstance(d, bool),
        "int": lambda d: isinstance(d, int) and not isinstance(d, bool) and _MIN_INT <= d <= _MAX_INT,
        "timestamp-micros": lambda d: isinstance(d, int) and not isinstance(d, bool),
        "boolean": lambda d: isinstance(d, bool),
        "double": lambda d: isinstance(d, (int, float)) and not isinstance(d, bool),
        "float": lambda d: isinstance(d, (int, float)) and not isinstance(d, bool),
    }
    for f in _fields_of(schema_file.schema):
        if not f.has_default or f.kind.tag == "other":
            continue
        if f.kind.nullable:
            ok = f.default is None
            want = "null (a union's default must match its first branch)"
        elif f.kind.tag == "enum":
            ok = f.default in f.kind.symbols
            want = f"one of the symbols {', '.join(f.kind.symbols)}"
        else:
            ok = checks[f.kind.tag](f.default)
            want = f"a {_describe_type(f.kind)} value"
        if not ok:
            out.append((f.name, f"field {f.name}: default {json.dumps(f.default)} is not {want}"))
    return out


def logical_type_changes(writer: SchemaFile, reader: SchemaFile) -> list[tuple[str, str]]:
    """Fields whose logical type changes from `writer` to `reader` in a way Avro's own
    resolution rules do not see (they compare the underlying types only) but that would
    misread old data: a decimal whose scale changes or precision shrinks, a plain
    ``long``/``bytes`` becoming (or ceasing to be) a timestamp or a decimal. [(field, message)]"""
    logical = {"decimal", "timestamp-micros"}
    written = {f.name: f.kind for f in _fields_of(writer.schema)}
    out = []
    for f in _fields_of(reader.schema):
        wk, rk = written.get(f.name), f.kind
        if wk is None or "other" in (wk.tag, rk.tag):
            continue
        tag_changed = (wk.tag in logical or rk.tag in logical) and wk.tag != rk.tag
        decimal_changed = wk.tag == rk.tag == "decimal" and (wk.scale != rk.scale or rk.precision < wk.precision)
        if tag_changed or decimal_changed:
            out.append(
                (
                    f.name,
                    f"field {f.name} changes from {_describe_type(wk)} to {_describe_type(rk)}: old data would be misread",
                )
            )
    return out


def _describe_type(kind: _Kind) -> str:
    if kind.tag == "decimal":
        return f"decimal({kind.precision}, {kind.scale})"
    return kind.tag


# --------------------------------------------------------------------------------------------
# Value conversions shared by both paths
# --------------------------------------------------------------------------------------------

_BYTE = tuple(bytes((i,)) for i in range(256))


def _uvarint(z: int) -> bytes:
    """Avro varint of an already zigzag-encoded non-negative int."""
    if z < 0x80:
        return _BYTE[z]
    if z < 0x4000:
        return bytes((z & 0x7F | 0x80, z >> 7))
    out = bytearray()
    while z >= 0x80:
        out.append(z & 0x7F | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _long_bytes(n: int) -> bytes:
    """Avro `long`: zigzag varint, range-checked."""
    if not _MIN_LONG <= n <= _MAX_LONG:
        raise _Invalid(f"{n} is out of range for an Avro long (64-bit)")
    return _uvarint((n << 1) ^ (n >> 63))


def _int_bytes(n: int) -> bytes:
    if not _MIN_INT <= n <= _MAX_INT:
        raise _Invalid(f"{n} is out of range for an Avro int (32-bit)")
    return _uvarint((n << 1) ^ (n >> 63))


#: Avro encodings of a length n (zigzag 2n) for short strings/bytes, plain and after union index 1.
_LEN = tuple(_uvarint(2 * n) for n in range(64))
_LEN_U = tuple(b"\x02" + _uvarint(2 * n) for n in range(64))


#: The instants a datetime can hold in UTC, in microseconds since the epoch.
_MIN_MICROS = (datetime.min.replace(tzinfo=timezone.utc) - _EPOCH) // _MICROSECOND
_MAX_MICROS = (datetime.max.replace(tzinfo=timezone.utc) - _EPOCH) // _MICROSECOND


def _timestamp_micros(value: datetime) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise _Invalid("naive datetime: need a timezone-aware (UTC) datetime")
    micros = (value - _EPOCH) // _MICROSECOND
    if not _MIN_MICROS <= micros <= _MAX_MICROS:
        raise _Invalid(f"{value.isoformat()} is outside the years 1..9999 in UTC")
    return micros


def _timestamp_varint(micros: int) -> bytes:
    """Varint of a timestamp outside the fast path's range (before 1970-01-26 or after 2541)."""
    if not _MIN_MICROS <= micros <= _MAX_MICROS:
        raise _Invalid("outside the years 1..9999 in UTC")
    return _uvarint((micros << 1) ^ (micros >> 63))


@functools.cache
def _make_unscaled(scale: int, precision: int) -> Callable[[Decimal], int]:
    """Decimal -> unscaled int at `scale`, refusing anything that would need rounding."""
    limit_adjusted = precision  # adjusted() of the scaled value must stay below precision

    def unscaled(value: Decimal) -> int:
        if not isinstance(value, Decimal):
            raise _Invalid(f"expected Decimal, got {type(value).__name__}")
        if not value.is_finite():
            raise _Invalid(f"{value} is not a finite number")
        q = value.scaleb(scale, _EXACT)
        if q.adjusted() >= limit_adjusted and q:
            raise _Invalid(f"{value} has more than {precision - scale} integer digits (decimal({precision}, {scale}))")
        n = int(q)
        if n != q:
            raise _Invalid(
                f"{value} has more than {scale} fractional digits; the codec does not round (decimal({precision}, {scale}))"
            )
        return n

    return unscaled


@functools.cache
def _make_decimal_raw(scale: int, precision: int) -> Callable[[Decimal], bytes]:
    unscaled = _make_unscaled(scale, precision)

    def decimal_raw(value: Decimal) -> bytes:
        n = unscaled(value)
        return n.to_bytes(((n if n >= 0 else ~n).bit_length() + 8) >> 3, "big", signed=True)

    return decimal_raw


@functools.cache
def _make_decimal_field(scale: int, precision: int) -> tuple[Callable[[str], bytes], Callable[[Decimal], bytes]]:
    """Two ways to the Avro bytes field (length + two's complement) of a decimal:
    ``from_text(str(value))`` for exact Decimals and ``from_value(value)`` for anything else.

    The text of a Decimal is plain digits for the usual values ("101.25", "-0.00012345"), so
    the unscaled integer is the digits padded to `scale` places: cheaper than any Decimal
    arithmetic. Exponent forms ("1E+2", "1.5E-7") and more than `scale` places (exact only
    with trailing zeros) take the exact Decimal route.
    """
    zeros = tuple("0" * k for k in range(scale + 1))
    low, high = -(10**precision), 10**precision
    unscaled = _make_unscaled(scale, precision)

    def from_text(text: str) -> bytes:
        whole, _, frac = text.partition(".")
        k = len(frac)
        if k <= scale and "E" not in text:
            n = int(whole + frac + zeros[scale - k])  # "NaN", "Infinity": ValueError
            if not low < n < high:
                raise _Invalid(
                    f"{text} has more than {precision - scale} integer digits (decimal({precision}, {scale}))"
                )
        else:
            n = unscaled(Decimal(text))
        raw = n.to_bytes(((n if n >= 0 else ~n).bit_length() + 8) >> 3, "big", signed=True)
        return _LEN[len(raw)] + raw  # at most 17 bytes for precision 38: one length byte

    def from_value(value: Decimal) -> bytes:
        n = unscaled(value)
        raw = n.to_bytes(((n if n >= 0 else ~n).bit_length() + 8) >> 3, "big", signed=True)
        return _LEN[len(raw)] + raw

    return from_text, from_value


@functools.cache
def _make_decimal_from(scale: int, precision: int) -> Callable[[bytes], Decimal]:
    limit = 10**precision

    def decimal_from(raw: bytes) -> Decimal:
        n = int.from_bytes(raw, "big", signed=True)
        if not -limit < n < limit:
            raise _Invalid(f"decimal with more than {precision} digits")
        return Decimal(n).scaleb(-scale, _EXACT)

    return decimal_from


def _to_wire(kind: _Kind, value: Any) -> Any:
    """Python value -> what fastavro writes for the stripped schema (the reference path).

    Validates like the fast path and says precisely why a value is refused (`_Invalid`).
    """
    if value is None or kind.tag == "other":
        return value
    tag = kind.tag
    if tag == "decimal":
        return _make_decimal_raw(kind.scale, kind.precision)(value)
    if tag == "timestamp-micros":
        if not isinstance(value, datetime):
            raise _Invalid(f"expected a timezone-aware datetime, got {type(value).__name__}")
        return _timestamp_micros(value)
    if tag == "enum":
        if not isinstance(value, str) or value not in kind.symbols:
            raise _Invalid(f"{value!r} is not one of {', '.join(kind.symbols)}")
        return str(value)
    if tag == "string":
        if not isinstance(value, str):
            raise _Invalid(f"expected str, got {type(value).__name__}")
        try:
            value.encode()
        except UnicodeEncodeError as e:
            raise _Invalid(f"not encodable as UTF-8 ({e.reason}; a lone surrogate?)") from None
        return value
    if tag in ("long", "int"):
        if not isinstance(value, int):
            raise _Invalid(f"expected int, got {type(value).__name__}")
        (_long_bytes if tag == "long" else _int_bytes)(value)
        return value
    if tag == "boolean" and not isinstance(value, bool):
        raise _Invalid(f"expected bool, got {type(value).__name__}")
    if tag in ("double", "float") and not isinstance(value, (float, int)):
        raise _Invalid(f"expected float, got {type(value).__name__}")
    if tag == "bytes" and not isinstance(value, bytes):
        raise _Invalid(f"expected bytes, got {type(value).__name__}")
    return value


def _from_wire(kind: _Kind, value: Any, py_type: Any) -> Any:
    """What fastavro read with the stripped schema -> Python value (the reference path)."""
    if value is None or kind.tag == "other":
        return value
    if kind.tag == "decimal":
        return _make_decimal_from(kind.scale, kind.precision)(value)
    if kind.tag == "timestamp-micros":
        return _EPOCH + timedelta(0, 0, value)
    if kind.tag == "enum" and isinstance(py_type, type) and issubclass(py_type, enum.Enum):
        return py_type(value)
    return value


def _default_value(kind: _Kind, default: Any, py_type: Any) -> Any:
    """A schema field default (JSON) as a Python value."""
    if default is None:
        return None
    if kind.tag == "decimal":
        return _from_wire(kind, default.encode("latin-1"), py_type)  # Avro JSON bytes: code points 0-255
    return _from_wire(kind, default, py_type)


# --------------------------------------------------------------------------------------------
# Reading varints (decoding fast path)
# --------------------------------------------------------------------------------------------


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """Zigzag varint at buf[pos] -> (value, next position)."""
    b = buf[pos]
    pos += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        if shift > 63:
            raise _Invalid("varint longer than 10 bytes")
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    value = (n >> 1) ^ -(n & 1)
    if not _MIN_LONG <= value <= _MAX_LONG:
        raise _Invalid("varint out of range for an Avro long")
    return value, pos


def _read_count(buf: bytes, pos: int) -> tuple[int, int]:
    """A non-negative varint (length, enum index)."""
    n, pos = _read_long(buf, pos)
    if n < 0:
        raise _Invalid(f"negative length or index {n}")
    return n, pos


def _read_int(buf: bytes, pos: int) -> tuple[int, int]:
    n, pos = _read_long(buf, pos)
    if not _MIN_INT <= n <= _MAX_INT:
        raise _Invalid(f"{n} is out of range for an Avro int")
    return n, pos


_unpack_double = struct.Struct("<d").unpack_from
_unpack_float = struct.Struct("<f").unpack_from
_unpack_4u16 = struct.Struct("<4H").unpack_from
_pack_double = struct.Struct("<d").pack
_pack_float = struct.Struct("<f").pack

#: A one-byte varint (< 0x80, even: zigzag of 0..63) -> its length or index; -1 otherwise.
_SHORT = tuple(b >> 1 if b < 0x80 and not b & 1 else -1 for b in range(256))

#: 14-bit groups as two varint bytes: with both continuation bits (_CONT14), and final (_LAST14).
_CONT14 = tuple(bytes((i & 0x7F | 0x80, i >> 7 | 0x80)) for i in range(1 << 14))
_LAST14 = tuple(bytes((i & 0x7F | 0x80, i >> 7)) if i >= 0x80 else _BYTE[i] for i in range(1 << 14))

#: Decimal conversions are cached per field (trading values repeat a lot: tick grids, round
#: lots), text -> wire bytes when encoding and wire bytes -> Decimal when decoding: a hit costs
#: ~0.2 us, a conversion ~1 us. A cache is cleared when it reaches this size (~0.5 MB; larger
#: ones measured no faster), so a high-cardinality field (avg_px) only churns its own. Dict
#: reads and writes are atomic under the GIL: the codec is thread-safe.
_DECIMAL_CACHE_SIZE = 1 << 12

#: The compiled decoder keeps, per string and decimal field, a table of this many values by
#: their wire bytes (direct-mapped; backbone/_speedups.c, ValueSlot): a hit skips the bytes
#: object, the dict lookup and the conversion, and equal strings decode to one object.
_DECODE_CACHE_SLOTS = 1 << 10


@functools.cache
def _slots_twin(cls: type) -> type | None:
    """A plain class with exactly the slots of the frozen slotted dataclass `cls` and an
    __init__ that assigns them positionally (in dataclass field order).

    Python allows assigning ``__class__`` between classes of identical layout, so
    ``o = Twin(*values); o.__class__ = cls`` yields a `cls` instance indistinguishable from
    ``cls(*values)`` (same slots, same values; type, ==, hash and repr are the class's).
    Returns None when `cls` is not such a class (the caller then uses the constructor).
    """
    slots = cls.__dict__.get("__slots__")
    names = [f.name for f in dataclasses.fields(cls)]
    if slots is None or cls.__bases__ != (object,) or tuple(slots) != tuple(names):
        return None
    source = f"def __init__(self, {', '.join(names)}):\n" + "".join(f"    self.{n} = {n}\n" for n in names)
    ns: dict[str, Any] = {}
    exec(compile(source, f"<slots twin of {cls.__name__}>", "exec"), ns)
    twin = type(f"_{cls.__name__}Twin", (object,), {"__slots__": tuple(slots), "__init__": ns["__init__"]})
    try:  # proves layout compatibility once
        probe = twin(*range(len(names)))
        probe.__class__ = cls
    except TypeError:
        return None
    if type(probe) is not cls or [getattr(probe, n) for n in names] != list(range(len(names))):
        return None
    return twin


# --------------------------------------------------------------------------------------------
# Code generation of the fast paths
# --------------------------------------------------------------------------------------------


def _is_compiled(fn: Callable[..., Any]) -> bool:
    return _speedups is not None and isinstance(fn, (_speedups.Encoder, _speedups.Decoder))


def _compiled_kind(tag: str) -> int | None:
    """The compiled codec's code for a field kind (None: not compiled, e.g. float)."""
    if _speedups is None:
        return None
    return {
        "string": _speedups.K_STRING, "bytes": _speedups.K_BYTES, "long": _speedups.K_LONG, "int": _speedups.K_INT,
        "boolean": _speedups.K_BOOL, "double": _speedups.K_DOUBLE, "timestamp-micros": _speedups.K_TIMESTAMP,
        "decimal": _speedups.K_DECIMAL, "enum": _speedups.K_ENUM,
    }.get(tag)


class _FastCodecBuilder:
    """Generates ``encode(record) -> bytes`` and ``decode(buf) -> record`` for one schema version.

    The generated code is straight-line Python over the record's fields (one local per field,
    no per-field dispatch, the hot conversions inlined). Failures are explained afterwards:
    the encoder's by re-checking each field (`AvroCodec._encode_failure`), the fast decoder's by
    re-running a twin decoder that tracks the current field in `_f`. Print ``fn.__source__``
    of a generated function to read it.
    """

    def __init__(self, cls: type, name: str) -> None:
        self.cls = cls
        self.name = name
        self.track = False
        self.py_fields = _dataclass_fields(cls)
        self.ns: dict[str, Any] = {
            "_BYTE": _BYTE,
            "_SHORT": _SHORT,
            "_LEN": _LEN,
            "_LEN_U": _LEN_U,
            "_CONT14": _CONT14,
            "_LAST14": _LAST14,
            "_uvarint": _uvarint,
            "_long_bytes": _long_bytes,
            "_int_bytes": _int_bytes,
            "_timestamp_varint": _timestamp_varint,
            "_EPOCH": _EPOCH,
            "_MICRO": _MICROSECOND,
            "_timedelta": timedelta,
            "_fromtimestamp": datetime.fromtimestamp,
            "_UTC": timezone.utc,
            "_read_long": _read_long,
            "_read_count": _read_count,
            "_read_int": _read_int,
            "_unpack_double": _unpack_double,
            "_unpack_float": _unpack_float,
            "_unpack_4u16": _unpack_4u16,
            "_pack_double": _pack_double,
            "_pack_float": _pack_float,
            "_Invalid": _Invalid,
            "_cls": cls,
            "_EXACT": _EXACT,
            "_Decimal": Decimal,
            "_from_bytes": int.from_bytes,
        }

    @staticmethod
    def supported(fields: list[_Field]) -> bool:
        return all(f.kind.tag != "other" for f in fields)

    def _compile(self, source: str, fn_name: str, filename: str) -> Callable[..., Any]:
        code = compile(source, filename, "exec")
        exec(code, self.ns)  # source generated from our own schema files
        fn = self.ns[fn_name]
        fn.__source__ = source
        return fn

    # ----- encoding

    def build_encoder(
        self, fields: list[_Field], header: bytes, fail: Callable[..., Exception]
    ) -> Callable[[Any], bytes]:
        self.ns["_HEADER"] = header
        self.ns["_fail_encode"] = fail
        body: list[str] = []
        parts = ["_HEADER"]
        for i, field in enumerate(fields):
            if field.name not in self.py_fields:  # schema-only field: written as its default, null
                parts.append("b'\\x00'")
                continue
            body.append(f"v = r.{field.name}")
            lines, field_parts = self._encode_field(i, field.kind)
            body.extend(lines)
            parts.extend(field_parts)
        schema_names = {f.name for f in fields}
        for name, (_, _, dc_field) in self.py_fields.items():
            if name not in schema_names:  # dataclass-only field: only its default can be encoded
                self.ns[f"_default_{name}"] = dc_field.default
                body.append(f"if r.{name} != _default_{name}: raise _Invalid('no field {name} in the schema')")
        body.append("return b''.join((" + ", ".join(parts) + ",))")
        source = "\n".join(
            [
                "def encode(r):",
                "    try:",
                *("        " + line for line in body),
                "    except Exception as e:",
                "        raise _fail_encode(r, e) from e",
            ]
        )
        return self._compile(source, "encode", f"<avro fast encoder {self.name}>")

    def _encode_field(self, i: int, k: _Kind) -> tuple[list[str], list[str]]:
        """Code reading `v` and setting the locals listed as the field's output parts."""
        if not k.nullable:
            return self._encode_value(i, k, union=False)
        lines, parts = self._encode_value(i, k, union=True)
        # null: the union index byte 0, and every other part of the field empty
        return [
            "if v is None:",
            f"    p{i} = b'\\x00'",
            *(f"    {p} = b''" for p in parts[1:]),
            "else:",
            *("    " + line for line in lines),
        ], parts

    def _encode_value(self, i: int, k: _Kind, union: bool) -> tuple[list[str], list[str]]:
        p = f"p{i}"
        u = "b'\\x02' + " if union else ""
        tag = k.tag
        if tag == "string":
            lens = "_LEN_U" if union else "_LEN"
            return [f"s{i} = v.encode()", f"n = len(s{i})", f"{p} = {lens}[n] if n < 64 else {u}_uvarint(2 * n)"], [
                p,
                f"s{i}",
            ]
        if tag == "bytes":
            return ["if type(v) is not bytes: raise _Invalid", f"{p} = {u}_uvarint(2 * len(v))", f"s{i} = v"], [
                p,
                f"s{i}",
            ]
        if tag == "long":  # small non-negative values (seq) in one byte, inline
            return [f"{p} = {u}_BYTE[v << 1] if 0 <= v < 64 else {u}_long_bytes(v)"], [p]
        if tag == "int":
            return [f"{p} = {u}_int_bytes(v)"], [p]
        if tag == "boolean":
            return ["if v is not True and v is not False: raise _Invalid", f"{p} = {u}(b'\\x01' if v else b'\\x00')"], [
                p
            ]
        if tag == "double":
            return [f"{p} = {u}_pack_double(v)"], [p]
        if tag == "float":
            return [f"{p} = {u}_pack_float(v)"], [p]
        if tag == "timestamp-micros":
            # Datetimes span years 1..9999, so the zigzag value stays below 2**60: no range
            # check. From 1970-01-26 to 2541 the varint has 7-8 bytes: 14-bit groups by table.
            return [
                "if v.tzinfo is None: raise _Invalid",
                "z = (v - _EPOCH) // _MICRO",
                "if 0x20000000000 <= z < 0x80000000000000:",
                "    z <<= 1",
                f"    {p} = {u}_CONT14[z & 0x3FFF] + _CONT14[z >> 14 & 0x3FFF] + _CONT14[z >> 28 & 0x3FFF] + _LAST14[z >> 42]",
                "else:",
                f"    {p} = {u}_timestamp_varint(z)",
            ], [p]
        if tag == "decimal":
            # Exact or refused, never rounded (_make_decimal_field). Encodings are cached by the
            # decimal's text, exact Decimals only (prices and quantities repeat a lot); each
            # cache is cleared when full.
            self.ns[f"_dec_text{i}"], self.ns[f"_dec_value{i}"] = _make_decimal_field(k.scale, k.precision)
            self.ns[f"_ecache{i}"] = {}
            lines = [
                "if type(v) is _Decimal:",
                "    key = str(v)",
                f"    s{i} = _ecache{i}.get(key)",
                f"    if s{i} is None:",
                f"        s{i} = _dec_text{i}(key)",
                f"        if len(_ecache{i}) >= {_DECIMAL_CACHE_SIZE}: _ecache{i}.clear()",
                f"        _ecache{i}[key] = s{i}",
                "else:",
                f"    s{i} = _dec_value{i}(v)",
            ]
            if union:
                return [f"p{i} = b'\\x02'", *lines], [f"p{i}", f"s{i}"]
            return lines, [f"s{i}"]
        if tag == "enum":
            prefix = b"\x02" if union else b""
            self.ns[f"_sym{i}"] = {s: prefix + _uvarint(2 * j) for j, s in enumerate(k.symbols)}
            return [f"{p} = _sym{i}[v]"], [p]
        raise AssertionError(tag)

    def build_compiled_encoder(
        self, fields: list[_Field], header: bytes, fallback: Callable[[Any], bytes]
    ) -> Callable[[Any], bytes] | None:
        """The compiled twin of `build_encoder`'s function over the same plan, falling back to
        `fallback` (that function) for anything but the plain case; None when not available."""
        if _speedups is None:
            return None
        plan = []
        for field in fields:
            if field.name not in self.py_fields:
                plan.append((None, _speedups.K_NULL, False, None, None, None, 0, 0))
                continue
            k = field.kind
            code = _compiled_kind(k.tag)
            if code is None:
                return None
            a: Any = None
            b: Any = None
            c: Any = None
            if k.tag == "decimal":
                a = {}
                b, c = _make_decimal_field(k.scale, k.precision)
            elif k.tag == "enum":
                a = {sym: _uvarint(2 * j) for j, sym in enumerate(k.symbols)}
            plan.append((field.name, code, k.nullable, a, b, c, k.scale, k.precision))
        schema_names = {f.name for f in fields}
        required = tuple((name, dc_field.default) for name, (_, _, dc_field) in self.py_fields.items()
                         if name not in schema_names)
        return _speedups.Encoder(self.cls, header, tuple(plan), required, fallback, Decimal, _DECIMAL_CACHE_SIZE)

    def build_compiled_decoder(
        self, writer_fields: list[_Field], reader_fields: list[_Field], fallback: Callable[[bytes], Any]
    ) -> Callable[[bytes], Any] | None:
        """The compiled twin of `build_decoder`'s function, falling back to `fallback` (that
        function) whenever the bytes are not plainly valid; None when not available, or when
        the Python path would not build the record from a `_slots_twin` (the compiled decoder
        sets the same slots directly)."""
        if _speedups is None or any(_compiled_kind(f.kind.tag) is None for f in writer_fields):
            return None
        readers = {f.name: f for f in reader_fields}
        written = {f.name for f in writer_fields}
        names = tuple(self.py_fields)
        slot = {name: i for i, name in enumerate(names)}
        held = {f.name for f in reader_fields if f.name in self.py_fields}
        if held != set(names) or hasattr(self.cls, "__post_init__") or _slots_twin(self.cls) is None:
            return None
        plan = []
        for field in writer_fields:
            k = field.kind
            reader_kind = readers[field.name].kind if field.name in readers else k
            dest = slot[field.name] if field.name in held else -1
            a: Any = None
            b: Any = None
            if k.tag == "decimal":
                b = _make_decimal_from(k.scale, k.precision)
            elif k.tag == "enum":
                a = self._enum_members(field.name, k, reader_kind)
            plan.append((_compiled_kind(k.tag), k.nullable, dest, a, b, k.scale, k.precision))
        defaults = tuple((slot[f.name], _default_value(f.kind, f.default, self.py_fields[f.name][0]))
                         for f in reader_fields if f.name in held and f.name not in written)
        return _speedups.Decoder(self.cls, names, HEADER_SIZE, tuple(plan), defaults, fallback, Decimal,
                                 _DECODE_CACHE_SLOTS)

    # ----- decoding

    def build_decoder(
        self,
        writer_fields: list[_Field],
        reader_fields: list[_Field],
        fail: Callable[..., Exception],
        *,
        track: bool = False,
    ) -> Callable[[bytes], Any]:
        """Read the writer's layout; build the dataclass from the reader's fields (defaults for
        reader fields the writer lacks, writer fields the reader lacks dropped). With `track`,
        `_f` names the field being read when `fail(buf, _f, error)` is called."""
        self.ns["_fail_decode"] = fail
        self.track = track
        readers = {f.name: f for f in reader_fields}
        body = ["size = len(buf)", f"pos = {HEADER_SIZE}"]
        for i, field in enumerate(writer_fields):
            if track:
                body.append(f"_f = {field.name!r}")
            reader_kind = readers[field.name].kind if field.name in readers else field.kind
            body.extend(self._decode_field(i, field.name, field.kind, reader_kind))
        # Reads past the end return short slices instead of failing; this catches them.
        if track:
            body.append("_f = None")
        body.append(
            "if pos != size: raise _Invalid(f'{size - pos} trailing bytes after the record' if pos < size else 'truncated')"
        )
        values: dict[str, str] = {}
        written = {f.name: i for i, f in enumerate(writer_fields)}
        for f in reader_fields:
            if f.name not in self.py_fields:
                continue  # reader field the dataclass lacks: dropped
            if f.name in written:
                values[f.name] = f"v{written[f.name]}"
            else:
                self.ns[f"_default_{f.name}"] = _default_value(f.kind, f.default, self.py_fields[f.name][0])
                values[f.name] = f"_default_{f.name}"
        body.extend(self._construct(values))
        source = "\n".join(
            [
                "def decode(buf):",
                "    _f = None",
                "    try:",
                *("        " + line for line in body),
                "    except Exception as e:",
                "        raise _fail_decode(buf, _f, e) from e",
            ]
        )
        return self._compile(source, "decode", f"<avro {'tracking' if track else 'fast'} decoder {self.name}>")

    def _construct(self, values: dict[str, str]) -> list[str]:
        """Build the dataclass. A frozen dataclass __init__ assigns each field through
        object.__setattr__ (~0.15 us per field, ~5 us for an OrderEvent), which would be a third
        of a decode. When __init__ would do nothing but assign (no __post_init__, every field
        given), build a `_slots_twin` instance and switch its class instead (~0.6 us)."""
        cls = self.cls
        if hasattr(cls, "__post_init__") or set(values) != set(self.py_fields):
            return ["return _cls(" + ", ".join(f"{n}={v}" for n, v in values.items()) + ")"]
        twin = _slots_twin(cls)
        if twin is None:
            return ["return _cls(" + ", ".join(f"{n}={v}" for n, v in values.items()) + ")"]
        self.ns["_Twin"] = twin
        return ["o = _Twin(" + ", ".join(values[n] for n in self.py_fields) + ")", "o.__class__ = _cls", "return o"]

    def _decode_field(self, i: int, name: str, k: _Kind, reader: _Kind) -> list[str]:
        v = f"v{i}"
        if not k.nullable:
            return self._decode_value(i, name, k, reader, v)
        return [
            "u = buf[pos]",
            "pos += 1",
            "if u == 0:",
            f"    {v} = None",
            "elif u == 2:",
            *("    " + line for line in self._decode_value(i, name, k, reader, v)),
            "else:",
            "    raise _Invalid(f'invalid union branch byte {u:#x}')",
        ]

    def _decode_value(self, i: int, name: str, k: _Kind, reader: _Kind, v: str) -> list[str]:
        tag = k.tag
        if tag in ("string", "bytes", "decimal"):
            lines = [  # the length: a one-byte varint (0..63) by table, else the general reader
                "n = _SHORT[buf[pos]]",
                "if n < 0:",
                "    n, pos = _read_count(buf, pos)",
                "    start = pos",
                "else:",
                "    start = pos + 1",
                "pos = start + n",
            ]
            if self.track:  # slices past the end do not fail: say so before decoding them
                lines.append("if pos > size: raise _Invalid('truncated')")
            if tag == "string":
                return [*lines, f"{v} = buf[start:pos].decode()"]
            if tag == "bytes":
                return [*lines, f"{v} = buf[start:pos]"]
            self.ns[f"_dcache{i}"] = {}
            limit = 10**k.precision
            return [
                *lines,
                "raw = buf[start:pos]",
                f"{v} = _dcache{i}.get(raw)",
                f"if {v} is None:",
                "    n = _from_bytes(raw, 'big', signed=True)",
                f"    if not -{limit} < n < {limit}: raise _Invalid('decimal with more than {k.precision} digits')",
                f"    {v} = _Decimal(n).scaleb({-k.scale}, _EXACT)",
                f"    if len(_dcache{i}) >= {_DECIMAL_CACHE_SIZE}: _dcache{i}.clear()",
                f"    _dcache{i}[raw] = {v}",
            ]
        if tag in ("long", "timestamp-micros"):
            lines = ["n = buf[pos]", "if n < 0x80:", "    n = (n >> 1) ^ -(n & 1)", "    pos += 1"]
            if tag == "timestamp-micros":  # 8-byte varints (1978..2541) as four 14-bit groups
                lines += [
                    "elif (len(buf) - pos >= 8 and (c := _unpack_4u16(buf, pos)) and (c[0] & c[1] & c[2] & 0x8080) == 0x8080"
                    " and (c[3] & 0x8080) == 0x80):",
                    "    n = ((c[0] & 0x7F | c[0] >> 1 & 0x3F80) | (c[1] & 0x7F | c[1] >> 1 & 0x3F80) << 14"
                    " | (c[2] & 0x7F | c[2] >> 1 & 0x3F80) << 28 | (c[3] & 0x7F | c[3] >> 1 & 0x3F80) << 42)",
                    "    n = (n >> 1) ^ -(n & 1)",
                    "    pos += 8",
                ]
            lines += ["else:", "    n, pos = _read_long(buf, pos)"]
            if tag == "long":
                return [*lines, f"{v} = n"]
            # fromtimestamp(n / 1e6) is exact below 2**32 s (year 2106): the float error stays
            # under 0.48 us and fromtimestamp rounds half-even to the microsecond (tested).
            return [
                *lines,
                f"{v} = _fromtimestamp(n / 1e6, _UTC) if 0 <= n < {(1 << 32) * 10**6} else _EPOCH + _timedelta(0, 0, n)",
            ]
        if tag == "int":
            return [f"{v}, pos = _read_int(buf, pos)"]
        if tag == "boolean":
            return [
                "n = buf[pos]",
                "pos += 1",
                "if n > 1: raise _Invalid(f'invalid boolean byte {n:#x}')",
                f"{v} = n == 1",
            ]
        if tag == "double":
            return [f"{v} = _unpack_double(buf, pos)[0]", "pos += 8"]
        if tag == "float":
            return [f"{v} = _unpack_float(buf, pos)[0]", "pos += 4"]
        if tag == "enum":
            members = self._enum_members(name, k, reader)
            self.ns[f"_sym{i}"] = members
            # one-byte indices (< 64 symbols) by a 256-entry table of the raw byte, None if invalid
            self.ns[f"_symb{i}"] = tuple(
                members[b >> 1] if b < 0x80 and not b & 1 and b >> 1 < len(members) else None for b in range(256)
            )
            return [
                f"{v} = _symb{i}[buf[pos]]",
                f"if {v} is None:",
                "    n, pos = _read_count(buf, pos)",
                f"    if n >= {len(members)}: raise _Invalid(f'enum index {{n}} out of range')",
                f"    {v} = _sym{i}[n]",
                "else:",
                "    pos += 1",
            ]
        raise AssertionError(tag)

    def _enum_members(self, name: str, writer: _Kind, reader: _Kind) -> tuple[Any, ...]:
        """Writer symbol index -> Python enum member, by symbol name (Avro enum resolution:
        a symbol the reader lacks becomes the reader's default). A field the dataclass does
        not hold keeps the symbol strings; its value is dropped anyway."""
        py_type = self.py_fields[name][0] if name in self.py_fields else None
        if not (isinstance(py_type, type) and issubclass(py_type, enum.Enum)):
            return writer.symbols
        return tuple(py_type(s if s in reader.symbols else reader.enum_default) for s in writer.symbols)


# --------------------------------------------------------------------------------------------
# The codec
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Writer:
    """How to encode one record type: with the newest version of its schema."""

    schema_file: SchemaFile
    header: bytes
    fields: list[_Field]
    stripped: dict[str, Any]  # fastavro-parsed schema without the converted logical types
    encode: Callable[[Any], bytes]
    reference_encode: Callable[[Any], bytes]  # the fastavro path


@dataclass(slots=True)
class _Reader:
    """How to decode records written with one schema version."""

    writer_file: SchemaFile
    reader_file: SchemaFile
    cls: type
    writer_stripped: dict[str, Any]
    reader_stripped: dict[str, Any] | None  # None when writer == reader
    reader_fields: list[_Field]
    decode: Callable[[bytes], Any]
    fast: bool
    reference_decode: Callable[[bytes], Any] | None = None  # the fastavro path


class AvroCodec:
    """Encodes records to and decodes them from Avro single-object encoding (see module doc).

    Thread-safe; build one per process and reuse it (construction parses every schema and
    generates code: some 30-60 ms).
    """

    def __init__(self, schemas_dir: Path | None = None, *, compiled: bool = True):
        """`compiled`: use the compiled fast paths when they are built (`compiled_paths`);
        False keeps to the generated Python ones (the same bytes and records, slower)."""
        self.schemas_dir = Path(schemas_dir) if schemas_dir is not None else default_schemas_dir()
        self.compiled = compiled and _speedups is not None
        records, problems = read_schemas_dir(self.schemas_dir)
        if problems:
            raise ConfigError(
                f"schemas in {self.schemas_dir} are not usable:\n"
                + "\n".join(f"  {p.kind}: {p.message}" for p in problems)
            )
        if not records:
            raise ConfigError(f"no schemas found in {self.schemas_dir}")
        self._writers: dict[type, _Writer] = {}
        self._readers: dict[bytes, _Reader] = {}  # by fingerprint
        for files in records.values():
            self._load_record(files)
        # the hot paths: one dict lookup each
        self._encoders: dict[type, Callable[[Any], bytes]] = {cls: w.encode for cls, w in self._writers.items()}
        self._decoders: dict[bytes, Callable[[bytes], Any]] = {MAGIC + fp: r.decode for fp, r in self._readers.items()}

    def _load_record(self, files: list[SchemaFile]) -> None:
        newest = files[-1]
        mismatches = model_mismatches(newest)
        if mismatches:
            raise ConfigError(
                f"{newest.path} does not match the dataclass:\n" + "\n".join(f"  {m}" for _, m in mismatches)
            )
        cls = RECORD_TYPES[newest.fullname]
        reader_fields = _fields_of(newest.schema)
        reader_stripped = parse_schema(_strip_converted_logical_types(newest.schema))
        header = MAGIC + newest.fingerprint
        builder = _FastCodecBuilder(cls, f"{newest.name} v{newest.version}")
        reference_encode = self._reference_encoder(cls, header, reader_fields, reader_stripped)
        if builder.supported(reader_fields) and all(
            f.name in builder.py_fields or (f.kind.nullable and f.has_default and f.default is None)
            for f in reader_fields
        ):
            encode = builder.build_encoder(reader_fields, header, self._encode_failure)
            if self.compiled:
                encode = builder.build_compiled_encoder(reader_fields, header, encode) or encode
        else:
            encode = reference_encode
        self._writers[cls] = _Writer(newest, header, reader_fields, reader_stripped, encode, reference_encode)

        for wf in files:
            changes = logical_type_changes(wf, newest)
            if changes:
                raise ConfigError(
                    f"{newest.path} cannot read data written with {wf.path}:\n"
                    + "\n".join(f"  {m}" for _, m in changes)
                )
            writer_fields = _fields_of(wf.schema)
            same = wf is newest
            writer_stripped = reader_stripped if same else parse_schema(_strip_converted_logical_types(wf.schema))
            fast = _FastCodecBuilder.supported(writer_fields) and self._fast_readable(writer_fields, reader_fields)
            reader = _Reader(
                wf, newest, cls, writer_stripped, None if same else reader_stripped, reader_fields, None, fast
            )  # type: ignore[arg-type]
            reader.reference_decode = self._reference_decoder(reader)
            if fast:
                name = f"{wf.name} v{wf.version}->v{newest.version}"
                tracking = functools.partial(
                    _FastCodecBuilder(cls, name).build_decoder,
                    writer_fields,
                    reader_fields,
                    self._decode_failure_for(reader),
                    track=True,
                )
                reader.decode = _FastCodecBuilder(cls, name).build_decoder(
                    writer_fields, reader_fields, self._explain_with(tracking, reader)
                )
                if self.compiled:
                    reader.decode = (_FastCodecBuilder(cls, name).build_compiled_decoder(
                        writer_fields, reader_fields, reader.decode) or reader.decode)
            else:
                reader.decode = reader.reference_decode
            if wf.fingerprint in self._readers and self._readers[wf.fingerprint].writer_file.fullname != wf.fullname:
                other = self._readers[wf.fingerprint].writer_file
                raise ConfigError(f"{wf.path} and {other.path} have the same fingerprint")
            self._readers.setdefault(wf.fingerprint, reader)  # identical canonical forms: first version wins

    @staticmethod
    def _fast_readable(writer_fields: list[_Field], reader_fields: list[_Field]) -> bool:
        """Resolution the generated decoder handles: fields added (reader default) or removed,
        enum symbols added; anything else (type promotion, new union...) goes to fastavro."""
        writers = {f.name: f for f in writer_fields}
        for rf in reader_fields:
            wf = writers.get(rf.name)
            if wf is None:
                if not rf.has_default or rf.kind.tag == "other":
                    return False
                continue
            if not wf.kind.same_shape(rf.kind):
                return False
            if (
                rf.kind.tag == "enum"
                and not set(wf.kind.symbols) <= set(rf.kind.symbols)
                and rf.kind.enum_default is None
            ):
                return False
        return True

    # ----- public API

    def encode(self, record: Record) -> bytes:
        """The single-object encoding of `record` with the newest schema of its type."""
        encoder = self._encoders.get(type(record))
        if encoder is None:
            known = ", ".join(sorted(w.schema_file.name for w in self._writers.values()))
            raise EncodeError(
                f"cannot encode {type(record).__name__}: not a record type with a schema here (known: {known})"
            )
        return encoder(record)

    def decode(self, data: bytes) -> Record:
        """The record in `data` (any schema version ever shipped); `DecodeError` if it is not one."""
        decoder = self._decoders.get(data[:HEADER_SIZE]) if type(data) is bytes else None
        if decoder is None:  # not bytes, or a header we do not know: diagnose
            return self._decode_other(data)
        return decoder(data)

    def _decode_other(self, data: bytes) -> Record:
        return self._reader_for(data).decode(bytes(data))

    def decoder(self) -> Callable[[bytes], Record]:
        """`decode` as one callable for a hot loop: compiled where built (the header lookup in C,
        no Python frame a record), else the method itself."""
        if not self.compiled:
            return self.decode
        return _speedups.Dispatch(self._decoders, HEADER_SIZE, self._decode_other)

    def compiled_paths(self) -> list[str]:
        """The hot paths running compiled: "encode <record>" and "decode <record> v<writer>"."""
        paths = [f"encode {cls.__name__}" for cls, fn in self._encoders.items() if _is_compiled(fn)]
        paths += [f"decode {r.writer_file.name} v{r.writer_file.version}" for fp, r in self._readers.items()
                  if _is_compiled(self._decoders[MAGIC + fp])]
        return sorted(paths)

    def decode_order_event(self, data: bytes) -> OrderEvent:
        """Like `decode`, but `data` must hold an `OrderEvent` (`DecodeError` otherwise)."""
        record = self.decode(data)
        if type(record) is not OrderEvent:
            raise DecodeError(f"expected an OrderEvent record, got a {type(record).__name__}")
        return record

    def peek(self, data: bytes) -> tuple[str, int]:
        """(record name, writer schema version) of `data`, from its header only."""
        reader = self._reader_for(data)
        return reader.writer_file.name, reader.writer_file.version

    def fingerprints(self) -> dict[int, tuple[str, int]]:
        """Every known writer schema: fingerprint (unsigned 64-bit int of the 8 little-endian
        wire bytes) -> (record name, version). The Java API shows the same value as a signed long."""
        return {
            int.from_bytes(fp, "little"): (r.writer_file.name, r.writer_file.version) for fp, r in self._readers.items()
        }

    def newest_version(self, record_type: type) -> int:
        """The schema version `encode` uses for `record_type`."""
        try:
            return self._writers[record_type].schema_file.version
        except KeyError:
            raise EncodeError(f"no schema for {getattr(record_type, '__name__', record_type)!r}") from None

    # ----- header and errors

    def _reader_for(self, data: bytes) -> _Reader:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        if len(data) < HEADER_SIZE:
            raise DecodeError(
                f"truncated record: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte single-object header"
            )
        if data[:2] != MAGIC:
            raise DecodeError(f"not an Avro single-object record: marker {bytes(data[:2]).hex(' ')}, expected c3 01")
        fp = bytes(data[2:10])
        try:
            return self._readers[fp]
        except KeyError:
            raise DecodeError(
                f"unknown writer schema fingerprint {int.from_bytes(fp, 'little'):#018x}: not one of the "
                f"{len(self._readers)} schema versions in {self.schemas_dir} (written by a newer schema?)"
            ) from None

    def _encode_failure(self, record: Any, error: Exception, field: str | None = None) -> EncodeError:
        """The EncodeError for `error`. The fast encoder raises bare exceptions and does not
        track fields, so the culprit and the reason are found here by re-checking each field
        with `_to_wire` (which says precisely why a value is refused)."""
        if isinstance(error, EncodeError):
            return error
        name = type(record).__name__
        writer = self._writers[type(record)]
        py_fields = _dataclass_fields(type(record))
        schema_fields = {f.name: f for f in writer.fields}
        candidates = [field] if field is not None else list(py_fields)
        for fname in candidates:
            value = getattr(record, fname, None)
            f = schema_fields.get(fname)
            if f is None:  # dataclass-only field
                default = py_fields[fname][2].default
                if value != default:
                    return EncodeError(
                        f"cannot encode {name}.{fname}={value!r}: schema v{writer.schema_file.version} has no field "
                        f"{fname}; only its default {default!r} can be encoded",
                        field=fname,
                    )
                continue
            if value is None:
                if not f.kind.nullable:
                    return EncodeError(
                        f"cannot encode {name}.{fname}=None: a required field (expected {f.kind.describe()})",
                        field=fname,
                    )
                continue
            try:
                _to_wire(f.kind, value)
            except _Invalid as e:
                return EncodeError(f"cannot encode {name}.{fname}={value!r}: {e}", field=fname)
            except Exception:  # any failure here means the value is the culprit
                return EncodeError(
                    f"cannot encode {name}.{fname}={value!r}: expected {f.kind.describe()}, got {type(value).__name__}",
                    field=fname,
                )
        where = f".{field}" if field else ""
        return EncodeError(f"cannot encode {name}{where}: {type(error).__name__}: {error}", field=field)

    def _decode_failure_for(self, reader: _Reader) -> Callable[[bytes, str | None, Exception], DecodeError]:
        wf = reader.writer_file

        def failure(data: bytes, field: str | None, error: Exception) -> DecodeError:
            if isinstance(error, DecodeError):
                return error
            where = f" in field {field!r}" if field else ""
            if isinstance(error, (IndexError, struct.error)) or (isinstance(error, _Invalid) and str(error) == "truncated"):
                reason = "truncated: the data ends early" + where
            elif isinstance(error, UnicodeDecodeError):
                reason = f"invalid UTF-8{where}"
            elif isinstance(error, _Invalid):
                reason = f"{error}{where}"
            else:
                reason = f"{type(error).__name__}: {error}{where}"
            return DecodeError(f"cannot decode {wf.name} (schema v{wf.version}, {len(data)} bytes): {reason}")

        return failure

    def _explain_with(
        self, build_tracking: Callable[[], Callable[[bytes], Any]], reader: _Reader
    ) -> Callable[[bytes, str | None, Exception], DecodeError]:
        """Failure handler of a fast decoder: re-run the field-tracking decoder (built on the
        first failure) for a message naming the field."""
        plain = self._decode_failure_for(reader)
        tracking: list[Callable[[bytes], Any]] = []

        def failure(data: bytes, field: str | None, error: Exception) -> DecodeError:
            if not tracking:
                tracking.append(build_tracking())
            try:
                tracking[0](data)
            except DecodeError as e:
                return e
            return plain(data, field, error)

        return failure

    # ----- the fastavro (reference) paths

    def _reference_encoder(
        self, cls: type, header: bytes, fields: list[_Field], stripped: dict[str, Any]
    ) -> Callable[[Any], bytes]:
        py_fields = _dataclass_fields(cls)
        schema_names = {f.name for f in fields}
        dataclass_only = [(n, dcf.default) for n, (_, _, dcf) in py_fields.items() if n not in schema_names]

        def encode(record: Any) -> bytes:
            field: str | None = None
            try:
                datum = {}
                for f in fields:
                    if f.name in py_fields:
                        field = f.name
                        datum[f.name] = _to_wire(f.kind, getattr(record, f.name))
                for name, default in dataclass_only:
                    field = name
                    if getattr(record, name) != default:
                        raise _Invalid(f"the schema has no field {name}; only the default can be encoded")
                field = None
                out = io.BytesIO()
                out.write(header)
                schemaless_writer(out, stripped, datum)
                return out.getvalue()
            except Exception as e:
                raise self._encode_failure(record, e, field) from e

        return encode

    def _reference_decoder(self, reader: _Reader) -> Callable[[bytes], Any]:
        py_fields = _dataclass_fields(reader.cls)
        failure = self._decode_failure_for(reader)
        reader_fields = reader.reader_fields

        def decode(data: bytes) -> Any:
            try:
                body = io.BytesIO(data)
                body.seek(HEADER_SIZE)
                datum = schemaless_reader(body, reader.writer_stripped, reader.reader_stripped)
                if body.tell() != len(data):
                    raise _Invalid(f"{len(data) - body.tell()} trailing bytes after the record")
                kwargs = {
                    f.name: _from_wire(f.kind, datum[f.name], py_fields[f.name][0])
                    for f in reader_fields
                    if f.name in py_fields
                }
                return reader.cls(**kwargs)
            except Exception as e:
                raise failure(data, None, e) from e

        return decode

    def _encode_via_fastavro(self, record: Record) -> bytes:
        """Reference encoding through fastavro (slow; for differential tests)."""
        w = self._writers[type(record)]
        return w.reference_encode(record)

    def _decode_via_fastavro(self, data: bytes) -> Record:
        """Reference decoding through fastavro with schema resolution (slow; for tests)."""
        reader = self._reader_for(data)
        return reader.reference_decode(bytes(data))  # type: ignore[misc]
