"""`backbone project run`: the long-running projector (orders, positions, P&L, marks; or the
audit archive)."""

from __future__ import annotations

import logging
import signal
from contextlib import nullcontext
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

import typer

from backbone import db
from backbone.errors import DatabaseError
from backbone.kafka import health
from backbone.settings import Settings
from cli.common import console, err_console, kafka_reachable, load_settings, print_json, user_errors
from consumers.config import LoopConfig, RunStats, default_group_id
from consumers.metrics import ProjectorMetrics
from consumers.projection import Projection
from consumers.runtime import ProjectionLoop
from projections import audit, trading

app = typer.Typer(help="Run projections from Kafka into Postgres.", no_args_is_help=True)


class ProjectionName(StrEnum):
    trading = trading.NAME
    audit = audit.NAME


@dataclass
class StopFlag:
    """Set by SIGTERM/SIGINT; the loop finishes its batch, commits and exits 0."""

    requested: bool = False

    def __call__(self) -> bool:
        return self.requested

    def install(self) -> None:
        def handler(signum: int, _frame: object) -> None:
            self.requested = True
            err_console.print(f"{signal.Signals(signum).name}: finishing the current batch…")

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def _status_line(stats: RunStats) -> None:
    waiting = f"  waiting for {stats.waiting_for}" if stats.waiting_for else ""
    lag = "?" if stats.lag is None else stats.lag
    console.print(f"events {stats.events:,}  {stats.rate():,.0f} ev/s  lag {lag}"
                  f"  dead letters {stats.dead_letters}  resent skipped {stats.duplicates}  batches {stats.batches}"
                  f"  db retries {stats.db_retries}{waiting}")


def _check_schema(settings: Settings) -> None:
    """Reachable and migrated, or a one-line error now (exit 3 or 4 unreachable or refused)."""
    current, head = db.current(settings), db.head_revision()
    if current != head:
        raise DatabaseError(f"the database schema is at revision {current or 'none'}, the projector needs {head}: "
                            "run `backbone db upgrade`")


@app.command()
def run(
    projection_name: Annotated[ProjectionName, typer.Option(
        "--projection", help="trading: orders, positions, P&L, marks; audit: the append-only audit archive "
                             "(docs/audit.md), in a group and checkpoints of its own")] = ProjectionName.trading,
    group: Annotated[str | None, typer.Option(
        help="consumer group id; default: backbone-<projection>-<orders topic>+<marketdata topic>")] = None,
    instance_id: Annotated[str | None, typer.Option(
        help="static group membership id: a restarted process with the same id takes its partitions back "
             "without waiting for a session timeout")] = None,
    until_caught_up: Annotated[bool, typer.Option("--until-caught-up",
                                                  help="exit once every partition reached its end offset")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000, help="records per batch/transaction")] = 5000,
    status_interval: Annotated[float, typer.Option(min=0.5, help="seconds between status lines")] = 10.0,
    mirror_interval: Annotated[float, typer.Option(
        min=0.0, help="seconds between mirrors of the committed offsets to the group in Kafka (for lag tools; "
                      "also on revoke and on exit); 0: after every batch")] = 1.0,
    overlap: Annotated[bool, typer.Option(
        "--overlap/--no-overlap",
        help="fold the next batch while Postgres runs the last one's statements (its commit follows the fold); "
             "--no-overlap: commit each batch before polling again")] = True,
    max_seconds: Annotated[float | None, typer.Option(help="stop after this long")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="serve Prometheus metrics on this port (/metrics, all interfaces): records and "
                               "dead letters counted, batch durations, last commit time, partitions owned")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the final stats as JSON")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Project trading.orders and trading.marketdata into Postgres, exactly once.

    Each batch's rows and its next offsets commit in one Postgres transaction; refused records
    go to the dead-letter topic and table. SIGTERM/SIGINT finish the batch, commit and exit 0.
    With --projection audit: archive every record, refused ones included, in audit_records.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    # the trading projection relays its dead letters to their topic; the audit one only reads
    kafka_reachable(settings, reads=[settings.topic_orders, settings.topic_marketdata],
                    writes=[settings.topic_deadletter] if projection_name is not ProjectionName.audit else [])
    stop = StopFlag()
    stop.install()
    with user_errors():
        _check_schema(settings)
        engine = db.make_engine(settings)
        projection: Projection = (audit.AuditProjection(settings) if projection_name is ProjectionName.audit
                      else trading.TradingProjection(settings))
        try:
            config = LoopConfig(group_id=group or default_group_id(projection.name, projection.topics()),
                                instance_id=instance_id, batch_size=batch_size, status_interval_s=status_interval,
                                mirror_interval_s=mirror_interval, overlap=overlap)
            health.check_access(settings, group=config.group_id)  # refused, the group would be retried for ever
            metrics = ProjectorMetrics(projection.name) if metrics_port is not None else None
            loop = ProjectionLoop(settings, projection, engine, config,
                                  stop_requested=stop, on_status=None if json_out else _status_line,
                                  on_commit=metrics.on_commit if metrics else None)
            with metrics.serve(loop, metrics_port) if metrics and metrics_port else nullcontext():
                stats = loop.run(until_caught_up=until_caught_up, max_seconds=max_seconds)
        finally:
            engine.dispose()
    summary = {"projection": projection.name, "events": stats.events, "batches": stats.batches,
               "dead_letters": stats.dead_letters, "dead_letters_relayed": stats.dead_letters_relayed,
               "duplicates_skipped": stats.duplicates,
               "rows_written": stats.rows_written,
               "db_retries": stats.db_retries, "fenced_batches": stats.fenced, "events_per_s": round(stats.rate()),
               "lag": stats.lag, "expired_skipped": stats.expired_skipped,
               "partitions_loaded": stats.partitions_loaded, "partitions_kept": stats.partitions_kept,
               "batches_overlapped": stats.overlapped}
    if json_out:
        print_json(summary)
    else:
        _status_line(stats)
        console.print("stopped cleanly" if stop.requested else "done")
