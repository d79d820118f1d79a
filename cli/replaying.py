"""What the commands that read the log share (`state`, `replay`, `checkpoints`): options,
database handling, the replayer and its helper processes, the progress bar, report lines."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import psycopg
import sqlalchemy as sa
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from backbone import db
from backbone.settings import Settings
from cli.common import canonical_value, err_console, kafka_reachable
from projections import ddl
from projections import replay as rp
from projections.parallel import PartitionWorkers

ProjectionOpt = Annotated[str, typer.Option("--projection", help="projection name (its snapshots and logic)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="canonical JSON (decimals as strings)")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


@contextmanager
def database_errors(settings: Settings) -> Iterator[None]:
    """Database failures as one-line user errors."""
    try:
        yield
    except (sa.exc.OperationalError, psycopg.OperationalError) as e:
        raise db.connection_error(e, settings.database_url_safe()) from e
    except (sa.exc.ProgrammingError, psycopg.ProgrammingError) as e:
        raise db.DatabaseError(f"{str(getattr(e, 'orig', e)).strip().splitlines()[0]}; "
                               "has `backbone db upgrade` run?") from e


@contextmanager
def database(settings: Settings) -> Iterator[sa.Engine]:
    """An engine for one command, disposed at the end; database failures as user errors."""
    engine = db.make_engine(settings)
    try:
        with database_errors(settings):
            yield engine
    finally:
        engine.dispose()


@contextmanager
def replayer(settings: Settings, projection: str) -> Iterator[rp.Replayer]:
    kafka_reachable(settings)  # after `folding` forked its helpers: no Kafka client before that
    with database(settings) as engine, rp.Replayer(settings, engine, projection=projection) as r:
        yield r


@contextmanager
def folding(settings: Settings, projection: str, processes: int | None, *,
            split: bool = True) -> Iterator[tuple[PartitionWorkers, rp.Replayer]]:
    """A replayer, and the helper processes that fold partitions beside it: `processes` (the
    --processes option, default BACKBONE_REPLAY_PROCESSES), or this one alone unless `split`.
    The helpers come first: they are forked before this process starts any Kafka client
    (projections.parallel)."""
    n = (processes or settings.replay_processes) if split else 1
    with PartitionWorkers(settings, n, projection=projection) as workers, replayer(settings, projection) as r:
        yield workers, r


class ProgressBar:
    """A rich progress bar on stderr: records read of the planned offsets, events/s and ETA."""

    def __init__(self, description: str, total: int, disable: bool) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]:>9} ev/s"), TimeRemainingColumn(),
                                 console=err_console, disable=disable or total == 0, transient=False)
        self.task = self.progress.add_task(description, total=total, rate="-")
        self.t0 = time.monotonic()

    def __enter__(self) -> ProgressBar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, done: int) -> None:
        elapsed = time.monotonic() - self.t0
        self.progress.update(self.task, completed=done, rate=f"{done / elapsed:,.0f}" if elapsed > 0 else "-")


def check_into(schema: str | None) -> None:
    """A bad --into schema name is refused before any work."""
    if schema is not None:
        try:
            ddl.check_schema_name(schema)
        except ValueError as e:
            raise rp.ReplayRefused(str(e)) from e
        if schema.startswith("rebuild_"):  # `backbone rebuild` drops leftover schemas of these names
            raise rp.ReplayRefused(f"schema name {schema!r}: names starting with rebuild_ belong to `backbone rebuild`")


def plan_json(report: rp.PartitionReport) -> dict[str, Any]:
    plan, s = report.plan, report.plan.snapshot
    return {"topic": plan.topic, "partition": plan.partition, "low": plan.low, "high": plan.high,
            "snapshot_id": s.id if s else None, "state_from_offset": plan.start, "from_offset": report.begin,
            "to_offset": report.end, "expired": report.expired,
            "expired_ranges": [{"from_offset": a, "to_offset": b} for a, b in report.expired_ranges]}


def expired_line(reports: Iterable[rp.PartitionReport]) -> str | None:
    """What expired before it was read, by partition; None when nothing did."""
    hit = [r for r in reports if r.expired_ranges]
    if not hit:
        return None
    where = ", ".join(f"{r.plan.topic}[{r.plan.partition}] offsets {a}..{b - 1}"
                      for r in hit for a, b in r.expired_ranges)
    return (f"{sum(r.expired for r in hit):,} records expired (retention) before they were read and are not "
            f"in the state, as the projector skips them: {where}")


def write_schema(settings: Settings, engine: sa.Engine, result: rp.ReplayResult, schema: str) -> int:
    with engine.begin() as sa_conn:
        return rp.write_into(db.psycopg_connection(sa_conn), result.state, schema,
                             reader_role=settings.database_readonly_role)


def canonical_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: canonical_value(v) for k, v in row.items()} for row in rows]
