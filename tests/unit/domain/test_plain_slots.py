"""backbone.domain.plain's `builder` and `fast_replace`: the same objects as the dataclass
constructor and `dataclasses.replace`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backbone.domain import plain
from backbone.domain.events import Liquidity, Side
from backbone.domain.order_state import LiveFill
from backbone.domain.positions import Fill, Position
from projections.state import Execution

T0 = datetime(2026, 12, 1, 14, 30, tzinfo=UTC)
SAMPLES = {
    LiveFill: ("E1", Decimal("100"), Decimal("10.5"), False, ("E1-C",)),
    Fill: ("O1", "E1", "ACC-1", "AAPL", Side.BUY, Decimal("100"), Decimal("10.5"), Decimal("0.35"), T0),
    Position: ("ACC-1", "AAPL", Decimal("100"), Decimal("10.5"), Decimal(0), Decimal(0), Decimal("0.35"),
               Decimal("0.35"), T0, 1, (), ()),
    Execution: ("E1", "O1", 3, 42, "ACC-1", "AAPL", Side.SELL, Decimal("5"), Decimal("9.99"), Decimal("0.01"), "USD",
                Liquidity.ADDED, T0, False, False, None, None, "ev-1", T0),
}


@pytest.fixture
def paths() -> Iterator[str]:
    """Fresh generated builders and replacers for each test."""
    plain._builder.cache_clear()
    plain._replacer.cache_clear()
    yield "generated"
    plain._builder.cache_clear()
    plain._replacer.cache_clear()


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.__name__)
def test_builder_makes_what_the_constructor_makes(paths: str, cls: type) -> None:
    build = plain.builder(cls)
    values = SAMPLES[cls]
    built, constructed = build(*values), cls(*values)
    assert type(built) is cls and built == constructed and hash(built) == hash(constructed)
    assert [getattr(built, f.name) for f in dataclasses.fields(cls)] == list(values)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.__setattr__(dataclasses.fields(cls)[0].name, "x")


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.__name__)
def test_fast_replace_is_dataclasses_replace(paths: str, cls: type) -> None:
    original = cls(*SAMPLES[cls])
    first, last = dataclasses.fields(cls)[0].name, dataclasses.fields(cls)[-1].name
    for changes in ({}, {first: "changed"}, {first: "a", last: None}):
        copy = plain.fast_replace(original, **changes)
        assert copy == dataclasses.replace(original, **changes) and copy is not original
        for f in dataclasses.fields(cls):
            assert getattr(copy, f.name) is changes.get(f.name, getattr(original, f.name))
    assert original == cls(*SAMPLES[cls])  # untouched


def test_unknown_fields_and_wrong_arity_are_type_errors(paths: str) -> None:
    fill = LiveFill(*SAMPLES[LiveFill])
    with pytest.raises(TypeError, match="nope"):
        plain.fast_replace(fill, nope=1)
    with pytest.raises(TypeError):
        plain.builder(LiveFill)("E1", Decimal(1))


def test_many_copies_keep_their_values(paths: str) -> None:
    # reference counting: values shared by thousands of copies stay alive and intact
    base = Position(*SAMPLES[Position])
    copies = [plain.fast_replace(base, fill_count=i) for i in range(5000)]
    del base
    assert all(c.fill_count == i and c.qty == Decimal("100") and c.last_fill_time == T0 for i, c in enumerate(copies))


@settings(max_examples=300, deadline=None, database=None)
@given(st.datetimes(timezones=st.one_of(st.none(), st.just(UTC), st.timezones())))
def test_iso_text_of_times_is_isoformat(when: datetime) -> None:
    assert plain._isoformat(when) == when.isoformat()
    assert plain._isoformat(when.replace(microsecond=0)) == when.replace(microsecond=0).isoformat()
