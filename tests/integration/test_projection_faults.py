"""Crash safety and rebalances: the projector's effects are exactly once whatever happens."""

from __future__ import annotations

import json
import random
import signal
import threading
import time

import pytest
from confluent_kafka import Consumer
from conftest import TEST_PARTITIONS, scratch_database
from support import checkpoint_total, checkpoints, project, publish, spawn_projector, table_dump

from backbone import db
from backbone.kafka.consumer import consumer_config
from backbone.settings import Settings
from consumers.config import LoopConfig
from consumers.runtime import ProjectionLoop
from producers.simulator import SimulationConfig, simulate
from projections.trading import TradingProjection

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EVENTS = 50_000


@pytest.fixture
def session_log(created_topics: Settings) -> Settings:
    publish(created_topics, list(simulate(SimulationConfig(events=EVENTS, seed=2026, symbols=24, accounts=12))))
    return created_topics


@pytest.fixture
def reference(session_log: Settings, services, names):
    """The same log projected by one uninterrupted in-process run, into a database of its own."""
    with scratch_database(session_log, services.database_url) as ref:
        stats = project(ref, names.group("reference"), batch_size=2000)
        assert stats.events == EVENTS and stats.dead_letters == 0
        yield table_dump(ref)


def _wait_for_progress(settings: Settings, since: int, proc, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:  # finished: only a clean exit counts as that
            assert proc.returncode == 0, f"the projector failed (exit {proc.returncode}): {proc.stderr.read()}"
            return False
        if checkpoint_total(settings) > since:
            return True
        time.sleep(0.05)
    raise AssertionError("projector made no progress in 120 s")


def test_sigkill_at_random_moments_neither_loses_nor_doubles(session_log: Settings, reference, names) -> None:
    settings, rng = session_log, random.Random(42)
    group, kills = names.group("crashy"), 0
    while kills < 12:
        progress = checkpoint_total(settings)
        # small batches: 12 lives of up to 0.4 s each must leave the log unfinished (measured
        # with the compiled state machine: ~31k of 50k records with 100-record batches, ~14k with 20)
        proc = spawn_projector(settings, group, "--batch-size", "20", "--instance-id", "crashy-1")
        if not _wait_for_progress(settings, progress, proc):
            break  # it finished before we could kill it
        time.sleep(rng.uniform(0, 0.4))  # somewhere inside a batch, a commit, or between them
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
    assert kills >= 10, f"only {kills} kills happened before the run finished"
    final = spawn_projector(settings, group, "--batch-size", "2000", "--instance-id", "crashy-1")
    out, err = final.communicate(timeout=600)
    assert final.returncode == 0, err
    assert table_dump(settings) == reference


def _members(settings: Settings, group: str) -> list[set[tuple[str, int]]]:
    """The partitions each member of the group holds, as the group coordinator says (stable
    groups only: during a rebalance there is no assignment to speak of)."""
    from confluent_kafka import ConsumerGroupState

    from backbone.kafka.topics import admin_client

    admin = admin_client(settings)  # held: a collected client never resolves its futures
    (future,) = admin.describe_consumer_groups([group], request_timeout=10).values()
    description = future.result(timeout=30)
    if description.state != ConsumerGroupState.STABLE:
        return []
    return [{(tp.topic, tp.partition) for tp in m.assignment.topic_partitions} for m in description.members]


def _wait_for(what: str, condition, timeout: float = 120):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def test_two_projectors_with_a_rebalance_in_the_middle(created_topics: Settings, services, names) -> None:
    """The second projector joins while the first is working: the group's partitions are split
    between them (seen in the coordinator's assignment, not assumed from timing), the rest of the
    log arrives after that, and the tables end as one uninterrupted run's."""
    settings, group = created_topics, names.group("pair")
    records = list(simulate(SimulationConfig(events=EVENTS, seed=2026, symbols=24, accounts=12)))
    half = len(records) // 2
    publish(settings, records[:half])
    everything = {(t, p) for t in (settings.topic_orders, settings.topic_marketdata) for p in range(TEST_PARTITIONS)}
    procs = [spawn_projector(settings, group, "--batch-size", "100", until_caught_up=False)]
    try:
        _wait_for("the first projector to hold every partition", lambda: _members(settings, group) == [everything])
        assert _wait_for_progress(settings, 0, procs[0])
        procs.append(spawn_projector(settings, group, "--batch-size", "100", until_caught_up=False))
        split = _wait_for("the group to split the partitions between two members",
                          lambda: (m := _members(settings, group)) and len(m) == 2 and all(m) and m)
        assert set().union(*split) == everything
        publish(settings, records[half:])  # after the rebalance: both members have records to project
        _wait_for("every record to be projected", lambda: checkpoint_total(settings) == EVENTS, timeout=600)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outs.append(json.loads(out))
    assert outs[0]["events"] > 0 and outs[1]["events"] > 0, outs
    assert project(settings, group).events == 0
    with scratch_database(settings, services.database_url) as ref:
        assert project(ref, names.group("reference"), batch_size=2000).events == EVENTS
        assert table_dump(settings) == table_dump(ref)


def test_sigterm_finishes_the_batch_and_exits_zero(session_log: Settings, names) -> None:
    settings, group = session_log, names.group("term")
    proc = spawn_projector(settings, group, "--batch-size", "200")
    assert _wait_for_progress(settings, 0, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    stats = json.loads(out)
    assert checkpoint_total(settings) == stats["events"]  # every processed event is committed, no more


def test_partitions_a_rebalance_gives_back_unchanged_keep_their_state(created_topics: Settings, services,
                                                                       names) -> None:
    """An eager rebalance revokes every partition. Those that come back to the same projector
    with the checkpoint it committed keep their state in memory; those another member held are
    loaded from Postgres. The tables end as one uninterrupted run's."""
    settings = created_topics
    publish(settings, list(simulate(SimulationConfig(events=3_000, seed=81))))
    with scratch_database(settings, services.database_url) as ref:
        project(ref, names.group("reference"))
        expected = table_dump(ref)

    group = names.group("keep")
    topic_names = [settings.topic_orders, settings.topic_marketdata]
    loads: list[list[tuple[str, int]]] = []
    intruder_held: list[list[tuple[str, int]]] = []
    intruder_left = threading.Event()

    def intrude() -> None:
        """A second member of the group: takes its share, reads nothing, leaves."""
        consumer = Consumer(consumer_config(settings, **{"group.id": group, "partition.assignment.strategy": "range"}))
        try:
            consumer.subscribe(topic_names)
            deadline = time.monotonic() + 120
            while not consumer.assignment() and time.monotonic() < deadline:
                consumer.poll(0.2)
            intruder_held.append(sorted((tp.topic, tp.partition) for tp in consumer.assignment()))
        finally:
            consumer.close()
            intruder_left.set()

    projection = TradingProjection(settings)
    load = projection.load

    def counting_load(conn, tps):  # noqa: ANN001, ANN202
        loads.append(sorted(tps))
        return load(conn, tps)

    projection.load = counting_load  # type: ignore[method-assign]
    intruder = threading.Thread(target=intrude)
    holder: dict[str, ProjectionLoop] = {}

    def after_commit(records: list, committed_at: float) -> None:
        if holder["loop"].stats.batches == 1:
            intruder.start()

    def finished() -> bool:
        loop = holder["loop"]
        return intruder_left.is_set() and len(loop.assigned) == 2 * TEST_PARTITIONS and loop.assigned <= loop.at_end

    engine = db.make_engine(settings)
    try:
        loop = holder["loop"] = ProjectionLoop(settings, projection, engine, LoopConfig(group_id=group, batch_size=50),
                                               stop_requested=finished, on_commit=after_commit)
        stats = loop.run(max_seconds=300)
    finally:
        engine.dispose()
        if intruder.is_alive():
            intruder.join(timeout=60)
    everything = sorted((t, p) for t in topic_names for p in range(TEST_PARTITIONS))
    (theirs,) = intruder_held
    assert 0 < len(theirs) < len(everything)
    # all at first; after the intruder joined nothing (ours came back unchanged); after it left,
    # only what it had held (it committed nothing, but this member had dropped that state)
    assert loads == [everything, theirs]
    assert stats.partitions_loaded == len(everything) + len(theirs)
    assert stats.partitions_kept == 2 * len(everything) - 2 * len(theirs)
    assert stats.events == 3_000
    assert table_dump(settings) == expected

    # What decides: a held partition whose checkpoint is no longer the one this member committed
    # (another owner moved it) is loaded again; after a swap (another generation), every one is.
    stored = checkpoints(settings)
    moved = sorted(stored)[0]

    def give_back(held: dict[tuple[str, int], int | None]) -> list[tuple[str, int]]:
        loop._held = held  # noqa: SLF001 - as a revoke of everything leaves it
        loads.clear()
        loop.db.load(lambda conn: loop._load(conn, everything),  # noqa: SLF001
                     isolation_level="REPEATABLE READ")
        return loads[0] if loads else []

    assert give_back({tp: stored.get(tp) for tp in everything}) == []
    assert give_back({tp: stored.get(tp) - (tp == moved) if tp in stored else None for tp in everything}) == [moved]
    loop.generation -= 1
    assert give_back({tp: stored.get(tp) for tp in everything}) == everything
    assert table_dump(settings) == expected
