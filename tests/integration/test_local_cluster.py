"""`backbone local up --brokers 3`: three real KRaft nodes in a state dir of their own, topics
replicated three times with min ISR 2, records produced and read back, `local status` per node,
`local down` stopping exactly those three processes."""

from __future__ import annotations

import json

import pytest
from cluster_support import cluster_settings, leaders, state_dir
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from support import settings_env
from typer.testing import CliRunner

from backbone.kafka import topics
from backbone.kafka.producer import KafkaProducer
from backbone.local import kafka, process
from cli.main import app

pytestmark = [pytest.mark.integration]


@pytest.fixture
def state(services):  # noqa: ANN001, ANN201 - after the shared stack, which the test compares with
    with state_dir() as path:
        yield path


def test_a_three_node_cluster_replicates_topics_and_stops_exactly_its_nodes(state, monkeypatch, services) -> None:
    settings = cluster_settings(state, partitions=6)
    for key, value in settings_env(settings).items():
        if key.startswith("BACKBONE_"):
            monkeypatch.setenv(key, value)
    shared = AdminClient({"bootstrap.servers": services.bootstrap})
    shared_brokers = set(shared.list_topics(timeout=30).brokers)
    runner = CliRunner()
    try:
        # the node count from the option, not the environment: the CLI's own override
        monkeypatch.setenv("BACKBONE_KAFKA_BROKERS", "1")
        up = runner.invoke(app, ["local", "up", "--brokers", "3", "--json"], catch_exceptions=False)
        assert up.exit_code == 0, up.output
        kafka_up = [s for s in json.loads(up.stdout) if s["name"].startswith("kafka")]
        assert [(s["name"], s["address"], s["running"]) for s in kafka_up] == [
            (f"kafka-{n.node_id}", n.address, True) for n in kafka.nodes(settings)]
        pids = [s["pid"] for s in kafka_up]
        assert len(set(pids)) == 3
        monkeypatch.setenv("BACKBONE_KAFKA_BROKERS", "3")

        reports = topics.create_topics(settings)
        assert [r.action for r in reports] == ["created"] * 4, reports
        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
        metadata = admin.list_topics(timeout=30)
        assert set(metadata.brokers) == {1, 2, 3}
        for name in settings.topic_names():
            for part in metadata.topics[name].partitions.values():
                assert sorted(part.replicas) == [1, 2, 3] and sorted(part.isrs) == [1, 2, 3], (name, part)
        configs = admin.describe_configs([ConfigResource(ResourceType.TOPIC, settings.topic_orders)])
        (future,) = configs.values()
        assert future.result(timeout=30)["min.insync.replicas"].value == "2"
        assert set(leaders(settings, [settings.topic_orders]).values()) == {1, 2, 3}  # leadership is spread

        with KafkaProducer(settings) as producer:
            for i in range(300):
                producer.produce(settings.topic_orders, f"v{i}".encode(), key=f"k{i % 7}".encode())
            producer.flush()
        consumer = Consumer(settings.kafka_config(**{"group.id": "cluster-test", "enable.auto.commit": False}))
        try:
            consumer.assign([TopicPartition(settings.topic_orders, p, OFFSET_BEGINNING) for p in range(6)])
            seen: set[bytes] = set()
            while len(seen) < 300:
                msg = consumer.poll(30)
                assert msg is not None, f"read {len(seen)} of 300 records"
                seen.add(msg.value())
        finally:
            consumer.close()
        assert seen == {f"v{i}".encode() for i in range(300)}

        status = runner.invoke(app, ["local", "status", "--json"])
        assert status.exit_code == 0, status.output
        assert [s["pid"] for s in json.loads(status.stdout) if s["name"].startswith("kafka")] == pids
        logs = runner.invoke(app, ["local", "logs", "kafka-2", "-n", "5"])
        assert logs.exit_code == 0 and "no log at" not in logs.output
    finally:
        down = runner.invoke(app, ["local", "down"])
    assert down.exit_code == 0 and "kafka-1, kafka-2, kafka-3" in down.output, down.output
    assert all(process.cmdline(pid) is None or "node-" not in (process.cmdline(pid) or "") for pid in pids)
    assert kafka.running_count(settings) is None
    assert set(shared.list_topics(timeout=30).brokers) == shared_brokers  # other tests' broker untouched
