"""The `backbone` command: every group joined here."""

from __future__ import annotations

import typer

from cli import (
    audit,
    checkpoints,
    config,
    db,
    demo,
    lag,
    local,
    produce,
    project,
    rebuild,
    replay,
    schemas,
    state,
    topics,
    views,
)

app = typer.Typer(
    help="trading-backbone: Kafka event-sourced orders, positions and P&L.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(local.app, name="local")
app.add_typer(topics.app, name="topics")
app.add_typer(db.app, name="db")
app.add_typer(config.app, name="config")
app.add_typer(schemas.app, name="schemas")
app.add_typer(project.app, name="project")
app.command("simulate")(produce.simulate_cmd)
app.command("publish")(produce.publish_cmd)
app.command("positions")(views.positions)
app.command("pnl")(views.pnl)
app.command("orders")(views.orders)
app.command("demo")(demo.demo)
app.command("rebuild")(rebuild.rebuild)
app.command("state")(state.state_cmd)
app.command("replay")(replay.replay_cmd)
app.add_typer(checkpoints.app, name="checkpoints")
app.add_typer(audit.app, name="audit")
app.add_typer(lag.app, name="lag")

if __name__ == "__main__":
    app()
