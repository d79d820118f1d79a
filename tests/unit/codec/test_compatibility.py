"""The schema evolution check (`backbone schemas check`) and evolution as the codec sees it.

Fixture schema directories are built in tmp_path from the shipped v1 files, so they follow
the shipped schemas when those change.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from backbone.codec.avro import AvroCodec
from backbone.codec.compatibility import CompatibilityProblem, check_schemas, ensure_compatible, format_problem
from backbone.domain.events import Alert, AlertKind, AlertSeverity, MarketMark
from backbone.errors import SchemaCompatibilityError
from schemas import SCHEMAS_DIR

T0 = datetime(2026, 11, 22, 14, 30, tzinfo=UTC)


def shipped(directory: str) -> dict:
    return json.loads((SCHEMAS_DIR / directory / "v1.avsc").read_text())


def write(root: Path, directory: str, version: int, schema: dict | str) -> Path:
    path = root / directory / f"v{version}.avsc"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema if isinstance(schema, str) else json.dumps(schema, indent=2))
    return root


def field(schema: dict, name: str) -> dict:
    return next(f for f in schema["fields"] if f["name"] == name)


def test_the_shipped_schemas_pass() -> None:
    assert check_schemas() == []
    assert check_schemas(SCHEMAS_DIR) == []
    ensure_compatible()


def test_a_new_required_field_without_default_is_caught(tmp_path: Path) -> None:
    v2 = shipped("market_mark")
    v2["fields"].append({"name": "venue", "type": "string", "doc": "Venue of the mark."})
    write(tmp_path, "market_mark", 1, shipped("market_mark"))
    write(tmp_path, "market_mark", 2, v2)
    problems = [p for p in check_schemas(tmp_path) if p.kind == "INCOMPATIBLE"]
    assert problems == [
        CompatibilityProblem(
            record="market_mark",
            kind="INCOMPATIBLE",
            message=problems[0].message,
            reader_version=2,
            writer_version=1,
            field="venue",
            location="/fields/8",
            incompatibility="reader_field_missing_default_value",
        )
    ]
    line = format_problem(problems[0])
    assert line.startswith(
        "market_mark v2 reading v1: INCOMPATIBLE reader_field_missing_default_value at field 'venue' (/fields/8): "
    )
    assert "default" in line
    # and the model check notes that the dataclass cannot carry it either
    assert [p.field for p in check_schemas(tmp_path) if p.kind == "MODEL_MISMATCH"] == ["venue"]


@pytest.mark.parametrize(
    ("change", "name", "incompatibility"),
    [
        (lambda s: field(s, "symbol").update(type="long"), "symbol", "type_mismatch"),
        (lambda s: field(s, "mark_price").update(type="double"), "mark_price", "type_mismatch"),
        (lambda s: field(s, "source").update(type="string", default="feed"), "source", "type_mismatch"),
    ],
)
def test_a_changed_type_is_caught_and_named(tmp_path: Path, change, name: str, incompatibility: str) -> None:
    v2 = shipped("market_mark")
    change(v2)
    write(tmp_path, "market_mark", 1, shipped("market_mark"))
    write(tmp_path, "market_mark", 2, v2)
    problems = [p for p in check_schemas(tmp_path) if p.kind == "INCOMPATIBLE"]
    assert [(p.field, p.incompatibility, p.reader_version, p.writer_version) for p in problems] == [
        (name, incompatibility, 2, 1)
    ]
    assert f"'{name}'" in format_problem(problems[0])


def test_removed_enum_symbols_are_caught(tmp_path: Path) -> None:
    v2 = shipped("alert")
    field(v2, "severity")["type"]["symbols"].remove("CRITICAL")
    write(tmp_path, "alert", 1, shipped("alert"))
    write(tmp_path, "alert", 2, v2)
    problems = check_schemas(tmp_path)
    incompatible = [p for p in problems if p.kind == "INCOMPATIBLE"]
    assert [(p.field, p.incompatibility) for p in incompatible] == [("severity", "missing_enum_symbols")]
    assert "CRITICAL" in incompatible[0].message and incompatible[0].location == "/fields/2/type/symbols"
    assert any(p.kind == "MODEL_MISMATCH" and p.field == "severity" for p in problems)


def test_a_decimal_scale_change_is_caught_although_avro_resolution_allows_it(tmp_path: Path) -> None:
    v2 = shipped("market_mark")
    field(v2, "mark_price")["type"]["scale"] = 6
    write(tmp_path, "market_mark", 1, shipped("market_mark"))
    write(tmp_path, "market_mark", 2, v2)
    problems = check_schemas(tmp_path)
    assert [(p.kind, p.field) for p in problems] == [("LOGICAL_TYPE_CHANGED", "mark_price")]
    assert "decimal(38, 8) to decimal(38, 6)" in format_problem(problems[0])
    # bytes -> string is a legal Avro promotion, but not for a decimal
    field(v2, "mark_price")["type"] = "string"
    write(tmp_path, "market_mark", 2, v2)
    assert ("LOGICAL_TYPE_CHANGED", "mark_price") in [(p.kind, p.field) for p in check_schemas(tmp_path)]


def test_compatible_changes_pass_and_the_codec_reads_old_data_with_the_new_version(tmp_path: Path) -> None:
    """v2 adds a nullable field with default null and widens partition/lag_messages int -> long."""
    v1 = shipped("alert")
    field(v1, "partition")["type"] = ["null", "int"]
    field(v1, "lag_messages")["type"] = ["null", "int"]
    v2 = shipped("alert")
    v2["fields"].append({"name": "runbook", "type": ["null", "string"], "default": None, "doc": "Runbook link."})
    old_dir = write(tmp_path / "old", "alert", 1, v1)
    new_dir = write(write(tmp_path / "new", "alert", 1, v1), "alert", 2, v2)
    assert check_schemas(new_dir) == []

    alert = Alert(
        "a-1",
        AlertKind.LAG_STALLED,
        AlertSeverity.CRITICAL,
        T0,
        "projector",
        "stalled",
        topic="trading.orders",
        partition=7,
        lag_messages=1200,
        lag_seconds=Decimal("31.5"),
    )
    data_v1 = AvroCodec(old_dir).encode(alert)  # written by a producer still on v1
    new = AvroCodec(new_dir)
    assert new.peek(data_v1) == ("Alert", 1)
    assert new.decode(data_v1) == alert
    assert new.peek(new.encode(alert)) == ("Alert", 2)


def test_every_version_is_checked_against_all_earlier_ones(tmp_path: Path) -> None:
    """v2 adds a field with a default, v3 drops the default: fine for v2 data, not for v1."""
    v2 = shipped("market_mark")
    v2["fields"].append({"name": "venue", "type": "string", "default": "XNAS", "doc": "Venue."})
    v3 = json.loads(json.dumps(v2))
    del field(v3, "venue")["default"]
    root = write(
        write(write(tmp_path, "market_mark", 1, shipped("market_mark")), "market_mark", 2, v2), "market_mark", 3, v3
    )
    incompatible = [p for p in check_schemas(root) if p.kind == "INCOMPATIBLE"]
    assert [(p.reader_version, p.writer_version, p.field) for p in incompatible] == [(3, 1, "venue")]


@pytest.mark.parametrize(
    ("files", "kind", "words"),
    [
        ({"v1.avsc": "shipped", "v3.avsc": "shipped"}, "VERSION_GAP", "v2.avsc"),
        ({"v2.avsc": "shipped"}, "VERSION_GAP", "v1.avsc"),
        ({"v1.avsc": "shipped", "v01.avsc": "shipped"}, "BAD_FILE_NAME", "v01.avsc"),
        ({"v1.avsc": "shipped", "latest.avsc": "shipped"}, "BAD_FILE_NAME", "latest.avsc"),
        ({"v1.avsc": "{not json"}, "PARSE_ERROR", "v1.avsc"),
        (
            {"v1.avsc": '{"type": "record", "name": "MarketMark", "fields": [{"name": "x", "type": "nope"}]}'},
            "PARSE_ERROR",
            "nope",
        ),
        ({"v1.avsc": '["null", "string"]'}, "PARSE_ERROR", "record"),
        ({}, "NO_VERSIONS", "no v<N>.avsc"),
    ],
)
def test_directory_layout_problems(tmp_path: Path, files: dict[str, str], kind: str, words: str) -> None:
    record_dir = tmp_path / "market_mark"
    record_dir.mkdir()
    (record_dir / "README.md").write_text("notes are ignored")
    for name, content in files.items():
        (record_dir / name).write_text(json.dumps(shipped("market_mark")) if content == "shipped" else content)
    problems = check_schemas(tmp_path)
    assert kind in {p.kind for p in problems}
    problem = next(p for p in problems if p.kind == kind)
    assert problem.record == "market_mark" and words in problem.message


@pytest.mark.parametrize(
    ("name", "default", "kind", "words"),
    [
        ("source", "feed", "BAD_DEFAULT", "first branch"),  # fastavro and Apache Avro let it pass
        ("bid", "1.5", "BAD_DEFAULT", "first branch"),
        ("symbol", None, "PARSE_ERROR", "Default value"),  # fastavro refuses this one itself
    ],
)
def test_defaults_must_match_the_type(tmp_path: Path, name: str, default: object, kind: str, words: str) -> None:
    schema = shipped("market_mark")
    field(schema, name)["default"] = default
    problems = check_schemas(write(tmp_path, "market_mark", 1, schema))
    assert [p.kind for p in problems] == [kind]
    assert words in problems[0].message
    assert kind == "PARSE_ERROR" or problems[0].field == name


def test_a_record_in_the_wrong_directory_or_renamed_between_versions(tmp_path: Path) -> None:
    write(tmp_path / "a", "orders", 1, shipped("order_event"))
    assert [p.kind for p in check_schemas(tmp_path / "a")] == ["NAME_MISMATCH"]
    renamed = shipped("market_mark")
    renamed["name"] = "Mark"
    write(write(tmp_path / "b", "market_mark", 1, shipped("market_mark")), "market_mark", 2, renamed)
    assert "NAME_MISMATCH" in [p.kind for p in check_schemas(tmp_path / "b")]


def test_a_missing_directory() -> None:
    problems = check_schemas(Path("/nonexistent/schemas"))
    assert [p.kind for p in problems] == ["MISSING_DIR"]
    assert format_problem(problems[0]).startswith("schemas: MISSING_DIR: ")


def test_ensure_compatible_raises_with_every_problem(tmp_path: Path) -> None:
    v2 = shipped("market_mark")
    field(v2, "symbol")["type"] = "long"
    write(write(tmp_path, "market_mark", 1, shipped("market_mark")), "market_mark", 2, v2)
    with pytest.raises(SchemaCompatibilityError, match="symbol") as info:
        ensure_compatible(tmp_path)
    assert "market_mark v2 reading v1" in str(info.value)


def test_codec_data_survives_a_compatible_new_version(tmp_path: Path) -> None:
    """The brief's scenario: data written with v1; a codec whose newest version is v2 reads it."""
    v2 = shipped("market_mark")
    v2["fields"].insert(
        4,
        {
            "name": "mid",
            "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 8}],
            "default": None,
            "doc": "Mid price.",
        },
    )
    old_dir = write(tmp_path / "old", "market_mark", 1, shipped("market_mark"))
    new_dir = write(write(tmp_path / "new", "market_mark", 1, shipped("market_mark")), "market_mark", 2, v2)
    assert check_schemas(new_dir) == []
    marks = [
        MarketMark(
            f"m-{i}", "AAPL", T0, Decimal(100 + i) / 4, bid=Decimal(99), ask=None, source="feed" if i % 2 else None
        )
        for i in range(50)
    ]
    old, new = AvroCodec(old_dir), AvroCodec(new_dir)
    assert [new.decode(old.encode(m)) for m in marks] == marks
    assert [new.decode(new.encode(m)) for m in marks] == marks
