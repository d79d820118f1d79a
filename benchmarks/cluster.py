"""The replicated cluster against the single node, and how fast the projector resumes after faults.

Run: python -m benchmarks.cluster [--events 200000] [--outage-s 10]

Starts, in temporary state dirs on free ports, a PostgreSQL server, a single Kafka node and a
3-node cluster (RF 3, min ISR 2), the same jars and settings otherwise; stops them at the end.
Side by side in one run:
  - `backbone simulate --events N` (generate, encode, produce with acks=all) and
    `backbone project run --until-caught-up` over that log into a fresh database, as processes,
    on 1 node and on 3 nodes: events/s of each;
  - on the cluster, a projector caught up and waiting: kill -9 of the node leading most
    partitions, then one record to every partition: seconds from the kill until the projector
    has committed them all (leader election, the producer's retries, the consumer's refetch);
  - the same after PostgreSQL stopped for --outage-s with the records sent meanwhile: seconds
    from the server accepting connections again until the projector has committed them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from backbone import db
from backbone.local import kafka, postgres, process, stack
from backbone.settings import Settings, local_bootstrap, local_database_url
from benchmarks.common import create_topics, fresh_database

PARTITIONS = 12


def stack_settings(state: Path, brokers: int, database_port: int | None = None) -> Settings:
    base, _, free_pg_port = kafka.free_ports(brokers)
    pg_port = database_port or free_pg_port
    return Settings(state_dir=state, kafka_port=base, kafka_controller_port=base + 1, postgres_port=pg_port,
                    kafka_brokers=brokers, kafka_bootstrap_servers=local_bootstrap(base, base + 1, brokers),
                    database_url=local_database_url(pg_port), partitions=PARTITIONS, marketdata_retention_ms=-1,
                    topic_orders="bench.orders", topic_marketdata="bench.marketdata",
                    topic_deadletter="bench.deadletter", topic_alerts="bench.alerts", startup_timeout_s=240)


@contextmanager
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="backbone-bench-cluster-"))
    os.chmod(path, 0o755)  # as root, PostgreSQL runs as `postgres`
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def env_of(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKBONE_")}
    for name, value in settings.display().items():
        if value != "" and name != "database_url":
            env[f"BACKBONE_{name.upper()}"] = value
    env["BACKBONE_DATABASE_URL"] = settings.database_url_value
    return env


def backbone(settings: Settings, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli.main", *args], env=env_of(settings),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"exit {proc.returncode}: {err[-2000:]}")
    return json.loads(out)


def throughput(settings: Settings, events: int) -> tuple[float, float]:
    """(simulate events/s, project run events/s) on fresh topics and a fresh database."""
    create_topics(settings)
    t0 = time.perf_counter()
    finished(backbone(settings, "simulate", "--events", str(events), "--seed", "11", "--start",
                      "2026-03-02T13:30:00+00:00", "--quiet", "--json"))
    produced = events / (time.perf_counter() - t0)
    with fresh_database(settings) as fresh:
        t0 = time.perf_counter()
        stats = finished(backbone(fresh, "project", "run", "--until-caught-up", "--json", "--group", "bench"))
        projected = stats["events"] / (time.perf_counter() - t0)
    delete(settings)
    return produced, projected


def delete(settings: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    for future in admin.delete_topics(settings.topic_names(), operation_timeout=60).values():
        future.result()


def committed(settings: Settings) -> int:
    engine = db.make_engine(settings)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("select coalesce(sum(next_offset), 0) from projection_checkpoints"))
                       .scalar_one())
    except Exception:  # noqa: BLE001 - the database may be away: nothing known yet
        return -1
    finally:
        engine.dispose()


def wait(what: str, condition: Callable[[], bool], timeout: float = 600) -> float:
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - t0


def one_record_per_partition(settings: Settings) -> int:
    """A record (null value: refused, dead-lettered, committed like any) on every partition;
    acks=all, so this returns once a leader of each has taken it."""
    # log_level 2: the refused connections to the dead node (errors, level 3) are expected, not news
    producer = Producer(settings.kafka_config(**{"enable.idempotence": True, "acks": "all", "log_level": 2}))
    for topic in (settings.topic_orders, settings.topic_marketdata):
        for p in range(PARTITIONS):
            producer.produce(topic, None, partition=p)
    return 2 * PARTITIONS - producer.flush(300)


def resume_times(cluster: Settings, database: Settings, events: int, outage_s: float) -> tuple[float, float]:
    settings = cluster.with_overrides(database_url=database.database_url_value,
                                      postgres_port=database.postgres_port, state_dir=cluster.state_dir)
    create_topics(settings)
    finished(backbone(settings, "simulate", "--events", str(events // 10), "--seed", "12", "--start",
                      "2026-03-02T13:30:00+00:00", "--quiet", "--json"))
    with fresh_database(settings) as fresh:
        projector = backbone(fresh, "project", "run", "--json", "--group", "bench-resume")
        total = events // 10
        wait("the projector to catch up", lambda: committed(fresh) == total)

        metadata = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers}).list_topics(timeout=10)
        led = Counter(part.leader for t in (settings.topic_orders, settings.topic_marketdata)
                      for part in metadata.topics[t].partitions.values())
        victim = led.most_common(1)[0][0]
        (node,) = [n for n in kafka.nodes(settings) if n.node_id == victim]
        pid = kafka.running_node(node)
        assert pid is not None
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        total += one_record_per_partition(settings)
        wait("the records sent after the kill", lambda: committed(fresh) == total)
        leader_s = time.monotonic() - t0
        wait("the dead node's sockets to close", lambda: not process.port_open(node.port))
        kafka.start_nodes(settings, [victim])

        postgres.stop(database)
        held = time.monotonic()
        total += one_record_per_partition(settings)
        while time.monotonic() - held < outage_s:  # the outage's length, not a wait for an event
            time.sleep(0.5)
        postgres.start(database)
        database_s = wait("the records sent during the outage", lambda: committed(fresh) == total)
        projector.send_signal(signal.SIGTERM)
        finished(projector)
    delete(settings)
    return leader_s, database_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--outage-s", type=float, default=10.0)
    args = parser.parse_args()
    with state_dir() as one_dir, state_dir() as three_dir:
        single = stack_settings(one_dir, 1)
        try:
            t0 = time.monotonic()
            stack.up(single)
            print(f"single node + PostgreSQL up in {time.monotonic() - t0:.1f} s", flush=True)
            cluster = stack_settings(three_dir, 3, database_port=single.postgres_port)
            try:
                t0 = time.monotonic()
                kafka.start(cluster)
                print(f"3-node cluster up in {time.monotonic() - t0:.1f} s", flush=True)
                rates = {}
                for name, settings in (("1 node", single), ("3 nodes", cluster)):
                    rates[name] = throughput(settings, args.events)
                    print(f"{name}: simulate {rates[name][0]:,.0f} ev/s, project run {rates[name][1]:,.0f} ev/s "
                          f"({args.events:,} records)", flush=True)
                for i, what in enumerate(("simulate", "project run")):
                    print(f"3 nodes / 1 node, {what}: {rates['3 nodes'][i] / rates['1 node'][i]:.2f}")
                leader_s, database_s = resume_times(cluster, single, args.events, args.outage_s)
                print(f"resume after a leader kill -9: {leader_s:.1f} s (kill to the records sent after it "
                      "committed)")
                print(f"resume after a {args.outage_s:.0f} s PostgreSQL outage: {database_s:.1f} s (server back "
                      "to the records sent during the outage committed)")
            finally:
                stack.down(cluster)
        finally:
            stack.down(single)


if __name__ == "__main__":
    main()
