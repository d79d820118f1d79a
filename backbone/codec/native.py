"""The compiled codec (``backbone._speedups``, Encoder/Decoder/Dispatch) over the generated plans.

Each compiled function runs the plan of a generated Python function of
`backbone.codec.generated` and falls back to that function for anything but the plain case,
so bytes, records and errors are the same (``tests/unit/codec/test_compiled_codec.py``). Where
the extension is not built, every builder here returns None and the Python paths run.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from backbone.codec.fields import SchemaField, default_value
from backbone.codec.generated import DECIMAL_CACHE_SIZE, FastCodecBuilder, slots_twin
from backbone.codec.wire import HEADER_SIZE, make_decimal_field, make_decimal_from, uvarint

try:  # the compiled fast paths (backbone/_speedups.c); optional, see pyproject.toml
    import backbone._speedups as _speedups
except ImportError:  # pragma: no cover - built on every supported install with a C compiler
    _speedups = None

#: Whether the extension is built (else the generated Python paths run alone).
AVAILABLE = _speedups is not None

#: The compiled decoder keeps, per string and decimal field, a table of this many values by
#: their wire bytes (direct-mapped; backbone/_speedups.c, ValueSlot): a hit skips the bytes
#: object, the dict lookup and the conversion, and equal strings decode to one object.
DECODE_CACHE_SLOTS = 1 << 10


def is_compiled(fn: Callable[..., Any]) -> bool:
    return _speedups is not None and isinstance(fn, (_speedups.Encoder, _speedups.Decoder))


def compiled_kind(tag: str) -> int | None:
    """The compiled codec's code for a field kind (None: not compiled, e.g. float)."""
    if _speedups is None:
        return None
    return {
        "string": _speedups.K_STRING, "bytes": _speedups.K_BYTES, "long": _speedups.K_LONG, "int": _speedups.K_INT,
        "boolean": _speedups.K_BOOL, "double": _speedups.K_DOUBLE, "timestamp-micros": _speedups.K_TIMESTAMP,
        "decimal": _speedups.K_DECIMAL, "enum": _speedups.K_ENUM,
    }.get(tag)


def compiled_encoder(
    builder: FastCodecBuilder, fields: list[SchemaField], header: bytes, fallback: Callable[[Any], bytes]
) -> Callable[[Any], bytes] | None:
    """The compiled twin of `builder.build_encoder`'s function over the same plan, falling back
    to `fallback` (that function) for anything but the plain case; None when not available."""
    if _speedups is None:
        return None
    plan: list[tuple[str | None, int, bool, Any, Any, Any, int, int]] = []
    for field in fields:
        if field.name not in builder.py_fields:
            plan.append((None, _speedups.K_NULL, False, None, None, None, 0, 0))
            continue
        k = field.kind
        code = compiled_kind(k.tag)
        if code is None:
            return None
        a: Any = None
        b: Any = None
        c: Any = None
        if k.tag == "decimal":
            a = {}
            b, c = make_decimal_field(k.scale, k.precision)
        elif k.tag == "enum":
            a = {sym: uvarint(2 * j) for j, sym in enumerate(k.symbols)}
        plan.append((field.name, code, k.nullable, a, b, c, k.scale, k.precision))
    schema_names = {f.name for f in fields}
    required = tuple((name, dc_field.default) for name, (_, _, dc_field) in builder.py_fields.items()
                     if name not in schema_names)
    return _speedups.Encoder(builder.cls, header, tuple(plan), required, fallback, Decimal, DECIMAL_CACHE_SIZE)


def compiled_decoder(
    builder: FastCodecBuilder,
    writer_fields: list[SchemaField],
    reader_fields: list[SchemaField],
    fallback: Callable[[bytes], Any],
) -> Callable[[bytes], Any] | None:
    """The compiled twin of `builder.build_decoder`'s function, falling back to `fallback` (that
    function) whenever the bytes are not plainly valid; None when not available, or when
    the Python path would not build the record from a `slots_twin` (the compiled decoder
    sets the same slots directly)."""
    if _speedups is None or any(compiled_kind(f.kind.tag) is None for f in writer_fields):
        return None
    readers = {f.name: f for f in reader_fields}
    written = {f.name for f in writer_fields}
    names = tuple(builder.py_fields)
    slot = {name: i for i, name in enumerate(names)}
    held = {f.name for f in reader_fields if f.name in builder.py_fields}
    if held != set(names) or hasattr(builder.cls, "__post_init__") or slots_twin(builder.cls) is None:
        return None
    plan = []
    for field in writer_fields:
        k = field.kind
        reader_kind = readers[field.name].kind if field.name in readers else k
        dest = slot[field.name] if field.name in held else -1
        a: Any = None
        b: Any = None
        if k.tag == "decimal":
            b = make_decimal_from(k.scale, k.precision)
        elif k.tag == "enum":
            a = builder.enum_members(field.name, k, reader_kind)
        plan.append((compiled_kind(k.tag), k.nullable, dest, a, b, k.scale, k.precision))
    defaults = tuple((slot[f.name], default_value(f.kind, f.default, builder.py_fields[f.name][0]))
                     for f in reader_fields if f.name in held and f.name not in written)
    return _speedups.Decoder(builder.cls, names, HEADER_SIZE, tuple(plan), defaults, fallback, Decimal,
                             DECODE_CACHE_SLOTS)


def dispatch(decoders: dict[bytes, Callable[[bytes], Any]], fallback: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """One callable decoding any record: the header looked up in `decoders` in C, `fallback`
    for a header not there (or data that is not bytes)."""
    return _speedups.Dispatch(decoders, HEADER_SIZE, fallback)
