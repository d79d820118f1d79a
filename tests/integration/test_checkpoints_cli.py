"""`backbone checkpoints list | create | prune` and the projector's snapshots, on the real stack."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import timedelta

import psycopg
import pytest
from support import checkpoints, project, publish, settings_env
from typer.testing import CliRunner

from backbone import db
from backbone.domain.events import OrderEvent
from backbone.kafka.partitioner import symbol_partition
from backbone.kafka.reader import LogReader
from backbone.record_time import timestamp_ms
from backbone.settings import Settings
from cli.main import app
from producers.simulator import SimulationConfig, simulate
from projections import snapshots
from projections.rebuild import psycopg_url
from projections.replay import parse_time
from projections.snapshot_jobs import snapshot_live
from projections.state import TradingState

pytestmark = pytest.mark.integration


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def use(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in settings_env(settings).items():
        if key.startswith("BACKBONE_"):
            monkeypatch.setenv(key, value)
    return settings


def placed(settings: Settings, records) -> list[tuple[tuple[str, int], int, int, object]]:
    """(tp, offset, record timestamp ms, record) of each record, as published in this order."""
    nxt: Counter = Counter()
    out = []
    for r in records:
        topic = settings.topic_orders if isinstance(r, OrderEvent) else settings.topic_marketdata
        tp = (topic, symbol_partition(r.symbol, settings.partitions))
        out.append((tp, nxt[tp], timestamp_ms(r.event_time), r))
        nxt[tp] += 1
    return out


def fold_partition(entries, tp, below: int) -> TradingState:
    state = TradingState()
    for t, offset, _ts, r in entries:
        if t == tp and offset < below:
            if isinstance(r, OrderEvent):
                state.apply_order_event(r, tp[1], offset)
            else:
                state.apply_mark(r, tp[1])
    return state


def comparable(state: TradingState) -> tuple:
    return (state.orders, state.order_partition, state.executions, state.positions, state.position_partition,
            state.marks)


def stored(settings: Settings) -> list[snapshots.SnapshotMeta]:
    with db.make_engine(settings).connect() as sa_conn:
        return snapshots.list_snapshots(sa_conn.connection.driver_connection, "trading")


def restored(settings: Settings, s: snapshots.SnapshotMeta) -> TradingState:
    state = TradingState()
    kind = snapshots.kind_of(settings, s.topic)
    with db.make_engine(settings).connect() as sa_conn:
        snapshots.restore_snapshot(sa_conn.connection.driver_connection, state, kind, s)
    return state


def test_projector_snapshots_hold_the_fold_of_what_they_cover(created_topics: Settings, names,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    settings = use(created_topics.with_overrides(snapshot_every_events=120, snapshot_every_seconds=0), monkeypatch)
    records = list(simulate(SimulationConfig(events=1600, seed=21, symbols=6, accounts=4)))
    entries = placed(settings, records)
    publish(settings, records[:700])
    project(settings, names.group("live"), batch_size=150)
    publish(settings, records[700:])
    project(settings, names.group("live"), batch_size=150)  # restarted between snapshots

    listed = invoke("checkpoints", "list", "--json")
    assert listed.exit_code == 0, listed.output
    out = json.loads(listed.stdout)
    assert len(out) >= 6
    offsets = checkpoints(settings)
    by_id = {s.id: s for s in stored(settings)}
    for row in out:
        tp = (row["topic"], row["partition"])
        assert row["projection"] == "trading" and row["checkpoint"] == offsets[tp]
        assert 0 < row["next_offset"] <= row["checkpoint"] and row["bytes"] > 0
        below = [ts for t, o, ts, _r in entries if t == tp and o < row["next_offset"]]
        assert row["events_covered"] == row["next_offset"] == len(below)
        assert timestamp_ms(parse_time(row["max_timestamp"])) == max(below)
        # The payload is exactly the fold of the records it covers.
        assert comparable(restored(settings, by_id[row["id"]])) == comparable(
            fold_partition(entries, tp, row["next_offset"]))

    some = out[0]
    alias = "orders" if some["topic"] == settings.topic_orders else "marketdata"
    filtered = json.loads(invoke("checkpoints", "list", "--topic", alias, "--partition", str(some["partition"]),
                                 "--json").stdout)
    assert filtered and {(r["topic"], r["partition"]) for r in filtered} == {(some["topic"], some["partition"])}
    table = invoke("checkpoints", "list")
    assert table.exit_code == 0 and "snapshot(s)" in table.output


def test_create_from_live_state_and_as_of_then_state_needs_no_tail(created_topics: Settings, names,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    settings = use(created_topics.with_overrides(snapshot_every_events=0, snapshot_every_seconds=0), monkeypatch)
    empty = invoke("checkpoints", "create")
    assert empty.exit_code == 1 and "no checkpoints yet" in empty.stderr
    records = list(simulate(SimulationConfig(events=1200, seed=22, symbols=6, accounts=4)))
    entries = placed(settings, records)
    publish(settings, records)
    project(settings, names.group("live"))
    assert stored(settings) == []  # snapshots disabled in the projector

    created = invoke("checkpoints", "create", "--json")
    assert created.exit_code == 0, created.output
    taken = json.loads(created.stdout)
    offsets = checkpoints(settings)
    assert {(t["topic"], t["partition"]): t["next_offset"] for t in taken} == offsets
    assert {t["action"] for t in taken} == {"created"}
    for s in stored(settings):
        tp = (s.topic, s.partition)
        assert timestamp_ms(s.max_timestamp) == max(ts for t, o, ts, _r in entries if t == tp)
        assert comparable(restored(settings, s)) == comparable(fold_partition(entries, tp, s.next_offset))
    again = json.loads(invoke("checkpoints", "create", "--json").stdout)
    assert {t["action"] for t in again} == {"exists"}

    end = (records[-1].event_time + timedelta(seconds=1)).isoformat()
    state = json.loads(invoke("state", "--as-of", end, "--json").stdout)
    assert state["records_replayed"] == 0 and all(p["snapshot_id"] for p in state["partitions"] if p["high"])

    when = records[800].event_time
    at = invoke("checkpoints", "create", "--as-of", when.isoformat(), "--json")
    assert at.exit_code == 0, at.output
    made = [t for t in json.loads(at.stdout) if t["action"] == "created"]
    assert made
    for t in made:
        tp = (t["topic"], t["partition"])
        below = [ts for tt, _o, ts, _r in entries if tt == tp and ts <= timestamp_ms(when)]
        assert t["next_offset"] == len(below) and t["events_covered"] == len(below)
        assert timestamp_ms(parse_time(t["max_timestamp"])) == max(below)
    then = json.loads(invoke("state", "--as-of", when.isoformat(), "--json").stdout)
    assert then["records_replayed"] == 0


def test_prune_keeps_the_newest_and_respects_before(created_topics: Settings, names,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    settings = use(created_topics.with_overrides(snapshot_every_events=60, snapshot_every_seconds=0), monkeypatch)
    records = list(simulate(SimulationConfig(events=1000, seed=23, symbols=4, accounts=3)))
    publish(settings, records)
    # snapshots in the batches (every 60 records of a partition), not in a build beside the
    # loop that a run this short would outpace (docs/live-state.md)
    project(settings.with_overrides(bounded_state=False), names.group("live"), batch_size=100)
    before = stored(settings)
    per_partition = Counter((s.topic, s.partition) for s in before)
    assert max(per_partition.values()) >= 3

    dry = invoke("checkpoints", "prune", "--keep", "1", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)
    assert planned["deleted"] == 0 and len(planned["snapshots"]) == len(before) - len(per_partition)
    assert stored(settings) == before

    when = records[500].event_time
    by_time = json.loads(invoke("checkpoints", "prune", "--keep", "0", "--before", when.isoformat(), "--json").stdout)
    assert by_time["deleted"] == len(by_time["snapshots"]) > 0
    left = stored(settings)
    assert all(s.max_timestamp >= when for s in left)  # only snapshots covering something at or after it
    assert all(parse_time(s["max_timestamp"]) < when for s in by_time["snapshots"])
    assert {s.id for s in left} == {s.id for s in before} - {s["id"] for s in by_time["snapshots"]}

    kept = invoke("checkpoints", "prune", "--keep", "1")
    assert kept.exit_code == 0 and "deleted" in kept.output
    final = stored(settings)
    newest = {}
    for s in left:
        if (s.topic, s.partition) not in newest or s.next_offset > newest[(s.topic, s.partition)].next_offset:
            newest[(s.topic, s.partition)] = s
    assert {s.id for s in final} == {s.id for s in newest.values()}
    # Point-in-time state still works with fewer snapshots (a longer tail).
    assert invoke("state", "--as-of", when.isoformat(), "--json").exit_code == 0
    assert invoke("checkpoints", "create", "--projection", "nope").exit_code == 1


def test_a_live_snapshot_waits_for_a_swap_and_reads_only_after_it(created_topics: Settings, names) -> None:
    """`checkpoints create` takes its REPEATABLE READ snapshot after a transaction that holds the
    projection tables (a rebuild's swap) commits: it never pairs the checkpoints from before it
    with tables from after it. Here the holder empties the projection (rows and checkpoints); a
    snapshot read before it would still take snapshots of the old offsets."""
    settings = created_topics
    publish(settings, list(simulate(SimulationConfig(events=300, seed=4, symbols=4, accounts=2))))
    project(settings, names.group())
    engine = db.make_engine(settings)
    taken: list = []
    failed: list[BaseException] = []
    try:
        with psycopg.connect(psycopg_url(settings)) as holder:
            holder.execute("lock table orders in access exclusive mode")
            holder.execute("delete from projection_checkpoints where projection = 'trading'")
            for table in ("orders", "executions", "positions", "marks"):
                holder.execute(f"delete from {table}")

            def create() -> None:
                try:
                    with LogReader(settings) as reader:
                        taken.extend(snapshot_live(settings, engine, reader))
                except BaseException as e:  # noqa: BLE001 - asserted below, not lost in the thread
                    failed.append(e)

            worker = threading.Thread(target=create)
            worker.start()
            deadline = time.monotonic() + 30
            with psycopg.connect(psycopg_url(settings), autocommit=True) as watcher:
                while not watcher.execute("select count(*) from pg_locks where not granted and "
                                          "relation = 'orders'::regclass").fetchone()[0]:
                    assert time.monotonic() < deadline, "the snapshot never waited for the lock holder"
                    time.sleep(0.05)
            holder.commit()
        worker.join(60)
        assert not worker.is_alive()
    finally:
        engine.dispose()
    assert failed == []
    assert taken == []  # nothing to snapshot: the projection was emptied before it read anything
