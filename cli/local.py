"""`backbone local …`: a real Kafka broker and PostgreSQL server on the local host."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from backbone.local import security, stack
from cli.common import console, load_settings, print_json, user_errors

app = typer.Typer(help="Start, stop and inspect the local Kafka + PostgreSQL stack.", no_args_is_help=True)

ModeOpt = Annotated[str, typer.Option("--mode", help="native: run the servers here; docker: docker-compose.yml")]


def _mode(value: str) -> stack.Mode:
    if value == "native":
        return "native"
    if value == "docker":
        return "docker"
    raise typer.BadParameter("must be native or docker", param_hint="--mode")


def _print(statuses: list[stack.ServiceStatus], as_json: bool) -> None:
    if as_json:
        print_json([s.as_dict() for s in statuses])
        return
    table = Table("service", "state", "version", "address", "pid", "log")
    for s in statuses:
        table.add_row(s.name, Text("running", style="green") if s.running else Text("stopped", style="red"),
                      s.version, s.address,
                      str(s.pid or "-"), str(s.log_file))
    console.print(table)


@app.command()
def up(mode: ModeOpt = "native", json_out: Annotated[bool, typer.Option("--json")] = False,
       secure: Annotated[bool, typer.Option("--secure", help="Kafka with SASL_SSL (SCRAM-SHA-512) and ACLs, "
                                            "PostgreSQL with TLS only; see `local env`")] = False,
       brokers: Annotated[int | None, typer.Option(
           "--brokers", min=1, max=9, help="Kafka nodes (default BACKBONE_KAFKA_BROKERS, 1); 3 = a replicated "
           "cluster: node n on BACKBONE_KAFKA_PORT + 10(n-1)")] = None) -> None:
    """Start Kafka (KRaft, from Maven Central jars) and PostgreSQL; wait until both answer.

    Idempotent: services already running are left as they are. The first run downloads the
    Kafka jars with Maven into the cache dir and formats the broker's storage; with --secure it
    also generates a CA, the servers' certificate and the Kafka users' passwords.
    """
    configured = load_settings()
    settings = configured if brokers is None else load_settings(kafka_brokers=brokers)
    with user_errors():
        if not json_out:
            console.print("starting PostgreSQL and Kafka (first start resolves jars with Maven)…")
        _print(stack.up(settings, _mode(mode), secure=secure), json_out)
    if settings.kafka_brokers != configured.kafka_brokers and not json_out:
        # the other commands find every node (and replicate topics to match) only through the setting
        console.print(f"for the other commands: export BACKBONE_KAFKA_BROKERS={brokers}")


@app.command()
def env(principal: Annotated[str, typer.Option("--as", help="secure stack: the Kafka user, one of "
                                               + ", ".join(security.PRINCIPALS))] = security.ADMIN) -> None:
    """Print the `export` lines that point the CLI at the local stack: `eval "$(backbone local env)"`.

    On a secure stack they name the Kafka user, the CA and a database URL with sslmode=verify-full;
    passwords are read from their files when evaluated, never printed."""
    settings = load_settings()
    with user_errors():
        lines = security.export_lines(settings, principal)
    print("\n".join(lines))


@app.command()
def down(mode: ModeOpt = "native") -> None:
    """Stop the services this stack started (by pid file); nothing else is touched."""
    settings = load_settings()
    with user_errors():
        stopped = stack.down(settings, _mode(mode))
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show each Kafka node and PostgreSQL: version, address, log file. Exit 1 if one is down."""
    settings = load_settings()
    with user_errors():
        statuses = stack.status(settings)
    _print(statuses, json_out)
    if not all(s.running for s in statuses):
        raise typer.Exit(code=1)


@app.command()
def logs(service: Annotated[str, typer.Argument(help="kafka (kafka-N of a cluster) or postgres")],
         lines: Annotated[int, typer.Option("--lines", "-n", min=1)] = 50) -> None:
    """Print the last lines of a service's log file."""
    settings = load_settings()
    with user_errors():
        console.print(stack.logs(settings, service, lines), markup=False)
