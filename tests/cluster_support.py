"""A local stack of its own for the cluster and chaos tests: three Kafka nodes (and, when asked,
a PostgreSQL server) in a temporary state dir on free ports. The shared stack every other test
uses is never stopped, restarted or faulted."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka.admin import AdminClient

from backbone.local import kafka, stack
from backbone.settings import Settings, local_bootstrap, local_database_url


@contextmanager
def state_dir() -> Iterator[Path]:
    """A state dir PostgreSQL can use: as root the server runs as `postgres`, which cannot
    enter pytest's private temporary directories."""
    path = Path(tempfile.mkdtemp(prefix="backbone-cluster-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def cluster_settings(state_dir: Path, brokers: int = 3, **overrides: object) -> Settings:
    """Settings of a stack of `brokers` Kafka nodes in `state_dir` (the clients point at it)."""
    port, cport, pg_port = kafka.free_ports(brokers)
    return Settings(state_dir=state_dir, kafka_port=port, kafka_controller_port=cport, postgres_port=pg_port,
                    kafka_brokers=brokers, kafka_bootstrap_servers=local_bootstrap(port, cport, brokers),
                    database_url=local_database_url(pg_port), kafka_heap="384m", startup_timeout_s=180,
                    **overrides)


@contextmanager
def own_stack(settings: Settings, *, postgres: bool) -> Iterator[Settings]:
    """Start the stack `settings` describe (Kafka only, or with PostgreSQL); stop exactly it."""
    try:
        if postgres:
            stack.up(settings)
        else:
            kafka.start(settings)
        yield settings
    finally:
        stack.down(settings)


def leaders(settings: Settings, topic_names: list[str]) -> dict[tuple[str, int], int]:
    """The leader (node id) of each partition of these topics, -1 where there is none."""
    metadata = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers}).list_topics(timeout=10)
    return {(t, p): part.leader for t in topic_names for p, part in metadata.topics[t].partitions.items()}


def wait_fully_replicated(settings: Settings, topic_names: list[str], timeout: float = 180) -> float:
    """Wait until every partition has all its replicas in sync; returns the seconds it took."""
    admin, started = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers}), time.monotonic()
    while True:
        try:
            metadata = admin.list_topics(timeout=10)
            parts = [part for t in topic_names for part in metadata.topics[t].partitions.values()]
            if parts and all(len(part.isrs) == len(part.replicas) and part.leader >= 0 for part in parts):
                return time.monotonic() - started
        except Exception:  # noqa: BLE001 - metadata while a node restarts; ask again
            pass
        assert time.monotonic() - started < timeout, f"partitions not fully in sync after {timeout} s"
        time.sleep(0.2)
