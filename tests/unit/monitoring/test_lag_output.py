"""What the monitor says, without services: Alert records of transitions, the /metrics
exposition, the webhook's JSON, the status line and the outbox's backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from prometheus_client import generate_latest

from backbone.codec.avro import AvroCodec
from backbone.domain.events import AlertKind, AlertSeverity
from monitoring import store
from monitoring.metrics import MonitorMetrics
from monitoring.model import AlertKey, GroupVerdict, Severity, Status, Tracked, Transition, Verdict
from monitoring.monitor import PassReport
from monitoring.sinks import alert_record, transition_json

AT = datetime(2026, 12, 7, 12, 0, 0, 250000, tzinfo=UTC)


def _transition(rule: str, kind: str, value: str) -> Transition:
    return Transition(key=AlertKey(rule, "g1", "trading.marketdata"), kind=kind, at=AT,  # type: ignore[arg-type]
                      severity=Severity.CRITICAL, value=value, message="why")


def test_transitions_become_alert_records_by_the_rules_metric() -> None:
    stalled = alert_record(_transition("Stalled", "firing", "STALL"), "status")
    assert (stalled.kind, stalled.severity, stalled.source, stalled.lag_messages, stalled.lag_seconds) == (
        AlertKind.LAG_STALLED, AlertSeverity.CRITICAL, "g1", None, None)
    assert stalled.message.startswith("Stalled firing: ")
    seconds = alert_record(_transition("Slow", "firing", "12.5"), "lag_seconds")
    assert (seconds.kind, seconds.lag_seconds, seconds.lag_messages) == (AlertKind.LAG_RISING, Decimal("12.5"), None)
    records = alert_record(_transition("Behind", "resolved", "0"), "lag_records")
    assert (records.kind, records.lag_messages, records.lag_seconds) == (AlertKind.LAG_RECOVERED, 0, None)
    codec = AvroCodec()
    for alert in (stalled, seconds, records):
        assert codec.decode(codec.encode(alert)) == alert


def test_a_transition_has_one_id_whenever_it_is_said() -> None:
    one, again = transition_json(_transition("Stalled", "firing", "STALL")), transition_json(
        _transition("Stalled", "firing", "STALL"))
    assert one == again and one["at"] == "2026-12-07T12:00:00.250000Z"
    assert transition_json(_transition("Stalled", "resolved", "OK"))["id"] != one["id"]


def _verdict(partition: int, status: Status, lag: int | None) -> Verdict:
    return Verdict(group="g1", source="kafka", topic="t", partition=partition, status=status, reason="r",
                   lag_records=lag, lag_seconds=None if lag is None else Decimal("1.5") * lag,
                   rate=Decimal("2.000"), committed=10, log_end=10 + (lag or 0))


def test_metrics_expose_the_latest_pass_under_kafka_lag_exporters_names() -> None:
    metrics = MonitorMetrics()
    parts = (_verdict(0, Status.OK, 0), _verdict(1, Status.STALL, 4))
    group = GroupVerdict(group="g1", source="kafka", topic="t", status=Status.STALL, lag_records=4,
                         lag_seconds=Decimal(6), partitions=parts)
    firing = Tracked(key=AlertKey("Stalled", "g1", "t"), phase="firing", since=AT, severity=Severity.CRITICAL,
                     value="STALL", fired_at=AT)
    metrics.lag.update([group], [firing])
    metrics.sink_failures.labels("webhook").inc()
    text = generate_latest(metrics.registry).decode()
    for line in ('kafka_consumergroup_group_lag{group="g1",partition="1",source="kafka",topic="t"} 4.0',
                 'kafka_consumergroup_group_lag_seconds{group="g1",partition="1",source="kafka",topic="t"} 6.0',
                 'kafka_consumergroup_group_max_lag{group="g1",source="kafka",topic="t"} 4.0',
                 'kafka_consumergroup_group_offset{group="g1",partition="0",source="kafka",topic="t"} 10.0',
                 'kafka_partition_latest_offset{partition="1",topic="t"} 14.0',
                 'backbone_lag_status{group="g1",partition="1",source="kafka",status="STALL",topic="t"} 1.0',
                 'backbone_lag_status{group="g1",partition="1",source="kafka",status="OK",topic="t"} 0.0',
                 'backbone_lag_consume_rate{group="g1",partition="0",source="kafka",topic="t"} 2.0',
                 'backbone_lag_alerts_firing{group="g1",rule="Stalled",severity="CRITICAL",topic="t"} 1.0',
                 'backbone_lag_sink_failures_total{sink="webhook"} 1.0'):
        assert line in text, line
    metrics.lag.update([], [])  # a group no longer sampled leaves the series
    assert "kafka_consumergroup_group_lag{" not in generate_latest(metrics.registry).decode()


def test_the_status_line_says_statuses_alerts_and_problems() -> None:
    group = GroupVerdict(group="g1", source="kafka", topic="t", status=Status.STALL, lag_records=4,
                         lag_seconds=Decimal(6), partitions=())
    report = PassReport(at=AT, seconds=0.123, groups=[group], transitions=[_transition("Stalled", "firing", "STALL")],
                        firing=1, failures=["webhook failed: refused"], problems=["Postgres: down"])
    assert report.line() == ("2026-12-07T12:00:00.250000Z · 1 group-topics (1 STALL) · firing 1, pending 0 · "
                             "+1 fired, 0 resolved · webhook failed: refused · Postgres: down · 0.12 s")
    events = report.events()
    assert [e["event"] for e in events] == ["alert", "pass"]
    assert events[1]["groups"] == [{"group": "g1", "source": "kafka", "topic": "t", "status": "STALL",
                                    "lag_records": 4, "lag_seconds": "6"}]


def test_deliveries_back_off_doubling_up_to_a_ceiling() -> None:
    assert [store.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert store.backoff(30) == timedelta(seconds=300)


class _BrokenSampler:
    problems: list[str] = []

    def sample(self, at: datetime | None = None) -> list:
        raise RuntimeError("a bug in sampling")

    def close(self) -> None:
        pass


def test_a_pass_that_fails_is_said_and_the_next_one_runs() -> None:
    from backbone.settings import Settings
    from monitoring.monitor import Monitor

    monitor = Monitor(Settings(), [], sinks=[], interval=timedelta(milliseconds=1),
                      sampler=_BrokenSampler())  # type: ignore[arg-type]
    reports: list[PassReport] = []
    monitor.run(reports.append, passes=2)
    assert [r.problems for r in reports] == [["pass failed: RuntimeError: a bug in sampling"]] * 2
    assert "pass failed: RuntimeError: a bug in sampling" in reports[0].line()
