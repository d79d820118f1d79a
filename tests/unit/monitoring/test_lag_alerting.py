"""The alert state machine: pending, firing after `for`, resolving with hysteresis, absent groups,
removed rules, restarts (monitoring.alerting, pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from monitoring.alerting import step
from monitoring.model import (
    SEVERITY_ORDER,
    AlertKey,
    GroupVerdict,
    Rule,
    Severity,
    Source,
    Status,
    Tracked,
    Transition,
    Verdict,
)

T0 = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
SECONDS = Rule(name="LagSecondsWarning", metric="lag_seconds", severity=Severity.WARNING, for_=timedelta(seconds=30),
               threshold=Decimal(5), clear_below=Decimal(2))
STALLED = Rule(name="LagStalled", metric="status", severity=Severity.CRITICAL, for_=timedelta(minutes=1),
               statuses=frozenset({Status.STALL, Status.STOP}))
KEY = AlertKey("LagSecondsWarning", "g", "trading.orders")


def group(seconds: str | None = None, *statuses: Status, name: str = "g", topic: str = "trading.orders",
          source: Source = "postgres", records: int | None = None) -> GroupVerdict:
    parts = tuple(Verdict(group=name, source=source, topic=topic, partition=i, status=s, reason=f"why {i}",
                          lag_records=records, lag_seconds=None, rate=None)
                  for i, s in enumerate(statuses or [Status.OK]))
    return GroupVerdict(group=name, source=source, topic=topic,
                        status=max((p.status for p in parts), key=SEVERITY_ORDER.index),
                        lag_records=records, lag_seconds=None if seconds is None else Decimal(seconds),
                        partitions=parts)


class Monitor:
    """Feeds `step` one evaluation after another, as the monitor does."""

    def __init__(self, *rules: Rule) -> None:
        self.rules = list(rules) or [SECONDS]
        self.tracked: dict[AlertKey, Tracked] = {}
        self.said: list[Transition] = []

    def at(self, second: float, *groups: GroupVerdict) -> list[tuple[str, str]]:
        self.tracked, transitions = step(self.tracked, list(groups), self.rules, T0 + timedelta(seconds=second))
        self.said += transitions
        return [(t.kind, t.value) for t in transitions]


# -- the life of one alert -------------------------------------------------------------------------


def test_fires_after_for_and_resolves_at_clear_below() -> None:
    m = Monitor()
    assert m.at(0, group("6")) == []
    assert m.tracked[KEY].phase == "pending"
    assert m.at(29, group("9")) == []
    assert m.at(30, group("7.5")) == [("firing", "7.5")]
    assert m.tracked[KEY] == Tracked(key=KEY, phase="firing", since=T0, severity=Severity.WARNING, value="7.5",
                                     fired_at=T0 + timedelta(seconds=30))
    assert m.said[0].message == "LagSecondsWarning: group g on trading.orders: lag seconds 7.5 above 5 for 30s"
    assert m.at(40, group("3")) == []  # under the threshold, above clear_below: still firing
    assert m.at(50, group("2")) == [("resolved", "2")]
    assert m.said[1].message == "LagSecondsWarning: group g on trading.orders: resolved, lag seconds 2, at or under 2"
    assert (m.said[1].severity, m.said[1].at) == (Severity.WARNING, T0 + timedelta(seconds=50))
    assert m.tracked == {}


def test_for_zero_fires_at_once() -> None:
    m = Monitor(replace(SECONDS, for_=timedelta(0)))
    assert m.at(0, group("5.1")) == [("firing", "5.1")]


def test_at_the_threshold_is_no_breach() -> None:
    m = Monitor(replace(SECONDS, for_=timedelta(0)))
    assert m.at(0, group("5")) == [] and m.tracked == {}


def test_without_clear_below_it_resolves_at_the_threshold() -> None:
    m = Monitor(replace(SECONDS, for_=timedelta(0), clear_below=None))
    assert m.at(0, group("6")) == [("firing", "6")]
    assert m.at(10, group("5")) == [("resolved", "5")]


def test_a_pending_alert_ends_silently_when_the_breach_breaks() -> None:
    m = Monitor()
    m.at(0, group("6"))
    assert m.at(20, group("4")) == [] and m.tracked == {}  # in the hysteresis band: not a breach
    m.at(25, group("6"))
    assert m.at(50, group("6")) == []  # 25 s since the new breach began
    assert m.at(55, group("6")) == [("firing", "6")]


def test_unknown_lag_and_a_missing_group_change_nothing() -> None:
    m = Monitor(replace(SECONDS, for_=timedelta(0)))
    m.at(0, group("6"))
    before = dict(m.tracked)
    assert m.at(10, group(None)) == [] and m.tracked == before
    assert m.at(20) == [] and m.tracked == before
    assert m.at(30, group("1", name="other")) == [] and m.tracked == before
    assert m.at(40, group("1")) == [("resolved", "1")]


def test_a_removed_rule_resolves_what_it_fired() -> None:
    m = Monitor(replace(SECONDS, for_=timedelta(0)), STALLED)
    m.at(0, group("6", Status.STALL))
    assert KEY in m.tracked and m.tracked[AlertKey("LagStalled", "g", "trading.orders")].phase == "pending"
    m.rules = [STALLED]
    assert m.at(10) == [("resolved", "6")]  # even with the group missing
    assert m.said[-1].message == "LagSecondsWarning: group g on trading.orders: resolved, the rule no longer applies"
    m.rules = []
    assert m.at(20, group("6", Status.STALL)) == [] and m.tracked == {}  # pending: never fired, nothing to say


def test_a_rule_that_no_longer_matches_the_group_resolves() -> None:
    m = Monitor(replace(SECONDS, for_=timedelta(0)))
    m.at(0, group("6"))
    m.rules = [replace(SECONDS, for_=timedelta(0), group="backbone-*")]
    assert m.at(10, group("6")) == [("resolved", "6")]


def test_status_rules_look_at_every_partition() -> None:
    m = Monitor(replace(STALLED, for_=timedelta(0)))
    # the group's worst status is ERR, but partitions 1 and 2 stall: that is what the rule is about
    assert m.at(0, group(None, Status.ERR, Status.STALL, Status.STOP)) == [("firing", "STOP")]
    assert m.said[0].message == ("LagStalled: group g on trading.orders: status STOP (partitions 1, 2; "
                                 "partition 2: why 2) for 0s")
    assert m.at(10, group(None, Status.ERR, Status.WARN)) == [("resolved", "ERR")]


def test_a_rule_without_source_judges_the_postgres_checkpoints() -> None:
    m = Monitor(replace(SECONDS, for_=timedelta(0)))
    assert m.at(0, group("9", source="kafka"), group("1")) == []
    assert m.at(10, group("1", source="kafka"), group("9")) == [("firing", "9")]
    kafka = replace(SECONDS, name="kafka", for_=timedelta(0), source="kafka")
    m = Monitor(kafka)
    assert m.at(0, group("9", source="kafka"), group("1")) == [("firing", "9")]
    assert m.at(10, group("1")) == []  # its source missing: nothing known


def test_a_kafka_only_group_is_judged_on_kafka() -> None:
    m = Monitor(replace(SECONDS, for_=timedelta(0)))
    assert m.at(0, group("9", source="kafka")) == [("firing", "9")]


def test_lag_records_and_patterns() -> None:
    rule = Rule(name="records", metric="lag_records", severity=Severity.INFO, for_=timedelta(0),
                threshold=Decimal(100), group="backbone-*", topic="*.orders")
    m = Monitor(rule)
    found = m.at(0, group(records=101, name="backbone-trading"), group(records=500, name="other"),
                 group(records=500, name="backbone-trading", topic="trading.marketdata"))
    assert found == [("firing", "101")]
    assert m.said[0].key == AlertKey("records", "backbone-trading", "trading.orders")


def test_each_key_has_its_own_state_and_transitions_come_in_key_order() -> None:
    m = Monitor(replace(SECONDS, for_=timedelta(0)), replace(STALLED, for_=timedelta(0)))
    m.at(0, group("9", Status.STALL, name="b"), group("9", name="a"))
    assert [(t.key.rule, t.key.group) for t in m.said] == [
        ("LagSecondsWarning", "a"), ("LagSecondsWarning", "b"), ("LagStalled", "b")]


# -- restarts --------------------------------------------------------------------------------------


def persisted(tracked: dict[AlertKey, Tracked]) -> dict[AlertKey, Tracked]:
    """Through rows of text, as the monitor's table would keep them."""
    rows: list[dict[str, Any]] = [{"rule": t.key.rule, "group": t.key.group, "topic": t.key.topic, "phase": t.phase,
                                   "since": t.since.isoformat(), "severity": t.severity.value, "value": t.value,
                                   "fired_at": t.fired_at.isoformat() if t.fired_at else None}
                                  for t in tracked.values()]
    back = [Tracked(key=AlertKey(r["rule"], r["group"], r["topic"]), phase=r["phase"],
                    since=datetime.fromisoformat(r["since"]), severity=Severity(r["severity"]), value=r["value"],
                    fired_at=datetime.fromisoformat(r["fired_at"]) if r["fired_at"] else None) for r in rows]
    return {t.key: t for t in back}


