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
generated per schema version at construction (`backbone.codec.generated`), several times
faster than fastavro's per-field dispatch. Schemas using other shapes (nested records, arrays,
maps, non-null unions, ...) and old writer versions whose field types differ from the
reader's use fastavro ``schemaless_writer``/``schemaless_reader`` with schema resolution. The
two paths produce identical bytes and values (checked by the tests). Where the C extension
``backbone._speedups`` is built, a compiled Encoder/Decoder (`backbone.codec.native`) runs the
same plan in front of each generated function and falls back to it for anything but the plain
case (same bytes, records and errors; ``tests/unit/codec/test_compiled_codec.py``), 4-5x
faster again.

This module is the facade; the parts are `backbone.codec.schemas` (schema files,
fingerprints), `backbone.codec.checks` (schema against dataclass, version against version),
`backbone.codec.fields` (field kinds, value conversions), `backbone.codec.wire` (Avro binary
primitives), `backbone.codec.generated` and `backbone.codec.native` (the fast paths).
"""

from __future__ import annotations

import functools
import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from backbone.codec.checks import logical_type_changes, model_mismatches
from backbone.codec.fields import (
    RECORD_TYPES,
    Record,
    SchemaField,
    dataclass_fields,
    fields_of,
    from_wire,
    strip_converted_logical_types,
    to_wire,
)
from backbone.codec.generated import FastCodecBuilder
from backbone.codec.native import AVAILABLE, compiled_decoder, compiled_encoder, dispatch, is_compiled
from backbone.codec.schemas import SchemaFile, default_schemas_dir, read_schemas_dir
from backbone.codec.wire import HEADER_SIZE, MAGIC, Invalid
from backbone.domain.events import OrderEvent
from backbone.errors import BackboneError, ConfigError, DecodeError, InvariantViolation

__all__ = ["AvroCodec", "EncodeError", "Record"]


class EncodeError(BackboneError):
    """A record that cannot be encoded: wrong type, naive datetime, decimal needing rounding...

    Raised before anything is produced; `field` names the offending field (None when the
    record as a whole is the problem, e.g. not a known record type).
    """

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(slots=True)
class _Writer:
    """How to encode one record type: with the newest version of its schema."""

    schema_file: SchemaFile
    header: bytes
    fields: list[SchemaField]
    stripped: dict[str, Any]  # fastavro-parsed schema without the converted logical types
    encode: Callable[[Any], bytes]
    reference_encode: Callable[[Any], bytes]  # the fastavro path


def _not_built(data: bytes) -> Any:
    raise InvariantViolation("a reader's decoder was used before it was built")


def _stripped(schema: dict[str, Any]) -> dict[str, Any]:
    """fastavro's parsed form of a record's schema, without the converted logical types."""
    parsed = parse_schema(strip_converted_logical_types(schema))
    assert isinstance(parsed, dict)  # as a record's schema is
    return parsed


@dataclass(slots=True)
class _Reader:
    """How to decode records written with one schema version."""

    writer_file: SchemaFile
    reader_file: SchemaFile
    cls: type
    writer_stripped: dict[str, Any]
    reader_stripped: dict[str, Any] | None  # None when writer == reader
    reader_fields: list[SchemaField]
    fast: bool
    # built once the reader exists: they report failures through it
    decode: Callable[[bytes], Any] = _not_built
    reference_decode: Callable[[bytes], Any] = _not_built  # the fastavro path


class AvroCodec:
    """Encodes records to and decodes them from Avro single-object encoding (see module doc).

    Thread-safe; build one per process and reuse it (construction parses every schema and
    generates code: some 30-60 ms).
    """

    def __init__(self, schemas_dir: Path | None = None, *, compiled: bool = True):
        """`compiled`: use the compiled fast paths when they are built (`compiled_paths`);
        False keeps to the generated Python ones (the same bytes and records, slower)."""
        self.schemas_dir = Path(schemas_dir) if schemas_dir is not None else default_schemas_dir()
        self.compiled = compiled and AVAILABLE
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
        reader_fields = fields_of(newest.schema)
        reader_stripped = _stripped(newest.schema)
        header = MAGIC + newest.fingerprint
        builder = FastCodecBuilder(cls, f"{newest.name} v{newest.version}")
        reference_encode = self._reference_encoder(cls, header, reader_fields, reader_stripped)
        if builder.supported(reader_fields) and all(
            f.name in builder.py_fields or (f.kind.nullable and f.has_default and f.default is None)
            for f in reader_fields
        ):
            encode = builder.build_encoder(reader_fields, header, self._encode_failure)
            if self.compiled:
                encode = compiled_encoder(builder, reader_fields, header, encode) or encode
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
            writer_fields = fields_of(wf.schema)
            same = wf is newest
            writer_stripped = reader_stripped if same else _stripped(wf.schema)
            fast = FastCodecBuilder.supported(writer_fields) and self._fast_readable(writer_fields, reader_fields)
            reader = _Reader(wf, newest, cls, writer_stripped, None if same else reader_stripped, reader_fields, fast)
            reader.reference_decode = self._reference_decoder(reader)
            if fast:
                name = f"{wf.name} v{wf.version}->v{newest.version}"
                tracking = functools.partial(
                    FastCodecBuilder(cls, name).build_decoder,
                    writer_fields,
                    reader_fields,
                    self._decode_failure_for(reader),
                    track=True,
                )
                reader.decode = FastCodecBuilder(cls, name).build_decoder(
                    writer_fields, reader_fields, self._explain_with(tracking, reader)
                )
                if self.compiled:
                    reader.decode = (compiled_decoder(FastCodecBuilder(cls, name),
                        writer_fields, reader_fields, reader.decode) or reader.decode)
            else:
                reader.decode = reader.reference_decode
            if wf.fingerprint in self._readers and self._readers[wf.fingerprint].writer_file.fullname != wf.fullname:
                other = self._readers[wf.fingerprint].writer_file
                raise ConfigError(f"{wf.path} and {other.path} have the same fingerprint")
            self._readers.setdefault(wf.fingerprint, reader)  # identical canonical forms: first version wins

    @staticmethod
    def _fast_readable(writer_fields: list[SchemaField], reader_fields: list[SchemaField]) -> bool:
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
        return dispatch(self._decoders, self._decode_other)

    def compiled_paths(self) -> list[str]:
        """The hot paths running compiled: "encode <record>" and "decode <record> v<writer>"."""
        paths = [f"encode {cls.__name__}" for cls, fn in self._encoders.items() if is_compiled(fn)]
        paths += [f"decode {r.writer_file.name} v{r.writer_file.version}" for fp, r in self._readers.items()
                  if is_compiled(self._decoders[MAGIC + fp])]
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
        with `to_wire` (which says precisely why a value is refused)."""
        if isinstance(error, EncodeError):
            return error
        cls: type = type(record)  # not type[Any], which mypy does not see as hashable (mypy#11470)
        name = cls.__name__
        writer = self._writers[cls]
        py_fields = dataclass_fields(cls)
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
                to_wire(f.kind, value)
            except Invalid as e:
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
            truncated = isinstance(error, Invalid) and str(error) == "truncated"
            if isinstance(error, (IndexError, struct.error)) or truncated:
                reason = "truncated: the data ends early" + where
            elif isinstance(error, UnicodeDecodeError):
                reason = f"invalid UTF-8{where}"
            elif isinstance(error, Invalid):
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
        self, cls: type, header: bytes, fields: list[SchemaField], stripped: dict[str, Any]
    ) -> Callable[[Any], bytes]:
        py_fields = dataclass_fields(cls)
        schema_names = {f.name for f in fields}
        dataclass_only = [(n, dcf.default) for n, (_, _, dcf) in py_fields.items() if n not in schema_names]

        def encode(record: Any) -> bytes:
            field: str | None = None
            try:
                datum = {}
                for f in fields:
                    if f.name in py_fields:
                        field = f.name
                        datum[f.name] = to_wire(f.kind, getattr(record, f.name))
                for name, default in dataclass_only:
                    field = name
                    if getattr(record, name) != default:
                        raise Invalid(f"the schema has no field {name}; only the default can be encoded")
                field = None
                out = io.BytesIO()
                out.write(header)
                schemaless_writer(out, stripped, datum)
                return out.getvalue()
            except Exception as e:
                raise self._encode_failure(record, e, field) from e

        return encode

    def _reference_decoder(self, reader: _Reader) -> Callable[[bytes], Any]:
        py_fields = dataclass_fields(reader.cls)
        failure = self._decode_failure_for(reader)
        reader_fields = reader.reader_fields

        def decode(data: bytes) -> Any:
            try:
                body = io.BytesIO(data)
                body.seek(HEADER_SIZE)
                datum = schemaless_reader(body, reader.writer_stripped, reader.reader_stripped)
                assert isinstance(datum, dict)  # as a record is
                if body.tell() != len(data):
                    raise Invalid(f"{len(data) - body.tell()} trailing bytes after the record")
                kwargs = {
                    f.name: from_wire(f.kind, datum[f.name], py_fields[f.name][0])
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
        return reader.reference_decode(bytes(data))
