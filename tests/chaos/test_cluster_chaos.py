"""Faults on a replicated cluster (three KRaft nodes, RF 3, min ISR 2) and on PostgreSQL, with
`backbone simulate` and `backbone project run` as separate processes.

Each scenario checks what the issue asks: no acknowledged event lost and none doubled in the
log (event ids, partition by partition, against the seeded session itself), and tables
identical row for row to an undisturbed fold of the same log into a database of its own.

Sizes come from the environment so that CI runs a small subset and `make chaos` the full one:
BACKBONE_CHAOS_EVENTS (records of a session, 20,000), BACKBONE_CHAOS_KILL_EVENTS and
BACKBONE_CHAOS_KILLS (the projector SIGKILL run: 20,000 records, 5 kills), BACKBONE_CHAOS_OUTAGE_S
(the Postgres outage, 5 s), BACKBONE_CHAOS_FULL=1 (every scenario; else leader kills and
SIGKILLs only). BACKBONE_CHAOS_REPORT names a JSON Lines file that gets one line per scenario
(for docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cluster_support import cluster_settings, leaders, own_stack, state_dir, wait_fully_replicated
from confluent_kafka import Consumer, Producer, TopicPartition
from conftest import scratch_database
from support import (
    checkpoint_total,
    checkpoints,
    project,
    publish,
    read_topic,
    settings_env,
    spawn_projector,
    table_dump,
)

from backbone import deadletters
from backbone.codec.avro import AvroCodec
from backbone.kafka import topics
from backbone.kafka.partitioner import symbol_partition
from backbone.local import kafka, postgres, process
from backbone.settings import Settings
from producers.simulator import SimulationConfig, simulate

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]

EVENTS = int(os.environ.get("BACKBONE_CHAOS_EVENTS", "20000"))
KILL_EVENTS = int(os.environ.get("BACKBONE_CHAOS_KILL_EVENTS", "20000"))
KILLS = int(os.environ.get("BACKBONE_CHAOS_KILLS", "5"))
OUTAGE_S = float(os.environ.get("BACKBONE_CHAOS_OUTAGE_S", "5"))
FULL = os.environ.get("BACKBONE_CHAOS_FULL") == "1"
PARTITIONS = 6
START = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)
full_only = pytest.mark.skipif(not FULL, reason="BACKBONE_CHAOS_FULL=1 (make chaos) runs it")


def report(scenario: str, **figures: object) -> None:
    path = os.environ.get("BACKBONE_CHAOS_REPORT")
    if path:
        with Path(path).open("a") as out:
            out.write(json.dumps({"scenario": scenario, **figures}) + "\n")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Settings]:
    """Three Kafka nodes and a PostgreSQL server of this module's own (faults never reach the
    shared stack)."""
    with state_dir() as path, own_stack(cluster_settings(path, partitions=PARTITIONS, marketdata_retention_ms=-1),
                                         postgres=True) as settings:
        yield settings


@pytest.fixture
def chaos(cluster: Settings, names) -> Iterator[Settings]:  # noqa: ANN001
    """This test's topics (created) and migrated database on the cluster."""
    with scratch_database(cluster, cluster.database_url_value) as settings:
        settings = settings.with_overrides(
            topic_orders=names.topic("orders"), topic_marketdata=names.topic("marketdata"),
            topic_deadletter=names.topic("deadletter"), topic_alerts=names.topic("alerts"))
        assert [r.action for r in topics.create_topics(settings)] == ["created"] * 4
        yield settings


def session(events: int, seed: int = 2026) -> SimulationConfig:
    return SimulationConfig(events=events, seed=seed, symbols=24, accounts=12, start=START)


def spawn_simulate(settings: Settings, cfg: SimulationConfig, rate: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli.main", "simulate", "--events", str(cfg.events),
                             "--seed", str(cfg.seed), "--symbols", str(cfg.symbols), "--accounts",
                             str(cfg.accounts), "--start", cfg.start.isoformat(), "--rate", str(rate), "--quiet",
                             "--json"], env=settings_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def end_offsets(settings: Settings) -> dict[tuple[str, int], int]:
    """The end offset of each partition of the two source topics."""
    consumer = Consumer(settings.kafka_config(**{"group.id": "chaos-size"}))
    try:
        return {(t, p): topics.watermarks(consumer, TopicPartition(t, p))[1]
                for t in (settings.topic_orders, settings.topic_marketdata) for p in range(PARTITIONS)}
    finally:
        consumer.close()


