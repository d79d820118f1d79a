"""`TradingState.evict` (docs/live-state.md): which rows leave memory, and that a position whose
fills left gives, on a restatement, exactly the position that kept them."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from lifecycles import done_for_the_day, replaced_then_canceled
from tape import Tape

from backbone.domain import positions
from backbone.domain.events import OrderEvent, Side, TimeInForce
from backbone.domain.positions import Position
from projections.state import Execution, TradingState, positions_from_executions


def folded(t: Tape) -> TradingState:
    state = TradingState()
    for offset, r in enumerate(t.records):
        assert isinstance(r, OrderEvent)
        state.apply_order_event(r, 0, offset)
    state.take_changes()
    return state


def stored(executions: list[Execution]) -> Callable[[int, Position], Callable[[], Position]]:
    """`history_of` over a copy of the executions table: the first fill_count live fills, refolded."""
    table = list(executions)

    def history_of(partition: int, summary: Position) -> Callable[[], Position]:
        def load() -> Position:
            live = sorted((x for x in table if (x.account, x.symbol) == (summary.account, summary.symbol)
                           and x.kafka_partition == partition and not x.busted), key=lambda x: x.source_offset)
            key = (summary.account, summary.symbol)
            return (positions_from_executions(live[:summary.fill_count]).get(key)
                    or positions.empty_position(*key))
        return load

    return history_of


def test_orders_that_may_still_execute_stay_and_the_others_leave_with_their_executions() -> None:
    state = done_for_the_day({"DAY1": TimeInForce.DAY, "GTC1": TimeInForce.GTC, "GTD1": TimeInForce.GTD})
    t = Tape()
    replaced_then_canceled(t, "R1")
    t.order("OPEN1", "A1", "AAPL", Side.BUY, 10, price=10)
    t.fill("OPEN1", 4, 10)
    for offset, r in enumerate(t.records, start=100):
        assert isinstance(r, OrderEvent)
        state.apply_order_event(r, 1, offset)
    assert state.evict(list(state.orders), [], None) == 2
    assert set(state.orders) == {"GTC1", "GTD1", "OPEN1"}  # done for the day, the GTC and GTD ones work again
    assert {k[0] for k in state.executions} == {"GTC1", "GTD1", "OPEN1"}
    assert set(state.order_partition) == set(state.orders)


def test_a_restatement_of_an_evicted_history_equals_the_one_that_kept_it() -> None:
    t = Tape()
    for n in range(1, 41):
        t.order(f"O{n}", "ACC1", "GOLD", Side.BUY if n % 3 else Side.SELL, 7, price=20 + n % 5)
        t.fill(f"O{n}", 3, Decimal(20 + n % 5) + Decimal("0.125"), commission="0.03")
        t.fill(f"O{n}", 4, 20 + n % 5, commission="0.04")
    kept, bounded = folded(t), folded(t)
    bounded.evict(list(bounded.orders), list(bounded.positions), stored(list(bounded.executions.values())))
    assert bounded.orders == {} and bounded.executions == {}
    assert bounded.positions == kept.positions  # compared with the fills read back
    bounded = folded(t)
    all_rows = (dict(bounded.orders), dict(bounded.executions))
    bounded.evict(list(bounded.orders), list(bounded.positions), stored(list(bounded.executions.values())))

    more = len(t.records)
    t.bust("O1", "X1")
    t.correct("O2", "X4", qty=4, px=19)
    for offset, r in enumerate(t.records[more:], start=more):
        assert isinstance(r, OrderEvent)
        kept.apply_order_event(r, 0, offset)
        order_id = r.order_id
        bounded.orders[order_id] = all_rows[0][order_id]  # what the projection reads back first
        bounded.order_partition[order_id] = 0
        bounded.executions.update({k: x for k, x in all_rows[1].items() if k[0] == order_id})
        bounded.apply_order_event(r, 0, offset)
    assert bounded.positions == kept.positions
    for field in ("qty", "avg_px", "realized_pnl", "realized_commission", "open_commission", "commission"):
        assert [getattr(p, field) for p in bounded.positions.values()] == [
            getattr(p, field) for p in kept.positions.values()]
    assert bounded.executions == {k: x for k, x in kept.executions.items() if k[0] in ("O1", "O2")}
