"""Topic management: create the backbone's topics with explicit settings, describe them, and
report an existing topic whose settings differ from the configured ones instead of accepting it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as KafkaErrorCode
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType, TopicMetadata

from backbone.errors import KafkaError
from backbone.kafka.health import admin_client, client_config, translate
from backbone.settings import Settings

TIMEOUT_S = 30.0
# A topic just created answers these until its leaders are elected; librdkafka does not flag
# them retriable for watermark queries.
_ELECTION_CODES = {KafkaErrorCode.NOT_LEADER_FOR_PARTITION, KafkaErrorCode.LEADER_NOT_AVAILABLE,
                   KafkaErrorCode.UNKNOWN_TOPIC_OR_PART, KafkaErrorCode._UNKNOWN_PARTITION}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


@dataclass
class TopicReport:
    name: str
    action: str  # "created" | "exists" | "mismatch"
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    leader: int
    replicas: list[int]
    isr: list[int]
    low: int
    high: int


@dataclass(frozen=True)
class TopicDescription:
    name: str
    partitions: list[PartitionInfo]
    config: dict[str, str]

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "config": self.config,
                "partitions": [vars(p) for p in self.partitions]}


def specs(settings: Settings) -> list[TopicSpec]:
    """The four topics. Orders and dead letters are the record: they are never deleted."""

    def spec(name: str, retention_ms: int) -> TopicSpec:
        return TopicSpec(name, settings.partitions, settings.replication_factor, {
            "cleanup.policy": "delete",
            "retention.ms": str(retention_ms),
            "retention.bytes": "-1",
            "min.insync.replicas": str(settings.min_insync_replicas),
            "message.timestamp.type": "CreateTime",
        })

    return [
        spec(settings.topic_orders, -1),
        spec(settings.topic_marketdata, settings.marketdata_retention_ms),
        spec(settings.topic_deadletter, -1),
        spec(settings.topic_alerts, settings.alerts_retention_ms),
    ]


def _list_topics(admin: AdminClient) -> dict[str, TopicMetadata]:
    try:
        return admin.list_topics(timeout=TIMEOUT_S).topics
    except KafkaException as e:
        raise translate(e, "reading the cluster's topics") from e


def create_topics(settings: Settings, admin: AdminClient | None = None) -> list[TopicReport]:
    """Create missing topics; check existing ones against the spec. Idempotent."""
    admin = admin or admin_client(settings)
    wanted = specs(settings)
    existing = _list_topics(admin)
    reports: dict[str, TopicReport] = {}
    to_create = [s for s in wanted if s.name not in existing]
    if to_create:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication_factor, config=s.config) for s in to_create],
            operation_timeout=TIMEOUT_S, request_timeout=TIMEOUT_S)
        for name, future in futures.items():
            try:
                future.result()
                reports[name] = TopicReport(name, "created")
            except KafkaException as e:
                if e.args[0].name() != "TOPIC_ALREADY_EXISTS":  # a concurrent creator won the race
                    raise translate(e, f"creating topic {name}") from e
        _await_metadata(admin, [s.name for s in to_create])
    described = {d.name: d for d in describe_topics(settings, [s.name for s in wanted], admin=admin)}
    for s in wanted:
        if s.name in reports:
            continue
        problems = compare(s, described[s.name])
        reports[s.name] = TopicReport(s.name, "mismatch" if problems else "exists", problems)
    return [reports[s.name] for s in wanted]


def _await_metadata(admin: AdminClient, names: list[str], timeout_s: float = TIMEOUT_S) -> None:
    """Wait until freshly created topics appear in the metadata we are served.

    CreateTopics returns once the controller has the topic; the broker answering metadata may
    learn of it a moment later, and describing it before then reports it missing.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        known = _list_topics(admin)
        missing = [n for n in names if n not in known or known[n].error is not None]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise KafkaError(f"topic(s) {', '.join(missing)} created but not visible in metadata "
                             f"after {timeout_s:.0f}s; check the broker log")
        time.sleep(0.2)


def compare(spec: TopicSpec, actual: TopicDescription) -> list[str]:
    problems = []
    if len(actual.partitions) != spec.partitions:
        problems.append(f"{spec.name}: has {len(actual.partitions)} partitions, configured {spec.partitions} "
                        "(partition count decides where a symbol lives: it cannot be changed in place)")
    rf = {len(p.replicas) for p in actual.partitions}
    if rf and rf != {spec.replication_factor}:
        problems.append(f"{spec.name}: replication factor {sorted(rf)}, configured {spec.replication_factor}")
    for key, value in spec.config.items():
        if actual.config.get(key) != value:
            problems.append(f"{spec.name}: {key}={actual.config.get(key)!r}, configured {value!r}")
    return problems


def watermarks(consumer: Consumer, tp: TopicPartition, *, attempts: int = 60) -> tuple[int, int]:
    """(low, high) of a partition; waits out leader elections of freshly created topics."""
    for attempt in range(attempts):
        try:
            return consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S, cached=False)
        except KafkaException as e:
            if not (e.args[0].retriable() or e.args[0].code() in _ELECTION_CODES) or attempt == attempts - 1:
                raise translate(e, f"watermarks of {tp.topic}[{tp.partition}]") from e
            time.sleep(0.5)
    raise AssertionError("unreachable")


def topic_configs(admin: AdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """Every config of each topic as the broker reports it (its defaults included); a missing
    topic is a KafkaError naming it."""
    metadata = _list_topics(admin)
    missing = [n for n in names if n not in metadata]
    if missing:
        raise KafkaError(f"topic(s) {', '.join(missing)} do not exist; run `backbone topics create`")
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in names]
    configs: dict[str, dict[str, str]] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=TIMEOUT_S).items():
        try:
            entries = future.result()
        except KafkaException as e:
            raise translate(e, f"describing configs of {resource.name}") from e
        configs[resource.name] = {k: v.value for k, v in entries.items() if v.value is not None}
    return configs


def describe_topics(settings: Settings, names: list[str] | None = None,
                    admin: AdminClient | None = None) -> list[TopicDescription]:
    admin = admin or admin_client(settings)
    names = names or settings.topic_names()
    configs = topic_configs(admin, names)
    metadata = _list_topics(admin)
    consumer = Consumer(client_config(settings, **{"group.id": "backbone-topics-describe",
                                                   "enable.auto.commit": False}))
    try:
        out = []
        for name in names:
            parts = []
            for pid, pmeta in sorted(metadata[name].partitions.items()):
                low, high = watermarks(consumer, TopicPartition(name, pid))
                parts.append(PartitionInfo(pid, pmeta.leader, list(pmeta.replicas), list(pmeta.isrs), low, high))
            out.append(TopicDescription(name, parts, configs[name]))
        return out
    finally:
        consumer.close()
