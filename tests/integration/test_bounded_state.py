"""The projector's bounded live state against the real broker and database (docs/live-state.md).

Orders that may not execute again leave memory once committed, with their executions, and so do
the positions' fill histories: the state held is the open book. A late event that needs one of
them (a resend of an old event id, a bust or a correction of a fill from far back, a late fill
on a done order) finds it in Postgres, and every table ends as the pure fold of the whole log
says, also after a restart (the load on assignment reads the open book only).
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from support import publish, rows
from tape import Tape

from backbone import db
from backbone.domain.events import EventType, MarketMark, OrderEvent, Side, TimeInForce
from backbone.errors import InvalidOrderTransition
from backbone.kafka.partitioner import symbol_partition
from backbone.settings import Settings
from consumers.checkpoints import read_checkpoints
from consumers.config import LoopConfig, RunStats
from consumers.runtime import ProjectionLoop
from projections import snapshots, store
from projections.state import TradingState
from projections.trading import TradingProjection

pytestmark = pytest.mark.integration

SYMBOLS = ("GOLD", "SILVER")
ACCOUNTS = ("ACC1", "ACC2")


def run(settings: Settings, group: str, *, batch_size: int = 25) -> tuple[RunStats, TradingProjection]:
    """The projector in this process until caught up, in small batches (rows leave memory after
    each commit); returns its projection, whose state is what it kept."""
    engine = db.make_engine(settings)
    try:
        projection = TradingProjection(settings)
        loop = ProjectionLoop(settings, projection, engine, LoopConfig(group_id=group, batch_size=batch_size))
        stats = loop.run(until_caught_up=True, max_seconds=300)
    finally:
        engine.dispose()
    return stats, projection


class Log:
    """The records published so far, each with the offset it takes, folded in pure Python."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.entries: list[tuple[int, int, OrderEvent | MarketMark]] = []  # (partition, offset, record)
        self._next: Counter[tuple[bool, int]] = Counter()

    def publish(self, records: list[OrderEvent | MarketMark]) -> None:
        publish(self.settings, records)
        for r in records:
            tp = (isinstance(r, OrderEvent), symbol_partition(r.symbol, self.settings.partitions))
            self.entries.append((tp[1], self._next[tp], r))
            self._next[tp] += 1

    def fold(self) -> tuple[TradingState, list[str]]:
        """The state of the whole log and the reasons of the refused records."""
        state, refused = TradingState(), []
        for partition, offset, r in self.entries:
            if isinstance(r, OrderEvent):
                try:
                    state.apply_order_event(r, partition, offset)
                except InvalidOrderTransition as e:
                    refused.append(e.rule)
            else:
                state.apply_mark(r, partition)
        return state, refused


def tables(settings: Settings) -> tuple[dict, dict, dict]:
    orders = {r["order_id"]: (r["status"], r["cum_qty"], r["leaves_qty"], r["avg_px"], r["kafka_partition"])
              for r in rows(settings, "select * from orders")}
    executions = {(r["order_id"], r["exec_id"]): (r["qty"], r["price"], r["commission"], r["busted"], r["corrected"],
                                                  r["source_offset"])
                  for r in rows(settings, "select * from executions")}
    positions = {(r["account"], r["symbol"]): (r["qty"], r["avg_px"], r["realized_pnl"], r["realized_commission"],
                                               r["open_commission"], r["commission"], r["fill_count"])
                 for r in rows(settings, "select * from positions")}
    return orders, executions, positions


def folded(state: TradingState) -> tuple[dict, dict, dict]:
    orders = {o.order_id: (o.status.value, o.cum_qty, o.leaves_qty, o.avg_px, state.order_partition[o.order_id])
              for o in state.orders.values()}
    executions = {(x.order_id, x.exec_id): (x.qty, x.price, x.commission, x.busted, x.corrected, x.source_offset)
                  for x in state.executions.values()}
    positions = {k: (p.qty, p.avg_px, p.realized_pnl, p.realized_commission, p.open_commission, p.commission,
                     p.fill_count) for k, p in state.positions.items()}
    return orders, executions, positions


