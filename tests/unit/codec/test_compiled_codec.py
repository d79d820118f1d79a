"""The compiled fast paths (backbone/_speedups.c) against the generated Python ones.

The compiled encoder and decoder are accelerators: for every input they must give exactly what
the Python paths give, the same bytes, the same values of the same types (decimal scale
included), or the same `EncodeError`/`DecodeError` with the same message (they fall back to the
Python path for anything but the plain case, and that path explains).
"""

from __future__ import annotations

import shutil
import sysconfig
from datetime import UTC, datetime, timedelta, timezone
from decimal import Context, Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backbone.codec import native
from backbone.codec.avro import AvroCodec, EncodeError
from backbone.codec.wire import HEADER_SIZE
from backbone.compiled import interpreted
from backbone.domain.events import MarketMark, OrderEvent, Side
from backbone.errors import DecodeError
from tests.unit.codec.test_avro_codec import FAST, T0, order, records

COMPILED = AvroCodec()
PYTHON = AvroCodec(compiled=False)
DECODE = COMPILED.decoder()  # the header lookup in C (Dispatch) in front of the same decoders
needs_compiled = pytest.mark.skipif(not COMPILED.compiled, reason="the compiled codec is not built here")


def same_values(a: object, b: object) -> None:
    """Equal, and field by field of the same type and spelling (Decimal('1.0') != '1.00' here)."""
    assert type(a) is type(b)
    for name in type(a).__slots__:
        x, y = getattr(a, name), getattr(b, name)
        assert type(x) is type(y) and repr(x) == repr(y), name


def outcome(fn, arg):  # noqa: ANN001, ANN201 - a test helper over both codecs' methods
    try:
        return "ok", fn(arg)
    except (EncodeError, DecodeError) as e:
        return type(e).__name__, str(e)


def test_every_record_type_runs_compiled_where_a_c_compiler_exists() -> None:
    if not (shutil.which(sysconfig.get_config_var("CC").split()[0]) or shutil.which("cc")):
        pytest.skip("no C compiler: the install keeps to the Python paths")
    if interpreted():
        pytest.skip("BACKBONE_INTERPRETED: the Python paths on purpose")
    assert COMPILED.compiled_paths() == [
        "decode Alert v1", "decode MarketMark v1", "decode OrderEvent v1",
        "encode Alert", "encode MarketMark", "encode OrderEvent",
    ]
    assert PYTHON.compiled_paths() == []


@needs_compiled
@FAST
@given(records)
def test_same_bytes_and_values_as_the_python_paths(record: object) -> None:
    data = COMPILED.encode(record)
    assert data == PYTHON.encode(record)
    decoded = COMPILED.decode(data)
    assert decoded == record
    same_values(decoded, PYTHON.decode(data))
    same_values(DECODE(data), decoded)


@needs_compiled
@FAST
@given(records, st.data())
def test_damaged_bytes_give_the_same_record_or_the_same_error(record: object, data: st.DataObject) -> None:
    encoded = bytearray(COMPILED.encode(record))
    cut = data.draw(st.integers(0, len(encoded)))
    assert outcome(COMPILED.decode, bytes(encoded[:cut])) == outcome(PYTHON.decode, bytes(encoded[:cut]))
    assert outcome(DECODE, bytes(encoded[:cut])) == outcome(PYTHON.decode, bytes(encoded[:cut]))
    for _ in range(data.draw(st.integers(1, 4))):
        encoded[data.draw(st.integers(HEADER_SIZE, len(encoded) - 1))] = data.draw(st.integers(0, 255))
    encoded += data.draw(st.binary(max_size=2))
    python = outcome(PYTHON.decode, bytes(encoded))
    for compiled in (outcome(COMPILED.decode, bytes(encoded)), outcome(DECODE, bytes(encoded))):
        assert compiled[0] == python[0]
        if compiled[0] == "ok":
            same_values(compiled[1], python[1])
        else:
            assert compiled == python


class Price(Decimal):
    pass


class Name(str):
    pass