def test_a_restart_does_not_fire_again() -> None:
    m = Monitor(replace(SECONDS, for_=timedelta(0)))
    m.at(0, group("6"))
    restarted = Monitor(replace(SECONDS, for_=timedelta(0)))
    restarted.tracked = persisted(m.tracked)
    assert restarted.at(0, group("6")) == []  # the same pass again
    assert restarted.at(10, group("7")) == []
    assert restarted.at(20, group("1")) == [("resolved", "1")]


# -- properties ------------------------------------------------------------------------------------

ABSENT = "absent"
values = st.one_of(st.sampled_from([Decimal(0), Decimal(2), Decimal(3), Decimal(5), Decimal("5.001"), Decimal(9)]),
                   st.none(), st.just(ABSENT))
evaluations = st.lists(st.tuples(st.integers(1, 20), values, st.booleans()), max_size=40)


def run(rule: Rule, points: list[tuple[int, Decimal | None | str, bool]]) -> tuple[list[Transition], list[float]]:
    """Transitions over evaluations (seconds since the last, value, restart before it); a restart
    persists the state and evaluates the last pass again first. Also the evaluation times."""
    tracked: dict[AlertKey, Tracked] = {}
    said: list[Transition] = []
    now, times = 0.0, []
    last: list[GroupVerdict] = []
    for gap, value, restart in points:
        if restart:
            tracked = persisted(tracked)
            tracked, again = step(tracked, last, [rule], T0 + timedelta(seconds=now))
            said += again
        now += gap
        times.append(now)
        last = [] if value == ABSENT else [group(None if value is None else str(value))]
        tracked, transitions = step(tracked, last, [rule], T0 + timedelta(seconds=now))
        said += transitions
    return said, times


