"""The lag monitor's loop, one pass every interval: sample → window → verdicts → group verdicts →
alert step → persist (state and transitions in one transaction) → deliver what is owed → metrics.

- Alerts are held during the first window after a start: a window with fewer samples than its
  length would judge a stalled partition OK and resolve an alert that still holds, then fire it
  again (the state in Postgres survives a restart, the window does not).
- Kafka down: its partitions are ERR for the pass, the projections' checkpoints are still read.
  Postgres down: the Kafka groups are still sampled and served on /metrics, while the alert state
  waits for the database (a transition is never lost, and never said twice).
- A sink that fails is tried again on a later pass with backoff; within a pass a failing sink
  is not tried again, so a hanging receiver costs one timeout a pass at most.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from backbone import db
from backbone.codec.json_form import format_datetime
from backbone.settings import Settings
from monitoring import store
from monitoring.alerting import step
from monitoring.evaluation import Window, group_verdicts
from monitoring.metrics import MonitorMetrics
from monitoring.model import AlertKey, GroupVerdict, PartitionSample, Rule, Status, Tracked, Transition
from monitoring.sampling import Sampler
from monitoring.sinks import Sink, SinkError, transition_json

log = logging.getLogger(__name__)


@dataclass
class PassReport:
    """What one pass saw and did: the status line and the `--json` events are made of it."""

    at: datetime
    seconds: float
    groups: list[GroupVerdict]
    transitions: list[Transition] = field(default_factory=list)
    firing: int = 0
    pending: int = 0
    owed: int = 0
    delivered: int = 0
    failures: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warming_up: bool = False

    def line(self) -> str:
        counts: dict[Status, int] = {}
        for g in self.groups:
            counts[g.status] = counts.get(g.status, 0) + 1
        statuses = " ".join(f"{n} {s.value}" for s, n in sorted(counts.items(), key=lambda kv: kv[0].value))
        parts = [format_datetime(self.at), f"{len(self.groups)} group-topics" + (f" ({statuses})" if statuses else ""),
                 "alerts held (first window)" if self.warming_up else f"firing {self.firing}, pending {self.pending}"]
        fired = sum(1 for t in self.transitions if t.kind == "firing")
        if self.transitions:
            parts.append(f"+{fired} fired, {len(self.transitions) - fired} resolved")
        if self.owed:
            parts.append(f"{self.owed} deliveries owed")
        parts.extend(self.failures)
        parts.extend(self.problems)
        parts.append(f"{self.seconds:.2f} s")
        return " · ".join(parts)

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"event": "alert", **transition_json(t)} for t in self.transitions]
        out.append({"event": "pass", "at": format_datetime(self.at), "seconds": round(self.seconds, 3),
                    "groups": [{"group": g.group, "source": g.source, "topic": g.topic, "status": g.status.value,
                                "lag_records": g.lag_records,
                                "lag_seconds": None if g.lag_seconds is None else str(g.lag_seconds)}
                               for g in self.groups],
                    "alerts_held": self.warming_up, "firing": self.firing, "pending": self.pending,
                    "deliveries_owed": self.owed, "delivered": self.delivered, "sink_failures": self.failures,
                    "problems": self.problems})
        return out


class Monitor:
    """One evaluator: `run_pass()` does one pass; `run()` repeats it every `interval`."""

    def __init__(self, settings: Settings, rules: Sequence[Rule], *, sinks: Sequence[Sink],
                 interval: timedelta = timedelta(seconds=10), window: timedelta = timedelta(minutes=5),
                 sampler: Sampler | None = None, metrics: MonitorMetrics | None = None) -> None:
        self.settings, self.rules, self.sinks = settings, list(rules), list(sinks)
        self.interval, self.window = interval, window
        self.sampler = sampler or Sampler(settings)
        self.metrics = metrics or MonitorMetrics()
        self.samples = Window(window)
        self.started: datetime | None = None
        self.tracked: dict[AlertKey, Tracked] | None = None  # None: not loaded from Postgres yet
        self._engine: Engine | None = None

    def close(self) -> None:
        self.sampler.close()
        for sink in self.sinks:
            sink.close()
        if self._engine is not None:
            self._engine.dispose()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = db.make_engine(self.settings, pool_size=1, max_overflow=0)
        return self._engine

    def run(self, on_pass: Callable[[PassReport], None], *, stop: Callable[[], bool] = lambda: False,
            passes: int | None = None) -> None:
        """Pass after pass, `interval` apart (start to start), until `stop()` or `passes` done."""
        done = 0
        next_at = time.monotonic()
        while not stop() and (passes is None or done < passes):
            on_pass(self._guarded_pass())
            done += 1
            next_at += self.interval.total_seconds()
            while not stop() and (passes is None or done < passes):
                left = next_at - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(left, 0.2))  # a pacing interval, not a wait for an event
            if next_at < time.monotonic():  # a pass longer than the interval: no burst to catch up
                next_at = time.monotonic()

    def _guarded_pass(self) -> PassReport:
        """A pass; one that fails unexpectedly says why on its line, and the next one runs."""
        began = time.perf_counter()
        try:
            return self.run_pass()
        except Exception as e:  # noqa: BLE001 - a long-running evaluator outlives one bad pass
            log.debug("lag monitor pass failed", exc_info=True)
            return PassReport(at=datetime.now(tz=UTC), seconds=time.perf_counter() - began, groups=[],
                              problems=[f"pass failed: {type(e).__name__}: {e}"])

    def run_pass(self, now: datetime | None = None) -> PassReport:
        began = time.perf_counter()
        at = now or datetime.now(tz=UTC)
        if self.started is None:
            self.started = at
        samples: list[PartitionSample] = self.sampler.sample(at)
        self.samples.add(samples)
        groups = group_verdicts(self.samples.verdicts())
        report = PassReport(at=at, seconds=0.0, groups=groups, problems=list(self.sampler.problems))
        report.warming_up = at - self.started < self.window
        if not report.warming_up:
            self._alerts(groups, at, report)
        self._deliver(at, report)
        firing = [t for t in (self.tracked or {}).values() if t.phase == "firing"]
        report.firing = len(firing)
        report.pending = len(self.tracked or {}) - len(firing)
        self.metrics.lag.update(groups, firing)
        report.seconds = time.perf_counter() - began
        self.metrics.evaluation.observe(report.seconds)
        return report

    def _alerts(self, groups: list[GroupVerdict], at: datetime, report: PassReport) -> None:
        """Step the alerts and persist the new state with its transitions, or leave both as they
        were when Postgres cannot take them."""
        try:
            with self.engine.begin() as sa_conn:
                conn = db.psycopg_connection(sa_conn)
                if self.tracked is None:
                    self.tracked = store.load_tracked(conn)
                tracked, transitions = step(self.tracked, groups, self.rules, at)
                store.save(conn, tracked, transitions, [s.name for s in self.sinks])
        except db.DATABASE_FAILURES as e:  # said on the status line; the loop goes on
            report.problems.append(f"Postgres: {db.connection_error(e)}; alerts wait for it")
            return
        self.tracked, report.transitions = tracked, transitions

    def _deliver(self, at: datetime, report: PassReport) -> None:
        if self.tracked is None or not self.sinks:
            return
        firing = [t for t in self.tracked.values() if t.phase == "firing"]
        try:
            with self.engine.connect() as sa_conn:
                conn = db.psycopg_connection(sa_conn)
                conn.autocommit = True
                owed = store.owed(conn, [s.name for s in self.sinks], at)
                failed: set[str] = set()
                for delivery in owed:
                    if delivery.sink in failed:
                        continue
                    sink = next(s for s in self.sinks if s.name == delivery.sink)
                    try:
                        sink.send(delivery.transition)
                    except SinkError as e:
                        failed.add(delivery.sink)
                        self._failed(sink.name, str(e), report)
                        store.failed(conn, delivery, at, str(e), store.backoff(delivery.attempts + 1))
                        continue
                    store.delivered(conn, delivery, datetime.now(tz=UTC))
                    report.delivered += 1
                report.owed = len(owed) - report.delivered
                for sink in self.sinks:
                    if sink.name in failed:
                        continue
                    try:
                        sink.refresh(firing, at)
                    except SinkError as e:
                        self._failed(sink.name, str(e), report)
        except db.DATABASE_FAILURES as e:  # as in _alerts
            text = f"Postgres: {db.connection_error(e)}; deliveries wait for it"
            if text not in report.problems:
                report.problems.append(text)

    def _failed(self, sink: str, error: str, report: PassReport) -> None:
        self.metrics.sink_failures.labels(sink).inc()
        report.failures.append(f"{sink} failed: {error}")
