"""Executions are keyed by (order_id, exec_id) in the projection's state (issue #24): FIX makes an
ExecID unique per sell side, so two orders of one account and symbol, sent to two venues, may
report the same exec id."""

from __future__ import annotations

import pytest
from tape import Tape

from backbone.domain import positions
from backbone.domain.events import Side
from backbone.errors import InvalidOrderTransition
from projections.state import TradingState


def _two_orders_sharing_x1() -> Tape:
    t = Tape()
    t.order("O1", "ACC1", "GOLD", Side.BUY, 10, price=5)
    t.order("O2", "ACC1", "GOLD", Side.BUY, 30, price=7)
    t.fill("O1", 10, 5, commission="1", exec_id="X-1")
    t.fill("O2", 20, 7, commission="0.5", exec_id="X-1")
    return t


def _fold(records: list) -> TradingState:
    state = TradingState()
    for offset, r in enumerate(records):
        assert state.apply_order_event(r, 0, offset) == "applied"
    return state


def test_two_orders_of_one_position_sharing_an_exec_id_both_fill_it_in_either_order() -> None:
    t = _two_orders_sharing_x1()
    state = _fold(t.records)
    assert set(state.executions) == {("O1", "X-1"), ("O2", "X-1")}
    assert (state.orders["O1"].cum_qty, state.orders["O2"].cum_qty) == (10, 20)
    position = state.positions[("ACC1", "GOLD")]
    # (10·5 + 20·7) / 30 = 6.333333333333 (12 places)
    assert (position.qty, position.fill_count, str(position.avg_px)) == (30, 2, "6.333333333333")
    assert position.commission == positions.apply_fills(
        positions.empty_position("ACC1", "GOLD"), [x.as_fill() for x in state.executions.values()]).commission
    fills_first = [r for r in t.records if r.exec_id == "X-1"]
    swapped = [r for r in t.records if r.exec_id != "X-1"] + fills_first[::-1]
    other = _fold(swapped)
    assert set(other.executions) == set(state.executions)
    assert {k: (x.qty, x.price) for k, x in other.executions.items()} == \
        {k: (x.qty, x.price) for k, x in state.executions.items()}
    assert (other.positions[("ACC1", "GOLD")].qty, other.positions[("ACC1", "GOLD")].fill_count) == (30, 2)


def test_a_bust_of_one_leaves_the_other_and_a_genuine_duplicate_is_refused() -> None:
    t = _two_orders_sharing_x1()
    filled = len(t.records)
    t.bust("O1", "X-1")
    t.fill("O2", 5, 7)
    t.records[-1] = t.records[-1].replace(exec_id="X-1")  # O2 reports X-1 a second time
    state = _fold(t.records[:filled + 1])
    assert state.executions[("O1", "X-1")].busted and not state.executions[("O2", "X-1")].busted
    only_o2 = _fold([r for r in t.records[:filled] if r.order_id == "O2"])
    assert state.positions[("ACC1", "GOLD")] == only_o2.positions[("ACC1", "GOLD")]
    assert state.orders["O2"] == only_o2.orders["O2"]
    with pytest.raises(InvalidOrderTransition) as refused:
        state.apply_order_event(t.records[-1], 0, filled + 1)
    assert refused.value.rule == "duplicate_exec_id"
