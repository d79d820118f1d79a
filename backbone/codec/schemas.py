"""The schema files: ``schemas/<record dir>/v<N>.avsc``, read, checked for layout, fingerprinted.

A record's versions are numbered v1..vN without gaps, its directory is the snake case of its
name (``OrderEvent`` in ``order_event/``), and each version is identified on the wire by the
CRC-64-AVRO fingerprint of its Parsing Canonical Form (see `backbone.codec.avro`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import SchemaParseException, UnknownType, to_parsing_canonical_form
from fastavro.schema import fingerprint as _fastavro_fingerprint

__all__ = ["LayoutProblem", "SchemaFile", "canonical_fingerprint", "default_schemas_dir", "read_schemas_dir"]

_VERSION_FILE = re.compile(r"v([1-9][0-9]*)\.avsc")


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
                    f"{record_dir}: versions must be v1..vN without gaps; "
                    f"missing {', '.join(f'v{v}.avsc' for v in missing)}",
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
                        f"{f.path}: record {f.name} belongs in directory {_snake_case(f.name)}/, "
                        f"not {record_dir.name}/",
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
    assert isinstance(parsed, dict)  # as a record's schema is
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
