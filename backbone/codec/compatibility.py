"""Schema evolution check behind ``backbone schemas check``.

Consumers decode every schema version ever published by reading it with the newest one
(see `backbone.codec.avro`), so every version of a record must be BACKWARD compatible with
every earlier version: the newer schema, as reader, must be able to read data written with
the older one. The verdict on each (reader = newer, writer = older) pair comes from the
Apache Avro library's `avro.compatibility.ReaderWriterCompatibilityChecker`, the reference
implementation of the spec's schema-resolution rules; this module reports its findings field
by field and adds the checks around it:

* the schemas directory: every file parses (fastavro and Apache Avro), files are named
  ``v<N>.avsc`` and numbered v1..vN without gaps, every version names the same record, and the
  record lives in its directory (``OrderEvent`` in ``order_event/``);
* logical types (``LOGICAL_TYPE_CHANGED``): Avro resolution compares the underlying types only,
  so it accepts a decimal whose scale changes, which would misread old data;
* defaults (``BAD_DEFAULT``): a default must match the field's type, a union's its first branch
  (Java's parser refuses such a schema; fastavro and the Python library let it pass);
* the model (``MODEL_MISMATCH``): the newest version must map onto the dataclass of
  `backbone.domain.events` (the rules of `backbone.codec.avro`).

Use `check_schemas` for a list of problems (empty: all good), `format_problem` to print one,
or `ensure_compatible` to raise `SchemaCompatibilityError` listing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import avro.errors
import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
    lookup_writer_field,
)

from backbone.codec.checks import bad_defaults, logical_type_changes, model_mismatches
from backbone.codec.schemas import SchemaFile, default_schemas_dir, read_schemas_dir
from backbone.errors import SchemaCompatibilityError

__all__ = ["CompatibilityProblem", "check_schemas", "format_problem", "ensure_compatible"]

_HINTS = {
    "reader_field_missing_default_value": "the newer version has a field the older one lacks and gives it no default; "
    'make it optional (["null", T] with "default": null) or give it a default',
    "type_mismatch": "the field's type changed to one that cannot read the old type; the allowed promotions are "
    "int->long/float/double, long->float/double, float->double and string<->bytes",
    "missing_enum_symbols": "enum symbols were removed; keep them, or give the enum a default symbol",
    "missing_union_branch": "the union lost a branch the older version could write; keep it",
    "name_mismatch": "a named type was renamed; keep the name or add the old one as an alias",
    "fixed_size_mismatch": "a fixed type changed size",
}


@dataclass(frozen=True, slots=True)
class CompatibilityProblem:
    """One problem found by `check_schemas`.

    kind: INCOMPATIBLE (from the Avro checker; `incompatibility` holds its type, e.g.
    ``reader_field_missing_default_value``), LOGICAL_TYPE_CHANGED, BAD_DEFAULT, MODEL_MISMATCH, or a schemas
    directory problem: MISSING_DIR, BAD_FILE_NAME, PARSE_ERROR, VERSION_GAP, NAME_MISMATCH,
    NO_VERSIONS.
    """

    record: str  # the record's directory, e.g. "order_event" ("" for the schemas dir itself)
    kind: str
    message: str
    reader_version: int | None = None  # the newer version (or the only version concerned)
    writer_version: int | None = None  # the older version, for pair checks
    field: str | None = None  # the reader's field concerned, when known
    location: str | None = None  # the checker's location, e.g. "/fields/31/type"
    incompatibility: str | None = None  # the checker's SchemaIncompatibilityType name


def format_problem(p: CompatibilityProblem) -> str:
    """One line, e.g. ``order_event v2 reading v1: INCOMPATIBLE reader_field_missing_default_value
    at field 'venue' (/fields/31): ...``."""
    where = p.record or "schemas"
    if p.reader_version is not None and p.writer_version is not None:
        where += f" v{p.reader_version} reading v{p.writer_version}"
    elif p.reader_version is not None:
        where += f" v{p.reader_version}"
    what = p.kind + (f" {p.incompatibility}" if p.incompatibility else "")
    at = ""
    if p.field is not None or p.location is not None:
        at = " at" + (f" field {p.field!r}" if p.field else "") + (f" ({p.location})" if p.location else "")
    return f"{where}: {what}{at}: {p.message}"


def ensure_compatible(schemas_dir: Path | None = None) -> None:
    """Raise `SchemaCompatibilityError` listing every problem `check_schemas` finds."""
    problems = check_schemas(schemas_dir)
    if problems:
        raise SchemaCompatibilityError(
            f"{len(problems)} schema problem(s):\n" + "\n".join("  " + format_problem(p) for p in problems)
        )


def check_schemas(schemas_dir: Path | None = None) -> list[CompatibilityProblem]:
    """Every problem with the schemas in `schemas_dir` (default: the shipped ones); [] if none.

    Checks each record's directory layout, that each file parses, that every version is
    BACKWARD compatible with every earlier version (reader = newer), that no logical type
    changes, and that the newest version maps onto its dataclass.
    """
    schemas_dir = Path(schemas_dir) if schemas_dir is not None else default_schemas_dir()
    records, layout = read_schemas_dir(schemas_dir)
    problems = [CompatibilityProblem(p.directory, p.kind, p.message, reader_version=p.version) for p in layout]
    for directory, files in records.items():
        problems.extend(_check_record(directory, files))
    return problems


def _check_record(directory: str, files: list[SchemaFile]) -> list[CompatibilityProblem]:
    problems: list[CompatibilityProblem] = []
    parsed: dict[int, avro.schema.RecordSchema] = {}
    for f in files:
        try:
            schema = avro.schema.parse(f.path.read_text(encoding="utf-8"))
        except (avro.errors.AvroException, ValueError, TypeError, KeyError) as e:
            message = str(e)
            message = message if len(message) <= 300 else message[:297] + "..."
            problems.append(
                CompatibilityProblem(
                    directory, "PARSE_ERROR", f"{f.path}: Apache Avro: {message}", reader_version=f.version
                )
            )
            continue
        if not isinstance(schema, avro.schema.RecordSchema):
            problems.append(
                CompatibilityProblem(
                    directory, "PARSE_ERROR", f"{f.path}: not a record schema", reader_version=f.version
                )
            )
            continue
        parsed[f.version] = schema
        for field, message in bad_defaults(f):
            problems.append(
                CompatibilityProblem(directory, "BAD_DEFAULT", message, reader_version=f.version, field=field)
            )
    by_version = {f.version: f for f in files}
    versions = sorted(parsed)
    for j, newer in enumerate(versions):
        for older in versions[:j]:
            problems.extend(_check_pair(directory, newer, older, parsed[newer], parsed[older]))
            for field, message in logical_type_changes(by_version[older], by_version[newer]):
                problems.append(
                    CompatibilityProblem(
                        directory,
                        "LOGICAL_TYPE_CHANGED",
                        message,
                        reader_version=newer,
                        writer_version=older,
                        field=field,
                    )
                )
    newest = files[-1]
    for field_name, message in model_mismatches(newest):
        problems.append(
            CompatibilityProblem(directory, "MODEL_MISMATCH", message, reader_version=newest.version, field=field_name)
        )
    return problems


def _check_pair(
    directory: str, newer: int, older: int, reader: avro.schema.RecordSchema, writer: avro.schema.RecordSchema
) -> list[CompatibilityProblem]:
    """The checker's verdict on reader=`newer`, writer=`older`, broken down by reader field.

    The library merges all findings of a record into sets (types, messages and locations no
    longer line up), so when the record is incompatible each reader field is checked on its
    own with the same checker, giving each problem its field, location and type.
    """
    verdict = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    if verdict.compatibility is not SchemaCompatibilityType.incompatible:
        return []
    problems: list[CompatibilityProblem] = []
    checker = ReaderWriterCompatibilityChecker()
    for i, reader_field in enumerate(reader.fields):
        location = ["/", "fields", str(i)]
        writer_field = lookup_writer_field(writer_schema=writer, reader_field=reader_field)
        if writer_field is None:
            if reader_field.has_default:
                continue
            if reader_field.type.type == "enum" and reader_field.type.props.get("default"):
                # the checker's special case, mirrored as it is
                result = checker.get_compatibility(reader_field.type, writer, "type", location)
                problems.extend(_from_result(directory, newer, older, reader_field.name, result))
                continue
            # the checker's finding for a reader field the writer lacks, without a default
            problems.append(
                _problem(
                    directory,
                    newer,
                    older,
                    reader_field.name,
                    f"/fields/{i}",
                    "reader_field_missing_default_value",
                    reader_field.name,
                )
            )
            continue
        result = checker.get_compatibility(reader_field.type, writer_field.type, "type", location)
        problems.extend(_from_result(directory, newer, older, reader_field.name, result))
    if not problems:  # incompatible above the fields (e.g. the record was renamed)
        problems.extend(_from_result(directory, newer, older, None, verdict))
    return problems


def _from_result(
    directory: str, newer: int, older: int, field: str | None, result: SchemaCompatibilityResult
) -> list[CompatibilityProblem]:
    if result.compatibility is not SchemaCompatibilityType.incompatible:
        return []
    kinds = sorted({t.value for t in result.incompatibilities})
    location = ", ".join(sorted(result.locations))
    detail = "; ".join(sorted(result.messages))
    return [_problem(directory, newer, older, field, location, kind, detail) for kind in kinds]


def _problem(
    directory: str, newer: int, older: int, field: str | None, location: str, kind: str, detail: str
) -> CompatibilityProblem:
    hint = _HINTS.get(kind, "")
    subject = f"v{newer} cannot read data written with v{older}"
    if field:
        subject += f": field {field!r}"
    message = f"{subject}: {detail}" if detail and detail != field else subject
    if hint:
        message += f". Hint: {hint}"
    return CompatibilityProblem(
        directory,
        "INCOMPATIBLE",
        message,
        reader_version=newer,
        writer_version=older,
        field=field,
        location=location or None,
        incompatibility=kind,
    )
