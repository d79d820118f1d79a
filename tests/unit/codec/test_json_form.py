"""The canonical JSON form: output rules, strict input, round trips."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backbone.codec import json_form
from backbone.codec.json_form import JsonFormError, dumps, format_decimal, from_json_dict, loads, to_json_dict
from backbone.domain.events import (
    Alert,
    EventType,
    Liquidity,
    MarketMark,
    OrderEvent,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)

UTC = UTC
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def example_order() -> OrderEvent:
    """The record of the module docstring's example."""
    t = datetime(2026, 11, 22, 14, 30, tzinfo=UTC)
    return OrderEvent(
        event_id="1d7c3a52-3f0e-5b8e-9a4c-2f6d8e1b7c90",
        event_type=EventType.FILLED,
        event_time=t,
        ingest_time=t + timedelta(microseconds=1250),
        seq=3,
        account="ACC-1",
        symbol="AAPL",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.DAY,
        order_id="O-1001",
        cl_ord_id="C-1001",
        order_qty=Decimal("100.00000000"),
        cum_qty=Decimal("60"),
        leaves_qty=Decimal("4E+1"),
        avg_px=Decimal("101.25000000"),
        order_status=OrderStatus.PARTIALLY_FILLED,
        exec_id="E-7",
        price=Decimal("101.50"),
        last_qty=Decimal("60"),
        last_px=Decimal("101.25"),
        commission=Decimal("0.35"),
        currency="USD",
        liquidity=Liquidity.ADDED,
        actor="trader-7",
    )


def docstring_example() -> str:
    doc = json_form.__doc__ or ""
    block = doc.split("(one line; wrapped here)::", 1)[1].split("Output rules", 1)[0]
    return "".join(line.strip() for line in block.splitlines())


def test_the_documented_example_is_exactly_what_dumps_writes() -> None:
    assert dumps(example_order()) == docstring_example()
    assert loads(docstring_example()) == example_order()


def test_output_rules() -> None:
    obj = to_json_dict(example_order())
    assert list(obj)[:3] == ["type", "event_id", "event_type"]
    assert obj["type"] == "OrderEvent"
    assert obj["event_time"] == "2026-11-22T14:30:00.000000Z" and obj["ingest_time"] == "2026-11-22T14:30:00.001250Z"
    assert (obj["order_qty"], obj["leaves_qty"], obj["avg_px"], obj["price"]) == ("100", "40", "101.25", "101.5")
    assert obj["event_type"] == "FILLED" and obj["liquidity"] == "ADDED"
    assert obj["reason"] is None and "stop_price" in obj
    line = dumps(example_order().replace(reason="line1\nline2\u2028\u2029\x85\x0b end"))
    assert len(line.splitlines()) == 1 and loads(line).reason == "line1\nline2\u2028\u2029\x85\x0b end"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("101.25000000", "101.25"),
        ("100.00000000", "100"),
        ("1E+2", "100"),
        ("-0.50", "-0.5"),
        ("0E-8", "0"),
        ("-0", "0"),
        ("0.00000001", "0.00000001"),
        ("1E-8", "0.00000001"),
        ("999999999999999999999999999999.99999999", "999999999999999999999999999999.99999999"),
        ("-123456789012345678901234567890.12345678", "-123456789012345678901234567890.12345678"),
    ],
)
def test_decimal_text(value: str, text: str) -> None:
    assert format_decimal(Decimal(value)) == text
    assert to_json_dict(MarketMark("m", "X", datetime(2026, 1, 1, tzinfo=UTC), Decimal(value)))["mark_price"] == text


def test_non_utc_times_are_written_in_utc_and_naive_ones_refused() -> None:
    mark = MarketMark(
        "m", "X", datetime(2026, 1, 1, 5, 30, 0, 7, tzinfo=timezone(timedelta(hours=5, minutes=30))), Decimal(1)
    )
    assert to_json_dict(mark)["event_time"] == "2026-01-01T00:00:00.000007Z"
    with pytest.raises(JsonFormError, match="naive") as info:
        to_json_dict(mark.replace(event_time=datetime(2026, 1, 1)))
    assert info.value.field == "event_time"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22T14:30:00.000000Z", datetime(2026, 11, 22, 14, 30, tzinfo=UTC)),
        ("2026-11-22T14:30:00Z", datetime(2026, 11, 22, 14, 30, tzinfo=UTC)),
        ("2026-11-22T14:30:00.5+00:00", datetime(2026, 11, 22, 14, 30, 0, 500000, tzinfo=UTC)),
        ("2026-11-22T20:00:00.000001+05:30", datetime(2026, 11, 22, 14, 30, 0, 1, tzinfo=UTC)),
        ("2026-11-22T06:30:00-08:00", datetime(2026, 11, 22, 14, 30, tzinfo=UTC)),
    ],
)
def test_times_accept_any_offset_and_convert_to_utc(text: str, expected: datetime) -> None:
    mark = from_json_dict({"type": "MarketMark", "event_id": "m", "symbol": "X", "event_time": text, "mark_price": "1"})
    assert mark.event_time == expected and mark.event_time.utcoffset() == timedelta(0) and mark.event_time.tzinfo is UTC


