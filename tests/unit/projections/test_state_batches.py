"""Pure properties of the trading projection state (no I/O)."""

from __future__ import annotations

import json
from dataclasses import replace

from confluent_kafka import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from backbone.codec.avro import AvroCodec
from backbone.domain.events import MarketMark, OrderEvent
from backbone.kafka.partitioner import symbol_partition
from backbone.settings import Settings
from producers.simulator import SimulationConfig, simulate
from projections import store
from projections.state import TradingState, positions_from_executions
from projections.trading import TradingProjection

PARTITIONS = 4
STREAM = list(simulate(SimulationConfig(events=1500, seed=99, symbols=8, accounts=4)))


def fold(records, state: TradingState | None = None, start: int = 0) -> TradingState:
    state = state or TradingState()
    for offset, record in enumerate(records, start=start):
        partition = symbol_partition(record.symbol, PARTITIONS)
        if isinstance(record, OrderEvent):
            state.apply_order_event(record, partition, offset)
        else:
            assert isinstance(record, MarketMark)
            state.apply_mark(record, partition)
    return state


def persisted_and_reloaded(state: TradingState) -> TradingState:
    """What a restarted projector holds: orders through their row (the columns, and the JSON of
    what has no column), positions refolded from the executions table (the store's write and
    load paths, minus the database)."""
    fresh = TradingState()
    for order_id, order in state.orders.items():
        order_id_, _partition, *columns, history = store._order_row(order, state.order_partition[order_id])
        fresh.orders[order_id] = store._order(order_id_, *columns, json.loads(history))
        fresh.order_partition[order_id] = state.order_partition[order_id]
    fresh.executions = dict(state.executions)
    fresh.positions = positions_from_executions(list(state.executions.values()))
    for key in state.positions:
        fresh.positions.setdefault(key, state.positions[key])
        fresh.position_partition[key] = state.position_partition[key]
    fresh.marks = dict(state.marks)
    return fresh


def comparable(state: TradingState):
    return (state.orders, state.executions, {k: replace(v) for k, v in state.positions.items()}, state.marks)


