"""Splitting an as-of fold between processes (projections.parallel), as pure functions: the
split of the plans, and the merge of the processes' summaries, which must give exactly the rows
one process folding every partition prints (no services)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backbone.domain.events import MarketMark, OrderEvent
from backbone.domain.positions import PositionError
from backbone.errors import InvalidOrderTransition, InvariantViolation
from backbone.kafka.partitioner import symbol_partition
from producers.simulator import SimulationConfig, simulate
from projections.parallel import merge, split_plans, summarize
from projections.read_model import open_order_rows, pnl_rows, position_rows
from projections.replay import PartitionPlan, PartitionReport, ReplayResult, plan_partition
from projections.state import TradingState

ORDERS, MARKS = "trading.orders", "trading.marketdata"
PARTITIONS = 6


def plan(topic: str, partition: int, to_read: int) -> PartitionPlan:
    return plan_partition((topic, partition), begin=to_read, end=to_read, low=0, high=to_read, snapshot=None)


# -- the split ------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(reads=st.dictionaries(st.integers(0, 11), st.tuples(st.integers(0, 5000), st.integers(0, 800)),
                             max_size=12),
       ways=st.integers(1, 4))
def test_split_places_every_plan_once_a_partition_number_whole_and_balances(reads, ways) -> None:
    plans = [plan(ORDERS, p, o) for p, (o, _m) in reads.items()] + [plan(MARKS, p, m) for p, (_o, m) in reads.items()]
    groups = split_plans(plans, ways)
    assert sorted(p.tp for g in groups for p in g) == sorted(p.tp for p in plans)
    assert all(groups) and len(groups) <= ways
    owner = {p.tp: i for i, g in enumerate(groups) for p in g}
    for p in reads:
        assert owner[(ORDERS, p)] == owner[(MARKS, p)], "a partition number's plans go to one process"
    # each number went to the lightest group: no group exceeds another by more than one number's load
    weight = {p: o + m for p, (o, m) in reads.items()}
    loads = [sum(x.to_read for x in g) for g in groups]
    if len(groups) == ways and weight:
        assert max(loads) - min(loads) <= max(weight.values())


def test_split_of_nothing_and_into_one() -> None:
    assert split_plans([], 2) == []
    plans = [plan(ORDERS, 0, 5), plan(MARKS, 0, 1), plan(ORDERS, 1, 7)]
    assert split_plans(plans, 1) == [[plans[2], plans[0], plans[1]]]  # heaviest number first
    assert sorted(len(g) for g in split_plans(plans, 2)) == [1, 2]


# -- the merge ------------------------------------------------------------------------------------

def folded(records: list[OrderEvent | MarketMark], numbers: set[int]) -> ReplayResult:
    """What one process folds: the records of partitions `numbers`, as ReplayResult."""
    state = TradingState()
    reports: dict[tuple[str, int], PartitionReport] = {}
    offsets: dict[tuple[str, int], int] = {}
    for r in records:
        p = symbol_partition(r.symbol, PARTITIONS)
        if p not in numbers:
            continue
        tp = (ORDERS if isinstance(r, OrderEvent) else MARKS, p)
        offsets[tp] = offsets.get(tp, -1) + 1
        try:
            if isinstance(r, OrderEvent):
                state.apply_order_event(r, p, offsets[tp])
            else:
                state.apply_mark(r, p)
        except (InvalidOrderTransition, PositionError):
            pass  # dead-lettered
    for tp, last in offsets.items():
        reports[tp] = PartitionReport(plan(tp[0], tp[1], last + 1), begin=0, end=last + 1, replayed=last + 1)
    return ReplayResult(state, reports, 0.5, 0.1, [])


SESSION = list(simulate(SimulationConfig(events=900, seed=5, symbols=9, accounts=3)))


@settings(max_examples=25, deadline=None)
@given(helper=st.sets(st.integers(0, PARTITIONS - 1)), account=st.sampled_from([None, "ACC001"]),
       include_flat=st.booleans())
def test_merged_summaries_print_exactly_what_one_process_prints(helper, account, include_flat) -> None:
    everything = folded(SESSION, set(range(PARTITIONS))).state
    parts = [summarize(folded(SESSION, set(range(PARTITIONS)) - helper), account=account),
             summarize(folded(SESSION, helper), account=account)]
    rows = merge(parts, account=account, include_flat=include_flat)
    assert rows.positions == position_rows(everything, account=account, include_flat=include_flat)
    assert rows.pnl == pnl_rows(position_rows(everything, account=account))
    assert rows.open_orders == open_order_rows(everything, account=account)
    assert rows.records == len(SESSION) and rows.processes == 2
    assert rows.positions or account is not None  # the session has positions to compare


def test_a_symbol_split_across_processes_is_refused_for_positions_and_newest_wins_for_marks() -> None:
    one = summarize(folded(SESSION, set(range(PARTITIONS))))
    key = next(iter(one.positions))
    other = replace(one, positions={key: one.positions[key]}, reports={})
    with pytest.raises(InvariantViolation, match="not partitioned by symbol"):
        merge([one, replace(other, marks={})])

    symbol, mark = next(iter(one.marks.items()))
    newer = replace(mark, event_time=mark.event_time + timedelta(seconds=1), mark_price=mark.mark_price + 1)
    older = replace(mark, event_time=mark.event_time - timedelta(seconds=1), mark_price=Decimal(1))
    for theirs in (newer, older):
        rows = merge([one, replace(one, positions={}, reports={}, open_orders=[], marks={symbol: theirs})])
        shown = {r["mark_price"] for r in rows.positions if r["symbol"] == symbol}
        assert shown == {max((mark, theirs), key=lambda m: m.event_time).mark_price}


def test_the_merge_keeps_the_slowest_process_times_and_the_first_letters_in_log_order() -> None:
    a = replace(summarize(folded(SESSION, {0, 1, 2})), read_seconds=0.4, snapshot_seconds=0.3,
                letters=[(f"{ORDERS}[10]@3", "r", "d"), (f"{ORDERS}[2]@10", "r", "d"), (f"{ORDERS}[2]@7", "r", "d")])
    b = replace(summarize(folded(SESSION, {3, 4, 5})), read_seconds=0.9, snapshot_seconds=0.1,
                letters=[(f"{ORDERS}[2]@12", "r", "d")])
    rows = merge([a, b], keep_letters=3)
    assert (rows.read_seconds, rows.snapshot_seconds) == (0.9, 0.3)
    assert [x[0] for x in rows.letters] == [f"{ORDERS}[2]@7", f"{ORDERS}[2]@10", f"{ORDERS}[2]@12"]
