"""`backbone lag`: every consumer group and projection on our topics, per partition and per group;
`backbone lag monitor`: the long-running evaluator with alerts, sinks and /metrics
(docs/operations.md#lag)."""

from __future__ import annotations

import json
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from backbone.errors import BackboneError
from cli.common import (
    EXIT_UNAVAILABLE,
    canonical_value,
    console,
    err_console,
    kafka_reachable,
    load_settings,
    print_json,
    user_errors,
)
from monitoring.evaluation import Window, group_verdicts
from monitoring.model import GroupVerdict, Status, Verdict
from monitoring.sampling import Sampler

app = typer.Typer(invoke_without_command=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="JSON instead of a table")]
WindowOpt = Annotated[float, typer.Option("--window", min=0.1, help="seconds of samples each partition is judged on")]

_STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.REWIND: "magenta", Status.STALL: "red",
          Status.STOP: "bold red", Status.ERR: "red"}


def _topics(settings: Any, topic: str | None) -> list[str] | None:
    if topic is None:
        return None
    return [{"orders": settings.topic_orders, "marketdata": settings.topic_marketdata}.get(topic, topic)]


def _source(source: str) -> str:
    return "postgres (authoritative)" if source == "postgres" else "kafka"


def _partition_json(v: Verdict) -> dict[str, Any]:
    return {"partition": v.partition, "committed": v.committed, "log_end": v.log_end, "lag_records": v.lag_records,
            "lag_seconds": canonical_value(v.lag_seconds), "rate": canonical_value(v.rate),
            "last_commit": canonical_value(v.last_commit), "status": v.status.value, "reason": v.reason}


def _groups_json(groups: list[GroupVerdict]) -> list[dict[str, Any]]:
    return [{"group": g.group, "source": g.source, "authoritative": g.source == "postgres", "topic": g.topic,
             "status": g.status.value, "lag_records": g.lag_records, "lag_seconds": canonical_value(g.lag_seconds),
             "partitions": [_partition_json(v) for v in g.partitions]} for g in groups]


def _cell(value: Any) -> str:
    value = canonical_value(value)
    return "-" if value is None else str(value)


def _tables(groups: list[GroupVerdict], problems: list[str]) -> Group:
    worst = Table("group", "source", "topic", "status", "max lag", "max lag s", title="per group (worst partition)")
    parts = Table("group", "source", "topic", "partition", "committed", "log end", "lag", "lag s", "rate/s",
                  "last commit", "status", "why", title="per partition")
    for g in groups:
        worst.add_row(g.group, _source(g.source), g.topic, Text(g.status.value, style=_STYLE[g.status]),
                      _cell(g.lag_records), _cell(g.lag_seconds))
        for v in g.partitions:
            parts.add_row(v.group, _source(v.source), v.topic, str(v.partition), _cell(v.committed), _cell(v.log_end),
                          _cell(v.lag_records), _cell(v.lag_seconds), _cell(v.rate), _cell(v.last_commit),
                          Text(v.status.value, style=_STYLE[v.status]), v.reason)
    lines: list[Any] = [worst, parts]
    lines.extend(Text(f"warning: {p}", style="yellow") for p in problems)
    return Group(*lines)


def _check_group(group: str | None, groups: list[GroupVerdict], topics: list[str]) -> None:
    if group is not None and not groups:
        raise BackboneError(f"unknown group {group!r}: no consumer group or projection has offsets on "
                            f"{', '.join(topics)}")


