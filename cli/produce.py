"""`backbone simulate` and `backbone publish FILE`: put order events and marks on Kafka."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from backbone.codec.avro import AvroCodec
from backbone.gc_policy import fewer_collections
from backbone.kafka.producer import KafkaProducer
from cli.common import console, err_console, kafka_reachable, load_settings, print_json, user_errors
from producers.publisher import EventPublisher, FileImport, RefusedLine, record_limit
from producers.simulator import SimulationConfig, session_start, simulate
from projections.replay import parse_time


def _progress(disable: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]:>9} ev/s"), TimeRemainingColumn(), console=err_console,
                    disable=disable, transient=False)


def _summary(publisher: EventPublisher, extra: dict[str, int | float], as_json: bool,
             json_only: dict[str, object] | None = None) -> None:
    data = {**extra, **(json_only or {}), "by_type": dict(sorted(publisher.by_type.items())),
            "by_partition": {str(k): v for k, v in sorted(publisher.by_partition.items())}}
    if as_json:
        print_json(data)
        return
    for key, value in extra.items():
        console.print(f"{key}: {value}")
    table = Table("event type", "count")
    for kind, count in sorted(publisher.by_type.items()):
        table.add_row(kind, str(count))
    console.print(table)
    parts = Table("partition", "records")
    for p, count in sorted(publisher.by_partition.items()):
        parts.add_row(str(p), str(count))
    console.print(parts)


def simulate_cmd(
    events: Annotated[int, typer.Option("--events", "-n", min=1, help="records to produce (orders + marks)")] = 10_000,
    rate: Annotated[float, typer.Option(help="records per second; 0 = as fast as possible")] = 0.0,
    seed: Annotated[int, typer.Option(help="same seed, identical events (ids included)")] = 7,
    symbols: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
    accounts: Annotated[int, typer.Option(min=1, max=10_000)] = 10,
    start: Annotated[str | None, typer.Option(help="event time of the first record, ISO-8601 with its UTC "
                                              "offset like --as-of; default: UTC midnight today, or yesterday if "
                                              "the session would not have ended an hour ago, so the market-data "
                                              "retention keeps its marks")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Simulate a realistic, seeded trading session and produce it to Kafka.

    Accounts trade symbols with skewed activity: limit and market orders, partial fills,
    cancels, replaces, rejects, expiries, late fills, busts and corrections, and marks for
    every symbol. Ends with counts per event type and per partition.
    """
    settings = load_settings()
    with user_errors():
        start_utc = simulation_start(start, events, datetime.now(tz=UTC))
    cfg = SimulationConfig(events=events, seed=seed, symbols=symbols, accounts=accounts, start=start_utc)
    kafka_reachable(settings, writes=[settings.topic_orders, settings.topic_marketdata])
    # the simulator's and validator's order books keep what they allocate (backbone.gc_policy)
    with user_errors(), fewer_collections(), KafkaProducer(settings) as producer:
        publisher = EventPublisher(settings, producer, AvroCodec())
        t0 = time.monotonic()
        with _progress(quiet or json_out) as progress:
            task = progress.add_task("simulate", total=events, rate="-")
            for i, record in enumerate(simulate(cfg), start=1):
                publisher.publish(record)
                if rate > 0:
                    ahead = t0 + i / rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                if i % 2000 == 0 or i == events:
                    elapsed = time.monotonic() - t0
                    progress.update(task, completed=i, rate=f"{i / elapsed:,.0f}" if elapsed else "-")
        producer.flush()
    elapsed = time.monotonic() - t0
    _summary(publisher, {"produced": sum(publisher.by_type.values()), "seconds": round(elapsed, 2)}, json_out)


def simulation_start(start: str | None, events: int, now: datetime) -> datetime:
    """`--start` as a UTC time; without it, a session recent enough for the market-data retention."""
    return session_start(now, events) if start is None else parse_time(start)


def publish_cmd(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="JSON Lines in the canonical JSON form; - is not supported")],
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON, every refused line "
                                                          "with its number, reason and detail")] = False,
) -> None:
    """Publish events from a JSON Lines file (the canonical JSON form, see docs/events.md).

    Each line is checked on its own: JSON and fields (decimals are strings, never JSON numbers;
    ids, symbols and accounts not blank), what the Avro schema carries, and the size of one
    Kafka record (the producer's message.max.bytes, lowered to fit each topic's
    max.message.bytes as the broker reports it). An order the file holds from its first event
    (seq 1) goes through the order state machine too. An order the file continues (its first
    event here has seq > 1: its start is already in the log) is published without that check:
    the projector checks it against the log and dead-letters what breaks its lifecycle.

    A refused line is reported with its line number, reason and detail, sent to the dead-letter
    topic with them in headers, and the lines after it are published. Exit code 1 if any line
    was refused.
    """
    settings = load_settings()
    kafka_reachable(settings, writes=[settings.topic_orders, settings.topic_marketdata, settings.topic_deadletter])
    # the validator's order book keeps what it allocates (backbone.gc_policy)
    with user_errors(), fewer_collections():
        limit = record_limit(settings)
        fits: dict[str, Any] = {"message.max.bytes": limit}
        with KafkaProducer(settings, **fits) as producer:
            job = FileImport(settings, producer, AvroCodec(), file.name, limit)
            with file.open("rb") as fh:
                for lineno, raw in enumerate(fh, start=1):
                    _say_refused(file.name, job.line(lineno, raw))
            _say_refused(file.name, job.finish())
    refused = sorted(job.refused, key=lambda r: r.line)
    _summary(job.publisher, {"published": sum(job.publisher.by_type.values()), "rejected": len(refused),
                             "duplicates": job.validating.duplicates,
                             "continued_orders": len(job.validating.continued), "record_limit_bytes": limit},
             json_out, {"rejected_by_reason": job.rejected_by_reason,
                        "rejected_lines": [dataclasses.asdict(r) for r in refused]})
    if refused and not json_out:
        console.print("rejected by reason: " + json.dumps(job.rejected_by_reason))
    if refused:
        raise typer.Exit(code=1)


def _say_refused(name: str, refused: list[RefusedLine]) -> None:
    for r in refused:
        err_console.print(f"{name}:{r.line}: {r.reason}: {r.detail}", markup=False)
