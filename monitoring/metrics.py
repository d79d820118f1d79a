"""The monitor's /metrics: the latest pass's lag per group, topic, partition and source, named
as kafka-lag-exporter names them (so existing alerts and dashboards apply), its statuses, rates
and firing alerts, the sinks' failures and the time a pass takes. Its own CollectorRegistry, served
by prometheus_client's HTTP server."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from threading import Lock

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitoring.model import SEVERITY_ORDER, GroupVerdict, Tracked

_PARTITION = ["group", "topic", "partition", "source"]
_GROUP = ["group", "topic", "source"]


@dataclass
class _Latest:
    groups: Sequence[GroupVerdict] = ()
    firing: Sequence[Tracked] = ()
    log_ends: dict[tuple[str, int], int] = field(default_factory=dict)


class LagCollector(Collector):
    """Gauges computed from the latest pass at scrape time: a partition that is no longer
    sampled disappears from the series instead of keeping its last value."""

    def __init__(self) -> None:
        self._lock = Lock()
        self._latest = _Latest()

    def update(self, groups: Sequence[GroupVerdict], firing: Sequence[Tracked]) -> None:
        ends = {(v.topic, v.partition): v.log_end for g in groups for v in g.partitions if v.log_end is not None}
        with self._lock:
            self._latest = _Latest(list(groups), list(firing), ends)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            latest = self._latest
        lag = GaugeMetricFamily("kafka_consumergroup_group_lag", "Records the group is behind the log end "
                                "(last stable offset)", labels=_PARTITION)
        lag_s = GaugeMetricFamily("kafka_consumergroup_group_lag_seconds", "Seconds since the first record the "
                                  "group has not consumed was written (0 when caught up)", labels=_PARTITION)
        offset = GaugeMetricFamily("kafka_consumergroup_group_offset", "The group's committed offset",
                                   labels=_PARTITION)
        rate = GaugeMetricFamily("backbone_lag_consume_rate", "Records a second the group consumed over the window",
                                 labels=_PARTITION)
        status = GaugeMetricFamily("backbone_lag_status", "1 for the partition's current status, 0 for the others",
                                   labels=[*_PARTITION, "status"])
        max_lag = GaugeMetricFamily("kafka_consumergroup_group_max_lag", "The group's largest lag on the topic",
                                    labels=_GROUP)
        max_lag_s = GaugeMetricFamily("kafka_consumergroup_group_max_lag_seconds",
                                      "The group's largest lag in seconds on the topic", labels=_GROUP)
        latest_offset = GaugeMetricFamily("kafka_partition_latest_offset", "The partition's last stable offset",
                                          labels=["topic", "partition"])
        firing = GaugeMetricFamily("backbone_lag_alerts_firing", "1 for each alert firing",
                                   labels=["rule", "group", "topic", "severity"])
        for g in latest.groups:
            group_labels = [g.group, g.topic, g.source]
            if g.lag_records is not None:
                max_lag.add_metric(group_labels, g.lag_records)
            if g.lag_seconds is not None:
                max_lag_s.add_metric(group_labels, float(g.lag_seconds))
            for v in g.partitions:
                labels = [v.group, v.topic, str(v.partition), v.source]
                if v.lag_records is not None:
                    lag.add_metric(labels, v.lag_records)
                if v.lag_seconds is not None:
                    lag_s.add_metric(labels, float(v.lag_seconds))
                if v.committed is not None:
                    offset.add_metric(labels, v.committed)
                if v.rate is not None:
                    rate.add_metric(labels, float(v.rate))
                for s in SEVERITY_ORDER:
                    status.add_metric([*labels, s.value], 1.0 if s == v.status else 0.0)
        for (topic, partition), end in sorted(latest.log_ends.items()):
            latest_offset.add_metric([topic, str(partition)], end)
        for a in latest.firing:
            firing.add_metric([a.key.rule, a.key.group, a.key.topic, a.severity.value], 1.0)
        yield from (lag, lag_s, offset, rate, status, max_lag, max_lag_s, latest_offset, firing)


class MonitorMetrics:
    """The registry the monitor fills and serves."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.lag = LagCollector()
        self.registry.register(self.lag)
        self.sink_failures = Counter("backbone_lag_sink_failures", "Deliveries a sink failed (tried again later)",
                                     ["sink"], registry=self.registry)
        self.evaluation = Histogram("backbone_lag_evaluation_seconds", "Time one evaluation pass took",
                                    registry=self.registry,
                                    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - a scrape target listens for Prometheus
        start_http_server(port, addr=addr, registry=self.registry)
