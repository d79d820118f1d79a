"""The generated Python encode and decode paths: straight-line code per schema version.

`FastCodecBuilder` writes the source of ``encode(record) -> bytes`` for the newest version of a
record and of ``decode(buf) -> record`` for each writer version, compiles it with `exec` and
returns the function. `backbone.codec.native` puts the compiled twins in front of them.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from backbone.codec.fields import Kind, SchemaField, dataclass_fields, default_value
from backbone.codec.wire import (
    BYTE,
    CONT14,
    EPOCH,
    EXACT,
    HEADER_SIZE,
    LAST14,
    LEN,
    LEN_U,
    MICROSECOND,
    SHORT,
    Invalid,
    int_bytes,
    long_bytes,
    make_decimal_field,
    pack_double,
    pack_float,
    read_count,
    read_int,
    read_long,
    timestamp_varint,
    unpack_4u16,
    unpack_double,
    unpack_float,
    uvarint,
)

#: Decimal conversions are cached per field (trading values repeat a lot: tick grids, round
#: lots), text -> wire bytes when encoding and wire bytes -> Decimal when decoding: a hit costs
#: ~0.2 us, a conversion ~1 us. A cache is cleared when it reaches this size (~0.5 MB; larger
#: ones measured no faster), so a high-cardinality field (avg_px) only churns its own. Dict
#: reads and writes are atomic under the GIL: the codec is thread-safe.
DECIMAL_CACHE_SIZE = 1 << 12


@functools.cache
def slots_twin(cls: type) -> type | None:
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


class FastCodecBuilder:
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
        self.py_fields = dataclass_fields(cls)
        self.ns: dict[str, Any] = {
            "_BYTE": BYTE,
            "_SHORT": SHORT,
            "_LEN": LEN,
            "_LEN_U": LEN_U,
            "_CONT14": CONT14,
            "_LAST14": LAST14,
            "_uvarint": uvarint,
            "_long_bytes": long_bytes,
            "_int_bytes": int_bytes,
            "_timestamp_varint": timestamp_varint,
            "_EPOCH": EPOCH,
            "_MICRO": MICROSECOND,
            "_timedelta": timedelta,
            "_fromtimestamp": datetime.fromtimestamp,
            "_UTC": UTC,
            "_read_long": read_long,
            "_read_count": read_count,
            "_read_int": read_int,
            "_unpack_double": unpack_double,
            "_unpack_float": unpack_float,
            "_unpack_4u16": unpack_4u16,
            "_pack_double": pack_double,
            "_pack_float": pack_float,
            "_Invalid": Invalid,
            "_cls": cls,
            "_EXACT": EXACT,
            "_Decimal": Decimal,
            "_from_bytes": int.from_bytes,
        }

    @staticmethod
    def supported(fields: list[SchemaField]) -> bool:
        return all(f.kind.tag != "other" for f in fields)

    def _compile(self, source: str, fn_name: str, filename: str) -> Callable[..., Any]:
        code = compile(source, filename, "exec")
        exec(code, self.ns)  # source generated from our own schema files
        fn = self.ns[fn_name]
        fn.__source__ = source
        return fn

    # ----- encoding

    def build_encoder(
        self, fields: list[SchemaField], header: bytes, fail: Callable[..., Exception]
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

    def _encode_field(self, i: int, k: Kind) -> tuple[list[str], list[str]]:
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

    def _encode_value(self, i: int, k: Kind, union: bool) -> tuple[list[str], list[str]]:
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
                f"    {p} = {u}_CONT14[z & 0x3FFF] + _CONT14[z >> 14 & 0x3FFF] + _CONT14[z >> 28 & 0x3FFF]"
                " + _LAST14[z >> 42]",
                "else:",
                f"    {p} = {u}_timestamp_varint(z)",
            ], [p]
        if tag == "decimal":
            # Exact or refused, never rounded (`make_decimal_field`). Encodings are cached by the
            # decimal's text, exact Decimals only (prices and quantities repeat a lot); each
            # cache is cleared when full.
            self.ns[f"_dec_text{i}"], self.ns[f"_dec_value{i}"] = make_decimal_field(k.scale, k.precision)
            self.ns[f"_ecache{i}"] = {}
            lines = [
                "if type(v) is _Decimal:",
                "    key = str(v)",
                f"    s{i} = _ecache{i}.get(key)",
                f"    if s{i} is None:",
                f"        s{i} = _dec_text{i}(key)",
                f"        if len(_ecache{i}) >= {DECIMAL_CACHE_SIZE}: _ecache{i}.clear()",
                f"        _ecache{i}[key] = s{i}",
                "else:",
                f"    s{i} = _dec_value{i}(v)",
            ]
            if union:
                return [f"p{i} = b'\\x02'", *lines], [f"p{i}", f"s{i}"]
            return lines, [f"s{i}"]
        if tag == "enum":
            prefix = b"\x02" if union else b""
            self.ns[f"_sym{i}"] = {s: prefix + uvarint(2 * j) for j, s in enumerate(k.symbols)}
            return [f"{p} = _sym{i}[v]"], [p]
        raise AssertionError(tag)

    # ----- decoding

    def build_decoder(
        self,
        writer_fields: list[SchemaField],
        reader_fields: list[SchemaField],
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
            "if pos != size: "
            "raise _Invalid(f'{size - pos} trailing bytes after the record' if pos < size else 'truncated')"
        )
        values: dict[str, str] = {}
        written = {f.name: i for i, f in enumerate(writer_fields)}
        for f in reader_fields:
            if f.name not in self.py_fields:
                continue  # reader field the dataclass lacks: dropped
            if f.name in written:
                values[f.name] = f"v{written[f.name]}"
            else:
                self.ns[f"_default_{f.name}"] = default_value(f.kind, f.default, self.py_fields[f.name][0])
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
        given), build a `slots_twin` instance and switch its class instead (~0.6 us)."""
        cls = self.cls
        if hasattr(cls, "__post_init__") or set(values) != set(self.py_fields):
            return ["return _cls(" + ", ".join(f"{n}={v}" for n, v in values.items()) + ")"]
        twin = slots_twin(cls)
        if twin is None:
            return ["return _cls(" + ", ".join(f"{n}={v}" for n, v in values.items()) + ")"]
        self.ns["_Twin"] = twin
        return ["o = _Twin(" + ", ".join(values[n] for n in self.py_fields) + ")", "o.__class__ = _cls", "return o"]

    def _decode_field(self, i: int, name: str, k: Kind, reader: Kind) -> list[str]:
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

    def _decode_value(self, i: int, name: str, k: Kind, reader: Kind, v: str) -> list[str]:
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
                f"    if len(_dcache{i}) >= {DECIMAL_CACHE_SIZE}: _dcache{i}.clear()",
                f"    _dcache{i}[raw] = {v}",
            ]
        if tag in ("long", "timestamp-micros"):
            lines = ["n = buf[pos]", "if n < 0x80:", "    n = (n >> 1) ^ -(n & 1)", "    pos += 1"]
            if tag == "timestamp-micros":  # 8-byte varints (1978..2541) as four 14-bit groups
                lines += [
                    "elif (len(buf) - pos >= 8 and (c := _unpack_4u16(buf, pos))"
                    " and (c[0] & c[1] & c[2] & 0x8080) == 0x8080"
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
                f"{v} = _fromtimestamp(n / 1e6, _UTC) if 0 <= n < {(1 << 32) * 10**6}"
                " else _EPOCH + _timedelta(0, 0, n)",
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
            members = self.enum_members(name, k, reader)
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

    def enum_members(self, name: str, writer: Kind, reader: Kind) -> tuple[Any, ...]:
        """Writer symbol index -> Python enum member, by symbol name (Avro enum resolution:
        a symbol the reader lacks becomes the reader's default). A field the dataclass does
        not hold keeps the symbol strings; its value is dropped anyway."""
        py_type = self.py_fields[name][0] if name in self.py_fields else None
        if not (isinstance(py_type, type) and issubclass(py_type, enum.Enum)):
            return writer.symbols
        return tuple(py_type(s if s in reader.symbols else reader.enum_default) for s in writer.symbols)