@given(evaluations, st.integers(0, 40))
def test_each_episode_fires_once_after_for_and_resolves_once(
        points: list[tuple[int, Decimal | None | str, bool]], for_s: int) -> None:
    rule = replace(SECONDS, for_=timedelta(seconds=for_s))
    said, times = run(rule, points)
    assert [t.kind for t in said] == ["firing", "resolved"] * (len(said) // 2) + ["firing"] * (len(said) % 2)
    at = {t.at: t.kind for t in said}
    assert len(at) == len(said)  # one transition an evaluation at most, restarts included
    active = False
    start: float | None = None  # when the current run of breaches began
    for now, (_gap, value, _restart) in zip(times, points, strict=True):
        kind = at.get(T0 + timedelta(seconds=now))
        if isinstance(value, Decimal):
            breach = value > 5
            if not breach:
                start = None
            elif start is None:
                start = now
            if active:
                # resolved at the first value at or under clear_below, never in the band
                assert (kind == "resolved") == (value <= 2)
                active = kind != "resolved"
                if not active:
                    start = None
                continue
            # fires exactly when the breach has held for `for`
            assert (kind == "firing") == (breach and start is not None and now - start >= for_s)
            active = kind == "firing"
        else:
            assert kind is None  # unknown or not measured: nothing changes


@given(st.lists(st.sampled_from(["2.5", "4", "5", "6", "100"]), max_size=30))
def test_values_above_clear_below_never_refire_or_resolve(values_after: list[str]) -> None:
    m = Monitor(replace(SECONDS, for_=timedelta(0)))
    m.at(0, group("6"))
    for i, value in enumerate(values_after, 1):
        assert m.at(i, group(value)) == []
    assert m.tracked[KEY].phase == "firing"
