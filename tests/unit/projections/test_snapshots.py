"""Snapshot payloads (pure) and the projector's snapshot bookkeeping (no services)."""

from __future__ import annotations

import dataclasses
import json
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from confluent_kafka import Message
from lifecycles import done_for_the_day
from tape import Tape

from backbone.codec.avro import AvroCodec
from backbone.domain import history
from backbone.domain.events import MarketMark, OrderEvent, Side, TimeInForce
from backbone.domain.order_state import OrderState
from backbone.domain.plain import decoder_for as _decoder
from backbone.domain.plain import encoder_for as _encoder
from backbone.domain.plain import from_plain, to_plain
from backbone.errors import InvalidOrderTransition, InvariantViolation
from backbone.kafka.partitioner import symbol_partition
from backbone.settings import Settings
from producers.publisher import timestamp_ms
from producers.simulator import SimulationConfig, simulate
from projections import read_model, snapshots, store
from projections.snapshots import SnapshotMeta
from projections.state import Execution, TradingState
from projections.trading import TradingProjection

PARTITIONS = 4
STREAM = list(simulate(SimulationConfig(events=2500, seed=5, symbols=9, accounts=4)))


def fold(records) -> TradingState:
    state = TradingState()
    offsets: dict[tuple[bool, int], int] = {}
    for r in records:
        p = symbol_partition(r.symbol, PARTITIONS)
        key = (isinstance(r, OrderEvent), p)
        offsets[key] = offsets.get(key, -1) + 1
        if isinstance(r, OrderEvent):
            state.apply_order_event(r, p, offsets[key])
        else:
            state.apply_mark(r, p)
    state.take_changes()
    return state


WHOLE = fold(STREAM)


def only(state: TradingState, orders: int | None = None, marks: int | None = None) -> tuple:
    """One partition's share of a state, comparable."""
    return (
        {k: v for k, v in state.orders.items() if state.order_partition[k] == orders},
        {k: v for k, v in state.order_partition.items() if v == orders},
        {k: v for k, v in state.executions.items() if v.kafka_partition == orders},
        {k: v for k, v in state.positions.items() if state.position_partition[k] == orders},
        {k: v for k, v in state.position_partition.items() if v == orders},
        {k: v for k, v in state.marks.items() if v.kafka_partition == marks},
    )


def test_every_partition_round_trips_exactly() -> None:
    payloads = snapshots.serialize_many(WHOLE, [("orders", p) for p in range(PARTITIONS)]
                                        + [("marks", p) for p in range(PARTITIONS)])
    rebuilt = TradingState()
    for (kind, p), payload in payloads.items():
        assert payload == snapshots.serialize(WHOLE, kind, p)  # one at a time gives the same bytes
        snapshots.restore(rebuilt, kind, p, payload)
    assert (rebuilt.orders, rebuilt.order_partition, rebuilt.executions, rebuilt.positions,
            rebuilt.position_partition, rebuilt.marks) == (WHOLE.orders, WHOLE.order_partition, WHOLE.executions,
                                                           WHOLE.positions, WHOLE.position_partition, WHOLE.marks)
    assert sum(len(v) for v in payloads.values()) < len(json.dumps([to_plain(o) for o in WHOLE.orders.values()]))


