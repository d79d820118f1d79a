"""Snapshots taken outside the projector (`backbone checkpoints create`): of the live tables at
their checkpoints (`live_snapshots`), or of the state at an as-of cut, built from snapshots and
the log."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import Engine

from backbone.kafka.reader import LogReader
from backbone.settings import Settings
from projections import snapshots
from projections.live_snapshots import Taken, snapshot_tables
from projections.replay import (
    PartitionPlan,
    Replayer,
    ReplayResult,
    ReportTotals,
    check_projection,
)
from projections.snapshots import Kind
from projections.trading import NAME


def snapshot_live(settings: Settings, engine: Engine, reader: LogReader, *, projection: str = NAME,
                  only: Collection[tuple[str, int]] | None = None) -> list[Taken]:
    """Snapshot every partition of the live projection (or those of `only`) at its checkpoint,
    from the live tables (`live_snapshots.snapshot_tables`)."""
    check_projection(projection)
    return snapshot_tables(settings, engine, reader, projection=projection, only=only)


def _to_snapshot(plans: Sequence[PartitionPlan], totals: ReportTotals) -> list[PartitionPlan]:
    """The plans whose cut holds records and is not already a snapshot's offset."""
    cut = {p.tp: totals.reports[p.tp].end for p in plans}
    return [p for p in plans if cut[p.tp] > 0 and not (p.snapshot and p.snapshot.next_offset == cut[p.tp])]


def snapshot_payloads(replayer: Replayer, plans: Sequence[PartitionPlan],
                      result: ReplayResult) -> dict[tuple[Kind, int], bytes]:
    """The payloads of the snapshots `plans` need at their cuts, serialized from `result`'s state."""
    return snapshots.serialize_many(result.state, [(replayer.kind(p.topic), p.partition)
                                                   for p in _to_snapshot(plans, result)])


def snapshot_rows(replayer: Replayer, plans: Sequence[PartitionPlan], totals: ReportTotals,
                  payloads: dict[tuple[Kind, int], bytes]) -> tuple[list[Taken], list[snapshots.NewSnapshot]]:
    """What happened to each partition (in plan order), and the snapshot rows to insert."""
    out, rows = [], []
    wanted = {p.tp for p in _to_snapshot(plans, totals)}
    for p in plans:
        end = totals.reports[p.tp].end
        if end == 0:
            out.append(Taken(p.topic, p.partition, 0, "empty"))
        elif p.tp not in wanted:
            assert p.snapshot is not None
            s = p.snapshot
            out.append(Taken(p.topic, p.partition, end, "exists", s.max_timestamp, s.events_covered, s.size))
        else:
            data = payloads[(replayer.kind(p.topic), p.partition)]
            rows.append(snapshots.NewSnapshot(replayer.projection, p.topic, p.partition, end,
                                              totals.max_timestamp(p.tp), totals.events_covered(p.tp), data))
            out.append(Taken(p.topic, p.partition, end, "created", totals.max_timestamp(p.tp),
                             totals.events_covered(p.tp), len(data), totals.reports[p.tp].expired))
    return out, rows
