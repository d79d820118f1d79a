"""AvroCodec: wire format, round trips, the fast path against fastavro, errors, evolution."""

from __future__ import annotations

import decimal
import io
import json
import shutil
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import avro.schema
import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backbone.codec.avro import AvroCodec, EncodeError
from backbone.codec.fields import strip_converted_logical_types
from backbone.codec.schemas import canonical_fingerprint, read_schemas_dir
from backbone.codec.wire import HEADER_SIZE, MAGIC
from backbone.domain.events import (
    Alert,
    AlertKind,
    AlertSeverity,
    EventType,
    Liquidity,
    MarketMark,
    OrderEvent,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from backbone.errors import ConfigError, DecodeError
from schemas import SCHEMAS_DIR

UTC = UTC
T0 = datetime(2026, 11, 22, 14, 30, 0, 123456, tzinfo=UTC)
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


_CODEC = AvroCodec()  # for hypothesis tests (function-scoped fixtures do not mix with @given)
_HEADERS = [MAGIC + int.to_bytes(fp, 8, "little") for fp in sorted(_CODEC.fingerprints())]
_LOGICAL = {
    d: parse_schema(json.loads((SCHEMAS_DIR / d / "v1.avsc").read_text()))
    for d in ("order_event", "market_mark", "alert")
}


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return _CODEC


def order(**changes: object) -> OrderEvent:
    base = OrderEvent(
        event_id="1d7c3a52-3f0e-5b8e-9a4c-2f6d8e1b7c90",
        event_type=EventType.FILLED,
        event_time=T0,
        ingest_time=T0 + timedelta(microseconds=1250),
        seq=3,
        account="ACC-1",
        symbol="AAPL",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.DAY,
        order_id="O-1001",
        cl_ord_id="C-1001",
        order_qty=Decimal("100"),
        cum_qty=Decimal("60"),
        leaves_qty=Decimal("40"),
        avg_px=Decimal("101.25"),
        order_status=OrderStatus.PARTIALLY_FILLED,
        exec_id="E-7",
        price=Decimal("101.5"),
        last_qty=Decimal("60"),
        last_px=Decimal("101.25"),
        commission=Decimal("0.35"),
        currency="USD",
        liquidity=Liquidity.ADDED,
        actor="trader-7",
    )
    return base.replace(**changes)


# ------------------------------------------------------------------------------------------
# strategies

MAX_DECIMAL = Decimal("9" * 30 + "." + "9" * 8)
MIN_DECIMAL = Decimal("-" + "9" * 30 + "." + "9" * 8)  # (unary minus would round to 28 digits)
texts = st.one_of(
    st.text(max_size=40),
    st.text(min_size=60, max_size=3000),  # multi-byte length varints
    st.sampled_from(["", "\x00", "a\x00b", "📈🚀 Ünïcödé", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢" * 50, "\u2028\u2029\ufeff"]),
)


@st.composite
def decimals(draw: st.DrawFn) -> Decimal:
    """Exact decimal(38, 8) values: up to 30 integer and 8 fractional digits, any exponent form."""
    places = draw(st.integers(0, 8))
    unscaled = draw(st.integers(-(10 ** (30 + places)) + 1, 10 ** (30 + places) - 1))
    value = Decimal((0 if unscaled >= 0 else 1, tuple(int(c) for c in str(abs(unscaled))), -places))
    # the same value spelled differently: exponent forms, trailing zeros beyond the scale
    return draw(
        st.sampled_from(
            [value, value.normalize(_WIDE), Decimal(f"{value:f}"), value.quantize(Decimal("1E-12"), context=_WIDE)]
        )
    )


_WIDE = decimal.Context(prec=100)
some_decimals = st.one_of(
    decimals(),
    st.sampled_from(
        [
            Decimal(0),
            Decimal("-0"),
            Decimal("0E-20"),
            Decimal("0E+40"),
            Decimal("1E-8"),
            Decimal("-1E-8"),
            MAX_DECIMAL,
            MIN_DECIMAL,
            Decimal("1E+29"),
        ]
    ),
)
utc_times = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999), timezones=st.just(UTC)
)
offset_times = st.datetimes(
    min_value=datetime(2, 1, 1),
    max_value=datetime(9998, 12, 31),
    timezones=st.sampled_from(
        [timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8)), timezone(timedelta(hours=14))]
    ),
)
times = st.one_of(
    utc_times,
    offset_times,
    st.sampled_from([T0, datetime(1970, 1, 1, tzinfo=UTC), datetime(2106, 2, 7, 6, 28, 16, tzinfo=UTC)]),
)
longs = st.integers(-(2**63), 2**63 - 1)


