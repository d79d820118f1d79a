"""Chains of snapshots (pure): a whole payload and the changes taken on it restore to exactly
the state a whole payload at the last link restores to, eagerly and lazily, and a tail folded
on a lazily restored chain gives what the eager fold gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tape import Tape

from backbone.domain.events import OrderEvent, Side
from backbone.errors import InvalidOrderTransition, InvariantViolation
from backbone.kafka.partitioner import symbol_partition
from producers.simulator import SimulationConfig, simulate
from projections import read_model, snapshots
from projections.snapshots import SnapshotMeta
from projections.state import TradingState

PARTITIONS = 3
STREAM = list(simulate(SimulationConfig(events=2400, seed=11, symbols=7, accounts=3)))
ORDER_EVENTS = [(r, symbol_partition(r.symbol, PARTITIONS)) for r in STREAM if isinstance(r, OrderEvent)]


def fold(records: list[tuple[OrderEvent, int]], state: TradingState | None = None, start: int = 0) -> TradingState:
    """Fold order events (offset = position in ORDER_EVENTS: increasing in each partition)."""
    state = state if state is not None else TradingState()
    for offset, (r, p) in enumerate(records, start):
        try:
            state.apply_order_event(r, p, offset)
        except InvalidOrderTransition:
            pass  # refused alike by every fold compared here
    state.take_changes()
    return state


def change_rows(whole: TradingState, partition: int, named: set[str]) -> TradingState:
    """What the snapshot process reads for a change (projections.live_snapshots): the open book,
    every position's summary, and the orders named since the base with all their executions."""
    out = TradingState()
    for order_id, order in whole.orders.items():
        if whole.order_partition[order_id] == partition and (not order.is_terminal or order_id in named):
            out.orders[order_id] = order
            out.order_partition[order_id] = partition
    out.executions = {k: x for k, x in whole.executions.items() if x.order_id in out.orders}
    for key, p in whole.position_partition.items():
        if p == partition:
            out.positions[key], out.position_partition[key] = whole.positions[key], p
    return out


def chain_at(cuts: list[int], partition: int) -> list[tuple[int | None, bytes]]:
    """A whole snapshot at cuts[0] and a change at each later cut, as `restore_chain` takes them."""
    links: list[tuple[int | None, bytes]] = [
        (None, snapshots.serialize(fold(ORDER_EVENTS[:cuts[0]]), "orders", partition))]
    for base, cut in zip(cuts, cuts[1:], strict=False):
        named = {r.order_id for r, p in ORDER_EVENTS[base:cut] if p == partition}
        state = change_rows(fold(ORDER_EVENTS[:cut]), partition, named)
        links.append((base, snapshots.serialize_change(state, partition, base)))
    return links


def rows(state: TradingState) -> tuple:
    return (state.orders, state.order_partition, state.executions, state.positions, state.position_partition)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, len(ORDER_EVENTS)), min_size=1, max_size=5, unique=True).map(sorted))
def test_a_chain_restores_to_the_whole_state_at_its_last_link(cuts: list[int]) -> None:
    whole = fold(ORDER_EVENTS[:cuts[-1]])
    for p in range(PARTITIONS):
        expected, eager, lazy = TradingState(), TradingState(), TradingState()
        snapshots.restore(expected, "orders", p, snapshots.serialize(whole, "orders", p))
        snapshots.restore_chain(eager, "orders", p, chain_at(cuts, p))
        snapshots.restore_chain(lazy, "orders", p, chain_at(cuts, p), lazy=True)
        assert rows(eager) == rows(expected)
        assert read_model.position_rows(lazy) == read_model.position_rows(expected)
        assert read_model.open_order_rows(lazy) == read_model.open_order_rows(expected)
        lazy.thaw_all()
        assert rows(lazy) == rows(expected)


@pytest.mark.parametrize("cuts", [[400, 900, 1300], [200, 1100], [700, 800, 900, 1000]])
def test_a_tail_on_a_lazily_restored_chain_equals_the_eager_fold(cuts: list[int]) -> None:
    lazy = TradingState()
    for p in range(PARTITIONS):
        snapshots.restore_chain(lazy, "orders", p, chain_at(cuts, p), lazy=True)
    end = min(cuts[-1] + 250, len(ORDER_EVENTS))
    fold(ORDER_EVENTS[cuts[-1]:end], lazy, cuts[-1])
    eager = fold(ORDER_EVENTS[:end])
    assert read_model.position_rows(lazy) == read_model.position_rows(eager)
    assert read_model.open_order_rows(lazy) == read_model.open_order_rows(eager)
    assert lazy.cold_orders, "a short tail leaves orders of the chain undecoded"
    lazy.thaw_all()
    assert rows(lazy) == rows(eager)