WHOLE = comparable(fold(STREAM))


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=8).filter(lambda s: sum(s) >= 120))
def test_batches_of_any_size_with_restarts_between_give_identical_state(sizes: list[int]) -> None:
    state, offset = TradingState(), 0
    for size in sizes * (len(STREAM) // max(1, sum(sizes)) + 1):
        if offset >= len(STREAM):
            break
        state = fold(STREAM[offset:offset + size], state, start=offset)
        offset += size
        state = persisted_and_reloaded(state)
    assert comparable(state) == WHOLE


def test_the_simulated_stream_exercises_busts_corrections_and_flips() -> None:
    state = fold(STREAM)
    assert any(x.busted for x in state.executions.values())
    assert any(x.corrected for x in state.executions.values())
    assert any(p.qty < 0 for p in state.positions.values()) and any(p.qty > 0 for p in state.positions.values())


def test_dropping_partitions_forgets_exactly_their_state() -> None:
    whole = fold(STREAM)
    keep = {symbol_partition(r.symbol, PARTITIONS) for r in STREAM} - {0, 2}
    assert keep and len({symbol_partition(r.symbol, PARTITIONS) for r in STREAM}) > len(keep)
    only_kept = TradingState()  # the kept partitions' records alone, at their offsets in STREAM
    for offset, record in enumerate(STREAM):
        if symbol_partition(record.symbol, PARTITIONS) in keep:
            fold([record], only_kept, start=offset)

    at_once = fold(STREAM)
    at_once.drop_partitions(orders_partitions=[0, 2], marks_partitions=[0, 2])
    one_by_one = fold(STREAM)
    for p in (0, 2):
        one_by_one.drop_partitions(orders_partitions=[p], marks_partitions=[p])
    for state in (at_once, one_by_one):
        assert (state.orders, state.order_partition, state.executions, state.positions,
                state.position_partition, state.marks) == (
            only_kept.orders, only_kept.order_partition, only_kept.executions, only_kept.positions,
            only_kept.position_partition, only_kept.marks)
    assert whole.orders != only_kept.orders  # something was dropped


def test_an_execution_keeps_the_fill_numbers_and_turns_a_zero_of_any_exponent_into_decimal_0() -> None:
    from decimal import Decimal

    from backbone.domain.events import EventType

    events = [r for r in STREAM if isinstance(r, OrderEvent)]
    fill = next(e for e in events if e.event_type is EventType.FILLED)
    before = [e for e in events[:events.index(fill)] if e.order_id == fill.order_id]
    for commission, kept in ((Decimal("0E-8"), "0"), (Decimal("-0"), "0"), (None, "0"),
                             (Decimal("1.50000000"), "1.50000000")):
        state = TradingState()
        for e in before:
            state.apply_order_event(e, 0, 0)
        state.apply_order_event(replace(fill, commission=commission), 0, 1)
        execution = state.executions[(fill.order_id, str(fill.exec_id))]
        assert str(execution.commission) == kept  # the exponent too: NUMERIC and JSON keep it
        assert execution.qty is fill.last_qty and execution.price is fill.last_px  # non-zero: not copied


def test_resent_events_are_counted_once_their_batch_commits() -> None:
    """A resend (the same event id again) is skipped and counted; an abandoned batch's count
    goes with it, so folding it again after the reload does not count it twice."""
    codec = AvroCodec()
    orders = [r for r in STREAM if isinstance(r, OrderEvent)][:40]
    resent = [*orders, orders[3], orders[10]]
    messages = [Message(topic="o", partition=0, offset=i, value=codec.encode(r), key=r.symbol.encode())
                for i, r in enumerate(resent)]
    projection = TradingProjection(Settings().with_overrides(topic_orders="o", topic_marketdata="m"), codec,
                                   snapshots=False)
    projection.place({"o": 1, "m": 1})  # one partition each: every symbol lives on 0
    for m in messages:
        assert projection.apply_at(m, "o", 0, m.offset()) is None  # skipped, not a dead letter
    projection.abandon()
    assert projection.duplicates == 0
    projection.state = TradingState()  # what the reload after an abandoned batch gives
    for m in messages[:-1]:
        projection.apply_at(m, "o", 0, m.offset())
    batch = projection.prepare()
    projection.apply_at(messages[-1], "o", 0, messages[-1].offset())  # the next batch, folded before this commits
    projection.committed(batch)
    assert projection.duplicates == 1  # the next batch's resend counts when that batch commits
    projection.committed(projection.prepare())
    assert projection.duplicates == 2


def test_a_write_abandoned_before_a_reload_is_not_booked(monkeypatch) -> None:
    """The rebuild's shadow writes a batch, its transaction fails, it reloads and abandons: the
    failed batch's resent events are not counted; a written batch that commits is."""
    monkeypatch.setattr(store, "send_rows", lambda *a, **k: lambda: 0)
    codec = AvroCodec()
    orders = [r for r in STREAM if isinstance(r, OrderEvent)][:20]
    messages = [Message(topic="o", partition=0, offset=i, value=codec.encode(r), key=r.symbol.encode())
                for i, r in enumerate([*orders, orders[5]])]
    projection = TradingProjection(Settings().with_overrides(topic_orders="o", topic_marketdata="m"), codec,
                                   snapshots=False)
    projection.place({"o": 1, "m": 1})  # one partition each: every symbol lives on 0
    for m in messages:
        projection.apply_at(m, "o", 0, m.offset())
    projection.write(None)  # type: ignore[arg-type]
    projection.abandon()
    assert projection.duplicates == 0
    projection.write(None)  # type: ignore[arg-type]
    for m in messages[-1:]:
        projection.apply_at(m, "o", 0, m.offset())
    projection.committed(projection.write(None))  # type: ignore[arg-type]
    assert projection.duplicates == 1