def opt(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


order_events = st.builds(
    OrderEvent,
    event_id=texts,
    event_type=st.sampled_from(EventType),
    event_time=times,
    ingest_time=times,
    seq=st.one_of(st.integers(0, 100), longs),
    account=texts,
    symbol=texts,
    side=st.sampled_from(Side),
    order_type=st.sampled_from(OrderType),
    time_in_force=st.sampled_from(TimeInForce),
    order_id=texts,
    cl_ord_id=texts,
    order_qty=some_decimals,
    cum_qty=some_decimals,
    leaves_qty=some_decimals,
    avg_px=some_decimals,
    order_status=st.sampled_from(OrderStatus),
    orig_cl_ord_id=opt(texts),
    exec_id=opt(texts),
    exec_ref_id=opt(texts),
    price=opt(some_decimals),
    stop_price=opt(some_decimals),
    last_qty=opt(some_decimals),
    last_px=opt(some_decimals),
    commission=opt(some_decimals),
    currency=opt(texts),
    liquidity=opt(st.sampled_from(Liquidity)),
    reason=opt(texts),
    actor=opt(texts),
    correlation_id=opt(texts),
    causation_id=opt(texts),
)
market_marks = st.builds(
    MarketMark,
    event_id=texts,
    symbol=texts,
    event_time=times,
    mark_price=some_decimals,
    bid=opt(some_decimals),
    ask=opt(some_decimals),
    last=opt(some_decimals),
    source=opt(texts),
)
alerts = st.builds(
    Alert,
    event_id=texts,
    kind=st.sampled_from(AlertKind),
    severity=st.sampled_from(AlertSeverity),
    event_time=times,
    source=texts,
    message=texts,
    topic=opt(texts),
    partition=opt(st.integers(-(2**31), 2**31 - 1)),
    lag_messages=opt(longs),
    lag_seconds=opt(some_decimals),
)
records = st.one_of(order_events, market_marks, alerts)


# ------------------------------------------------------------------------------------------
# fingerprints and the wire format


@pytest.mark.parametrize(
    ("schema", "expected"),
    [  # Avro's own test vectors (share/test/data/schema-tests.txt), as Java signed longs
        ('"null"', 7195948357588979594),
        ('"boolean"', -6970731678124411036),
        ('"int"', 8247732601305521295),
        ('{"name":"foo","type":"fixed","size":15}', 1756455273707447556),
        ('{"name":"foo","type":"record","fields":[{"name":"f1","type":"boolean"}]}', 7843277075252814651),
    ],
)
def test_crc64_avro_fingerprint_matches_the_avro_test_vectors(schema: str, expected: int) -> None:
    fp = canonical_fingerprint(schema)
    assert len(fp) == 8
    assert int.from_bytes(fp, "little", signed=True) == expected


def test_fingerprints_and_canonical_forms_agree_with_apache_avro() -> None:
    """A second implementation of Parsing Canonical Form and CRC-64-AVRO agrees.

    The Parsing Canonical Form strips ``logicalType`` and writes primitives in their simple
    form ("long"), as Java's SchemaNormalization and fastavro do; the Apache Avro *Python*
    library keeps ``{"type": "long"}`` for logical types (an implementation quirk), so it is
    given the schema with the logical types removed, which must not change the canonical form.
    """
    records, problems = read_schemas_dir(SCHEMAS_DIR)
    assert problems == []
    assert set(records) == {"order_event", "market_mark", "alert"}
    for files in records.values():
        for f in files:
            reference = avro.schema.parse(json.dumps(strip_converted_logical_types(f.schema)))
            assert f.canonical_form == reference.canonical_form
            assert f.fingerprint == reference.fingerprint("CRC-64-AVRO")
            assert '"logicalType"' not in f.canonical_form and '{"type":"long"}' not in f.canonical_form


def test_single_object_header(codec: AvroCodec) -> None:
    data = codec.encode(order())
    assert data[:2] == MAGIC == b"\xc3\x01"
    fps = codec.fingerprints()
    assert fps[int.from_bytes(data[2:HEADER_SIZE], "little")] == ("OrderEvent", 1)
    assert sorted(fps.values()) == [("Alert", 1), ("MarketMark", 1), ("OrderEvent", 1)]
    assert codec.peek(data) == ("OrderEvent", 1)
    assert codec.newest_version(OrderEvent) == 1


def test_body_is_plain_avro_binary_readable_by_fastavro_with_logical_types(codec: AvroCodec) -> None:
    event = order(event_time=datetime(2026, 11, 22, 14, 30, tzinfo=UTC), avg_px=Decimal("-101.25"))
    data = codec.encode(event)
    schema = parse_schema(json.loads((SCHEMAS_DIR / "order_event" / "v1.avsc").read_text()))
    datum = schemaless_reader(io.BytesIO(data[HEADER_SIZE:]), schema, None)
    assert datum["avg_px"] == Decimal("-101.25") and datum["price"] == Decimal("101.5")
    assert datum["event_time"] == event.event_time
    assert datum["event_type"] == "FILLED" and datum["reason"] is None


def test_schema_enums_match_the_python_enums() -> None:
    enums = {}
    for path in SCHEMAS_DIR.glob("*/v*.avsc"):
        for f in json.loads(path.read_text())["fields"]:
            for t in f["type"] if isinstance(f["type"], list) else [f["type"]]:
                if isinstance(t, dict) and t.get("type") == "enum":
                    enums[t["name"]] = t["symbols"]
    py = {
        e.__name__: [m.value for m in e]
        for e in (EventType, OrderStatus, Side, OrderType, TimeInForce, Liquidity, AlertSeverity, AlertKind)
    }
    assert enums == py


def test_every_schema_field_has_a_doc_and_nullable_fields_default_to_null() -> None:
    for path in SCHEMAS_DIR.glob("*/v*.avsc"):
        schema = json.loads(path.read_text())
        assert schema["namespace"] == "trading.backbone" and schema.get("doc")
        for f in schema["fields"]:
            assert f.get("doc"), f"{path}: {f['name']} has no doc"
            if isinstance(f["type"], list):
                assert f["type"][0] == "null" and "default" in f and f["default"] is None, f"{path}: {f['name']}"


# ------------------------------------------------------------------------------------------
# round trips


def test_round_trip_keeps_values_types_and_scale(codec: AvroCodec) -> None:
    event = order()
    decoded = codec.decode(codec.encode(event))
    assert decoded == event
    assert (
        type(decoded) is OrderEvent and type(decoded.event_type) is EventType and type(decoded.liquidity) is Liquidity
    )
    assert decoded.avg_px.as_tuple().exponent == -8 and str(decoded.avg_px) == "101.25000000"
    assert decoded.event_time.tzinfo is UTC and decoded.event_time.microsecond == 123456
    assert codec.decode_order_event(codec.encode(event)) == event
    assert hash(decoded) == hash(event)
    assert [str(d) for d in (decoded.order_qty, decoded.price, decoded.commission)] == [
        "100.00000000",
        "101.50000000",
        "0.35000000",
    ]


@FAST
@given(records)
def test_round_trip_any_record(record: OrderEvent | MarketMark | Alert) -> None:
    codec = _CODEC
    data = codec.encode(record)
    assert codec.decode(data) == record
    # the generated fast paths agree byte for byte and value for value with fastavro
    assert codec._encode_via_fastavro(record) == data
    assert codec._decode_via_fastavro(data) == record


@FAST
@given(records)
def test_fastavro_reads_the_logical_types_the_same(record: OrderEvent | MarketMark | Alert) -> None:
    data = _CODEC.encode(record)
    directory = {"OrderEvent": "order_event", "MarketMark": "market_mark", "Alert": "alert"}[type(record).__name__]
    datum = schemaless_reader(io.BytesIO(data[HEADER_SIZE:]), _LOGICAL[directory], None)
    for name, value in datum.items():
        original = getattr(record, name)
        if isinstance(original, datetime) and original.year in (1, 9999):
            continue  # fastavro's own datetime arithmetic overflows at the extremes
        assert value == original, name


@pytest.mark.parametrize(
    "micros",
    [
        0,
        1,
        -1,
        2**41,
        2**41 - 1,
        2**55 - 1,
        2**55,
        (2**32) * 10**6 - 1,
        (2**32) * 10**6,
        -(2**41),
        253402300799999999,
        -62135596800000000,
    ],
)
def test_timestamp_boundaries_of_the_fast_paths(codec: AvroCodec, micros: int) -> None:
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    event = order(event_time=t, ingest_time=t)
    assert codec.decode(codec.encode(event)) == event
    assert codec._encode_via_fastavro(event) == codec.encode(event)


def test_decimal_spellings_encode_identically_and_the_caches_stay_correct(codec: AvroCodec) -> None:
    spellings = [Decimal("100"), Decimal("100.00"), Decimal("1E+2"), Decimal("100.000000000000")]
    encodings = {codec.encode(order(price=d)) for d in spellings}
    assert len(encodings) == 1
    # more distinct values than a cache holds: entries are evicted, values stay right
    for i in range(20_000):
        value = Decimal(i).scaleb(-8) + 7
        assert codec.decode(codec.encode(order(price=value))).price == value


def test_non_utc_datetimes_come_back_as_the_same_instant_in_utc(codec: AvroCodec) -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    t = datetime(2026, 11, 22, 20, 0, 0, 1, tzinfo=ist)
    decoded = codec.decode(codec.encode(order(event_time=t)))
    assert decoded.event_time == t and decoded.event_time.tzinfo is UTC
    assert decoded.event_time == datetime(2026, 11, 22, 14, 30, 0, 1, tzinfo=UTC)


def test_bytes_like_input_is_accepted(codec: AvroCodec) -> None:
    data = codec.encode(order())
    assert codec.decode(bytearray(data)) == codec.decode(memoryview(data)) == order()


# ------------------------------------------------------------------------------------------
# encode errors


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"price": Decimal("101.123456789")}, "price", "fractional digits"),
        ({"avg_px": Decimal("1E+30")}, "avg_px", "integer digits"),
        ({"avg_px": Decimal("1E-9")}, "avg_px", "fractional digits"),
        ({"avg_px": Decimal("1E+999999")}, "avg_px", "integer digits"),
        ({"avg_px": Decimal("1E-999999")}, "avg_px", "fractional digits"),
        ({"commission": Decimal("NaN")}, "commission", "finite"),
        ({"commission": Decimal("sNaN")}, "commission", "finite"),
        ({"cum_qty": Decimal("-Infinity")}, "cum_qty", "finite"),
        ({"cum_qty": 1.5}, "cum_qty", "Decimal"),
        ({"cum_qty": 15}, "cum_qty", "Decimal"),
        ({"cum_qty": "15"}, "cum_qty", "Decimal"),
        ({"event_time": datetime(2026, 11, 22, 14, 30)}, "event_time", "naive"),
        ({"event_time": "2026-11-22T14:30:00Z"}, "event_time", "datetime"),
        ({"event_time": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))}, "event_time", "1..9999"),
        ({"account": None}, "account", "required"),
        ({"account": 42}, "account", "str"),
        ({"account": b"ACC"}, "account", "str"),
        ({"reason": "\udc80 lone surrogate"}, "reason", "UTF-8"),
        ({"seq": 2**63}, "seq", "64-bit"),
        ({"seq": "3"}, "seq", "int"),
        ({"seq": 1.0}, "seq", "int"),
        ({"event_type": "NOPE"}, "event_type", "not one of"),
        ({"side": OrderType.LIMIT}, "side", "not one of"),
        ({"liquidity": 3}, "liquidity", "not one of"),
    ],
)
def test_encode_refuses_bad_values_naming_the_field(codec: AvroCodec, changes: dict, field: str, words: str) -> None:
    with pytest.raises(EncodeError) as info:
        codec.encode(order(**changes))
    assert info.value.field == field
    assert field in str(info.value) and words in str(info.value)


