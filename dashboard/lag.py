"""The consumer lag on the page: `backbone lag`'s figures, from monitoring's `Sampler` and
verdicts (no second computation). One `LagBoard` serves every tab for the server's life: it
keeps the sampler's Kafka clients and samples at most once per redraw interval.

Kafka is read through the admin API (topics, log ends, committed offsets of listed groups) and
the sampler's `LogReader` (assigned partitions, a group id of its own that never joins or
commits), so the projector's group is never disturbed. The projections' checkpoints are read
as the dashboard's read-only login, never as BACKBONE_DATABASE_URL.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from backbone.errors import ConfigError
from backbone.settings import Settings
from dashboard.queries import READER_HINT
from monitoring.evaluation import Window, group_verdicts
from monitoring.model import GroupVerdict
from monitoring.sampling import Sampler

#: a sample not answered within this long says so on the page rather than holding up its redraws
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class LagReading:
    """One pass of the sampler: per (group, source, topic) the worst partition; `problems` are
    the failures that concern everything (Kafka or Postgres not answering); `took_s` the pass's
    duration."""

    at: datetime
    groups: tuple[GroupVerdict, ...]
    problems: tuple[str, ...]
    took_s: float


class LagBoard:
    def __init__(self, settings: Settings, refresh_s: float, *, timeout_s: float = TIMEOUT_S) -> None:
        reader = settings.reader_database_url.get_secret_value()
        if not reader:  # an empty URL would fall back to the application's login
            raise ConfigError(f"the dashboard reads as a login of the read-only role only: {READER_HINT}")
        self.sampler = Sampler(settings.with_overrides(database_url=reader), timeout_s=timeout_s)
        self.interval = timedelta(seconds=refresh_s)
        # two samples at least, so that a partition's status (STALL, WARN) means what `backbone lag`'s does
        self._window = Window(max(self.interval * 2, timedelta(seconds=60)))
        self._lock = threading.Lock()  # tabs redraw in threads of their own; a Sampler is not thread-safe
        self._last: LagReading | None = None

    def read(self) -> LagReading:
        """The latest reading, sampled now if the last one is a redraw interval old."""
        with self._lock:
            now = datetime.now(tz=UTC)
            if self._last is not None and now - self._last.at < self.interval:
                return self._last
            started = time.perf_counter()
            self._window.add(self.sampler.sample(now))
            self._last = LagReading(at=now, groups=tuple(group_verdicts(self._window.verdicts())),
                                    problems=tuple(self.sampler.problems), took_s=time.perf_counter() - started)
            return self._last

    def close(self) -> None:
        with self._lock:
            self.sampler.close()


def rows(reading: LagReading) -> list[dict[str, Any]]:
    """The page's lag table: per group, source and topic, the worst partition's status and the
    largest lags (`backbone lag`'s "per group" table), and how many partitions lag."""
    return [{"group": g.group, "source": "postgres (authoritative)" if g.source == "postgres" else "kafka",
             "topic": g.topic, "status": g.status.value, "lag_records": g.lag_records, "lag_seconds": g.lag_seconds,
             "lagging": sum(1 for v in g.partitions if v.lag_records), "partitions": len(g.partitions),
             "reason": next((v.reason for v in g.partitions if v.status == g.status and v.reason), "")}
            for g in reading.groups]