def log_size(settings: Settings) -> int:
    return sum(end_offsets(settings).values())


def wait_for(what: str, condition: Callable[[], object], timeout: float = 300) -> float:
    """Poll until `condition` holds; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def log_against_session(settings: Settings, cfg: SimulationConfig) -> tuple[int, int]:
    """(lost, doubled): the log's event ids, partition by partition, against the session's own
    records in order. Asserts the order too: what is there is exactly the session."""
    codec = AvroCodec()
    expected: dict[tuple[str, int], list[str]] = {}
    for r in simulate(cfg):
        topic = settings.topic_orders if hasattr(r, "order_id") else settings.topic_marketdata
        expected.setdefault((topic, symbol_partition(r.symbol, PARTITIONS)), []).append(r.event_id)
    found: dict[tuple[str, int], list[str]] = {}
    for topic in (settings.topic_orders, settings.topic_marketdata):
        for m in read_topic(settings, topic):
            found.setdefault((topic, m.partition()), []).append(codec.decode(m.value()).event_id)
    want = Counter(i for ids in expected.values() for i in ids)
    got = Counter(i for ids in found.values() for i in ids)
    lost, doubled = sum((want - got).values()), sum((got - want).values())
    assert (lost, doubled) == (0, 0), f"{lost} lost, {doubled} doubled"
    assert found == expected  # same records in the same order on every partition
    return lost, doubled


def reference_dump(settings: Settings) -> dict:
    """The same log folded by one undisturbed in-process run into a database of its own (it
    relays its dead letters to the same topic: count repeats there before)."""
    with scratch_database(settings, settings.database_url_value) as ref:
        project(ref, "chaos-reference", batch_size=2000, max_seconds=1800)
        return table_dump(ref)


def busiest_leader(settings: Settings) -> int:
    """The node leading most partitions of the two source topics."""
    led = Counter(leaders(settings, [settings.topic_orders, settings.topic_marketdata]).values())
    return led.most_common(1)[0][0]


def kill_node(settings: Settings, node_id: int) -> None:
    (node,) = [n for n in kafka.nodes(settings) if n.node_id == node_id]
    pid = kafka.running_node(node)
    assert pid is not None, f"node {node_id} is not running"
    os.kill(pid, signal.SIGKILL)
    # the leader thread turns zombie before the others have let go of the sockets
    wait_for(f"node {node_id} to die", lambda: kafka.running_node(node) is None and not any(
        process.port_open(p) for p in (node.port, node.controller_port)), timeout=30)


def partitions_led_by(settings: Settings, node_id: int) -> set[tuple[str, int]]:
    return {tp for tp, leader in leaders(settings, [settings.topic_orders, settings.topic_marketdata]).items()
            if leader == node_id}


def finish(proc: subprocess.Popen, timeout: float = 1800) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}: {err[-3000:]}"
    return json.loads(out)


def test_leader_killed_during_simulate_and_during_project_run(chaos: Settings) -> None:
    settings, cfg = chaos, session(EVENTS)
    # produce: the leader of most partitions dies once a fifth is acknowledged; it comes back
    producer = spawn_simulate(settings, cfg, rate=max(2000.0, EVENTS / 20))
    wait_for("a fifth of the session in the log", lambda: log_size(settings) >= EVENTS // 5, timeout=120)
    victim = busiest_leader(settings)
    killed_at = time.monotonic()
    kill_node(settings, victim)
    kafka.start_nodes(settings, [victim])
    restarted_s = time.monotonic() - killed_at
    finish(producer)
    produced_s = time.monotonic() - killed_at
    wait_fully_replicated(settings, [settings.topic_orders, settings.topic_marketdata])
    lost, doubled = log_against_session(settings, cfg)
    report("leader kill -9 during simulate", size=EVENTS, faults=f"kill -9 of node {victim} (leader of most "
           "partitions), restarted", lost=lost, doubled=doubled, node_back_s=round(restarted_s, 1),
           run_ended_s=round(produced_s, 1))

    # project: the leader dies once the projector has committed; how long until the partitions it
    # led are projected to their end (what the client had fetched before does not count as resumed)
    expected = reference_dump(settings)
    ends = end_offsets(settings)
    projector = spawn_projector(settings, "chaos-leader", "--batch-size", "100")
    wait_for("the projector's first commits", lambda: checkpoint_total(settings) > 0, timeout=120)
    victim = busiest_leader(settings)
    led = partitions_led_by(settings, victim)
    killed_at = time.monotonic()
    kill_node(settings, victim)
    resumed_s = wait_for("the partitions the dead leader led to be projected", lambda: all(
        checkpoints(settings).get(tp, 0) == ends[tp] for tp in led), timeout=300)
    kafka.start_nodes(settings, [victim])
    stats = finish(projector)
    assert stats["dead_letters"] == 0
    assert table_dump(settings) == expected
    report("leader kill -9 during project run", size=EVENTS, faults=f"kill -9 of node {victim} (leader of "
           f"{len(led)} of {2 * PARTITIONS} partitions), restarted", lost=0, doubled=0,
           recover_s=round(resumed_s, 1), run_ended_s=round(time.monotonic() - killed_at, 1))


def _with_dead_letters(settings: Settings, cfg: SimulationConfig) -> int:
    """Publish the session plus a refused record (null value) per 1,000; returns the log's size."""
    publish(settings, list(simulate(cfg)))
    bad = max(10, cfg.events // 1000)
    producer = Producer(settings.kafka_config(**{"enable.idempotence": True, "acks": "all"}))
    rng = random.Random(5)
    for _ in range(bad):
        producer.produce(settings.topic_orders, None, key=b"BAD", partition=rng.randrange(PARTITIONS))
    assert producer.flush(60) == 0
    return cfg.events + bad


def dead_letter_repeats(settings: Settings) -> int:
    """How many dead letters the topic holds more than once (by the record they stand for)."""
    sources = Counter(deadletters.source_of(m.headers()) for m in read_topic(settings, settings.topic_deadletter))
    return sum(n - 1 for n in sources.values())


def test_projector_sigkilled_after_real_progress_again_and_again(chaos: Settings) -> None:
    settings, rng = chaos, random.Random(42)
    total = _with_dead_letters(settings, session(KILL_EVENTS))
    step = max(500, KILL_EVENTS // (KILLS * 3))  # "real progress": this many records since the last kill
    kills, resumes = 0, []
    started = time.monotonic()
    while kills < KILLS:
        progress = checkpoint_total(settings)
        proc = spawn_projector(settings, "chaos-killed", "--batch-size", "100", "--instance-id", "killed-1")
        resumes.append(wait_for("the projector to commit", lambda p=progress, proc=proc: (
            checkpoint_total(settings) > p or proc.poll() is not None), timeout=300))
        wait_for("real progress", lambda p=progress, proc=proc: (
            checkpoint_total(settings) >= min(total, p + step) or proc.poll() is not None), timeout=300)
        if proc.poll() is not None:
            break  # it finished before this kill
        time.sleep(rng.uniform(0, 0.1))  # somewhere inside a batch, a commit, or between them
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
    assert kills == KILLS, f"only {kills} kills happened before the run finished"
    finish(spawn_projector(settings, "chaos-killed", "--batch-size", "2000", "--instance-id", "killed-1"))
    repeats = dead_letter_repeats(settings)  # before the reference run relays its own letters there
    expected = reference_dump(settings)
    assert table_dump(settings) == expected
    assert repeats == 0 and len(expected["dead_letters"]) == total - KILL_EVENTS
    report("projector SIGKILL after real progress", size=total, faults=f"{kills} SIGKILLs, each after "
           f">= {step} records", lost=0, doubled=0, dead_letter_repeats=repeats,
           recover_s=round(statistics.median(resumes), 1), recover_max_s=round(max(resumes), 1),
           run_ended_s=round(time.monotonic() - started, 1))


@full_only
def test_rolling_restart_of_all_three_nodes_during_simulate_and_project_run(chaos: Settings) -> None:
    settings, cfg = chaos, session(EVENTS, seed=2027)
    producer = spawn_simulate(settings, cfg, rate=max(2000.0, EVENTS / 60))
    wait_for("the first records", lambda: log_size(settings) > 0, timeout=120)
    projector = spawn_projector(settings, "chaos-rolling", "--batch-size", "200", until_caught_up=False)
    started, per_node = time.monotonic(), []
    for node in kafka.nodes(settings):
        t0 = time.monotonic()
        assert kafka.stop_node(settings, node.node_id)  # a controlled shutdown, as a rolling upgrade does
        kafka.start_nodes(settings, [node.node_id])
        wait_fully_replicated(settings, [settings.topic_orders, settings.topic_marketdata])
        per_node.append(time.monotonic() - t0)
    finish(producer)
    lost, doubled = log_against_session(settings, cfg)
    total = log_size(settings)
    wait_for("every record projected", lambda: checkpoint_total(settings) == total, timeout=900)
    projector.send_signal(signal.SIGTERM)
    finish(projector)
    assert table_dump(settings) == reference_dump(settings)
    report("rolling restart of the 3 nodes during simulate + project run", size=EVENTS,
           faults="each node stopped and restarted in turn, the next once every replica is back in sync",
           lost=lost, doubled=doubled, recover_s=round(max(per_node), 1),
           run_ended_s=round(time.monotonic() - started, 1))


@full_only
def test_postgres_restart_and_outage_mid_projection(chaos: Settings) -> None:
    settings = chaos
    publish_events = EVENTS
    publish(settings, list(simulate(session(publish_events, seed=2028))))
    expected = reference_dump(settings)
    projector = spawn_projector(settings, "chaos-pg", "--batch-size", "100")
    wait_for("the projector's first commits", lambda: checkpoint_total(settings) > 0, timeout=120)
    recover = []
    for outage in (0.0, OUTAGE_S):  # a restart, then an outage
        postgres.stop(settings)
        held = time.monotonic()
        while time.monotonic() - held < outage:  # the fault's length, not a wait for an event
            assert projector.poll() is None, "the projector died while the database was away"
            time.sleep(0.5)
        postgres.start(settings)
        progress = checkpoint_total(settings)
        recover.append(wait_for("the projector to commit again", lambda p=progress: (
            checkpoint_total(settings) > p or projector.poll() is not None), timeout=300))
    stats = finish(projector)
    assert stats["db_retries"] >= 1
    assert table_dump(settings) == expected
    report("Postgres restart, then a Postgres outage mid-projection", size=publish_events,
           faults=f"pg_ctl stop + start; then stopped for {OUTAGE_S:.0f} s", lost=0, doubled=0,
           recover_s=round(max(recover), 1))


@full_only
def test_two_projectors_one_killed_again_and_again(chaos: Settings) -> None:
    settings, rng = chaos, random.Random(7)
    total = _with_dead_letters(settings, session(EVENTS, seed=2029))
    group = "chaos-pair"
    steady = spawn_projector(settings, group, "--batch-size", "100", "--instance-id", "steady",
                             until_caught_up=False)
    kills = 0
    try:
        while kills < KILLS and checkpoint_total(settings) < total:
            progress = checkpoint_total(settings)
            victim = spawn_projector(settings, group, "--batch-size", "100", "--instance-id", "victim",
                                     until_caught_up=False)
            wait_for("progress with both members", lambda p=progress: checkpoint_total(settings) > p + 200
                     or checkpoint_total(settings) == total, timeout=300)
            time.sleep(rng.uniform(0, 0.3))
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
            kills += 1
        wait_for("every record projected by the survivor", lambda: checkpoint_total(settings) == total, timeout=900)
    finally:
        steady.send_signal(signal.SIGTERM)
    stats = finish(steady)
    assert stats["events"] > 0
    repeats = dead_letter_repeats(settings)
    assert repeats == 0
    assert table_dump(settings) == reference_dump(settings)
    report("two projectors in one group, one SIGKILLed repeatedly", size=total, faults=f"{kills} SIGKILLs of "
           "one member while the other takes its partitions", lost=0, doubled=0, dead_letter_repeats=repeats)