def test_decimal_rules_fewer_digits_scale_up_and_exact_trailing_zeros_pass(codec: AvroCodec) -> None:
    for value in (
        Decimal("1.5"),
        Decimal("1.500000000"),
        Decimal("-0.00000001"),
        MAX_DECIMAL,
        MIN_DECIMAL,
        Decimal("0E-30"),
    ):
        assert codec.decode(codec.encode(order(price=value))).price == value


def test_encode_refuses_what_is_not_a_record(codec: AvroCodec) -> None:
    with pytest.raises(EncodeError, match="not a record type"):
        codec.encode({"type": "OrderEvent"})  # type: ignore[arg-type]


def test_alert_int_range(codec: AvroCodec) -> None:
    alert = Alert("e", AlertKind.LAG_RISING, AlertSeverity.WARNING, T0, "g", "m", partition=2**31)
    with pytest.raises(EncodeError, match="32-bit") as info:
        codec.encode(alert)
    assert info.value.field == "partition"


# ------------------------------------------------------------------------------------------
# decode errors: DecodeError, never anything else


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "truncated"),
        (b"\xc3\x01\x00", "truncated"),
        (b"\x00\x01" + bytes(20), "marker"),
        (b"\xc3\x01" + bytes(8) + b"\x00", "unknown writer schema fingerprint"),
        ("not bytes", "expected bytes"),
        (None, "expected bytes"),
    ],
)
def test_decode_refuses_bad_headers(codec: AvroCodec, data: object, words: str) -> None:
    with pytest.raises(DecodeError, match=words):
        codec.decode(data)  # type: ignore[arg-type]


