"""`backbone checkpoints list | create | prune`: the projection snapshots that `state --as-of`
and `replay` start from (the projector takes them every N events or T seconds)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from backbone.db import psycopg_connection
from backbone.errors import BackboneError
from backbone.kafka.reader import LogReader
from cli import tables
from cli.common import canonical_value, console, kafka_reachable, load_settings, print_json, user_errors
from cli.replaying import JsonOpt, ProgressBar, QuietOpt, database, expired_line, folding
from consumers.checkpoints import read_checkpoints
from projections import replay as rp
from projections import snapshots
from projections.parallel import snapshot_as_of
from projections.snapshot_jobs import snapshot_live
from projections.trading import NAME

app = typer.Typer(help="Projection snapshots (checkpoints of state) for point-in-time queries and replay.",
                  no_args_is_help=True)

ProjectionFilter = Annotated[str | None, typer.Option("--projection", help="only this projection")]


def _topic(settings: Any, topic: str | None) -> str | None:
    return {"orders": settings.topic_orders, "marketdata": settings.topic_marketdata}.get(topic or "", topic)


def _meta_json(s: snapshots.SnapshotMeta, checkpoint: int | None = None) -> dict[str, Any]:
    return {"id": s.id, "projection": s.projection, "topic": s.topic, "partition": s.partition,
            "next_offset": s.next_offset, "max_timestamp": canonical_value(s.max_timestamp),
            "events_covered": s.events_covered, "bytes": s.size, "created_at": canonical_value(s.created_at),
            "checkpoint": checkpoint, "change_on": s.base_next_offset}


@app.command("list")
def list_cmd(
    projection: ProjectionFilter = None,
    topic: Annotated[str | None, typer.Option("--topic", help="orders, marketdata or a topic name")] = None,
    partition: Annotated[int | None, typer.Option("--partition", min=0)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Snapshots with their next offset, the snapshot each change is taken on (change_on: its
    next offset; empty for a whole one), the highest record timestamp they cover, events
    covered, size, and the projection's live checkpoint of that partition."""
    settings = load_settings()
    with user_errors():
        with database(settings) as engine, engine.connect() as sa_conn:
            conn = psycopg_connection(sa_conn)
            found = snapshots.list_snapshots(conn, projection, _topic(settings, topic), partition)
            checkpoints = {name: read_checkpoints(conn, name) for name in {s.projection for s in found}}
    rows = [_meta_json(s, checkpoints[s.projection].get((s.topic, s.partition))) for s in found]
    if json_out:
        print_json(rows)
        return
    console.print(tables.table(["id", "projection", "topic", "partition", "next_offset", "change_on",
                                "max_timestamp", "events_covered", "bytes", "created_at", "checkpoint"], rows))
    console.print(f"{len(rows)} snapshot(s)")


@app.command("create")
def create_cmd(
    projection: Annotated[str, typer.Option("--projection", help="projection name")] = NAME,
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="snapshot the state as of this time (ISO-8601 with its UTC offset; each partition up "
                        "to its first record after it, by event time to the microsecond), rebuilt from snapshots "
                        "and the log, instead of the live state at the checkpoints")] = None,
    processes: Annotated[int | None, typer.Option("--processes", min=1, max=64, help="with --as-of: processes "
                                                  "that fold and serialize the partitions (default "
                                                  "BACKBONE_REPLAY_PROCESSES, 2)")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Take a snapshot of every partition now.

    Without --as-of: the live projection's state at its checkpoints, read from the live tables
    in one consistent transaction (rows and checkpoints commit together), inserted in that same
    transaction; of an orders partition, what changed since its newest snapshot (change_on),
    every BACKBONE_SNAPSHOT_WHOLE_EVERY-th one whole. With --as-of T: the state at T's cut,
    rebuilt from the newest snapshots and the log (pre-compute a point that will be asked for
    often, e.g. the close). A partition whose snapshot at that offset exists already is left
    alone.
    """
    settings = load_settings()
    expired = None
    with user_errors():
        if as_of is None:
            kafka_reachable(settings)
            with database(settings) as engine, LogReader(settings) as reader:
                taken = snapshot_live(settings, engine, reader, projection=projection)
        else:
            when = rp.parse_time(as_of)
            with folding(settings, projection, processes) as (workers, r):
                plans = r.plan_as_of(when)
                with ProgressBar("snapshot", sum(p.to_read for p in plans), quiet or json_out) as bar:
                    taken, result = snapshot_as_of(r, when, plans=plans, progress=bar,
                                                      fold=workers.fold if workers.processes > 1 else None)
                expired = expired_line(result.reports[p.tp] for p in plans)
        if not taken:
            raise BackboneError(f"projection {projection} has no checkpoints yet: nothing to snapshot "
                                "(run `backbone project run` first, or give --as-of)")
    rows = [{"topic": t.topic, "partition": t.partition, "next_offset": t.next_offset, "action": t.action,
             "max_timestamp": canonical_value(t.max_timestamp), "events_covered": t.events_covered, "bytes": t.size,
             "expired": t.expired, "change_on": t.change_on} for t in taken]
    if json_out:
        print_json(rows)
        return
    console.print(tables.table(["topic", "partition", "next_offset", "action", "change_on", "max_timestamp",
                                "events_covered", "bytes", "expired"], rows))
    if expired:
        console.print(expired)
    created = sum(1 for t in taken if t.action == "created")
    console.print(f"{created} snapshot(s) created, {len(taken) - created} partition(s) unchanged")


@app.command("prune")
def prune_cmd(
    projection: ProjectionFilter = None,
    keep: Annotated[int, typer.Option("--keep", min=0, help="always keep this many newest snapshots per "
                                      "partition")] = 2,
    before: Annotated[str | None, typer.Option("--before", help="delete only snapshots covering nothing at or "
                                               "after this time (max_timestamp earlier)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only list what would be deleted")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Delete old snapshots: all but the --keep newest of each partition, or with --before only
    those among them that cover nothing at or after that time. Point-in-time queries before the
    oldest kept snapshot then replay from further back (or from offset 0)."""
    settings = load_settings()
    with user_errors():
        cutoff = None if before is None else rp.parse_time(before)
        with database(settings) as engine, engine.begin() as sa_conn:
            conn = psycopg_connection(sa_conn)
            doomed = snapshots.prune_candidates(snapshots.list_snapshots(conn, projection), keep=keep,
                                                before=cutoff)
            deleted = 0 if dry_run else snapshots.delete(conn, [s.id for s in doomed])
    if json_out:
        print_json({"dry_run": dry_run, "deleted": deleted, "snapshots": [_meta_json(s) for s in doomed]})
        return
    for s in doomed:
        console.print(f"{'would delete' if dry_run else 'deleted'} snapshot {s.id}: {s.projection} "
                      f"{s.topic}[{s.partition}]@{s.next_offset}", markup=False)
    console.print(f"dry run: {len(doomed)} snapshot(s) would be deleted" if dry_run
                  else f"{deleted} snapshot(s) deleted")
