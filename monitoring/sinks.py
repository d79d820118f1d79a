"""Where alert transitions go: Avro `Alert` records on the alerts topic (keyed by group), a JSON
webhook, Alertmanager's v2 API. Each sink's `send` delivers one transition or raises; the
monitor's outbox (`lag_alert_deliveries`) calls it once per transition and sink until it
succeeds, with backoff between attempts, so a dead receiver never stops the evaluation."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from backbone.codec.avro import AvroCodec
from backbone.codec.json_form import format_datetime
from backbone.domain.events import Alert, AlertKind, AlertSeverity, deterministic_event_id
from backbone.errors import BackboneError
from backbone.kafka.producer import KafkaProducer
from backbone.settings import Settings
from monitoring.model import Metric, Rule, Tracked, Transition

_SECONDS = Decimal("0.00000001")  # the schema's decimal(38, 8)


class SinkError(BackboneError):
    """A sink did not take a transition (it is tried again later)."""


class Sink(Protocol):
    name: str

    def send(self, transition: Transition) -> None: ...

    def refresh(self, firing: Sequence[Tracked], now: datetime) -> None:
        """Called every pass with the alerts firing (a receiver that forgets them unless told
        again, like Alertmanager, is told again here)."""
        ...

    def close(self) -> None: ...


def transition_id(t: Transition) -> str:
    """The transition's deterministic id: a receiver sees the same id if it is ever sent twice."""
    return deterministic_event_id("lag-alert", t.key.rule, t.key.group, t.key.topic, t.kind, t.at.isoformat())


def transition_json(t: Transition) -> dict[str, Any]:
    return {"id": transition_id(t), "state": t.kind, "rule": t.key.rule, "group": t.key.group,
            "topic": t.key.topic, "severity": t.severity.value, "value": t.value, "at": format_datetime(t.at),
            "message": t.message}


def _number(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def alert_record(t: Transition, metric: Metric | None) -> Alert:
    """The transition of an alert of a `metric` rule (None: the rule is gone) as an `Alert`
    (schema alert/v1), whose kinds carry it: LAG_RECOVERED when an alert resolves; when it
    fires, LAG_STALLED for a status rule, LAG_RISING for a threshold rule. The rule's name leads
    the message; the lag goes in lag_messages or lag_seconds by the rule's metric."""
    value = _number(t.value) if metric in ("lag_records", "lag_seconds") else None
    if t.kind == "resolved":
        kind = AlertKind.LAG_RECOVERED
    else:
        kind = AlertKind.LAG_RISING if value is not None else AlertKind.LAG_STALLED
    records = int(value) if value is not None and metric == "lag_records" else None
    seconds = value.quantize(_SECONDS) if value is not None and metric == "lag_seconds" else None
    return Alert(event_id=transition_id(t), kind=kind, severity=AlertSeverity(t.severity.value),
                 event_time=t.at.astimezone(UTC), source=t.key.group, message=f"{t.key.rule} {t.kind}: {t.message}",
                 topic=t.key.topic or None, lag_messages=records, lag_seconds=seconds)


class KafkaSink:
    """Avro `Alert` records (`alert_record`) on the alerts topic, keyed by group."""

    name = "kafka"

    def __init__(self, settings: Settings, rules: Sequence[Rule] = (), *, timeout_s: float = 5.0) -> None:
        self.topic = settings.topic_alerts
        self.metrics: dict[str, Metric] = {rule.name: rule.metric for rule in rules}
        self.timeout_s = timeout_s
        self.codec = AvroCodec()
        # a record not delivered within the timeout is dropped and tried again on a later pass
        overrides: dict[str, Any] = {"message.timeout.ms": int(timeout_s * 1000)}
        self.producer = KafkaProducer(settings, **overrides)

    def send(self, transition: Transition) -> None:
        try:
            record = alert_record(transition, self.metrics.get(transition.key.rule))
            self.producer.produce(self.topic, self.codec.encode(record), key=transition.key.group.encode())
            self.producer.flush(self.timeout_s + 1)
        except BackboneError as e:
            raise SinkError(str(e)) from e

    def refresh(self, firing: Sequence[Tracked], now: datetime) -> None:
        pass

    def close(self) -> None:
        self.producer.abandon()


def _post(url: str, body: Any, timeout_s: float) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - the URL is the user's
            response.read()
    except urllib.error.HTTPError as e:
        raise SinkError(f"{url} answered {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:  # refused, unknown host, timed out
        raise SinkError(f"{url}: {getattr(e, 'reason', e)}") from e


class WebhookSink:
    """A JSON POST of each transition (`transition_json`); any status but 2xx is a failure."""

    name = "webhook"

    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        self.url, self.timeout_s = url, timeout_s

    def send(self, transition: Transition) -> None:
        _post(self.url, transition_json(transition), self.timeout_s)

    def refresh(self, firing: Sequence[Tracked], now: datetime) -> None:
        pass

    def close(self) -> None:
        pass


class AlertmanagerSink:
    """Alertmanager's v2 API (POST /api/v2/alerts). A firing alert is posted when it fires and
    again every `resend` while it fires (Alertmanager resolves an alert it is not told about
    again within its resolve_timeout); a resolution is posted with its endsAt."""

    name = "alertmanager"

    def __init__(self, url: str, *, timeout_s: float = 2.0, resend: timedelta = timedelta(minutes=1)) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.timeout_s, self.resend = timeout_s, resend
        self._refreshed: datetime | None = None

    @staticmethod
    def _alert(rule: str, group: str, topic: str, severity: str, value: str, starts: datetime,
               ends: datetime | None, message: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "labels": {"alertname": rule, "group": group, "topic": topic, "severity": severity.lower(),
                       "service": "backbone-lag"},
            "annotations": {"summary": message, "value": value},
            "startsAt": format_datetime(starts),
        }
        if ends is not None:
            body["endsAt"] = format_datetime(ends)
        return body

    def send(self, transition: Transition) -> None:
        t = transition
        ends = t.at if t.kind == "resolved" else None
        # a resolution's start is unknown here; Alertmanager keeps the start it has
        _post(self.url, [self._alert(t.key.rule, t.key.group, t.key.topic, t.severity.value, t.value,
                                     t.at if ends is None else t.at - timedelta(microseconds=1), ends, t.message)],
              self.timeout_s)

    def refresh(self, firing: Sequence[Tracked], now: datetime) -> None:
        if not firing or (self._refreshed is not None and now - self._refreshed < self.resend):
            return
        _post(self.url, [self._alert(a.key.rule, a.key.group, a.key.topic, a.severity.value, a.value,
                                     a.fired_at or a.since, None, f"{a.key.rule} firing for {a.key.group}")
                         for a in firing], self.timeout_s)
        self._refreshed = now

    def close(self) -> None:
        pass
