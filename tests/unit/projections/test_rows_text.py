"""The text parameter of the projection's upserts (projections.store): fields separated by \\x1f,
rows by \\x1e, NULL a lone \\x1d, every value as it is, bytes in bytea's hex form. The Python path
is the reference; the compiled one (`_speedups.rows_text`) writes the same text or hands the rows
to it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backbone.compiled import compiled
from backbone.domain.events import OrderEvent
from producers.simulator import SimulationConfig, simulate
from projections import store
from projections.state import TradingState

rows_text = compiled("rows_text")
needs_build = pytest.mark.skipif(rows_text is None, reason="the C extension is not built")

values = st.one_of(
    st.none(),
    st.text(),  # separators and NUL included: the text cannot hold those
    st.sampled_from(["tab\there", "line\nfeed", "back\\slash", "quote'\"", "é€😀", "", "\\N", "NULL", "a\x1fb",
                     "\x1e", "\x1d", "nul\x00"]),
    st.booleans(),
    st.integers(min_value=-2**70, max_value=2**70),
    st.decimals(),  # NaN, sNaN, Infinity included
    st.datetimes(timezones=st.one_of(st.just(UTC), st.none(), st.timezones())),
    st.binary(),
)
tables = st.lists(st.lists(values, min_size=1, max_size=6).map(tuple), min_size=1, max_size=5)


def expected(rows: list[tuple]) -> str | None:
    """The format spelled out value by value, independently of both paths."""
    def field(v: object) -> str | None:
        if v is None:
            return "\x1d"
        if type(v) is str:
            return None if any(c in v for c in "\x00\x1d\x1e\x1f") else v
        if type(v) is bool:
            return "t" if v else "f"
        if type(v) is int:
            return str(v)
        if type(v) is Decimal:
            return str(v) if v.is_finite() else None
        if type(v) is datetime:
            return None if v.tzinfo is None or v.utcoffset() is None else v.isoformat(sep=" ")
        if type(v) is bytes:
            return "\\x" + "".join(f"{b:02x}" for b in v)
        return None

    lines = []
    for row in rows:
        fields = [field(v) for v in row]
        if None in fields:
            return None
        lines.append("\x1f".join(fields))  # type: ignore[arg-type]
    return "\x1e".join(lines)


@given(tables)
def test_the_python_path_writes_each_value_as_it_is_or_declines(rows: list[tuple]) -> None:
    assert store._rows_text_python(rows) == expected(rows)


@needs_build
@given(tables)
def test_the_compiled_path_writes_what_the_python_path_writes(rows: list[tuple]) -> None:
    assert rows_text(rows, Decimal, store._rows_text_python) == store._rows_text_python(rows)


@needs_build
@pytest.mark.parametrize("value", [
    Decimal("NaN"), Decimal("NaN123"), Decimal("sNaN"), Decimal("-Infinity"), 2**63, -2**63 - 1, 1.5, bytearray(b"b"),
    memoryview(b"view"),
    datetime(2026, 1, 2, tzinfo=timezone(timedelta(hours=1))), datetime(2026, 1, 2), "sep\x1fin", "nul\x00in",
    "\ud800", ["a", "list"],
])
def test_the_compiled_path_hands_anything_but_the_plain_values_to_the_fallback(value: object) -> None:
    handed: list[list[tuple]] = []

    def fallback(rows: list[tuple]) -> str:
        handed.append(rows)
        return "python's"

    rows = [("x", 1), ("y", value)]
    assert rows_text(rows, Decimal, fallback) == "python's" and handed == [rows]
    assert rows_text([("x", 1)], Decimal, fallback) == "x\x1f1" and len(handed) == 1


@needs_build
def test_the_compiled_path_takes_only_a_list_of_tuples() -> None:
    assert rows_text([["x", 1]], Decimal, lambda rows: "fallback") == "fallback"
    with pytest.raises(TypeError):
        rows_text((("x", 1),), Decimal, store._rows_text_python)


def test_every_row_of_a_simulated_session_goes_as_text() -> None:
    """Every row of a session's tables is plain: none goes a statement a row."""
    state = TradingState()
    for offset, record in enumerate(simulate(SimulationConfig(events=3000, seed=4, symbols=6, accounts=3))):
        if isinstance(record, OrderEvent):
            state.apply_order_event(record, 0, offset)
        else:
            state.apply_mark(record, 0)
    tables = store.change_rows(state, state.take_changes())
    assert {t[0] for t in tables} == {"orders", "executions", "positions", "marks"}
    for table, cols, _keys, rows in tables:
        assert len(store.COLUMN_TYPES[table]) == len(cols)
        text = store._rows_text(rows)
        assert text is not None and text == expected(rows)
        assert len(text.split("\x1e")) == len(rows)
