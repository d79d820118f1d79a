"""The lag monitor's values, shared by its pure parts (evaluation, rules, alerting) and its I/O
(sampling, sinks, metrics): a sample of one partition's progress, the verdict on a window of
them, a group's worst partition, a threshold rule, and an alert's state and transitions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Literal

#: where a group's offsets are read: a projection's checkpoints in Postgres (authoritative for
#: projections) or the offsets committed to Kafka (any consumer group; a projection's mirror)
Source = Literal["postgres", "kafka"]


class Status(StrEnum):
    """A partition's state over a window (Burrow's model). Ordered from best to worst by
    `SEVERITY_ORDER`, which picks a group's worst partition."""

    OK = "OK"  # lag reached 0 within the window
    WARN = "WARN"  # the offset moves, but lag grew over the window
    STALL = "STALL"  # the offset does not move while lag > 0
    STOP = "STOP"  # no commit for longer than the window while lag > 0
    REWIND = "REWIND"  # the committed offset moved back
    ERR = "ERR"  # cannot be judged: no leader, group gone, topic missing


SEVERITY_ORDER: tuple[Status, ...] = (Status.OK, Status.WARN, Status.REWIND, Status.STALL, Status.STOP,
                                      Status.ERR)


class Severity(StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


@dataclass(frozen=True, slots=True)
class PartitionSample:
    """One partition's progress as read at `at` (UTC). `committed` is the next offset the group
    will consume; `log_end` the high watermark, or the last stable offset for read_committed
    readers. `lag_seconds` is `at` minus the Kafka timestamp of the record at `committed`, 0 when
    caught up, None when it could not be read. `error` says why the partition cannot be judged."""

    at: datetime
    group: str
    source: Source
    topic: str
    partition: int
    committed: int | None
    log_end: int | None
    lag_records: int | None
    lag_seconds: Decimal | None
    last_commit: datetime | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """A partition judged over its window: the status, why, the latest lag and the rate at which
    the group consumed it over the window (records a second)."""

    group: str
    source: Source
    topic: str
    partition: int
    status: Status
    reason: str
    lag_records: int | None
    lag_seconds: Decimal | None
    rate: Decimal | None
    committed: int | None = None
    log_end: int | None = None
    last_commit: datetime | None = None


@dataclass(frozen=True, slots=True)
class GroupVerdict:
    """A group's verdicts on one topic, with its worst partition's status and the largest lags."""

    group: str
    source: Source
    topic: str
    status: Status
    lag_records: int | None
    lag_seconds: Decimal | None
    partitions: tuple[Verdict, ...]


Metric = Literal["lag_records", "lag_seconds", "status"]


@dataclass(frozen=True, slots=True)
class Rule:
    """A threshold rule: fires for a (group, topic) whose `metric` is above `threshold` (or whose
    status is one of `statuses`) for `for_` at least; resolves when it drops to `clear_below` or
    under (hysteresis; None: the threshold). `group` and `topic` are shell-style patterns."""

    name: str
    metric: Metric
    severity: Severity
    for_: timedelta
    threshold: Decimal | None = None
    clear_below: Decimal | None = None
    statuses: frozenset[Status] = frozenset()
    group: str = "*"
    topic: str = "*"
    source: Source | None = None  # None: either


@dataclass(frozen=True, slots=True)
class AlertKey:
    rule: str
    group: str
    topic: str


Phase = Literal["pending", "firing"]


@dataclass(frozen=True, slots=True)
class Tracked:
    """An alert whose condition holds: pending until it has held for the rule's `for_`, then
    firing until it clears. Persisted by the monitor so a restart does not fire it again."""

    key: AlertKey
    phase: Phase
    since: datetime  # when the condition started to hold
    severity: Severity
    value: str  # the metric's value when last evaluated, as text
    fired_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert that fired or resolved at `at`: what every sink is told, exactly once."""

    key: AlertKey
    kind: Literal["firing", "resolved"]
    at: datetime
    severity: Severity
    value: str
    message: str
