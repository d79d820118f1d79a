"""`backbone topics …`: create and describe the backbone's Kafka topics."""

from __future__ import annotations

import typer
from rich.text import Text

from backbone.kafka import topics
from cli import tables
from cli.common import JsonFlag, console, err_console, kafka_reachable, load_settings, print_json, user_errors

app = typer.Typer(help="Create and inspect the Kafka topics.", no_args_is_help=True)
_PARTITIONS: list[tables.Column | str] = [
    "partition", tables.column("leader", tables.ID),
    *(tables.column(h, tables.TEXT) for h in ("replicas", "isr")),
    *(tables.column(h, tables.COUNT) for h in ("low", "high"))]


@app.command()
def create(json_out: JsonFlag = False) -> None:
    """Create trading.orders, .marketdata, .deadletter and .alerts (idempotent).

    An existing topic whose partitions, replication or configs differ from the settings is
    reported and the command exits 1: it is never silently accepted.
    """
    settings = load_settings()
    kafka_reachable(settings)
    with user_errors():
        reports = topics.create_topics(settings)
    if json_out:
        print_json([vars(r) for r in reports])
    else:
        for r in reports:
            console.print(f"{r.name}: {r.action}")
            for p in r.problems:
                err_console.print(f"  mismatch: {p}", markup=False)
    if any(r.problems for r in reports):
        raise typer.Exit(code=1)


@app.command()
def describe(json_out: JsonFlag = False) -> None:
    """Show partitions, leaders, replicas, ISR, configs and low/high offsets of each topic."""
    settings = load_settings()
    kafka_reachable(settings)
    with user_errors():
        described = topics.describe_topics(settings)
    if json_out:
        print_json([d.as_dict() for d in described])
        return
    for d in described:
        keys = ("retention.ms", "min.insync.replicas", "message.timestamp.type", "cleanup.policy")
        console.print(Text.assemble((d.name, "bold"), " " + " ".join(f"{k}={d.config.get(k)}" for k in keys)))
        console.print(tables.table(_PARTITIONS, ((p.partition, p.leader, str(p.replicas), str(p.isr), p.low, p.high)
                                                 for p in d.partitions)))
