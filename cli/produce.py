"""`backbone simulate` and `backbone publish FILE`: put order events and marks on Kafka."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from backbone.codec import json_form
from backbone.codec.avro import AvroCodec, EncodeError
from backbone.errors import InvalidRecord
from backbone.gc_policy import fewer_collections
from backbone.kafka.producer import KafkaProducer
from cli.common import console, err_console, kafka_reachable, load_settings, print_json, user_errors
from producers import deadletter
from producers.deadletter import DeadLetter
from producers.publisher import EventPublisher, ValidatingPublisher, timestamp_ms
from producers.simulator import DEFAULT_START, SimulationConfig, simulate
from projections.replay import parse_time


def _progress(disable: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]:>9} ev/s"), TimeRemainingColumn(), console=err_console,
                    disable=disable, transient=False)


def _summary(publisher: EventPublisher, extra: dict[str, int], as_json: bool) -> None:
    data = {**extra, "by_type": dict(sorted(publisher.by_type.items())),
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
    start: Annotated[str | None, typer.Option(help="event time of the first record, ISO-8601 like --as-of "
                                              "(no offset: UTC); default " + DEFAULT_START.isoformat())] = None,
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
        start_utc = DEFAULT_START if start is None else parse_time(start)
    cfg = SimulationConfig(events=events, seed=seed, symbols=symbols, accounts=accounts, start=start_utc)
    kafka_reachable(settings)
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


def publish_cmd(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="JSON Lines in the canonical JSON form; - is not supported")],
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Publish events from a JSON Lines file (the canonical JSON form, see README).

    Every invalid line (bad JSON, missing field, bad decimal, unknown enum, a state-machine
    violation within the file) is reported with its line number and reason and sent to the
    dead-letter topic with the reason in headers; valid lines are published. Exit code 1 if
    any line was invalid.
    """
    settings = load_settings()
    kafka_reachable(settings)
    rejected: Counter[str] = Counter()
    # the simulator's and validator's order books keep what they allocate (backbone.gc_policy)
    with user_errors(), fewer_collections(), KafkaProducer(settings) as producer:
        publisher = EventPublisher(settings, producer, AvroCodec())
        validating = ValidatingPublisher(publisher)
        with file.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                source = f"{file.name}:{lineno}"
                try:
                    record = json_form.loads(raw.decode("utf-8"))
                    validating.publish(record)
                    continue
                except UnicodeDecodeError as e:
                    reason, detail = "invalid_json", f"not UTF-8: {e}"
                except json_form.JsonFormError as e:
                    reason = "invalid_json" if e.field is None else f"invalid_field:{e.field}"
                    detail = str(e)
                except InvalidRecord as e:
                    reason, detail = e.reason, str(e)
                except EncodeError as e:  # valid JSON the Avro schema cannot carry (a lone surrogate, ...)
                    reason = "encode_error" if e.field is None else f"invalid_field:{e.field}"
                    detail = str(e)
                rejected[reason] += 1
                err_console.print(f"{source}: {reason}: {detail}", markup=False)
                deadletter.send(producer, settings.topic_deadletter, DeadLetter(
                    reason=reason, detail=detail, source=source, stage="publish", payload=raw.rstrip(b"\n"),
                    timestamp_ms=timestamp_ms(datetime.now(tz=UTC))))
        producer.flush()
    total_rejected = sum(rejected.values())
    _summary(publisher, {"published": sum(publisher.by_type.values()), "rejected": total_rejected,
                         "duplicates": validating.duplicates}, json_out)
    if rejected and not json_out:
        console.print("rejected by reason: " + json.dumps(dict(rejected)))
    if total_rejected:
        raise typer.Exit(code=1)
