"""The projector's Prometheus metrics, served on /metrics by `backbone project run --metrics-port N`.

    backbone_projector_records_total{projection}               records committed, refused ones included
    backbone_projector_dead_letters_total{projection,reason}   records refused, by dead-letter reason
    backbone_projector_batch_duration_seconds                  histogram: a batch from its fold to its commit
    backbone_projector_last_commit_timestamp_seconds           wall-clock time of the last commit
    backbone_projector_partitions_owned                        partitions assigned to this process

The counts come from the loop's own reports (its `on_commit` hook and `RunStats`), on the loop's
thread; the partitions owned are read when scraped. The metrics live in a registry of their
own, not prometheus_client's global one: two loops in one process never mix their series.
"""

from __future__ import annotations

import errno
from collections import Counter as Tally
from collections.abc import Iterator, Sized
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from backbone.errors import ConfigError
from consumers.runtime import ProjectionLoop

#: seconds; a batch of 5000 events commits in 10-100 ms on a laptop, a database outage stretches it
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ProjectorMetrics:
    """The metrics of one projection loop. Pass `on_commit` to the loop, then `serve` it."""

    def __init__(self, projection: str) -> None:
        self.projection = projection
        self.registry = CollectorRegistry()
        self.records = Counter("backbone_projector_records", "Records committed (dead letters included)",
                               ["projection"], registry=self.registry)
        self.records.labels(projection)  # 0 from the start, not absent until the first commit
        self.dead_letters = Counter("backbone_projector_dead_letters", "Records refused, by dead-letter reason",
                                    ["projection", "reason"], registry=self.registry)
        self.batch_duration = Histogram("backbone_projector_batch_duration_seconds",
                                        "Seconds from the start of a batch's fold to its commit",
                                        buckets=BATCH_BUCKETS, registry=self.registry)
        self.last_commit = Gauge("backbone_projector_last_commit_timestamp_seconds",
                                 "Wall-clock time of the last commit (Unix seconds)", registry=self.registry)
        self.partitions_owned = Gauge("backbone_projector_partitions_owned", "Partitions assigned to this process",
                                      registry=self.registry)
        self._loop: ProjectionLoop | None = None
        self._letters: Tally[str] = Tally()  # the loop's dead letters by reason already counted

    def on_commit(self, records: Sized, committed_at: float) -> None:
        """The loop's hook, after each batch's commit (its RunStats already count that batch's
        dead letters and duration)."""
        self.records.labels(self.projection).inc(len(records))
        self.last_commit.set(committed_at)
        if self._loop is None:
            return
        stats = self._loop.stats
        for reason, total in stats.dead_letter_reasons.items():
            if total > self._letters[reason]:
                self.dead_letters.labels(self.projection, reason).inc(total - self._letters[reason])
                self._letters[reason] = total
        self.batch_duration.observe(stats.last_batch_s)

    @contextmanager
    def serve(self, loop: ProjectionLoop, port: int, addr: str = "0.0.0.0") -> Iterator[None]:
        """Serve /metrics on `addr`:`port` while the block runs."""
        self._loop = loop
        self.partitions_owned.set_function(lambda: len(loop.assigned))
        try:
            # prometheus_client's server answers scrapes on a daemon thread of its own: the one
            # thread besides the loop's, and it only reads what the loop reports
            server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as e:
            reason = "in use" if e.errno == errno.EADDRINUSE else e.strerror
            raise ConfigError(f"--metrics-port {port}: cannot serve metrics on {addr}:{port}: {reason}") from None
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()