def test_every_truncation_and_trailing_bytes_are_refused(codec: AvroCodec) -> None:
    for record in (order(), order(reason="x" * 200, price=None), MarketMark("m", "AAPL", T0, Decimal("1.5"))):
        data = codec.encode(record)
        for n in range(len(data)):
            with pytest.raises(DecodeError, match="truncated"):
                codec.decode(data[:n])
        with pytest.raises(DecodeError, match="trailing"):
            codec.decode(data + b"\x00")


def test_decode_error_names_the_field(codec: AvroCodec) -> None:
    data = bytearray(codec.encode(order()))
    data[HEADER_SIZE + 1 + 36] = 0x7E  # event_type index 63: out of range
    with pytest.raises(DecodeError, match="event_type"):
        codec.decode(bytes(data))
    data = bytearray(codec.encode(order(account="é")))
    data[data.index("é".encode())] = 0xFF  # invalid UTF-8
    with pytest.raises(DecodeError, match="UTF-8.*account"):
        codec.decode(bytes(data))


def test_decode_order_event_refuses_other_records(codec: AvroCodec) -> None:
    with pytest.raises(DecodeError, match="OrderEvent.*MarketMark"):
        codec.decode_order_event(codec.encode(MarketMark("m", "AAPL", T0, Decimal("1.5"))))


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_raise_decode_error_only(body: bytes) -> None:
    for data in (body, _HEADERS[len(body) % 3] + body):
        try:
            record = _CODEC.decode(data)
        except DecodeError:
            continue
        assert isinstance(record, (OrderEvent, MarketMark, Alert))


