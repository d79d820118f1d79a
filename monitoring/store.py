"""The monitor's alerts in Postgres (migration 0012): the state of every pending or firing alert
(`lag_alerts`), each transition (`lag_alert_history`) and its delivery to each sink
(`lag_alert_deliveries`, the outbox). A pass's new state and its transitions are written in one
transaction, so a restarted monitor neither fires again what it already fired nor loses a
transition it did not deliver yet."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from monitoring.model import AlertKey, Severity, Tracked, Transition


@dataclass(frozen=True, slots=True)
class Delivery:
    """A transition still owed to `sink`."""

    history_id: int
    sink: str
    attempts: int
    transition: Transition


def load_tracked(conn: psycopg.Connection) -> dict[AlertKey, Tracked]:
    with conn.cursor() as cur:
        cur.execute("select rule, group_id, topic, phase, since, severity, value, fired_at from lag_alerts")
        out = {}
        for rule, group, topic, phase, since, severity, value, fired_at in cur:
            key = AlertKey(rule, group, topic)
            out[key] = Tracked(key=key, phase=phase, since=since, severity=Severity(severity), value=value,
                               fired_at=fired_at)
        return out


def save(conn: psycopg.Connection, tracked: Mapping[AlertKey, Tracked], transitions: Sequence[Transition],
         sinks: Iterable[str]) -> None:
    """Replace the alert state with `tracked` and record `transitions`, each owed to every sink,
    in the caller's transaction."""
    sinks = list(sinks)
    with conn.cursor() as cur:
        cur.execute("delete from lag_alerts")
        if tracked:
            cur.executemany(
                "insert into lag_alerts (rule, group_id, topic, phase, since, severity, value, fired_at) "
                "values (%s, %s, %s, %s, %s, %s, %s, %s)",
                [(t.key.rule, t.key.group, t.key.topic, t.phase, t.since, t.severity.value, t.value, t.fired_at)
                 for t in tracked.values()])
        for t in transitions:
            cur.execute("insert into lag_alert_history (rule, group_id, topic, kind, at, severity, value, message) "
                        "values (%s, %s, %s, %s, %s, %s, %s, %s) returning id",
                        (t.key.rule, t.key.group, t.key.topic, t.kind, t.at, t.severity.value, t.value, t.message))
            row = cur.fetchone()
            assert row is not None
            if sinks:
                cur.executemany("insert into lag_alert_deliveries (history_id, sink) values (%s, %s)",
                                [(row[0], sink) for sink in sinks])


def owed(conn: psycopg.Connection, sinks: Iterable[str], now: datetime, limit: int = 500) -> list[Delivery]:
    """The deliveries due to `sinks` by `now`, oldest transition first."""
    with conn.cursor() as cur:
        cur.execute("select d.history_id, d.sink, d.attempts, h.rule, h.group_id, h.topic, h.kind, h.at, h.severity, "
                    "h.value, h.message from lag_alert_deliveries d join lag_alert_history h on h.id = d.history_id "
                    "where d.delivered_at is null and d.sink = any(%s) and d.next_attempt_at <= %s "
                    "order by d.history_id, d.sink limit %s", (list(sinks), now, limit))
        return [Delivery(hid, sink, attempts, Transition(key=AlertKey(rule, group, topic), kind=kind, at=at,
                                                         severity=Severity(severity), value=value, message=message))
                for hid, sink, attempts, rule, group, topic, kind, at, severity, value, message in cur]


def delivered(conn: psycopg.Connection, delivery: Delivery, now: datetime) -> None:
    conn.execute("update lag_alert_deliveries set delivered_at = %s, attempts = attempts + 1, last_error = null "
                 "where history_id = %s and sink = %s", (now, delivery.history_id, delivery.sink))


def failed(conn: psycopg.Connection, delivery: Delivery, now: datetime, error: str, retry_in: timedelta) -> None:
    conn.execute("update lag_alert_deliveries set attempts = attempts + 1, last_error = %s, next_attempt_at = %s "
                 "where history_id = %s and sink = %s",
                 (error[:1000], now + retry_in, delivery.history_id, delivery.sink))


def backoff(attempts: int, *, first: float = 1.0, most: float = 300.0) -> timedelta:
    """How long after its `attempts`-th failure a delivery is tried again: doubling, capped."""
    return timedelta(seconds=min(first * 2 ** max(attempts - 1, 0), most))