def test_absent_optionals_may_be_missing_or_null() -> None:
    minimal = {
        "type": "MarketMark",
        "event_id": "m",
        "symbol": "X",
        "event_time": "2026-01-01T00:00:00Z",
        "mark_price": "1.5",
    }
    assert (
        from_json_dict(minimal)
        == from_json_dict(dict(minimal, bid=None, source=None))
        == MarketMark("m", "X", datetime(2026, 1, 1, tzinfo=UTC), Decimal("1.5"))
    )


@pytest.mark.parametrize(("number", "shown"), [("101.1", "101.1"), ("100", "100"), ("1e2", "1E+2"),
                                             ("-0.5", "-0.5"), ("12345678901234567891", "12345678901234567891")])
def test_decimals_are_refused_as_json_numbers_integers_included(number: str, shown: str) -> None:
    line = ('{"type":"MarketMark","event_id":"m","symbol":"X","event_time":"2026-01-01T00:00:00Z",'
            f'"mark_price":"1","bid":{number}}}')
    expected = f"never a JSON number .*got (integer|number) {re.escape(shown)}\\)"
    with pytest.raises(JsonFormError, match=expected) as info:
        loads(line)
    assert info.value.field == "bid"
    with pytest.raises(JsonFormError, match="never a JSON number"):  # the float json.loads makes, too
        from_json_dict(json.loads(line))
    assert loads(line.replace(f":{number}}}", f':"{number}"}}')).bid == Decimal(number)


_MARK = {"type": "MarketMark", "event_id": "m", "symbol": "X", "event_time": "2026-01-01T00:00:00Z", "mark_price": "1"}


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"type": None}, "type", "unknown record type"),
        ({"type": "Trade"}, "type", "unknown record type"),
        ({"symbol": None}, "symbol", "must not be null"),
        ({"symbol": 7}, "symbol", "expected a string"),
        ({"venue": "X"}, "venue", "unknown field"),
        ({"mark_price": "1.2.3"}, "mark_price", "bad decimal"),
        ({"mark_price": "abc"}, "mark_price", "bad decimal"),
        ({"mark_price": "NaN"}, "mark_price", "bad decimal"),
        ({"mark_price": "Infinity"}, "mark_price", "bad decimal"),
        ({"mark_price": " 1"}, "mark_price", "bad decimal"),
        ({"mark_price": "1_000"}, "mark_price", "bad decimal"),
        ({"mark_price": "١٢"}, "mark_price", "bad decimal"),  # non-ASCII digits
        ({"mark_price": "1.123456789"}, "mark_price", "more than 8 fractional digits"),
        ({"mark_price": "1E-9"}, "mark_price", "more than 8 fractional digits"),
        ({"mark_price": "1e30"}, "mark_price", "more than 30 integer digits"),
        ({"mark_price": "1e999999999"}, "mark_price", "more than 30 integer digits"),
        ({"mark_price": True}, "mark_price", "wrong type"),
        ({"mark_price": ["1"]}, "mark_price", "wrong type"),
        ({"event_time": "2026-01-01T00:00:00"}, "event_time", "naive"),
        ({"event_time": "2026-01-01"}, "event_time", "bad time"),
        ({"event_time": "2026-01-01T00:00:00.1234567Z"}, "event_time", "bad time"),
        ({"event_time": "2026-13-01T00:00:00Z"}, "event_time", "bad time"),
        ({"event_time": "0001-01-01T00:00:00+01:00"}, "event_time", "out of range"),
        ({"event_time": 1767225600}, "event_time", "wrong type"),
    ],
)
def test_input_errors_name_the_field(changes: dict, field: str, words: str) -> None:
    obj = {**_MARK, **changes}
    with pytest.raises(JsonFormError) as info:
        from_json_dict(obj)
    assert info.value.field == field
    assert field in str(info.value) and words in str(info.value)


def test_missing_fields_enums_and_ints() -> None:
    with pytest.raises(JsonFormError, match="'mark_price': missing required field") as info:
        from_json_dict({k: v for k, v in _MARK.items() if k != "mark_price"})
    assert info.value.field == "mark_price"
    with pytest.raises(JsonFormError, match="'type': missing required field") as info:
        from_json_dict({k: v for k, v in _MARK.items() if k != "type"})
    assert info.value.field == "type"
    alert = {
        "type": "Alert",
        "event_id": "a",
        "kind": "LAG_RISING",
        "severity": "WARNING",
        "event_time": "2026-01-01T00:00:00Z",
        "source": "g",
        "message": "m",
    }
    assert from_json_dict(dict(alert, partition=3)).partition == 3
    for changes, field, words in [
        ({"kind": "lag_rising"}, "kind", "unknown AlertKind value"),
        ({"kind": 1}, "kind", "wrong type"),
        ({"severity": "FATAL"}, "severity", "INFO, WARNING, CRITICAL"),
        ({"partition": True}, "partition", "expected an integer"),
        ({"partition": 1.0}, "partition", "expected an integer"),
        ({"partition": "1"}, "partition", "expected an integer"),
        ({"lag_messages": 2**63}, "lag_messages", "64-bit"),
    ]:
        with pytest.raises(JsonFormError, match=words) as info:
            from_json_dict(dict(alert, **changes))
        assert info.value.field == field


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ("{not json", None, "invalid JSON"),
        ("", None, "invalid JSON"),
        ("[1, 2]", None, "expected a JSON object"),
        ('"OrderEvent"', None, "expected a JSON object"),
        ('{"type":"MarketMark","type":"Alert"}', "type", "duplicate key"),
        ('{"type":"MarketMark","mark_price":NaN}', None, "NaN"),
    ],
)
def test_loads_errors(line: str, field: str | None, words: str) -> None:
    with pytest.raises(JsonFormError, match=words) as info:
        loads(line)
    assert info.value.field == field