def day(t: Tape, rounds: int) -> list[str]:
    """`rounds` orders per account and symbol, each filled in two fills (FILLED) or canceled
    after one; returns the ids of the orders left open (one per account and symbol, part-filled)."""
    n = 0
    for _ in range(rounds):
        for account in ACCOUNTS:
            for symbol in SYMBOLS:
                n += 1
                order_id = f"O{n}"
                side = Side.BUY if n % 3 else Side.SELL
                t.order(order_id, account, symbol, side, 10, price=100 + n % 7)
                t.fill(order_id, 4, Decimal(100 + n % 7) + Decimal("0.25"), commission="0.40")
                if n % 5 == 0:
                    t.event(order_id, EventType.CANCELED)
                else:
                    t.fill(order_id, 6, 100 + n % 7, commission="0.60")
        for symbol in SYMBOLS:
            t.mark(symbol, 100 + n % 11)
    still_open = []
    for account in ACCOUNTS:
        for symbol in SYMBOLS:
            n += 1
            order_id = f"O{n}"
            t.order(order_id, account, symbol, Side.BUY, 10, price=99, tif=TimeInForce.GTC)
            t.fill(order_id, 3, 99, commission="0.30")
            still_open.append(order_id)
    return still_open


def late_events(t: Tape, still_open: list[str]) -> list[OrderEvent | MarketMark]:
    """After `day`: a resend, busts and a correction of fills from far back, a late fill on an
    order canceled long ago, and a fill that closes an open order, each naming a row that left
    memory (but the last)."""
    published = len(t.records)
    resent = next(r for r in t.records if isinstance(r, OrderEvent) and r.order_id == "O2"
                  and r.event_type == EventType.FILLED)
    t.bust("O1", "X1")  # the first fill of the log
    t.correct("O6", "X11", qty=4, px="101.50", commission="0.35")  # an old fill, restated
    t.event("O5", EventType.FILLED, exec_id="X-late", last_qty=Decimal(2), last_px=Decimal(105),
            commission=Decimal("0.10"))  # a late fill on an order canceled long ago
    t.fill(still_open[0], 7, 98, commission="0.70")  # the open book goes on
    t.bust("O9", "X17")  # another fill from far back, after the correction and the late fill
    return [resent, *t.records[published:]]


def test_the_state_held_after_many_done_orders_is_the_open_book(created_topics: Settings, names) -> None:
    settings, t = created_topics, Tape()
    log = Log(settings)
    still_open = day(t, rounds=30)
    log.publish(t.records)
    stats, projection = run(settings, names.group())
    assert (stats.events, stats.dead_letters) == (len(t.records), 0)
    state = projection.state
    # 124 orders were projected, 120 are done: the open book is held, not the history
    assert set(state.orders) == set(still_open)
    assert set(state.executions) == {(o, x.exec_id) for o in still_open for x in state.orders[o].fills}
    assert len(state.positions) == len(ACCOUNTS) * len(SYMBOLS)

    log.publish(late_events(t, still_open))
    stats, projection = run(settings, names.group("second"))
    assert stats.dead_letters == 0
    expected = log.fold()[0]
    # the busts and the correction reopened three orders; the orders the resend and the late
    # fill named were read back and left again
    assert set(projection.state.orders) == {o for o, s in expected.orders.items() if not s.is_terminal}
    assert set(projection.state.orders) == {*still_open[1:], "O1", "O6", "O9"}


def test_late_events_on_rows_that_left_memory_give_the_fold_of_the_log(created_topics: Settings, names) -> None:
    """Each late event is folded by a new owner, whose load on assignment (as on a rebalance)
    reads the open book only, in small batches: every table equals the pure fold of the log."""
    settings, t = created_topics, Tape()
    log = Log(settings)
    still_open = day(t, rounds=30)
    log.publish(t.records)
    stats = run(settings, names.group())[0]
    assert (stats.events, stats.dead_letters) == (len(t.records), 0)
    assert tables(settings) == folded(log.fold()[0])

    late = late_events(t, still_open)
    log.publish(late)
    stats = run(settings, names.group("second"))[0]
    assert (stats.events, stats.dead_letters, stats.duplicates) == (len(late), 0, 1)
    expected, refused = log.fold()
    assert refused == []  # the resend is recognised, not refused
    assert tables(settings) == folded(expected)
    assert rows(settings, "select count(*) as n from dead_letters")[0]["n"] == 0


def test_a_bust_of_the_first_fill_after_a_long_history_equals_the_fold(created_topics: Settings, names) -> None:
    """One account and symbol with a long history: the bust refolds every later fill from the
    fills read back from Postgres, in one process and after a restart."""
    settings, t = created_topics, Tape()
    log = Log(settings)
    for n in range(1, 201):
        t.order(f"L{n}", "ACC1", "GOLD", Side.BUY if n % 4 else Side.SELL, 5, price=50 + n % 9)
        t.fill(f"L{n}", 5, Decimal(50 + n % 9) + Decimal("0.125"), commission="0.05")
    log.publish(t.records)
    assert run(settings, names.group())[0].dead_letters == 0

    published = len(t.records)
    t.bust("L1", "X1")
    t.correct("L2", "X2", qty=5, px=40)
    log.publish(t.records[published:])
    stats = run(settings, names.group("after"))[0]
    assert (stats.events, stats.dead_letters) == (2, 0)
    assert tables(settings) == folded(log.fold()[0])