@needs_compiled
@pytest.mark.parametrize("changes", [
    {"event_time": datetime(2026, 11, 22, 14, 30)},  # naive: refused
    {"event_time": datetime(2026, 11, 22, 20, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))},
    {"event_time": datetime(2026, 11, 22, 9, 30, tzinfo=ZoneInfo("America/New_York"))},
    {"event_time": datetime(1, 1, 1, tzinfo=UTC)},
    {"event_time": datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)},
    {"price": Price("101.25")},
    {"price": 101},  # not a Decimal
    {"price": Decimal("101.123456789")},  # more places than the scale: refused, never rounded
    {"price": Decimal("NaN")},
    {"price": Decimal("1E+40")},
    {"seq": True},
    {"seq": 2**63},
    {"seq": -(2**63)},
    {"account": Name("ACC-1")},
    {"account": "\ud800"},  # a lone surrogate: not UTF-8
    {"account": 7},
    {"side": "BUY"},  # the symbol as a plain string
    {"side": "SIDEWAYS"},
    {"side": Side.SELL},
    {"exec_id": None, "liquidity": None},
])
def test_unusual_values_encode_or_fail_like_the_python_path(changes: dict) -> None:
    event = order(**changes)
    compiled, python = outcome(COMPILED.encode, event), outcome(PYTHON.encode, event)
    assert compiled == python
    if compiled[0] == "ok":
        same_values(COMPILED.decode(compiled[1]), PYTHON.decode(compiled[1]))


@needs_compiled
def test_input_that_is_not_bytes_decodes_like_the_python_path() -> None:
    data = COMPILED.encode(MarketMark("m", "AAPL", T0, Decimal("1.5")))
    for value in (bytearray(data), memoryview(data), data[:HEADER_SIZE], b"", "text", None):
        assert outcome(COMPILED.decode, value) == outcome(PYTHON.decode, value)
        assert outcome(DECODE, value) == outcome(PYTHON.decode, value)


@needs_compiled
def test_the_decoder_callable_picks_each_records_schema_by_its_header() -> None:
    assert type(DECODE).__name__ == "Dispatch" and PYTHON.decoder() == PYTHON.decode
    mark = COMPILED.encode(MarketMark("m", "AAPL", T0, Decimal("1.5")))
    event = COMPILED.encode(order())
    # alternating types (the last hit is tried first), then a header of no schema here
    for data in (mark, event, event, mark, event):
        same_values(DECODE(data), PYTHON.decode(data))
    unknown = data[:2] + bytes(8) + data[HEADER_SIZE:]
    assert outcome(DECODE, unknown) == outcome(PYTHON.decode, unknown)
    assert outcome(DECODE, unknown)[0] == "DecodeError"
    with pytest.raises(TypeError):
        DECODE(mark, mark)


@needs_compiled
def test_caches_are_bounded_and_stay_right_through_evictions() -> None:
    for i in range(10_000):
        event = order(price=Decimal(i).scaleb(-8) + 7, avg_px=Decimal(i).scaleb(-4))
        data = COMPILED.encode(event)
        assert data == PYTHON.encode(event)
        same_values(COMPILED.decode(data), PYTHON.decode(data))


@needs_compiled
def test_value_tables_with_one_slot_give_every_value_right_and_share_equal_strings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # One slot per field: every string and decimal replaces the one before it, and every
    # lookup compares a key of a different length or bytes (the hash decides nothing here).
    monkeypatch.setattr(native, "DECODE_CACHE_SLOTS", 1)
    one_slot = AvroCodec()
    values = ["A", "ACCT-1", "ACCT-10", "", "\u00e9t\u00e9", "x" * 24, "y" * 25]
    for i in range(200):
        event = order(account=values[i % len(values)], symbol=values[(i * 3) % len(values)] or "S",
                      price=Decimal(i % 5).scaleb(-2) + 1, avg_px=Decimal(i % 3) + Decimal("0.5"))
        data = PYTHON.encode(event)
        got = one_slot.decode(data)
        same_values(got, PYTHON.decode(data))
    # the same account twice in a row is one object the second time (a hit), as the cache promises
    again = one_slot.decode(PYTHON.encode(order(account="ACCT-7")))
    assert one_slot.decode(PYTHON.encode(order(account="ACCT-7"))).account is again.account
    # 25 bytes is over the key limit: decoded anew each time, still right
    long = "y" * 25
    assert one_slot.decode(PYTHON.encode(order(account=long))).account == long