def test_restore_replaces_only_its_own_partition() -> None:
    target = fold(STREAM[: len(STREAM) // 2])  # older state of every partition
    snapshots.restore(target, "orders", 1, snapshots.serialize(WHOLE, "orders", 1))
    snapshots.restore(target, "marks", 2, snapshots.serialize(WHOLE, "marks", 2))
    half = fold(STREAM[: len(STREAM) // 2])
    assert only(target, orders=1) == only(WHOLE, orders=1)
    assert only(target, marks=2)[-1] == only(WHOLE, marks=2)[-1]
    for p in (0, 2, 3):
        assert only(target, orders=p)[:-1] == only(half, orders=p)[:-1]


def test_empty_partition_and_empty_state() -> None:
    empty = TradingState()
    payload = snapshots.serialize(empty, "orders", 3)
    target = fold(STREAM)
    snapshots.restore(target, "orders", 3, payload)
    assert only(target, orders=3)[:-1] == ({}, {}, {}, {}, {})
    assert only(target, orders=0) == only(WHOLE, orders=0)


def test_a_position_whose_fills_were_all_busted_survives_as_flat() -> None:
    t = Tape()
    t.order("O1", "ACC1", "GOLD", Side.BUY, 10, price=5)
    x = t.fill("O1", 10, 5, commission="1")
    t.bust("O1", x)
    state = TradingState()
    for offset, r in enumerate(t.records):
        state.apply_order_event(r, 0, offset)
    (key,) = state.positions
    assert state.positions[key].qty == 0 and state.positions[key].fill_count == 0
    rebuilt = TradingState()
    snapshots.restore(rebuilt, "orders", 0, snapshots.serialize(state, "orders", 0))
    assert rebuilt.positions == state.positions and rebuilt.position_partition == {key: 0}
    assert rebuilt.executions == state.executions and rebuilt.orders == state.orders


def test_fast_encoders_and_decoders_match_to_plain_and_from_plain() -> None:
    for order in WHOLE.orders.values():
        plain = _encoder(OrderState)(order)
        assert plain == to_plain(order)
        assert _decoder(OrderState)(plain) == from_plain(OrderState, plain) == order
    for x in WHOLE.executions.values():
        assert _encoder(Execution)(x) == to_plain(x)
        assert _decoder(Execution)(to_plain(x)) == x
    for m in WHOLE.marks.values():
        assert _decoder(MarketMark)(_encoder(MarketMark)(m.mark)) == m.mark


def test_decoder_of_a_payload_without_a_field_takes_the_field_default() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Row:
        name: str
        qty: Decimal
        note: str | None = None

    build = _decoder(Row)
    assert build({"name": "a", "qty": "1.50", "note": "x"}) == Row("a", Decimal("1.50"), "x")
    assert build({"name": "a", "qty": "2"}) == Row("a", Decimal("2"))  # an older payload
    with pytest.raises(TypeError):
        build({"name": "a"})  # a field without default is missing: refused, not guessed


def _tamper(payload: bytes, change) -> bytes:
    """The payload with its header changed by `change` (its sections kept)."""
    header, sections = snapshots.unpack(payload)
    change(header)
    return snapshots._framed(header, [bytes(sections)])


def _tamper_section(payload: bytes, change) -> bytes:
    """The payload with its first section's body changed by `change`."""
    header, sections = snapshots.unpack(payload)
    first = header["sections"][0]["bytes"]
    body = json.loads(zlib.decompress(sections[:first]))
    change(body)
    blob = zlib.compress(json.dumps(body).encode())
    header["sections"][0]["bytes"] = len(blob)
    return snapshots._framed(header, [blob, bytes(sections[first:])])


def test_a_payload_that_disagrees_with_itself_is_refused() -> None:
    p = next(p for p in range(PARTITIONS) if any(v == p for v in WHOLE.position_partition.values()))
    payload = snapshots.serialize(WHOLE, "orders", p)

    def bump_qty(body: dict) -> None:
        body["positions"][0]["qty"] = str(Decimal(body["positions"][0]["qty"]) + 1)

    with pytest.raises(InvariantViolation, match=r"topic\[1\]@9: position .*stored qty="):
        snapshots.restore(TradingState(), "orders", p, _tamper(payload, bump_qty), where="topic[1]@9")
    with pytest.raises(InvariantViolation, match="expected marks partition"):
        snapshots.restore(TradingState(), "marks", p, payload)
    other = 0 if p else 1
    with pytest.raises(InvariantViolation, match=f"holds orders partition {p}, expected orders partition {other}"):
        snapshots.restore(TradingState(), "orders", other, payload)
    with pytest.raises(InvariantViolation, match="not zlib"):
        snapshots.restore(TradingState(), "orders", p, b"garbage")
    with pytest.raises(InvariantViolation, match="unknown format"):
        snapshots.restore(TradingState(), "orders", p, _tamper(payload, lambda b: b.update(v=99)))
    with pytest.raises(InvariantViolation, match="sections take"):
        snapshots.restore(TradingState(), "orders", p, payload + b"x")


def test_a_damaged_section_is_refused_eagerly_and_when_a_lazy_state_reads_it() -> None:
    p = next(p for p in range(PARTITIONS) if any(v == p for v in WHOLE.position_partition.values()))
    payload = snapshots.serialize(WHOLE, "orders", p)

    def bump_exec_qty(body: dict) -> None:
        body["executions"][0]["qty"] = str(Decimal(body["executions"][0]["qty"]) + 1)

    def drop_an_order(body: dict) -> None:
        body["orders"].pop()

    for change, message in ((bump_exec_qty, "stored .* but its executions fold to"),
                            (drop_an_order, "holds other ids than the header lists")):
        damaged = _tamper_section(payload, change)
        with pytest.raises(InvariantViolation, match=message):
            snapshots.restore(TradingState(), "orders", p, damaged)
        lazy = TradingState()
        snapshots.restore(lazy, "orders", p, damaged, lazy=True)  # the header alone is sound
        with pytest.raises(InvariantViolation, match=message):
            lazy.thaw_all()


def test_format_1_payloads_are_still_read() -> None:
    """Snapshots written before format 2 (one JSON body with every row) restore to the same state."""
    for p in range(PARTITIONS):
        body = {"v": 1, "kind": "orders", "partition": p,
                "orders": [_encoder(OrderState)(WHOLE.orders[o]) for o, q in sorted(WHOLE.order_partition.items())
                           if q == p],
                "executions": [_encoder(Execution)(x) for x in sorted(WHOLE.executions.values(),
                                                                         key=lambda x: (x.source_offset, x.exec_id))
                               if x.kafka_partition == p],
                "positions": [{"account": k[0], "symbol": k[1],
                               **{f: to_plain(getattr(WHOLE.positions[k], f)) for f in snapshots.POSITION_FIELDS}}
                              for k, q in sorted(WHOLE.position_partition.items()) if q == p]}
        rebuilt = TradingState()
        snapshots.restore(rebuilt, "orders", p, zlib.compress(json.dumps(body).encode()))
        assert only(rebuilt, orders=p)[:-1] == only(WHOLE, orders=p)[:-1]
        assert not rebuilt.cold_orders and not rebuilt.cold_execs


def _open_orders(state: TradingState) -> dict:
    return {k: v for k, v in state.orders.items() if not v.is_terminal}


def test_a_multi_day_order_done_for_the_day_stays_open_in_a_lazy_restore() -> None:
    """It may execute again, so it is in the header, not in a section; a payload written before
    that rule (no `open_by_terms`) may hold it in a section, and is restored eagerly."""
    state = done_for_the_day({"GTC1": TimeInForce.GTC, "DAY1": TimeInForce.DAY})
    payload = snapshots.serialize(state, "orders", 0)
    lazy = TradingState()
    snapshots.restore(lazy, "orders", 0, payload, lazy=True)
    assert list(lazy.orders) == ["GTC1"] and list(lazy.cold_orders) == ["DAY1"]
    assert [o["order_id"] for o in read_model.open_order_rows(lazy)] == ["GTC1"]

    def as_before(header: dict) -> None:  # the GTC order in the section, as payloads were written
        del header["open_by_terms"]
    older = _tamper(payload, as_before)
    eager = TradingState()
    snapshots.restore(eager, "orders", 0, older, lazy=True)
    assert not eager.cold_orders and sorted(eager.orders) == ["DAY1", "GTC1"]


@pytest.mark.parametrize("cut", [300, 900, 1500, 2100, 2450])
def test_a_lazy_restore_plus_a_tail_equals_the_eager_fold(cut: int) -> None:
    """Snapshot every partition at `cut`, restore lazily, fold the rest: what `state --as-of`
    shows (positions, open orders) equals the eager fold before anything is thawed, only what
    the tail named was decoded, and after `thaw_all` every row is equal."""
    head = fold(STREAM[:cut])
    payloads = snapshots.serialize_many(head, [(k, p) for p in range(PARTITIONS) for k in ("orders", "marks")])
    lazy = TradingState()
    for (kind, p), payload in payloads.items():
        snapshots.restore(lazy, kind, p, payload, lazy=True)
    assert lazy.orders == _open_orders(head)
    assert len(lazy.cold_orders) == len(head.orders) - len(lazy.orders) > 0
    assert set(lazy.cold_execs) == {(x.account, x.symbol) for x in head.executions.values()} != set()
    offsets: dict[tuple[bool, int], int] = {}
    for r in STREAM[:cut]:
        key = (isinstance(r, OrderEvent), symbol_partition(r.symbol, PARTITIONS))
        offsets[key] = offsets.get(key, -1) + 1
    tail = STREAM[cut:cut + 150]
    for r in tail:
        p = symbol_partition(r.symbol, PARTITIONS)
        key = (isinstance(r, OrderEvent), p)
        offsets[key] = offsets.get(key, -1) + 1
        if isinstance(r, OrderEvent):
            try:
                lazy.apply_order_event(r, p, offsets[key])
            except InvalidOrderTransition:
                pass  # refused by the eager fold too (compared below)
        else:
            lazy.apply_mark(r, p)
    lazy.take_changes()
    eager = fold(STREAM[:cut + 150])
    assert read_model.position_rows(lazy) == read_model.position_rows(eager)
    assert read_model.open_order_rows(lazy) == read_model.open_order_rows(eager)
    assert lazy.cold_orders or lazy.cold_execs, "a 150-record tail should leave some of the snapshot undecoded"
    lazy.thaw_all()
    assert not lazy.cold_orders and not lazy.cold_execs
    assert (lazy.orders, lazy.order_partition, lazy.executions, lazy.positions, lazy.position_partition,
            lazy.marks) == (eager.orders, eager.order_partition, eager.executions, eager.positions,
                            eager.position_partition, eager.marks)


def test_a_restatement_of_a_cold_fill_loads_it_and_restates_exactly() -> None:
    t = Tape()
    t.order("O1", "ACC1", "GOLD", Side.BUY, 30, price=5)
    first = t.fill("O1", 10, 5, commission="1")
    second = t.fill("O1", 10, "5.5", commission="1")
    t.order("O2", "ACC1", "GOLD", Side.SELL, 5, price=6)
    t.fill("O2", 5, 6, commission="0.5")
    at = len(t.records)
    t.bust("O1", first)
    t.correct("O1", second, 10, "5.25")
    t.fill("O1", 10, 5)
    state, lazy = TradingState(), TradingState()
    for offset, r in enumerate(t.records[:at]):
        state.apply_order_event(r, 0, offset)
    snapshots.restore(lazy, "orders", 0, snapshots.serialize(state, "orders", 0), lazy=True)
    (key,) = lazy.positions
    assert isinstance(lazy.positions[key].fills, history.Deferred)
    assert not lazy.positions[key].fills.is_loaded and lazy.cold_execs
    for offset, r in enumerate(t.records[at:], at):
        assert state.apply_order_event(r, 0, offset) == lazy.apply_order_event(r, 0, offset) == "applied"
    assert not lazy.cold_orders and not lazy.cold_execs  # the bust named O1's executions: thawed
    assert lazy.positions == state.positions and lazy.executions == state.executions
    assert lazy.orders == state.orders


def _meta(i: int, tp: tuple[str, int], offset: int, max_ts: datetime | None) -> SnapshotMeta:
    return SnapshotMeta(i, "trading", tp[0], tp[1], offset, max_ts, offset, max_ts or datetime.now(tz=UTC), 10)


def test_prune_keeps_the_newest_of_each_partition_and_only_deletes_before() -> None:
    t0 = datetime(2026, 11, 20, 15, tzinfo=UTC)
    metas = [_meta(i, ("o", p), off, t0 + timedelta(minutes=off)) for i, (p, off) in enumerate(
        [(0, 10), (0, 20), (0, 30), (1, 5), (1, 15)])] + [_meta(9, ("m", 0), 0, None)]
    assert {s.id for s in snapshots.prune_candidates(metas, keep=1)} == {0, 1, 3}
    assert {s.id for s in snapshots.prune_candidates(metas, keep=2)} == {0}
    assert snapshots.prune_candidates(metas, keep=5) == []
    assert {s.id for s in snapshots.prune_candidates(metas, keep=0, before=t0 + timedelta(minutes=15))} == {0, 3, 9}
    with pytest.raises(ValueError):
        snapshots.prune_candidates(metas, keep=-1)


# -- the projector's bookkeeping -------------------------------------------------------------------

SETTINGS = Settings().with_overrides(topic_orders="o", topic_marketdata="m", partitions=PARTITIONS,
                                     snapshot_every_events=5, snapshot_every_seconds=0)
CODEC = AvroCodec()


def projection(settings: Settings = SETTINGS, **kwargs) -> TradingProjection:
    """A projection whose topics have PARTITIONS partitions, as the brokers of `messages` would say."""
    proj = TradingProjection(settings, **kwargs)
    proj.place({"o": PARTITIONS, "m": PARTITIONS})
    return proj


def messages(records, start: dict[tuple[str, int], int] | None = None) -> list[Message]:
    nxt = dict(start or {})
    out = []
    for r in records:
        tp = ("o" if isinstance(r, OrderEvent) else "m", symbol_partition(r.symbol, PARTITIONS))
        offset = nxt.get(tp, 0)
        nxt[tp] = offset + 1
        out.append(Message(topic=tp[0], partition=tp[1], offset=offset, value=CODEC.encode(r), key=r.symbol.encode(),
                           timestamp=(1, timestamp_ms(r.event_time))))
    return out


class Recorder:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.inserted: list[list[snapshots.NewSnapshot]] = []
        monkeypatch.setattr(store, "send_rows", lambda *a, **k: lambda: 0)
        monkeypatch.setattr(snapshots, "insert", lambda conn, rows: self.inserted.append(list(rows)) or len(rows))


def test_snapshot_every_n_events_in_the_batch_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(monkeypatch)
    proj = projection()
    t = Tape()
    t.order("O1", "ACC1", "GOLD", Side.BUY, 100, price=10)     # 2 events
    for _ in range(4):
        t.fill("O1", 10, 10)                                   # 4 more: 6 on the orders partition
    msgs = messages(t.records)
    for m in msgs:
        proj.apply(m)
    proj.write(None)  # type: ignore[arg-type]
    (batch,) = rec.inserted
    (snap,) = batch
    p = symbol_partition("GOLD", PARTITIONS)
    assert (snap.projection, snap.topic, snap.partition, snap.next_offset, snap.events_covered) == ("trading", "o", p,
                                                                                                   6, 6)
    assert snap.max_timestamp == t.records[-1].event_time.replace(microsecond=t.records[-1].event_time.microsecond
                                                                   // 1000 * 1000)
    restored = TradingState()
    snapshots.restore(restored, "orders", p, snap.state)
    assert restored.orders == proj.state.orders and restored.positions == proj.state.positions

    retried = proj.write(None)  # type: ignore[arg-type]  # a retried transaction writes the same snapshot again
    assert rec.inserted[1] == batch
    proj.committed(retried)
    t.fill("O1", 10, 10)
    for m in messages(t.records[-1:], {("o", p): 6}):
        proj.apply(m)
    proj.write(None)  # type: ignore[arg-type]
    assert len(rec.inserted) == 2  # 1 event since the snapshot: not due
    assert proj.snapshots_taken == 1


def test_records_folded_while_the_batch_is_in_flight_stay_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The projector folds the next batch before the last one commits: the records folded after
    the snapshot count toward the next one, and the snapshot holds the state as of its offset."""
    rec = Recorder(monkeypatch)
    proj = projection()
    t = Tape()
    t.order("O1", "ACC1", "GOLD", Side.BUY, 100, price=10)     # 2 events
    for _ in range(7):
        t.fill("O1", 10, 10)                                   # 7 more
    msgs = messages(t.records)
    for m in msgs[:6]:
        proj.apply(m)
    batch = proj.prepare()
    (snap,) = batch.snapshots
    assert snap.next_offset == 6
    for m in msgs[6:]:                                         # the next batch, folded meanwhile
        proj.apply(m)
    proj.committed(batch)
    assert proj.snapshots_taken == 1
    assert proj.prepare().snapshots == []                      # 3 records since the snapshot: not due
    restored = TradingState()
    snapshots.restore(restored, "orders", snap.partition, snap.state)
    assert restored.orders["O1"].cum_qty == 40                 # 4 fills at offset 6, not 7
    t.fill("O1", 10, 10)
    t.fill("O1", 10, 10)
    for m in messages(t.records[-2:], {("o", snap.partition): 9}):
        proj.apply(m)
    assert [s.next_offset for s in proj.prepare().snapshots] == [11]  # 5 since the snapshot
    assert rec.inserted == []  # prepare captures; only send inserts


def test_an_abandoned_batch_does_not_reset_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(monkeypatch)
    proj = projection()
    for m in messages(STREAM[:40]):
        proj.apply(m)
    proj.write(None)  # type: ignore[arg-type]
    assert rec.inserted and proj.snapshots_taken == 0
    # no committed(): the transaction failed; the next write snapshots the same partitions again
    proj.write(None)  # type: ignore[arg-type]
    assert {(s.topic, s.partition) for s in rec.inserted[1]} == {(s.topic, s.partition) for s in rec.inserted[0]}


def test_snapshot_every_t_seconds_only_with_new_records(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(monkeypatch)
    now = [1000.0]
    proj = projection(SETTINGS.with_overrides(snapshot_every_events=0, snapshot_every_seconds=60))
    proj.clock = lambda: now[0]
    msgs = messages(STREAM[:30])
    for m in msgs[:10]:
        proj.apply(m)
    proj.write(None)  # type: ignore[arg-type]
    assert rec.inserted == []
    now[0] += 61
    written = proj.write(None)  # type: ignore[arg-type]
    taken = {(s.topic, s.partition) for s in rec.inserted[0]}
    assert taken == {(m.topic(), m.partition()) for m in msgs[:10]}
    proj.committed(written)
    now[0] += 120
    proj.write(None)  # type: ignore[arg-type]
    assert len(rec.inserted) == 1  # nothing new since: no snapshot however long it has been
    for m in msgs[10:12]:
        proj.apply(m)
    proj.write(None)  # type: ignore[arg-type]
    assert {(s.topic, s.partition) for s in rec.inserted[1]} == {(m.topic(), m.partition()) for m in msgs[10:12]}


def test_dead_letters_and_undecodable_records_count_as_covered(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(monkeypatch)
    proj = projection()
    bad = [Message(topic="o", partition=0, offset=i, value=b"junk", key=b"X", timestamp=(1, 1000 + i))
           for i in range(5)]
    for m in bad:
        assert proj.apply(m) is not None
    proj.write(None)  # type: ignore[arg-type]
    (snap,) = rec.inserted[0]
    assert (snap.next_offset, snap.events_covered) == (5, 5)
    assert snap.max_timestamp == datetime(1970, 1, 1, 0, 0, 1, 4000, tzinfo=UTC)


def test_snapshots_off_for_in_memory_replays(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(monkeypatch)
    for proj in (projection(snapshots=False),
                 projection(SETTINGS.with_overrides(snapshot_every_events=0, snapshot_every_seconds=0))):
        for m in messages(STREAM[:50]):
            proj.apply(m)
        proj.write(None)  # type: ignore[arg-type]
    assert rec.inserted == []


def test_an_exec_id_reused_by_another_order_applies_lazily_as_eagerly() -> None:
    """An exec id is unique within its order: another order's fill reusing a cold one's id is its
    own fill (no lookup in the snapshot needed), and a bust of the cold one thaws its section."""
    t = Tape()
    t.order("O1", "ACC1", "GOLD", Side.BUY, 20, price=5)  # stays open: in the header, its execution cold
    taken = t.fill("O1", 10, 5)
    at = len(t.records)
    t.order("O2", "ACC1", "GOLD", Side.SELL, 10, price=7)  # the same section
    t.fill("O2", 4, 7, exec_id=taken)
    t.order("O3", "ACC2", "SILVER", Side.SELL, 10, price=7)  # another section
    t.fill("O3", 4, 7, exec_id=taken)
    resent = len(t.records)
    t.fill("O3", 1, 7)
    t.records[-1] = t.records[-1].replace(exec_id=taken)  # the same exec id on its own order: a duplicate
    t.bust("O1", taken)
    state, lazy = TradingState(), TradingState()
    for offset, r in enumerate(t.records[:at]):
        state.apply_order_event(r, 0, offset)
    snapshots.restore(lazy, "orders", 0, snapshots.serialize(state, "orders", 0), lazy=True)
    assert ("ACC1", "GOLD") in lazy.cold_execs and "O1" in lazy.orders
    for offset, r in enumerate(t.records[at:resent], at):
        assert lazy.apply_order_event(r, 0, offset) == state.apply_order_event(r, 0, offset) == "applied"
    assert ("ACC1", "GOLD") in lazy.cold_execs  # no fill needed the snapshot's executions
    for s in (state, lazy):
        with pytest.raises(InvalidOrderTransition, match=f"exec_id {taken} already seen on this order") as refused:
            s.apply_order_event(t.records[resent], 0, resent)
        assert refused.value.rule == "duplicate_exec_id"
    bust = t.records[-1]
    assert state.apply_order_event(bust, 0, resent + 1) == lazy.apply_order_event(bust, 0, resent + 1) == "applied"
    assert not lazy.cold_execs  # the bust named O1's execution: its section thawed
    lazy.thaw_all()
    assert (lazy.orders, lazy.executions, lazy.positions) == (state.orders, state.executions, state.positions)
    assert {k for k, x in state.executions.items() if not x.busted} == {("O2", taken), ("O3", taken)}


def test_an_id_in_two_partitions_snapshots_is_the_later_restored_ones_lazily_too() -> None:
    """Never written by one projector (ids are refused in a second partition), but snapshots of
    two partitions may come from two processes: restoring lazily must end as eagerly does."""
    t = Tape()
    t.order("O1", "ACC1", "GOLD", Side.BUY, 10, price=5)
    t.fill("O1", 10, 5, exec_id="X1")  # FILLED: terminal, so in a section
    first, second = TradingState(), TradingState()
    for offset, r in enumerate(t.records):
        first.apply_order_event(r, 0, offset)
        second.apply_order_event(r.replace(price=Decimal(6)) if r.price is not None else r, 1, offset)
    payloads = [(0, snapshots.serialize(first, "orders", 0)), (1, snapshots.serialize(second, "orders", 1))]
    eager, lazy = TradingState(), TradingState()
    for p, payload in payloads:
        snapshots.restore(eager, "orders", p, payload)
        snapshots.restore(lazy, "orders", p, payload, lazy=True)
    assert eager.orders["O1"].price == 6 and eager.order_partition["O1"] == 1
    lazy.thaw_all()
    assert (lazy.orders, lazy.order_partition, lazy.executions) == (eager.orders, eager.order_partition,
                                                                    eager.executions)
    assert not lazy.cold_orders and not lazy.cold_execs and not any(lazy.cold_groups.values())
    lazy.drop_partitions(orders_partitions=(0, 1))  # nothing cold left to trip over
