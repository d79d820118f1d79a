"""The read models with history (docs/sql.md): trades_daily, symbol_stats, pnl_daily and
dead_letters_summary on a projected database, against values computed by hand, and the same
rows in a `replay --into` schema as in `public`."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from support import export_env, project, publish, rows
from tape import Tape
from typer.testing import CliRunner

from backbone.domain.events import EventType, Liquidity, Side
from backbone.kafka.producer import KafkaProducer
from backbone.settings import Settings
from cli.main import app
from producers.simulator import SimulationConfig, simulate

pytestmark = pytest.mark.integration
D = Decimal
DAY1, DAY2 = date(2026, 11, 20), date(2026, 11, 21)


def fill(t: Tape, order_id: str, exec_id: str, qty: str, px: str, commission: str,
         liquidity: Liquidity | None) -> None:
    t.event(order_id, EventType.FILLED, exec_id=exec_id, last_qty=D(qty), last_px=D(px), commission=D(commission),
            liquidity=liquidity)


def two_days() -> Tape:
    t = Tape(start=datetime(2026, 11, 20, 14, 30, tzinfo=UTC))
    t.order("O1", "ACC1", "GOLD", Side.BUY, 100, price=11)
    fill(t, "O1", "X1", "60", "10", "0.6", Liquidity.ADDED)
    fill(t, "O1", "X2", "40", "10.5", "0.4", Liquidity.REMOVED)
    t.order("O2", "ACC1", "GOLD", Side.SELL, 30, price=12)
    fill(t, "O2", "X3", "30", "12", "0.3", Liquidity.REMOVED)
    t.order("O3", "ACC2", "GOLD", Side.SELL_SHORT, 10, price=11)
    fill(t, "O3", "X4", "10", "11", "0", None)
    t.mark("GOLD", 11)
    t.clock = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    t.order("O4", "ACC1", "GOLD", Side.SELL, 70, price=9)
    fill(t, "O4", "X5", "70", "9", "0.7", Liquidity.ADDED)
    t.order("O5", "ACC1", "GOLD", Side.BUY, 5, price=20)
    fill(t, "O5", "X6", "5", "20", "0.05", Liquidity.ADDED)
    t.bust("O5", "X6")  # busted: in no read model
    t.order("O6", "ACC1", "GOLD", Side.BUY, 7, price=9)
    fill(t, "O6", "X8", "7", "9.5", "0", Liquidity.AUCTION)
    t.correct("O6", "X8", qty=7, px="9.25")  # corrected: at its current price
    t.mark("GOLD", "9.5")
    return t


def by(table: list[dict], *key: str) -> dict:
    return {tuple(r[k] for k in key): r for r in table}


def test_trades_daily_and_symbol_stats_by_hand(created_topics: Settings, names) -> None:
    settings = created_topics
    publish(settings, two_days().records)
    assert project(settings, names.group()).dead_letters == 0
    daily = by(rows(settings, "select * from trades_daily"), "account", "symbol", "trade_date")
    assert set(daily) == {("ACC1", "GOLD", DAY1), ("ACC2", "GOLD", DAY1), ("ACC1", "GOLD", DAY2)}
    acc1 = daily[("ACC1", "GOLD", DAY1)]
    assert (acc1["fills"], acc1["bought_qty"], acc1["sold_qty"]) == (3, D(100), D(30))
    assert (acc1["bought_notional"], acc1["sold_notional"]) == (D(1020), D(360))  # 60*10 + 40*10.5; 30*12
    assert (acc1["buy_vwap"], acc1["sell_vwap"], acc1["commission"]) == (D("10.2"), D(12), D("1.3"))
    acc2 = daily[("ACC2", "GOLD", DAY1)]
    assert (acc2["bought_qty"], acc2["sold_qty"], acc2["buy_vwap"], acc2["sell_vwap"]) == (D(0), D(10), None, D(11))
    second = daily[("ACC1", "GOLD", DAY2)]
    assert (second["fills"], second["bought_qty"], second["sold_qty"]) == (2, D(7), D(70))
    assert (second["bought_notional"], second["buy_vwap"], second["sell_vwap"]) == (D("64.75"), D("9.25"), D(9))
    assert str(second["buy_vwap"]) == "9.25000000"  # 8 places
    # realized: long 100 @ 10.2, sold 30 @ 12 (+54); day 2 sold the other 70 @ 9 (-84)
    assert (acc1["realized_pnl"], acc2["realized_pnl"], second["realized_pnl"]) == (D(54), D(0), D(-84))

    stats = by(rows(settings, "select * from symbol_stats"), "period", "period_start", "liquidity")
    day1, hour1 = datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 20, 14, tzinfo=UTC)
    day2 = datetime(2026, 11, 21, tzinfo=UTC)
    assert {(p, s) for p, s, _l in stats} == {("day", day1), ("hour", hour1), ("day", day2),
                                              ("hour", datetime(2026, 11, 21, 9, tzinfo=UTC))}
    every = stats[("day", day1, "ALL")]
    assert (every["fills"], every["volume"], every["notional"]) == (4, D(140), D(1490))
    assert (every["vwap"], every["high"], every["low"]) == (D("10.64285714"), D(12), D(10))  # 1490/140
    removed = stats[("day", day1, "REMOVED")]
    assert (removed["fills"], removed["volume"], removed["vwap"]) == (2, D(70), D("11.14285714"))  # 780/70
    assert (removed["high"], removed["low"]) == (D(12), D("10.5"))
    assert stats[("day", day1, "NONE")]["volume"] == D(10) and stats[("day", day1, "ADDED")]["vwap"] == D(10)
    hourly = {k: {c: v for c, v in r.items() if c not in ("period", "period_start")} for k, r in stats.items()}
    for flag in ("ALL", "ADDED", "REMOVED", "NONE"):
        assert hourly[("hour", hour1, flag)] == hourly[("day", day1, flag)]
    assert {f for p, s, f in stats if s == day2} == {"ALL", "ADDED", "AUCTION"}
    assert stats[("day", day2, "ALL")]["vwap"] == D("9.02272727")  # (630 + 64.75) / 77 = 9.0227272...


def test_pnl_daily_by_hand(created_topics: Settings, names) -> None:
    """ACC1 ends day 1 long 70 @ 10.2 (realized 54, commission 1.3) marked at 11, and day 2 long
    7 @ 9.25 (realized -30, commission 2.0: the busted fill's 0.05 is gone) marked at 9.5; ACC2
    ends day 1 short 10 @ 11 and does not trade on day 2."""
    settings = created_topics
    publish(settings, two_days().records)
    project(settings, names.group(), batch_size=3)  # batches that end mid-day: the same days
    daily = by(rows(settings, "select * from pnl_daily"), "account", "trade_date")
    assert set(daily) == {("ACC1", DAY1), ("ACC1", DAY2), ("ACC2", DAY1)}
    first, second, short = daily[("ACC1", DAY1)], daily[("ACC1", DAY2)], daily[("ACC2", DAY1)]
    figures = ("realized_pnl", "commission", "unrealized_pnl", "total_pnl", "cumulative_pnl")
    assert [first[k] for k in figures] == [D(54), D("1.3"), D(56), D("108.7"), D("108.7")]  # 54 + 0.8*70 - 1.3
    assert [second[k] for k in figures] == [D(-84), D("0.7"), D("1.75"), D("-138.95"), D("-30.25")]
    assert [short[k] for k in figures] == [D(0)] * 5
    assert (first["open_positions"], first["missing_marks"]) == (1, False)
    (account,) = rows(settings, "select total_pnl from pnl_by_account_exact where account = 'ACC1'")
    assert account["total_pnl"] == second["cumulative_pnl"]  # the last day's marks are the latest


def test_dead_letters_summary_by_hand(created_topics: Settings, names) -> None:
    settings = created_topics
    t = Tape()
    t.order("O1", "ACC1", "GOLD", Side.BUY, 10, price=10)
    t.fill("O1", 10, 10)
    publish(settings, t.records[-1:])  # a fill of an order the projection never saw: refused
    with KafkaProducer(settings) as producer:
        for value in (b"not avro", b"nor this"):
            producer.produce(settings.topic_orders, value, key=b"GOLD")
    project(settings, names.group())
    letters = rows(settings, "select * from dead_letters order by id")
    summary = by(rows(settings, "select * from dead_letters_summary"), "projection", "topic", "reason")
    (refused,) = {r["reason"] for r in letters} - {"decode_error"}
    assert set(summary) == {("trading", settings.topic_orders, "decode_error"),
                            ("trading", settings.topic_orders, refused)}
    decode = summary[("trading", settings.topic_orders, "decode_error")]
    undecodable = [r for r in letters if r["reason"] == "decode_error"]
    assert decode["letters"] == 2 and decode["unrelayed"] == 0
    assert (decode["first_seen"], decode["last_seen"]) == (undecodable[0]["created_at"], undecodable[1]["created_at"])
    newest = undecodable[1]
    assert (decode["sample_partition"], decode["sample_offset"], decode["sample_detail"]) == (
        newest["source_partition"], newest["source_offset"], newest["detail"])
    assert summary[("trading", settings.topic_orders, refused)]["letters"] == 1


@pytest.fixture
def cli_env(created_topics: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return export_env(created_topics, monkeypatch)


def test_replay_into_gives_the_read_models_of_the_live_projection(cli_env: Settings, names) -> None:
    settings = cli_env
    publish(settings, list(simulate(SimulationConfig(events=2500, seed=29, symbols=5, accounts=3))))
    project(settings, names.group(), batch_size=200)
    result = CliRunner().invoke(app, ["replay", "--from-beginning", "--into", "replayed", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["into"] == "replayed"
    for view, key in (("trades_daily", "account, symbol, trade_date"),
                      ("symbol_stats", "symbol, period, period_start, liquidity"),
                      ("pnl_daily", "account, trade_date"), ("position_days", "account, symbol, day"),
                      ("mark_days", "symbol, day"),
                      ("positions_pnl", "account, symbol"), ("pnl_by_account", "account")):
        live = rows(settings, f"select * from public.{view} order by {key}")
        assert live, view
        assert rows(settings, f"select * from replayed.{view} order by {key}") == live, view