def test_late_events_on_rows_of_older_links_see_their_newest_version() -> None:
    """A fill busted in a change (its order reopened), a resend of an old event id, a
    correction and a late fill of orders whose newest version is in different links."""
    t = Tape()
    t.order("O1", "ACC1", "GOLD", Side.BUY, 20, price=5)
    first = t.fill("O1", 10, 5, commission="1")
    second = t.fill("O1", 10, "5.5", commission="1")  # FILLED: terminal, in the whole link's section
    t.order("O2", "ACC1", "GOLD", Side.SELL, 5, price=6)
    sold = t.fill("O2", 5, 6, commission="0.5")  # terminal
    cut1 = len(t.records)
    t.bust("O1", first)  # reopens O1: open in the change's header, its fill busted there
    t.order("O3", "ACC1", "GOLD", Side.BUY, 1, price=4)
    cut2 = len(t.records)
    resend = t.records[cut1 - 1]  # O2's fill again: a duplicate by its event id
    t.records.append(resend)
    t.correct("O1", second, 10, "5.25")
    t.fill("O1", 10, "4.75")
    t.bust("O2", sold)
    records = [(r, 0) for r in t.records]
    links = [(None, snapshots.serialize(fold(records[:cut1]), "orders", 0)),
             (cut1, snapshots.serialize_change(change_rows(fold(records[:cut2]), 0, {"O1", "O3"}), 0, cut1))]
    lazy = TradingState()
    snapshots.restore_chain(lazy, "orders", 0, links, lazy=True)
    assert "O1" in lazy.orders and not lazy.orders["O1"].is_terminal  # the change's version, not the whole's
    outcomes = [lazy.apply_order_event(r, 0, offset) for offset, (r, _p) in enumerate(records[cut2:], cut2)]
    assert outcomes == ["duplicate", "applied", "applied", "applied"]
    eager = fold(records)
    assert lazy.positions == eager.positions
    lazy.thaw_all()
    assert rows(lazy) == rows(eager)
    assert lazy.executions[("O1", first)].busted


def test_a_chain_that_does_not_hold_together_is_refused() -> None:
    links = chain_at([300, 600, 900], 0)
    state = TradingState()
    with pytest.raises(InvariantViolation, match="link 2 of its chain is a change on offset 300, expected 301"):
        snapshots.restore_chain(state, "orders", 0, [links[0], (301, links[1][1]), links[2]])
    with pytest.raises(InvariantViolation, match="expected a whole snapshot"):
        snapshots.restore_chain(state, "orders", 0, links[1:])
    with pytest.raises(InvariantViolation, match="expected 300"):
        snapshots.restore_chain(state, "orders", 0, [links[0], (300, links[0][1])])
    marks = snapshots.serialize(TradingState(), "marks", 0)
    with pytest.raises(InvariantViolation, match="marks is always whole"):
        snapshots.restore_chain(state, "marks", 0, [(None, marks), (None, marks)])


def _meta(i: int, offset: int, base: int | None, minutes: int) -> SnapshotMeta:
    when = datetime(2026, 12, 7, 15, tzinfo=UTC) + timedelta(minutes=minutes)
    return SnapshotMeta(i, "trading", "o", 0, offset, when, offset, when, 10, base)


def test_prune_keeps_every_link_a_kept_snapshot_grows_from() -> None:
    metas = [_meta(1, 10, None, 1), _meta(2, 20, 10, 2), _meta(3, 30, 20, 3), _meta(4, 40, None, 4),
             _meta(5, 50, 40, 5)]
    assert snapshots.chain_of(metas, metas[2]) == metas[:3]
    assert {s.id for s in snapshots.prune_candidates(metas, keep=1)} == {1, 2, 3}
    assert {s.id for s in snapshots.prune_candidates(metas, keep=3)} == set()  # 3 needs 2 and 1
    assert {s.id for s in snapshots.prune_candidates(metas, keep=0)} == {1, 2, 3, 4, 5}
    cutoff = datetime(2026, 12, 7, 15, tzinfo=UTC) + timedelta(minutes=2, seconds=30)
    assert {s.id for s in snapshots.prune_candidates(metas, keep=0, before=cutoff)} == set()  # 3 is kept
    with pytest.raises(InvariantViolation, match="offset 20, which is gone"):
        snapshots.chain_of([metas[0], metas[2]], metas[2])


def test_a_change_holds_what_changed_not_the_history() -> None:
    whole = snapshots.serialize(fold(ORDER_EVENTS[:2000]), "orders", 0)
    named = {r.order_id for r, p in ORDER_EVENTS[2000:2100] if p == 0}
    change = snapshots.serialize_change(change_rows(fold(ORDER_EVENTS[:2100]), 0, named), 0, 2000)
    header, _sections = snapshots.unpack(change)
    assert header["v"] == 3 and header["base"] == 2000
    assert len(change) * 3 < len(whole)
    assert {o for s in header["sections"] for o in s["orders"]} <= named
