"""A bounded projector's snapshots are built by a child process its loop starts and polls
between batches (docs/live-state.md): the loop goes on consuming while a build runs, a build
that fails is reported and never stops the projector, and close leaves no child behind."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
from support import publish, rows
from tape import Tape

from backbone import db
from backbone.domain.events import Side
from backbone.settings import Settings
from consumers.config import LoopConfig, RunStats
from consumers.runtime import ProjectionLoop
from projections.live_snapshots import SnapshotBuild
from projections.trading import TradingProjection

pytestmark = pytest.mark.integration


class Orders:
    """Filled orders on a few symbols, published a chunk at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.tape, self.n = settings, Tape(), 0

    def publish(self, count: int) -> None:
        start = len(self.tape.records)
        for _ in range(count):
            self.n += 1
            order_id = f"O{self.n}"
            self.tape.order(order_id, f"ACC{self.n % 3}", ("GOLD", "SILVER", "COPPER")[self.n % 3], Side.BUY, 5,
                            price=100)
            self.tape.fill(order_id, 5, Decimal("100.5"), commission="0.10")
        publish(self.settings, self.tape.records[start:])


def alive(pid: int) -> bool:
    """Whether `pid` is a process that has not been reaped (a zombie is a child left behind too)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def run(settings: Settings, projection: TradingProjection, group: str, stop: Callable[[ProjectionLoop], bool], *,
        until_caught_up: bool = False) -> RunStats:
    """The projector in this process, in small batches, asking `stop` between batches."""
    engine = db.make_engine(settings)
    try:
        loop = ProjectionLoop(settings, projection, engine, LoopConfig(group_id=group, batch_size=20),
                              stop_requested=lambda: stop(loop))
        return loop.run(until_caught_up=until_caught_up, max_seconds=150)
    finally:
        engine.dispose()


def at_end(loop: ProjectionLoop) -> bool:
    return bool(loop.assigned) and loop.assigned <= loop.at_end


def test_a_due_snapshot_is_built_while_the_loop_goes_on(created_topics: Settings, names) -> None:
    settings = created_topics.with_overrides(snapshot_every_events=150, snapshot_every_seconds=0)
    orders = Orders(settings)
    orders.publish(200)  # 400 records: due after the first few batches
    projection = TradingProjection(settings)
    seen: dict[int, list[int]] = {}  # a build's pid: the batches committed at each look while it ran
    deadline = time.monotonic() + 120

    def stop(loop: ProjectionLoop) -> bool:
        build = projection._build
        if build is not None:
            seen.setdefault(build.process.pid, []).append(loop.stats.batches)
            if at_end(loop):
                orders.publish(20)  # records to consume for as long as the child runs
        ran_beside = any(b[-1] > b[0] for b in seen.values())
        return (ran_beside and projection.snapshots_taken > 0) or time.monotonic() > deadline

    run(settings, projection, names.group, stop)
    assert time.monotonic() <= deadline
    assert any(b[-1] > b[0] for b in seen.values()), "no batch committed while a build ran"
    assert projection.snapshot_failures == 0
    assert projection.snapshots_taken > 0
    snaps = rows(settings, "select topic, partition, next_offset from projection_snapshots "
                 "where projection = 'trading'")
    assert snaps and all(s["topic"] == settings.topic_orders and s["next_offset"] >= 150 for s in snaps)
    assert not any(alive(pid) for pid in seen)


def test_a_failing_build_is_reported_and_the_projector_goes_on(created_topics: Settings, names,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    settings = created_topics.with_overrides(snapshot_every_events=50, snapshot_every_seconds=0)
    # The loop writes with its own engine; the child reads the projection's settings, whose
    # database is a port nothing listens on.
    broken = settings.with_overrides(database_url="postgresql://backbone:backbone@127.0.0.1:1/backbone")
    orders = Orders(settings)
    orders.publish(150)
    projection = TradingProjection(broken)
    builds: list[SnapshotBuild] = []

    def stop(loop: ProjectionLoop) -> bool:
        if projection._build is not None and projection._build not in builds:
            builds.append(projection._build)
        return False

    with caplog.at_level(logging.WARNING, logger="projections.trading"):
        stats = run(settings, projection, names.group, stop, until_caught_up=True)
    assert stats.events == len(orders.tape.records)
    assert rows(settings, "select count(*) as n from orders")[0]["n"] == 150
    assert projection.snapshot_failures >= 1 and projection.snapshots_taken == 0
    assert rows(settings, "select count(*) as n from projection_snapshots")[0]["n"] == 0
    failures = [r.getMessage() for r in caplog.records if "not taken" in r.getMessage()]
    assert failures and "exit code 1" in failures[0] and "\n" not in failures[0]
    assert "OperationalError" in failures[0] and "backbone:backbone@" not in failures[0]
    assert builds and not any(alive(b.process.pid) for b in builds)


def test_close_terminates_a_build_that_outlives_its_bound(created_topics: Settings, names, monkeypatch) -> None:
    settings = created_topics.with_overrides(snapshot_every_events=50, snapshot_every_seconds=0)
    orders = Orders(settings)
    orders.publish(100)
    projection = TradingProjection(settings)
    monkeypatch.setattr("projections.trading.SNAPSHOT_CLOSE_S", 0.0)
    builds: list[SnapshotBuild] = []
    deadline = time.monotonic() + 120

    def stop(loop: ProjectionLoop) -> bool:
        build = projection._build
        if build is not None and build not in builds:
            builds.append(build)
        if not at_end(loop):
            return time.monotonic() > deadline
        if build is None:
            orders.publish(30)  # due again: a build is running when the loop stops
            return time.monotonic() > deadline
        return True

    run(settings, projection, names.group, stop)
    assert time.monotonic() <= deadline
    assert builds[-1].process.returncode == -15  # still running at close: terminated
    assert not any(alive(b.process.pid) for b in builds)