@FAST
@given(records, st.data())
def test_damaged_encodings_raise_decode_error_only(
    record: OrderEvent | MarketMark | Alert, data: st.DataObject
) -> None:
    encoded = bytearray(_CODEC.encode(record))
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(DecodeError):
        _CODEC.decode(bytes(encoded[:cut]))
    for _ in range(data.draw(st.integers(1, 4))):
        encoded[data.draw(st.integers(HEADER_SIZE, len(encoded) - 1))] = data.draw(st.integers(0, 255))
    try:
        decoded = _CODEC.decode(bytes(encoded))
    except DecodeError:
        return
    assert type(decoded) is type(record)


def test_headers_helper_is_right() -> None:
    assert {_CODEC.peek(h)[0] for h in _HEADERS} == {"OrderEvent", "MarketMark", "Alert"}


# ------------------------------------------------------------------------------------------
# schema versions


def _schema(directory: str, version: int = 1) -> dict:
    return json.loads((SCHEMAS_DIR / directory / f"v{version}.avsc").read_text())


def _write(root: Path, directory: str, version: int, schema: dict) -> None:
    (root / directory).mkdir(parents=True, exist_ok=True)
    (root / directory / f"v{version}.avsc").write_text(json.dumps(schema, indent=2))


def test_new_version_with_an_extra_optional_field_reads_old_data_and_writes_new(tmp_path: Path) -> None:
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    v1 = _schema("order_event")
    v2 = _schema("order_event")
    v2["fields"].append({"name": "venue", "type": ["null", "string"], "default": None, "doc": "Execution venue."})
    _write(old_dir, "order_event", 1, v1)
    _write(new_dir, "order_event", 1, v1)
    _write(new_dir, "order_event", 2, v2)
    old, new = AvroCodec(old_dir), AvroCodec(new_dir)
    event = order()
    assert new.decode(old.encode(event)) == event  # v1 data, read with v2
    v2_data = new.encode(event)
    assert new.peek(v2_data) == ("OrderEvent", 2) and new.decode(v2_data) == event
    assert new._encode_via_fastavro(event) == v2_data
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint"):
        old.decode(v2_data)  # an old consumer cannot read the new version: upgrade consumers first