def test_orders_read_back_are_the_rows_as_stored(created_topics: Settings, names) -> None:
    """`store.fetch_orders` reads orders and executions in one statement, executions as JSON:
    each comes back as its row gives it (decimals with their scale, times to the microsecond)."""
    settings, t = created_topics, Tape()
    day(t, rounds=3)
    t.correct("O1", "X1", qty=3, px="100.2500", commission="0.333")
    publish(settings, t.records)
    run(settings, names.group())
    ids = [r["order_id"] for r in rows(settings, "select order_id from orders")]
    engine = db.make_engine(settings)
    try:
        with engine.connect() as sa_conn:
            conn = db.psycopg_connection(sa_conn)
            got = store.fetch_orders(conn, [*ids, "nowhere"], projection="trading", topic=settings.topic_orders)
            with conn.cursor() as cur:
                cur.execute(f"select {', '.join(store.EXEC_COLS)} from executions")
                stored = {(x.order_id, x.exec_id): x for x in (store._execution(*r) for r in cur)}
            checkpoints = read_checkpoints(conn, "trading")
    finally:
        engine.dispose()
    assert sorted(o.order_id for o, _p in got.orders) == sorted(ids)
    assert got.offsets == {p: o for (topic, p), o in checkpoints.items() if topic == settings.topic_orders}
    assert got.generation == 0
    by_key = {(x.order_id, x.exec_id): x for x in got.executions}
    assert by_key.keys() == stored.keys()
    for key, x in by_key.items():
        assert x == stored[key]
        assert [str(getattr(x, f)) for f in store.EXEC_COLS] == [str(getattr(stored[key], f)) for f in store.EXEC_COLS]


def test_the_projector_snapshots_what_changed_and_each_chain_restores_its_offset(created_topics: Settings,
                                                                                 names) -> None:
    """With snapshots due every 40 records and every third one whole, the snapshot process takes
    changes on the snapshot before (the records since it and the open book, not the history),
    and each snapshot's chain restores exactly the pure fold of its partition below its offset,
    late events on rows of older links included."""
    settings = created_topics.with_overrides(snapshot_every_events=40, snapshot_every_seconds=0,
                                             snapshot_whole_every=3)
    t = Tape()
    log = Log(settings)
    still_open = day(t, rounds=30)
    log.publish(t.records)
    assert run(settings, names.group())[0].dead_letters == 0
    log.publish(late_events(t, still_open))
    assert run(settings, names.group("second"))[0].dead_letters == 0
    for chunk, (order_id, exec_id) in enumerate([("O3", "X5"), ("O4", "X7"), ("O7", "X12")]):
        # the book goes on, and each run ends with a snapshot: a link of a chain
        published = len(t.records)
        for n in range(chunk * 30, chunk * 30 + 30):
            t.order(f"N{n}", ACCOUNTS[n % 2], SYMBOLS[n // 2 % 2], Side.BUY, 4, price=100)
            t.fill(f"N{n}", 4, 100, commission="0.20")
        t.bust(order_id, exec_id)  # a fill of the first whole snapshot, busted in a later link
        log.publish(t.records[published:])
        assert run(settings, names.group(f"more{chunk}"))[0].dead_letters == 0

    engine = db.make_engine(settings)
    try:
        with engine.connect() as sa_conn:
            conn = db.psycopg_connection(sa_conn)
            metas = [m for m in snapshots.list_snapshots(conn, "trading", settings.topic_orders)]
            changes = [m for m in metas if m.base_next_offset is not None]
            assert changes and any(m.base_next_offset is None for m in metas)
            lengths = sorted(len(snapshots.chain_of(metas, m)) for m in metas if m.partition == changes[0].partition)
            assert lengths[-1] == 3 and lengths.count(1) >= 2  # every third snapshot is whole
            for m in metas:
                restored = TradingState()
                snapshots.restore_snapshot(conn, restored, "orders", m)
                expected = TradingState()
                for partition, offset, r in log.entries:
                    if partition == m.partition and offset < m.next_offset and isinstance(r, OrderEvent):
                        try:
                            expected.apply_order_event(r, partition, offset)
                        except InvalidOrderTransition:
                            pass
                assert folded(restored) == folded(expected), m.where
            whole = {m.partition: m.size for m in metas if m.base_next_offset is None}
            assert all(m.size < whole[m.partition] for m in changes if m.next_offset > 200)
    finally:
        engine.dispose()
