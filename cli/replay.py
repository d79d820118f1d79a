"""`backbone replay`: re-run a projection over a range of the log, into a scratch schema or as a
dry run. Also the pieces `state` and `checkpoints` share (progress bar, database errors)."""

from __future__ import annotations

from typing import Annotated

import typer

from backbone.gc_policy import fewer_collections
from cli import tables
from cli.common import console, load_settings, print_json, user_errors
from cli.replaying import (
    JsonOpt,
    ProgressBar,
    ProjectionOpt,
    QuietOpt,
    check_into,
    expired_line,
    folding,
    plan_json,
    write_schema,
)
from projections import replay as rp
from projections.parallel import Folded
from projections.trading import NAME

# -- backbone replay ------------------------------------------------------------------------------

def replay_cmd(
    projection: ProjectionOpt = NAME,
    from_offset: Annotated[str | None, typer.Option(
        "--from-offset", help="P:O[,P:O…] (orders topic) or TOPIC:P:O with TOPIC orders|marketdata|<name>: "
                              "replay only these partitions, each from its offset")] = None,
    from_timestamp: Annotated[str | None, typer.Option(
        "--from-timestamp", help="every partition from its first record at or after this time (ISO-8601 "
                                 "with its UTC offset; event time, to the microsecond)")] = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="every partition from offset 0, "
                                                 "empty state, no snapshot")] = False,
    to_offset: Annotated[str | None, typer.Option("--to-offset", help="P:O[,P:O…]: stop before these offsets "
                                                  "(exclusive, like a checkpoint)")] = None,
    to_timestamp: Annotated[str | None, typer.Option("--to-timestamp", help="stop at the as-of cut of this "
                                                     "time: before the first record after it (event time, to the "
                                                     "microsecond); not before --from-timestamp")] = None,
    into: Annotated[str | None, typer.Option("--into", help="write the resulting state into this new schema")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report only: write nothing anywhere")] = False,
    processes: Annotated[int | None, typer.Option("--processes", min=1, max=64, help="with --dry-run: processes "
                                                  "that fold the partitions (default BACKBONE_REPLAY_PROCESSES, "
                                                  "2); --into folds in this one")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Replay a projection over a range of the log, in memory, then write the resulting state
    into a fresh schema (--into) or only report (--dry-run).

    The state at the start of the range comes from the newest snapshot at or before it plus the
    records in between (--from-beginning: an empty state at offset 0). The report gives records,
    events/s and dead letters by reason for the range. Live tables, live checkpoints and the
    live consumer group are never touched. A start below the log start (lost to retention) or
    beyond the end is refused. With --dry-run, 20,000 records or more are split by partition
    between --processes processes. See docs/replay.md.
    """
    # what the run builds is kept until exit: no collection should rescan it (backbone.gc_policy)
    with fewer_collections():
        settings = load_settings()
        with user_errors():
            if (into is None) == (not dry_run):
                raise rp.ReplayRefused("give exactly one of --into SCHEMA (write the state there) or --dry-run")
            from_offsets = None if from_offset is None else rp.parse_offsets(
                from_offset, settings.topic_orders, settings.topic_marketdata)
            to_offsets = None if to_offset is None else rp.parse_offsets(
                to_offset, settings.topic_orders, settings.topic_marketdata)
            from_time = None if from_timestamp is None else rp.parse_time(from_timestamp)
            to_time = None if to_timestamp is None else rp.parse_time(to_timestamp)
            rp.check_time_range(from_time, to_time)  # a usage error, before any service is asked
            check_into(into)
            # --into writes one process's whole state
            with folding(settings, projection, processes, split=into is None) as (workers, r):
                plans = r.plan_replay(from_offsets=from_offsets, from_time=from_time, from_beginning=from_beginning,
                                      to_offsets=to_offsets, to_time=to_time)
                result: rp.ReplayResult | Folded
                with ProgressBar("replay", sum(p.to_read for p in plans), quiet or json_out) as bar:
                    result = workers.fold(r, plans, progress=bar) if into is None else r.run(plans, progress=bar)
                written = None
                if into is not None:
                    assert isinstance(result, rp.ReplayResult)
                    written = write_schema(settings, r.engine, result, into)
        _report(plans, result, into, written, json_out)


def _report(plans: list[rp.PartitionPlan], result: rp.ReplayResult | Folded, into: str | None,
            written: int | None, json_out: bool) -> None:
    processes = result.processes if isinstance(result, Folded) else 1
    summary = {
        "dry_run": into is None, "into": into, "rows_written": written, "processes": processes,
        "records_read": result.records, "replayed": result.replayed, "caught_up": result.records - result.replayed,
        "expired": result.expired,
        "seconds": round(result.read_seconds, 3), "snapshot_seconds": round(result.snapshot_seconds, 3),
        "events_per_s": round(result.events_per_s()),
        "dead_letters": dict(sorted(result.dead_letters.items())),
        "partitions": [plan_json(result.reports[p.tp]) | {
            "caught_up": result.reports[p.tp].caught_up, "replayed": result.reports[p.tp].replayed,
            "dead_letters": dict(sorted(result.reports[p.tp].dead_letters.items()))} for p in plans],
        "first_dead_letters": [{"record": w, "reason": r, "detail": d} for w, r, d in result.letters[:20]],
    }
    if json_out:
        print_json(summary)
        return
    columns: list[tables.Column | str] = [
        "topic", "partition", tables.column("snapshot", tables.ID),
        *(tables.column(h, tables.COUNT) for h in ("state from", "replay from", "to")), "expired",
        *(tables.column(h, tables.COUNT) for h in ("caught up", "replayed", "dead letters"))]
    console.print(tables.table(columns, (
        (p.topic, p.partition, None if p.snapshot is None else p.snapshot.id, p.start, rep.begin, rep.end,
         rep.expired, rep.caught_up, rep.replayed, sum(rep.dead_letters.values()))
        for p, rep in ((p, result.reports[p.tp]) for p in plans))))
    expired = expired_line(result.reports[p.tp] for p in plans)
    if expired:
        console.print(expired)
    by = f" by {processes} processes" if processes > 1 else ""
    console.print(f"replayed {result.replayed:,} records (+{result.records - result.replayed:,} read to rebuild the "
                  f"state at the start, from snapshots or offset 0){by} in {result.read_seconds:.2f} s, "
                  f"{result.events_per_s():,.0f} ev/s")
    if result.dead_letters:
        by_reason = ", ".join(f"{k} {v:,}" for k, v in sorted(result.dead_letters.items()))
        console.print(f"dead letters by reason: {by_reason}")
        for where, reason, _detail in result.letters[:5]:
            console.print(f"  {where}: {reason}", markup=False)
    if into is None:
        console.print("dry run: nothing written")
    else:
        console.print(f"wrote {written:,} rows into schema {into}: e.g. select * from {into}.positions_pnl")