def test_to_json_dict_refuses_what_is_not_a_record() -> None:
    with pytest.raises(JsonFormError, match="not a record type"):
        to_json_dict({"type": "OrderEvent"})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# round trips (strategies shared with the Avro codec tests)

from test_avro_codec import records  # noqa: E402 - the same generators for both forms


def _blank_names(record: object) -> list[str]:
    """The string fields the form refuses as blank (ids, symbols, codes: not free text)."""
    return [f.name for f in dataclasses.fields(record) if isinstance(value := getattr(record, f.name), str)
            and not value.strip() and f.name not in json_form.FREE_TEXT]


def _named(record: object) -> object:
    """`record` with a visible character in front of every blank id, so that it round-trips."""
    return dataclasses.replace(record, **{name: "x" + getattr(record, name) for name in _blank_names(record)})


@FAST
@given(records)
def test_blank_ids_symbols_and_codes_are_refused_naming_the_first(record: OrderEvent | MarketMark | Alert) -> None:
    blank = _blank_names(record)
    if not blank:
        return
    with pytest.raises(JsonFormError, match="empty or only whitespace") as info:
        loads(dumps(record))
    assert info.value.field == blank[0]


@pytest.mark.parametrize("value", ["", " ", "\t", "\u3000", "\u2028 \n"])
@pytest.mark.parametrize("field", ["event_id", "symbol", "source"])
def test_a_blank_mark_id_symbol_or_source_is_refused(field: str, value: str) -> None:
    with pytest.raises(JsonFormError, match=f"field '{field}': empty or only whitespace") as info:
        from_json_dict({**_MARK, field: value})
    assert info.value.field == field


def test_free_text_may_be_empty_and_ids_may_hold_inner_spaces() -> None:
    order = to_json_dict(example_order())
    assert from_json_dict({**order, "reason": " ", "account": "ACC 1"}).reason == " "
    for field in ("event_id", "account", "symbol", "order_id", "cl_ord_id", "orig_cl_ord_id", "exec_id",
                  "exec_ref_id", "currency", "actor", "correlation_id", "causation_id"):
        with pytest.raises(JsonFormError, match="empty or only whitespace") as info:
            from_json_dict({**order, field: " "})
        assert info.value.field == field


@FAST
@given(records.map(_named))
def test_round_trip(record: OrderEvent | MarketMark | Alert) -> None:
    obj = to_json_dict(record)
    assert obj["type"] == type(record).__name__
    assert from_json_dict(obj) == record
    line = dumps(record)
    assert len(line.splitlines()) == 1
    assert loads(line) == record
    assert json.loads(line) == obj  # plain JSON: any JSON reader sees the same object


@FAST
@given(
    st.dictionaries(
        st.text(max_size=12),
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
        max_size=8,
    )
)
def test_arbitrary_objects_raise_json_form_error_only(obj: dict) -> None:
    for candidate in (obj, {"type": "OrderEvent", **obj}, {"type": "Alert", **obj}):
        try:
            record = from_json_dict(candidate)
        except JsonFormError:
            continue
        assert isinstance(record, (OrderEvent, MarketMark, Alert))


_JUNK = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                  st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@FAST
@given(records, st.data())
def test_valid_records_with_damaged_fields_raise_json_form_error_only(record: object, data: st.DataObject) -> None:
    """Real field names with values of every wrong kind, so the value checks are reached (random
    keys almost always stop at "unknown field")."""
    obj = to_json_dict(record)
    fields = sorted(k for k in obj if k != "type")
    for name in data.draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3, unique=True)):
        if data.draw(st.booleans(), label="drop") and len(fields) > 1:
            del obj[name]
        else:
            obj[name] = data.draw(_JUNK, label=name)
    try:
        parsed = from_json_dict(obj)
    except JsonFormError:
        return
    assert isinstance(parsed, (OrderEvent, MarketMark, Alert))


@FAST
@given(st.text(max_size=200))
def test_arbitrary_lines_raise_json_form_error_only(line: str) -> None:
    try:
        loads(line)
    except JsonFormError:
        pass
