"""The day rows a fold books (projections.state, docs/sql.md#history): each position as it ends
each UTC day, each symbol's last mark of each day; a late fill is booked on the position's
latest fill day; and the rows do not depend on where batches end."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from tape import Tape

from backbone.domain.events import MarketMark, Side
from projections.state import Changes, TradingState

D = Decimal
DAY1, DAY2 = date(2026, 11, 20), date(2026, 11, 21)


def days_tape() -> Tape:
    t = Tape(start=datetime(2026, 11, 20, 23, 59, 59, 999000, tzinfo=UTC))
    t.order("O1", "ACC1", "GOLD", Side.BUY, 100, price=10)
    t.clock = datetime(2026, 11, 20, 23, 0, tzinfo=UTC)
    t.fill("O1", 40, 10, commission="0.4")  # day 1
    t.mark("GOLD", 11)
    t.clock = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    t.fill("O1", 60, 12, commission="0.6")  # day 2: long 100 @ 11.2
    t.mark("GOLD", 12)
    t.clock = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)  # a late fill, dated day 1, after day 2's
    t.order("O2", "ACC1", "GOLD", Side.SELL, 50, price=13)
    t.fill("O2", 50, 13)  # +90 realized, booked on day 2
    t.mark("GOLD", 9)  # older than the symbol's mark: stale, no day row
    return t


def fold(records: list, every: int) -> Changes:
    """The day rows of folding `records`, taking the changes every `every` records."""
    state = TradingState(keep_days=Changes())
    for offset, record in enumerate(records):
        if isinstance(record, MarketMark):
            state.apply_mark(record, 0)
        else:
            state.apply_order_event(record, 0, offset)
        if offset % every == every - 1:
            state.take_changes()
    state.take_changes()
    assert state.keep_days is not None
    return state.keep_days


def test_each_position_ends_each_day_and_a_late_fill_goes_to_the_latest_day() -> None:
    days = fold(days_tape().records, 1000)
    assert sorted(days.position_days) == [("ACC1", "GOLD", DAY1), ("ACC1", "GOLD", DAY2)]
    _p, _o, qty, avg_px, realized, _rc, commission = days.position_days[("ACC1", "GOLD", DAY1)]
    assert (qty, avg_px, realized, commission) == (D(40), D(10), D(0), D("0.4"))
    _p, offset, qty, avg_px, realized, _rc, commission = days.position_days[("ACC1", "GOLD", DAY2)]
    assert (qty, avg_px, realized, commission) == (D(50), D("11.2"), D(90), D(1))
    assert offset == len(days_tape().records) - 2  # the late fill, the day's last change
    assert {k: m.mark.mark_price for k, m in days.mark_days.items()} == {("GOLD", DAY1): D(11), ("GOLD", DAY2): D(12)}


def test_the_day_rows_do_not_depend_on_where_batches_end() -> None:
    records = days_tape().records
    whole = fold(records, 1000)
    for every in (1, 2, 3, 5):
        assert fold(records, every) == whole
