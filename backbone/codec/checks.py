"""Checks of one schema version against the dataclasses and against older versions.

The codec refuses to load schemas that fail them (`ConfigError`), and ``backbone schemas
check`` reports them with the compatibility problems (`backbone.codec.compatibility`).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from typing import Any

from backbone.codec.fields import (
    PY_TYPE_OF_TAG,
    RECORD_TYPES,
    Kind,
    dataclass_fields,
    fields_of,
    has_default,
)
from backbone.codec.schemas import SchemaFile
from backbone.codec.wire import MAX_INT, MIN_INT

__all__ = ["bad_defaults", "logical_type_changes", "model_mismatches"]


def model_mismatches(schema_file: SchemaFile) -> list[tuple[str | None, str]]:
    """Why the dataclass of `schema_file`'s record cannot be mapped onto it: [(field, message)].

    Empty when the mapping works (the rules are in `backbone.codec.avro`'s docstring).
    """
    cls = RECORD_TYPES.get(schema_file.fullname)
    if cls is None:
        known = ", ".join(sorted(RECORD_TYPES))
        return [(None, f"record {schema_file.fullname} has no dataclass (known records: {known})")]
    problems: list[tuple[str | None, str]] = []
    py_fields = dataclass_fields(cls)
    avro_fields = {f.name: f for f in fields_of(schema_file.schema)}
    for name, (_, _, dc_field) in py_fields.items():
        if name not in avro_fields and not has_default(dc_field):
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
        elif py_type is not PY_TYPE_OF_TAG[kind.tag]:
            shown = getattr(py_type, "__name__", repr(py_type))
            problems.append(
                (name, f"schema field {name} ({_describe_type(kind)}) does not match {cls.__name__}.{name}: {shown}")
            )
    return problems


def bad_defaults(schema_file: SchemaFile) -> list[tuple[str, str]]:
    """Field defaults that do not match the field's type: [(field, message)].

    Avro requires a union's default to match its *first* branch (``["null", T]`` defaults to
    null), and Java's schema parser refuses a schema that breaks this, although neither fastavro
    nor the Python library checks it. Only the field shapes of `Kind` are checked.
    """
    out = []
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda d: isinstance(d, str),
        "bytes": lambda d: isinstance(d, str),
        "decimal": lambda d: isinstance(d, str),
        "long": lambda d: isinstance(d, int) and not isinstance(d, bool),
        "int": lambda d: isinstance(d, int) and not isinstance(d, bool) and MIN_INT <= d <= MAX_INT,
        "timestamp-micros": lambda d: isinstance(d, int) and not isinstance(d, bool),
        "boolean": lambda d: isinstance(d, bool),
        "double": lambda d: isinstance(d, (int, float)) and not isinstance(d, bool),
        "float": lambda d: isinstance(d, (int, float)) and not isinstance(d, bool),
    }
    for f in fields_of(schema_file.schema):
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
    written = {f.name: f.kind for f in fields_of(writer.schema)}
    out = []
    for f in fields_of(reader.schema):
        wk, rk = written.get(f.name), f.kind
        if wk is None or "other" in (wk.tag, rk.tag):
            continue
        tag_changed = (wk.tag in logical or rk.tag in logical) and wk.tag != rk.tag
        decimal_changed = wk.tag == rk.tag == "decimal" and (wk.scale != rk.scale or rk.precision < wk.precision)
        if tag_changed or decimal_changed:
            out.append(
                (
                    f.name,
                    f"field {f.name} changes from {_describe_type(wk)} to {_describe_type(rk)}: "
                    "old data would be misread",
                )
            )
    return out


def _describe_type(kind: Kind) -> str:
    if kind.tag == "decimal":
        return f"decimal({kind.precision}, {kind.scale})"
    return kind.tag