@needs_compiled
def test_not_a_record_of_the_encoders_type_falls_back() -> None:
    with pytest.raises(EncodeError):
        COMPILED.encode(object())  # type: ignore[arg-type]
    assert isinstance(COMPILED.decode(COMPILED.encode(order())), OrderEvent)


LIMIT = 10**38  # decimal(38, 8): fewer than 38 digits unscaled
WIDE = Context(prec=100)


@needs_compiled
@pytest.mark.parametrize("value", [
    Decimal(0), Decimal("-0"), Decimal("-0.00000000"), Decimal("0E-12"), Decimal("1E-8"), Decimal("-1E-8"),
    Decimal("123.4500000000"), Decimal("123.45000000001"), Decimal("1E+2"), Decimal("100"), Decimal("-0.5"),
    Decimal(LIMIT - 1).scaleb(-8, WIDE), Decimal(-(LIMIT - 1)).scaleb(-8, WIDE), Decimal(LIMIT).scaleb(-8, WIDE),
    Decimal(2**127 - 1).scaleb(-8, WIDE), Decimal(-(2**127)).scaleb(-8, WIDE), Decimal(2**63).scaleb(-8, WIDE),
    Decimal(-(2**63) - 1).scaleb(-8, WIDE), Decimal(255).scaleb(-8, WIDE), Decimal(-256).scaleb(-8, WIDE),
    Decimal(128).scaleb(-8, WIDE),
    Decimal("12345678901234567890123456789.12345678"), Decimal("-12345678901234567890123456789.12345678"),
    Decimal("123456789012345678901234567890.12345678"), Decimal("Infinity"), Decimal("-NaN"),
])
def test_decimal_boundaries_agree_with_the_python_paths(value: Decimal) -> None:
    for changes in ({"price": value}, {"avg_px": value}):
        event = order(**changes)
        compiled, python = outcome(COMPILED.encode, event), outcome(PYTHON.encode, event)
        assert compiled == python
        if compiled[0] == "ok":
            fresh = AvroCodec()  # empty caches: the conversion itself, not a cached one
            same_values(fresh.decode(compiled[1]), PYTHON.decode(compiled[1]))


@needs_compiled
@FAST
@given(st.integers(-(LIMIT - 1), LIMIT - 1), st.integers(0, 8))
def test_any_unscaled_value_converts_like_the_python_paths(unscaled: int, places: int) -> None:
    # scaleb under a context wide enough not to round (the default 28 digits would)
    value = Decimal(unscaled).scaleb(-places if abs(unscaled) < 10 ** (30 + places) else -8, WIDE)
    event = order(price=value)
    fresh = AvroCodec()
    data = fresh.encode(event)
    assert data == PYTHON.encode(event)
    same_values(AvroCodec().decode(data), PYTHON.decode(data))


@needs_compiled
@FAST
@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), ZoneInfo("Asia/Tokyo")])))
def test_record_timestamps_are_the_floored_milliseconds(when: datetime) -> None:
    from backbone.record_time import EPOCH, timestamp_ms

    assert timestamp_ms(when) == (when - EPOCH) // timedelta(milliseconds=1)


def test_record_timestamps_of_naive_datetimes_are_refused() -> None:
    from backbone.record_time import timestamp_ms

    with pytest.raises(ValueError, match="naive"):
        timestamp_ms(datetime(2026, 11, 22, 14, 30))


def test_a_short_timestamp_near_the_end_of_the_record_decodes_on_both_paths() -> None:
    """A 2-byte timestamp varint with fewer than 8 bytes after it: the Python path's 8-byte
    shortcut read past the end and called a complete record truncated (found by fuzzing)."""
    data = bytes.fromhex("c3017ff7e855a931d4e3 02 65 02 73 8001 00 00 00 00 00".replace(" ", ""))
    compiled, python = COMPILED.decode(data), PYTHON.decode(data)
    assert compiled == python
    assert python.event_time == datetime(1970, 1, 1, 0, 0, 0, 64, tzinfo=UTC)