def test_dataclass_field_missing_from_an_old_schema(tmp_path: Path) -> None:
    v1 = _schema("order_event")
    v1["fields"] = [f for f in v1["fields"] if f["name"] != "causation_id"]
    _write(tmp_path / "old", "order_event", 1, v1)
    _write(tmp_path / "new", "order_event", 1, v1)
    _write(tmp_path / "new", "order_event", 2, _schema("order_event"))
    old, new = AvroCodec(tmp_path / "old"), AvroCodec(tmp_path / "new")
    assert new.decode(old.encode(order())) == order()
    with pytest.raises(EncodeError, match="no field causation_id") as info:
        old.encode(order(causation_id="e-1"))
    assert info.value.field == "causation_id"


def test_enum_symbols_resolve_by_name_across_versions(tmp_path: Path) -> None:
    """v1 lists the EventType symbols in another order: indices differ, names match."""
    v1 = _schema("order_event")
    v1["fields"][1]["type"]["symbols"].reverse()
    _write(tmp_path, "order_event", 1, v1)
    _write(tmp_path, "order_event", 2, _schema("order_event"))
    codec = AvroCodec(tmp_path)
    event = order(event_type=EventType.SUBMITTED)
    data = _write_with_fastavro(v1, event)  # as a producer on v1 would have
    assert codec.peek(data) == ("OrderEvent", 1)
    assert codec._readers[data[2:HEADER_SIZE]].fast
    assert codec.decode(data) == event
    assert codec._decode_via_fastavro(data) == event


