"""A local stack of N Kafka nodes: ports, addresses, replication and each node's configuration,
from the settings alone; docker-compose.yml's `cluster` profile says the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from backbone.errors import ServiceError
from backbone.local import kafka, stack
from backbone.settings import Settings, local_node_ports, replication_for

ROOT = Path(__file__).resolve().parents[3]


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def test_three_nodes_have_their_own_ports_and_replicate_topics_three_times(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, kafka_port=29092, kafka_controller_port=29093, kafka_brokers=3)
    assert settings.kafka_bootstrap_servers == "127.0.0.1:29092,127.0.0.1:29102,127.0.0.1:29112"
    assert (settings.replication_factor, settings.min_insync_replicas) == (3, 2)
    cluster = kafka.nodes(settings)
    assert [(n.node_id, n.port, n.controller_port) for n in cluster] == [
        (1, 29092, 29093), (2, 29102, 29103), (3, 29112, 29113)]
    assert [n.paths.root for n in cluster] == [tmp_path / "kafka" / f"node-{i}" for i in (1, 2, 3)]
    assert kafka.nodes(settings, 1)[0].paths.root == tmp_path / "kafka"  # a single node keeps its layout

    conf = properties(kafka.server_properties(settings, cluster[1].paths, cluster[1]))
    assert conf["node.id"] == "2"
    assert conf["controller.quorum.voters"] == "1@127.0.0.1:29093,2@127.0.0.1:29103,3@127.0.0.1:29113"
    assert conf["listeners"] == "PLAINTEXT://127.0.0.1:29102,CONTROLLER://127.0.0.1:29103"
    assert conf["log.dirs"] == str(tmp_path / "kafka" / "node-2" / "data")
    assert conf["offsets.topic.replication.factor"] == "3" and conf["transaction.state.log.min.isr"] == "2"
    assert conf["min.insync.replicas"] == "2"


def test_a_single_node_is_configured_as_before(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, kafka_port=29092, kafka_controller_port=29093)
    assert (settings.kafka_bootstrap_servers, settings.replication_factor, settings.min_insync_replicas) == (
        "127.0.0.1:29092", 1, 1)
    conf = properties(kafka.server_properties(settings, kafka.KafkaPaths.of(settings)))
    assert conf["node.id"] == "1" and conf["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert conf["offsets.topic.replication.factor"] == "1" and conf["min.insync.replicas"] == "1"


def test_replication_set_explicitly_wins_over_the_cluster_size() -> None:
    assert replication_for(1) == (1, 1) and replication_for(2) == (2, 1) and replication_for(5) == (3, 2)
    settings = Settings(kafka_brokers=3, replication_factor=2)
    assert (settings.replication_factor, settings.min_insync_replicas) == (2, 1)
    assert Settings(kafka_brokers=3, min_insync_replicas=3).min_insync_replicas == 3


def test_node_ports_that_collide_are_refused() -> None:
    with pytest.raises(ValidationError, match="distinct ports"):
        Settings(kafka_brokers=3, kafka_port=29092, kafka_controller_port=29102)
    with pytest.raises(ValidationError, match="up to 65535"):
        Settings(kafka_brokers=3, kafka_port=65520, kafka_controller_port=65521)


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_compose_cluster_profile_is_the_native_cluster() -> None:
    services = compose()["services"]
    defaults = Settings(kafka_brokers=3, kafka_port=19092, kafka_controller_port=19093)
    cluster = {name: s for name, s in services.items() if "cluster" in s.get("profiles", [])}
    assert sorted(cluster) == ["kafka-1", "kafka-2", "kafka-3"]
    factor, min_isr = replication_for(3)
    for (name, service), (port, _) in zip(sorted(cluster.items()), local_node_ports(19092, 19093, 3), strict=True):
        env = service["environment"]
        assert str(env["KAFKA_NODE_ID"]) == name[-1]
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
        assert f"PLAINTEXT://127.0.0.1:{port}" in env["KAFKA_ADVERTISED_LISTENERS"]
        assert (env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == (factor, min_isr)
        assert service["image"] == services["kafka"]["image"]
    assert defaults.kafka_bootstrap_servers == ",".join(
        f"127.0.0.1:{s['ports'][0].split(':')[1]}" for _, s in sorted(cluster.items()))


def test_the_compose_single_profile_is_the_native_single_node() -> None:
    services = compose()["services"]
    assert services["kafka"]["profiles"] == ["single"] and "profiles" not in services["postgres"]
    env = services["kafka"]["environment"]
    assert env["KAFKA_NODE_ID"] == 1 and env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert services["kafka"]["ports"] == ["127.0.0.1:19092:19092"]
    assert stack.compose_profile(Settings()) == "single"
    assert stack.compose_profile(Settings(kafka_brokers=3)) == "cluster"
    with pytest.raises(ServiceError, match="not 2 nodes"):
        stack.compose_profile(Settings(kafka_brokers=2))