@app.callback()
def lag(
    ctx: typer.Context,
    group: Annotated[str | None, typer.Option("--group", help="only this consumer group (or projection)")] = None,
    topic: Annotated[str | None, typer.Option("--topic", help="orders, marketdata or a topic name")] = None,
    json_out: JsonOpt = False,
    watch: Annotated[bool, typer.Option("--watch", help="redraw a live table every --interval (Ctrl-C ends)")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help=(
        "seconds between the two samples a one-shot `lag` takes (so that rate and status mean something), or "
        "between redraws with --watch"))] = 1.0,
    window: Annotated[float | None, typer.Option("--window", min=0.1, help=(
        "seconds of samples each partition is judged on; default: --interval for a one-shot, 60 with --watch"))] = None,
) -> None:
    """Per partition: committed offset, log end (last stable offset), lag in records and seconds,
    consumption rate, last commit, status; per group the worst partition. A projection shows
    twice: its checkpoints in Postgres (authoritative) and their mirror in its Kafka group.
    A one-shot run takes two samples --interval apart."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load_settings()
    kafka_reachable(settings)
    with user_errors():
        sampler = Sampler(settings, topics=_topics(settings, topic), groups=[group] if group else None)
        try:
            if watch:
                _watch(sampler, group, interval, timedelta(seconds=window or 60.0), json_out)
                return
            samples = Window(timedelta(seconds=window or interval))
            samples.add(sampler.sample())
            time.sleep(interval)  # the second sample's distance from the first: what rate and status measure
            samples.add(sampler.sample())
            groups = group_verdicts(samples.verdicts())
            _check_group(group, groups, sampler.topics)
        finally:
            sampler.close()
    problems = sampler.problems
    if json_out:
        print_json({"groups": _groups_json(groups), "problems": problems})
    else:
        console.print(_tables(groups, []))
        for p in problems:
            err_console.print(f"warning: {p}")
    if problems:
        raise typer.Exit(code=EXIT_UNAVAILABLE)


def _watch(sampler: Sampler, group: str | None, interval: float, window: timedelta, json_out: bool) -> None:
    samples = Window(window)
    with Live(console=console, auto_refresh=False, transient=False) as live:
        try:
            while True:
                samples.add(sampler.sample())
                groups = group_verdicts(samples.verdicts())
                _check_group(group, groups, sampler.topics)
                if json_out:
                    sys.stdout.write(json.dumps({"groups": _groups_json(groups), "problems": sampler.problems}) + "\n")
                    sys.stdout.flush()
                else:
                    live.update(_tables(groups, sampler.problems), refresh=True)
                time.sleep(interval)  # the redraw's pace
        except KeyboardInterrupt:
            return


@app.command("monitor")
def monitor_cmd(
    rules: Annotated[Path | None, typer.Option("--rules", help="rules file (TOML); default: the shipped rules",
                                               exists=False, dir_okay=False)] = None,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="seconds between passes")] = 10.0,
    window: WindowOpt = 300.0,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", min=0, max=65535,
                                                     help="serve Prometheus /metrics on this port")] = None,
    webhook: Annotated[str | None, typer.Option("--webhook", help="POST each firing and resolution as JSON")] = None,
    alertmanager: Annotated[str | None, typer.Option("--alertmanager", help=(
        "Alertmanager base URL (e.g. http://localhost:9093): alerts go to its v2 API"))] = None,
    json_out: Annotated[bool, typer.Option("--json", help="one JSON event a line (alert, pass) instead of the "
                                                          "status line")] = False,
    passes: Annotated[int | None, typer.Option("--passes", min=1, help="stop after this many passes")] = None,
) -> None:
    """Evaluate every --interval: each partition over a --window of samples, the rules on each
    group's worst partition; alerts fire once after their `for`, resolve once (hysteresis), are
    kept in Postgres across restarts, and go to the alerts topic, the webhook and Alertmanager.
    Kafka or Postgres down: said on the status line, and evaluation goes on."""
    from monitoring.monitor import Monitor
    from monitoring.rules import load_rules
    from monitoring.sinks import AlertmanagerSink, KafkaSink, Sink, WebhookSink

    settings = load_settings()
    with user_errors():
        loaded = load_rules(rules)
        sinks: list[Sink] = [KafkaSink(settings, loaded)]
        if webhook:
            sinks.append(WebhookSink(webhook))
        if alertmanager:
            sinks.append(AlertmanagerSink(alertmanager))
        monitor = Monitor(settings, loaded, sinks=sinks, interval=timedelta(seconds=interval),
                          window=timedelta(seconds=window))
        if metrics_port is not None:
            try:
                monitor.metrics.serve(metrics_port)
            except OSError as e:
                raise BackboneError(f"cannot serve /metrics on port {metrics_port}: {e.strerror}") from e
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def said(report: Any) -> None:
        if json_out:
            for event in report.events():
                sys.stdout.write(json.dumps(event, default=str) + "\n")
        else:
            sys.stdout.write(report.line() + "\n")
        sys.stdout.flush()

    try:
        monitor.run(said, stop=lambda: bool(stopping), passes=passes)
    finally:
        monitor.close()
