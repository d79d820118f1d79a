"""The dashboard's read model, on hand-computed values: the intraday series, totals, exposure,
events/s; and the HTML tables the page draws."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from factories import make_market_mark
from hypothesis import given, settings
from hypothesis import strategies as st

from backbone.domain import positions as pos
from backbone.domain.events import Side
from dashboard import page, queries
from projections.read_model import pnl_rows, position_rows_of

D = Decimal
T = datetime(2024, 1, 2, 9, 0, tzinfo=UTC)


def fill(account: str, side: str, qty: str, price: str, commission: str, minute: float, *,
         symbol: str = "AAPL", exec_id: str | None = None) -> dict[str, Any]:
    return {"account": account, "symbol": symbol, "order_id": f"O-{account}-{minute}",
            "exec_id": exec_id or f"E-{minute}", "side": side, "qty": D(qty), "price": D(price),
            "commission": D(commission), "exec_time": T + timedelta(minutes=minute)}


FILLS = [fill("ACC-1", "BUY", "100", "10.00", "1", 0), fill("ACC-2", "SELL", "50", "10.50", "0.5", 1),
         fill("ACC-1", "SELL", "40", "11.00", "1", 2)]


def test_the_series_values_each_account_at_the_latest_price_after_each_fill_and_ends_at_the_marks() -> None:
    # ACC-1: long 100 @ 10 (commission 1): at 10 -> -1; at 10.50 -> 49; sells 40 @ 11 (realized 40,
    #        commission 2, 60 left) -> 40 + 60 - 2 = 98; at the mark 12 -> 40 + 120 - 2 = 158.
    # ACC-2: short 50 @ 10.50 (commission 0.5): -0.5; at 11 -> -25 - 0.5; at 12 -> -75 - 0.5.
    points = queries.intraday(FILLS, {"AAPL": D("12")}, T + timedelta(minutes=5))
    assert [(p.account, p.time - T, p.total_pnl, p.gross_exposure) for p in points] == [
        ("ACC-1", timedelta(0), D("-1"), D("1000")),
        ("ACC-1", timedelta(minutes=1), D("49"), D("1050")),
        ("ACC-1", timedelta(minutes=2), D("98"), D("660")),
        ("ACC-1", timedelta(minutes=5), D("158"), D("720")),
        ("ACC-2", timedelta(minutes=1), D("-0.5"), D("525")),
        ("ACC-2", timedelta(minutes=2), D("-25.5"), D("550")),
        ("ACC-2", timedelta(minutes=5), D("-75.5"), D("600")),
    ]


def test_the_series_shows_the_day_of_the_latest_fill_and_carries_earlier_positions_in() -> None:
    earlier = fill("ACC-1", "BUY", "10", "5", "0", -24 * 60)  # the day before
    points = queries.intraday([earlier, fill("ACC-1", "BUY", "10", "6", "0", 0)], {}, None)
    # 10 @ 5 and 10 @ 6 at 6: (6 - 5.5) * 20 = 10; without a mark the last point is the view's:
    # valued at the average price (total = realized - commission = 0)
    assert [(p.time, p.total_pnl, p.gross_exposure) for p in points] == [(T, D("10"), D("120")), (T, D("0"), D("120"))]


def test_a_late_reported_fill_keeps_its_position_in_the_projector_order() -> None:
    late = fill("ACC-1", "SELL", "100", "11", "0", 0)
    points = queries.intraday([fill("ACC-1", "BUY", "100", "10", "0", 3), late], {}, None)
    # the sell was applied after the buy: flat, realized 100, shown at the buy's time, not before it
    assert [(p.time - T, p.total_pnl, p.gross_exposure) for p in points] == [
        (timedelta(minutes=3), D("0"), D("1000")), (timedelta(minutes=3), D("100"), D("0")),
        (timedelta(minutes=3), D("100"), D("0"))]


def test_no_fills_no_series() -> None:
    assert queries.intraday([], {"AAPL": D("1")}, T) == []


def test_long_series_are_thinned_to_evenly_spaced_points_with_both_ends() -> None:
    fills = [fill("ACC-1", "BUY", "1", str(10 + i), "0", i / 10, exec_id=f"E{i}") for i in range(1000)]
    points = queries.intraday(fills, {}, None, max_points=50)
    assert len(points) == 50
    assert points[0].time == T and points[-1].total_pnl == 0  # the last point: at the average price
    assert [p.time for p in points] == sorted(p.time for p in points)


prices = st.decimals(min_value=D("0.01"), max_value=D("500"), places=2)
fills_strategy = st.lists(st.tuples(st.sampled_from(["A", "B"]), st.sampled_from(["X", "Y"]),
                                    st.sampled_from(["BUY", "SELL"]), st.integers(1, 500), prices,
                                    st.decimals(min_value=D(0), max_value=D("5"), places=2)), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(fills_strategy, st.dictionaries(st.sampled_from(["X", "Y"]), prices))
def test_the_last_point_of_each_account_is_the_read_models_total_pnl(rows: list[tuple[Any, ...]],
                                                                     marks: dict[str, Decimal]) -> None:
    fills = [fill(a, side, str(q), str(px), str(c), i, symbol=s, exec_id=f"E{i}")
             for i, (a, s, side, q, px, c) in enumerate(rows)]
    positions: dict[tuple[str, str], pos.Position] = {}
    for f in fills:
        key = (f["account"], f["symbol"])
        positions[key] = pos.apply_fill(positions.get(key) or pos.empty_position(*key), pos.Fill(
            f["order_id"], f["exec_id"], f["account"], f["symbol"], Side(f["side"]), f["qty"], f["price"],
            f["commission"], f["exec_time"]))
    expected = {r["account"]: r["total_pnl"] for r in pnl_rows(position_rows_of(
        positions, {s: make_market_mark(symbol=s, mark_price=px) for s, px in marks.items()}))}
    last = {p.account: p.total_pnl for p in queries.intraday(fills, marks, None)}
    assert last == expected


def test_totals_add_the_accounts_up_like_sql_sum() -> None:
    rows = [{"account": "A", "open_positions": 2, "realized_pnl": D("1.5"), "unrealized_pnl": None,
             "commission": D("0.25"), "total_pnl": D("1.25"), "missing_marks": True},
            {"account": "B", "open_positions": 1, "realized_pnl": D("-3"), "unrealized_pnl": None,
             "commission": D("0"), "total_pnl": D("-3"), "missing_marks": False}]
    assert queries.totals(rows) == {"account": "total", "open_positions": 3, "realized_pnl": D("-1.5"),
                                    "unrealized_pnl": None, "commission": D("0.25"), "total_pnl": D("-1.75"),
                                    "missing_marks": True}


def test_exposure_is_qty_times_mark() -> None:
    rows = queries.with_exposure([{"qty": D("-3"), "mark_price": D("10.5")}, {"qty": D("2"), "mark_price": None}])
    assert [r["exposure"] for r in rows] == [D("-31.5"), None]


def test_events_per_second_compare_two_reads_of_the_checkpoints() -> None:
    key = ("trading", "t.orders", 0)
    now = [{"projection": "trading", "topic": "t.orders", "partition": 0, "next_offset": 150},
           {"projection": "trading", "topic": "t.orders", "partition": 1, "next_offset": 7}]
    later = T + timedelta(seconds=2)
    assert queries.rates({key: (100, T)}, now, later) == {key: 25.0, ("trading", "t.orders", 1): None}
    assert queries.rates({key: (100, T)}, now[:1], T) == {key: None}  # no time between the reads


def test_the_page_tables_escape_values_align_numbers_right_and_end_with_the_total() -> None:
    html = page.table([{"account": "<ACC>", "total_pnl": D("-1234.5")}], [
        ("account", "account", page._text, False), ("total_pnl", "total", page.fmt.money, True)],
        name="pnl", total={"account": "total", "total_pnl": D("1000")})
    assert '<td class="" data-column="account">&lt;ACC&gt;</td>' in html
    assert '<td class="num neg" data-column="total_pnl">-1,234.50</td>' in html
    assert html.index('<tr class="total">') > html.index("-1,234.50")
    assert '<td class="num" data-column="total_pnl">1,000.00</td></tr></tbody>' in html
