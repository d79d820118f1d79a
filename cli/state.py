"""`backbone state --as-of T`: positions, P&L and open orders as they were at time T."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from backbone.gc_policy import fewer_collections
from backbone.kafka.partitioner import symbol_partition
from backbone.record_time import timestamp_ms
from cli import tables
from cli.common import canonical_value, console, load_settings, print_json, user_errors
from cli.replaying import (
    JsonOpt,
    ProgressBar,
    ProjectionOpt,
    QuietOpt,
    canonical_rows,
    check_into,
    expired_line,
    folding,
    plan_json,
    write_schema,
)
from projections import read_model
from projections import replay as rp
from projections.parallel import Folded
from projections.trading import NAME


def state_cmd(
    as_of: Annotated[str, typer.Option("--as-of", help="ISO-8601 time with its UTC offset, to the microsecond, "
                                       "e.g. 2026-11-20T10:15:00Z or 2026-11-20T05:15-05:00")],
    account: Annotated[str | None, typer.Option("--account", "-a", help="only this account")] = None,
    symbol: Annotated[str | None, typer.Option("--symbol", "-s", help="only this symbol (replays only its "
                                               "partition)")] = None,
    into: Annotated[str | None, typer.Option("--into", help="write the whole state into this new schema "
                                             "(tables + views) for SQL")] = None,
    include_flat: Annotated[bool, typer.Option("--include-flat", help="also positions with qty 0")] = False,
    no_snapshots: Annotated[bool, typer.Option("--no-snapshots", help="ignore snapshots: replay every "
                                               "partition from offset 0 (slow; for checking)")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="before printing, decode every part of the snapshots "
                                         "the tail did not need and refold every position from its fills, "
                                         "checking each against the summary its snapshot stored (costs about "
                                         "an eager restore; --into always does)")] = False,
    processes: Annotated[int | None, typer.Option("--processes", min=1, max=64, help="processes that fold the "
                                                  "partitions (default: BACKBONE_REPLAY_PROCESSES or 2); --into, "
                                                  "--verify and --symbol fold in this one")] = None,
    projection: ProjectionOpt = NAME,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The projection's state as of time T, rebuilt in memory: positions with P&L, P&L by
    account, and open orders.

    As of T = for each partition, every record before the first record after T, in offset
    order; a record is after T by its event time, to the microsecond. Starts from the newest
    snapshot at or before that cut and replays only the tail, without touching live tables or
    the live consumer group. Partitions are independent, so they are split between
    --processes processes (one core each). --into writes the state into a fresh schema with
    the same tables and views as public. See docs/replay.md.
    """
    # what the run builds is kept until exit: no collection should rescan it (backbone.gc_policy)
    with fewer_collections():
        settings = load_settings()
        with user_errors():
            when = rp.parse_time(as_of)
            check_into(into)
            if into is not None and (account or symbol or include_flat):
                raise rp.ReplayRefused("--into writes the whole state (every account, symbol and flat position): "
                                       "filter with SQL on the schema instead of --account/--symbol/--include-flat")
            whole_state = into is not None or verify
            result: rp.ReplayResult | None = None
            rows: Folded | None = None
            # one symbol is one partition of each topic: nothing to split
            with folding(settings, projection, processes, split=not (whole_state or symbol)) as (workers, r):
                only = r.symbol_partitions(symbol) if symbol else None
                plans = r.plan_as_of(when, partitions=only, use_snapshots=not no_snapshots)
                partition_count = len(r.reader.partitions(settings.topic_marketdata))
                with ProgressBar("as of", sum(p.to_read for p in plans), quiet or json_out) as bar:
                    if whole_state:
                        result = r.run(plans, progress=bar)
                    else:
                        rows = workers.fold(r, plans, account=account, symbol=symbol, include_flat=include_flat,
                                             progress=bar)
                if result is not None:
                    if verify:  # raises InvariantViolation where a refold disagrees with its snapshot
                        result.state.thaw_all()
                    written = None if into is None else write_schema(settings, r.engine, result, into)
        done = result if result is not None else rows
        assert done is not None
        reports, records, used = done.reports, done.records, done.processes if isinstance(done, Folded) else 1
        read_seconds, snapshot_seconds = done.read_seconds, done.snapshot_seconds
        header = {"as_of": canonical_value(when), "cut_timestamp_ms": timestamp_ms(when), "projection": projection,
                  "records_replayed": records, "expired": done.expired, "verified": verify or into is not None,
                  "seconds": round(read_seconds + snapshot_seconds, 3), "processes": used,
                  "partitions": [plan_json(r) | {"replayed": r.caught_up + r.replayed}
                                 for r in (reports[p.tp] for p in plans)]}
        if into is not None:
            if json_out:
                print_json(header | {"into": into, "rows_written": written})
            else:
                _summary(header, plans, records, read_seconds, snapshot_seconds, reports)
                console.print(f"wrote {written:,} rows into schema {into}: e.g. select * from {into}.positions_pnl")
            return
        if result is not None:  # --verify: the whole state is here
            positions = read_model.position_rows(result.state, account=account, symbol=symbol,
                                                 include_flat=include_flat)
            pnl = read_model.pnl_rows(read_model.position_rows(result.state, account=account, symbol=symbol))
            orders = read_model.open_order_rows(result.state, account=account, symbol=symbol)
        else:
            assert rows is not None
            positions, pnl, orders = rows.positions, rows.pnl, rows.open_orders
        # a symbol's marks live in the partition of its number: those that lost marks may show an older one, or none
        lost = {rep.plan.partition for rep in reports.values()
                if rep.plan.topic == settings.topic_marketdata and rep.expired}
        stale = sorted({row["symbol"] for row in positions if symbol_partition(row["symbol"], partition_count) in lost})
        if json_out:
            print_json(header | {"expired_mark_symbols": stale, "positions": canonical_rows(positions),
                                 "pnl_by_account": canonical_rows(pnl), "open_orders": canonical_rows(orders)})
            return
        _summary(header, plans, records, read_seconds, snapshot_seconds, reports, stale)
        _table("positions", positions, ["account", "symbol", "qty", "avg_px", "mark_price", "mark_time", "realized_pnl",
                                        "unrealized_pnl", "commission", "total_pnl"])
        _table("P&L by account", pnl, ["account", "open_positions", "realized_pnl", "unrealized_pnl", "commission",
                                       "total_pnl", "missing_marks"])
        _table("open orders", orders, ["order_id", "account", "symbol", "side", "status", "order_qty", "price",
                                       "cum_qty", "leaves_qty", "last_event_time"])


def _summary(header: dict[str, Any], plans: list[rp.PartitionPlan], records: int, read_seconds: float,
             snapshot_seconds: float, reports: dict[rp.TP, rp.PartitionReport], stale: list[str] | None = None) -> None:
    from_snap = sum(1 for p in plans if p.snapshot is not None)
    console.print(f"state as of {header['as_of']} (each partition up to its first record after it, by event time "
                  "to the microsecond)")
    by = f" by {header['processes']} processes" if header["processes"] > 1 else ""
    console.print(f"{len(plans)} partitions, {from_snap} from snapshots; replayed {records:,} records{by} in "
                  f"{read_seconds:.2f} s (+{snapshot_seconds:.2f} s loading snapshots)")
    expired = expired_line(reports[p.tp] for p in plans)
    if expired:
        console.print(expired + (f"; marks of {', '.join(stale)} may be stale or missing" if stale else ""))


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    console.print(tables.table(columns, rows, title=title))
    console.print(f"{len(rows)} row(s)")
