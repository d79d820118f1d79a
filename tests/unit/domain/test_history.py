"""history.History: the shared append-only fill history of successive position versions, and
history.Deferred: one still in a snapshot."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backbone.domain.history import Deferred, History
from backbone.domain.history import appended as _appended
from backbone.errors import InvariantViolation


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(0, 1000), st.integers()), max_size=60))
def test_every_version_keeps_exactly_its_items_whatever_is_appended_elsewhere(ops: list[tuple[int, int]]) -> None:
    """Append to any earlier version (as restatements do): each version stays what a tuple would be."""
    versions: list[History[int]] = [History([], 0)]
    model: list[tuple[int, ...]] = [()]
    for pick, item in ops:
        i = pick % len(versions)
        versions.append(versions[i].appended(item))
        model.append(model[i] + (item,))
    for version, expected in zip(versions, model, strict=True):
        assert version == expected and expected == version
        assert tuple(version) == expected and list(reversed(version)) == list(reversed(expected))
        assert len(version) == len(expected) and hash(version) == hash(expected)
        for k in range(-len(expected), len(expected)):
            assert version[k] == expected[k]
        for a in range(len(expected) + 1):
            assert version[:a] == expected[:a] and version[a:] == expected[a:]


def test_appending_to_the_newest_version_shares_the_list_and_an_older_one_forks() -> None:
    first = _appended((), "a")
    second = first.appended("b")
    assert second._items is first._items  # no copy of the history
    fork = first.appended("c")
    assert fork._items is not first._items
    assert (first, second, fork) == (("a",), ("a", "b"), ("a", "c"))
    assert second[:1] == first and second[:1]._items is second._items  # a prefix is a view


def test_a_tuple_history_becomes_a_history() -> None:
    grown = _appended(("a", "b"), "c")
    assert isinstance(grown, History) and grown == ("a", "b", "c")
    assert repr(grown) == "('a', 'b', 'c')"
    assert History([1, 2], 2) != [1, 2]  # like a tuple: not equal to a list


def test_a_position_with_its_history_round_trips_through_plain_data() -> None:
    import json
    from datetime import UTC, datetime
    from decimal import Decimal

    from backbone.domain.events import Side
    from backbone.domain.plain import decoder_for, encoder_for, to_plain
    from backbone.domain.positions import Fill, Position, apply_fills, empty_position

    t = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    fills = [Fill("O1", "E1", "A", "S", Side.BUY, Decimal("100"), Decimal("10.5"), Decimal("0.35"), t),
             Fill("O1", "E2", "A", "S", Side.SELL, Decimal("40"), Decimal("11"), Decimal("0.14"), t)]
    position = apply_fills(empty_position("A", "S"), fills)
    assert isinstance(position.fills, History)
    data = encoder_for(Position)(position)
    assert data == to_plain(position)
    back = decoder_for(Position)(json.loads(json.dumps(data)))
    assert back == position and back.fills == tuple(fills) and len(back.prior_states) == 2


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.integers(), max_size=8), st.lists(st.tuples(st.integers(0, 1000), st.integers()), max_size=40))
def test_a_deferred_history_reads_like_a_tuple_and_loads_only_to_read_its_base(
        base: list[int], ops: list[tuple[int, int]]) -> None:
    """A position restored lazily: its snapshot's fills (`base`) load on first read of them; what
    was appended since (and slices of it, prefixes that keep the base) reads without loading."""
    loads: list[int] = []

    def load() -> History[int]:
        loads.append(1)
        return History(list(base), len(base))

    versions: list[Deferred[int] | History[int]] = [Deferred(load, len(base))]
    model: list[tuple[int, ...]] = [tuple(base)]
    for pick, item in ops:
        i = pick % len(versions)
        versions.append(_appended(versions[i], item))
        model.append(model[i] + (item,))
    b = len(base)
    for version, expected in zip(versions, model, strict=True):
        n = len(expected)
        assert isinstance(version, Deferred) and len(version) == n
        for k in range(b, n):
            assert version[k] == expected[k] and version[k - n] == expected[k]
        for a in range(b, n + 1):
            assert tuple(version[a:]) == expected[a:]
            prefix = version[:a]  # Deferred while it holds some of the base
            assert isinstance(prefix, Deferred if b else History) and len(prefix) == a
        assert not loads and not version.is_loaded
    for version, expected in zip(versions, model, strict=True):
        assert version == expected and expected == version and tuple(version) == expected
        assert list(reversed(version)) == list(reversed(expected)) and hash(version) == hash(expected)
        assert version[:b] == expected[:b] and all(version[k] == expected[k] for k in range(b))
        assert version.appended("x") == expected + ("x",)  # a loaded one appends as a History
    assert len(loads) == len(versions)  # once each


def test_a_deferred_history_of_the_wrong_length_is_refused() -> None:
    short = Deferred(lambda: History([1], 1), 2)
    with pytest.raises(InvariantViolation, match="loaded 1 items, expected 2"):
        list(short)
    with pytest.raises(IndexError):
        Deferred(lambda: (), 0)[0]


def test_slots_builder_makes_the_object_init_would() -> None:
    """`_new_history`, the generated builder, sets both slots, as History()."""
    from backbone.domain.history import _new_history

    built = _new_history([1, 2, 3], 2)
    assert type(built) is History
    assert built == History([1, 2, 3], 2) == (1, 2)
    assert built.appended(9) == (1, 2, 9)  # forks from its prefix: 3 is not its item
