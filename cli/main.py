"""The `backbone` command: every group joined here."""

from __future__ import annotations

import typer

from cli import config, db, local, topics

app = typer.Typer(
    help="trading-backbone: Kafka event-sourced orders, positions and P&L.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(local.app, name="local")
app.add_typer(topics.app, name="topics")
app.add_typer(db.app, name="db")
app.add_typer(config.app, name="config")

if __name__ == "__main__":
    app()
