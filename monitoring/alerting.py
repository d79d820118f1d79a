"""The alert state machine: threshold rules applied to group verdicts, one evaluation at a time.

Per rule and (group, topic) the rule matches, an alert is inactive (not tracked), pending or
firing. At each evaluation the rule's value is

- a breach: a lag metric above `threshold`, or a partition in one of `statuses`;
- a clearance: a lag metric at or under `clear_below` (the threshold when not set), or no
  partition in `statuses`;
- in between (a lag metric above `clear_below`, not above `threshold`), or unknown (no lag read).

    inactive --breach--> pending (firing at once when `for` is 0)
    pending  --breach held for `for`--> firing         (a Transition "firing")
    pending  --anything but a breach or unknown--> inactive (it never fired: nothing is said)
    firing   --clearance--> inactive                    (a Transition "resolved")

A firing alert stays firing in between (hysteresis: a value hovering around the threshold fires
once). An unknown value, or a (group, topic) missing from the evaluation (a failed sample),
changes nothing: a failure to measure is not a recovery. An alert whose rule was removed, or no
longer matches its group and topic, resolves if it was firing. The state returned is what the
monitor persists; fed back after a restart, nothing fires twice.

A rule without `source` judges a group's authoritative offsets: a projection's Postgres
checkpoints where there are some, else the offsets committed to Kafka.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Literal

from monitoring.model import SEVERITY_ORDER, AlertKey, GroupVerdict, Rule, Tracked, Transition
from monitoring.rules import duration_text

Condition = Literal["breach", "clear", "between", "unknown"]


def _judged(groups: Sequence[GroupVerdict], rules: Sequence[Rule]) -> dict[AlertKey, tuple[Rule, GroupVerdict]]:
    """Each alert key the rules give, with the verdict its rule judges."""
    judged: dict[AlertKey, tuple[Rule, GroupVerdict]] = {}
    for rule in rules:
        for group in groups:
            if (rule.source not in (None, group.source) or not fnmatchcase(group.group, rule.group)
                    or not fnmatchcase(group.topic, rule.topic)):
                continue
            key = AlertKey(rule.name, group.group, group.topic)
            if key not in judged or group.source == "postgres":
                judged[key] = (rule, group)
    return judged


def _condition(rule: Rule, group: GroupVerdict) -> tuple[Condition, str, str]:
    """Where the rule's value stands, the value as text, and what a message says about it."""
    if rule.metric == "status":
        parts = group.partitions or ()
        hit = [p for p in parts if p.status in rule.statuses]
        if not parts and group.status in rule.statuses:
            return "breach", group.status.value, f"status {group.status.value}"
        if not hit:
            return "clear", group.status.value, f"status {group.status.value}"
        worst = max((p.status for p in hit), key=SEVERITY_ORDER.index)
        first = next(p for p in hit if p.status is worst)
        listed = ", ".join(str(p.partition) for p in hit)
        return "breach", worst.value, (f"status {worst.value} (partition{'s' if len(hit) > 1 else ''} {listed}; "
                                       f"partition {first.partition}: {first.reason})")
    value: int | Decimal | None = group.lag_records if rule.metric == "lag_records" else group.lag_seconds
    if value is None:
        return "unknown", "", ""
    assert rule.threshold is not None
    clear = rule.threshold if rule.clear_below is None else rule.clear_below
    label = rule.metric.replace("_", " ")
    if value > rule.threshold:
        return "breach", str(value), f"{label} {value} above {rule.threshold}"
    if value <= clear:
        return "clear", str(value), f"{label} {value}, at or under {clear}"
    return "between", str(value), f"{label} {value}"


def _where(key: AlertKey) -> str:
    return f"{key.rule}: group {key.group} on {key.topic}"


def _resolved(old: Tracked, now: datetime, why: str) -> Transition:
    return Transition(key=old.key, kind="resolved", at=now, severity=old.severity, value=old.value,
                      message=f"{_where(old.key)}: resolved, {why}")


def step(tracked: Mapping[AlertKey, Tracked], groups: Sequence[GroupVerdict], rules: Sequence[Rule],
         now: datetime) -> tuple[dict[AlertKey, Tracked], list[Transition]]:
    """One evaluation at `now`: the alerts tracked after it, and what fired or resolved (in key
    order). `tracked` is what the previous evaluation returned (or the monitor persisted)."""
    judged = _judged(groups, rules)
    after: dict[AlertKey, Tracked] = {}
    transitions: list[Transition] = []
    for key, (rule, group) in sorted(judged.items(), key=lambda item: (item[0].rule, item[0].group, item[0].topic)):
        old = tracked.get(key)
        condition, value, said = _condition(rule, group)
        if condition == "unknown":
            if old is not None:
                after[key] = old
            continue
        if old is not None and old.phase == "firing":
            if condition == "clear":
                transitions.append(_resolved(replace(old, value=value), now, said))
            else:
                after[key] = replace(old, value=value)
            continue
        if condition != "breach":
            continue  # a pending alert whose condition broke never fired: it just ends
        since = now if old is None else old.since
        if now - since < rule.for_:
            after[key] = Tracked(key=key, phase="pending", since=since, severity=rule.severity, value=value)
            continue
        after[key] = Tracked(key=key, phase="firing", since=since, severity=rule.severity, value=value, fired_at=now)
        transitions.append(Transition(key=key, kind="firing", at=now, severity=rule.severity, value=value,
                                      message=f"{_where(key)}: {said} for {duration_text(now - since)}"))
    rules_by_name = {rule.name: rule for rule in rules}
    for key, old in sorted(tracked.items(), key=lambda item: (item[0].rule, item[0].group, item[0].topic)):
        if key in judged:
            continue
        kept = rules_by_name.get(key.rule)
        # measured, but not by this rule any more (its patterns or source changed)
        measured = kept is not None and any(
            (g.group, g.topic) == (key.group, key.topic) and kept.source in (None, g.source) for g in groups)
        if kept is not None and not measured:
            after[key] = old  # not measured this time: nothing is known
        elif old.phase == "firing":
            transitions.append(_resolved(old, now, "the rule no longer applies"))
    transitions.sort(key=lambda t: (t.key.rule, t.key.group, t.key.topic))
    return after, transitions