def _write_with_fastavro(schema: dict, event: OrderEvent) -> bytes:
    """Single-object encoding of `event` with `schema`, by fastavro and its logical types."""
    out = io.BytesIO()
    out.write(
        MAGIC
        + canonical_fingerprint(avro.schema.parse(json.dumps(strip_converted_logical_types(schema))).canonical_form)
    )
    datum = {f["name"]: getattr(event, f["name"]) for f in schema["fields"]}
    schemaless_writer(out, parse_schema(schema), {k: (v.value if hasattr(v, "value") else v) for k, v in datum.items()})
    return out.getvalue()


def test_type_promotion_goes_through_fastavro_resolution(tmp_path: Path) -> None:
    v1 = _schema("alert")
    for f in v1["fields"]:
        if f["name"] == "partition":
            f["type"] = ["null", "int"]
    v2 = _schema("alert")
    for f in v2["fields"]:
        if f["name"] == "lag_messages":
            f["doc"] += " (v2)"
    v1["fields"] = [f for f in v1["fields"] if f["name"] != "lag_messages"]
    v1["fields"].append({"name": "lag_messages", "type": ["null", "int"], "default": None, "doc": "32-bit in v1."})
    _write(tmp_path / "old", "alert", 1, v1)
    _write(tmp_path / "new", "alert", 1, v1)
    _write(tmp_path / "new", "alert", 2, v2)
    old, new = AvroCodec(tmp_path / "old"), AvroCodec(tmp_path / "new")
    alert = Alert(
        "e",
        AlertKind.LAG_RISING,
        AlertSeverity.WARNING,
        T0,
        "g",
        "lag",
        topic="trading.orders",
        partition=3,
        lag_messages=12,
        lag_seconds=Decimal("1.5"),
    )
    data = old.encode(alert)
    reader = new._readers[data[2:HEADER_SIZE]]
    assert not reader.fast  # int -> long: fastavro's schema resolution does it
    assert new.decode(data) == alert
    with pytest.raises(DecodeError):
        new.decode(data[:-1])


def test_bad_schema_directories_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        AvroCodec(tmp_path / "missing")
    gap = tmp_path / "gap"
    _write(gap, "order_event", 1, _schema("order_event"))
    _write(gap, "order_event", 3, _schema("order_event"))
    with pytest.raises(ConfigError, match="VERSION_GAP.*v2.avsc"):
        AvroCodec(gap)
    broken = tmp_path / "broken"
    (broken / "alert").mkdir(parents=True)
    (broken / "alert" / "v1.avsc").write_text("{not json")
    with pytest.raises(ConfigError, match="PARSE_ERROR"):
        AvroCodec(broken)
    renamed = tmp_path / "renamed"
    schema = _schema("market_mark")
    schema["fields"][3]["name"] = "mark"
    _write(renamed, "market_mark", 1, schema)
    with pytest.raises(ConfigError, match="mark_price"):
        AvroCodec(renamed)
    scale = tmp_path / "scale"
    v2 = _schema("market_mark")
    v2["fields"][3]["type"]["scale"] = 6
    _write(scale, "market_mark", 1, _schema("market_mark"))
    _write(scale, "market_mark", 2, v2)
    with pytest.raises(ConfigError, match="decimal"):
        AvroCodec(scale)


def test_a_partial_schemas_dir_encodes_only_its_records(tmp_path: Path) -> None:
    shutil.copytree(SCHEMAS_DIR / "market_mark", tmp_path / "market_mark")
    codec = AvroCodec(tmp_path)
    mark = MarketMark("m", "AAPL", T0, Decimal("1.5"))
    assert codec.decode(codec.encode(mark)) == mark
    with pytest.raises(EncodeError, match="known: MarketMark"):
        codec.encode(order())


def test_codec_is_usable_from_several_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    events = [order(seq=i, price=Decimal(i).scaleb(-2), event_time=T0 + timedelta(seconds=i)) for i in range(3000)]
    with ThreadPoolExecutor(4) as pool:
        decoded = list(pool.map(lambda e: _CODEC.decode(_CODEC.encode(e)), events))
    assert decoded == events
