"""`backbone demo`: the whole flow end to end on the configured stack."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.text import Text
from sqlalchemy.engine import make_url

from backbone import db
from backbone.kafka import topics
from cli import produce, project, views
from cli.common import console, kafka_reachable, load_settings, user_errors
from producers.simulator import session_start

READER, READER_PASSWORD = "backbone_analyst", "analyst"
DEMO_SQL = ("select account, open_positions, realized_pnl, unrealized_pnl, commission, total_pnl "
            "from pnl_by_account order by total_pnl desc limit 5")


def demo(events: Annotated[int, typer.Option("--events", "-n", min=1)] = 100_000,
         seed: Annotated[int | None, typer.Option(help="simulator seed [default: the session's date as "
                                                        "YYYYMMDD]")] = None) -> None:
    """Create topics, migrate, simulate a session, project it until caught up, and show
    positions, P&L by account and one SQL query run by psql as the read-only role.

    The session is dated today (UTC midnight onwards; yesterday if it would not have ended an
    hour before now), so the market-data topic's time retention keeps its marks. Re-running on the same day
    republishes identical events: the projection recognises them by event id and the totals do
    not change. On another day it is a new session, with its own order ids.
    """
    start = session_start(datetime.now(tz=UTC), events)
    seed = int(start.strftime("%Y%m%d")) if seed is None else seed
    settings = load_settings()
    kafka_reachable(settings)
    with user_errors():
        console.rule("topics")
        for report in topics.create_topics(settings):
            console.print(f"{report.name}: {report.action}")
            for problem in report.problems:
                console.print(Text.assemble("  ", ("mismatch", "red"), f": {problem}"))
        console.rule("database")
        console.print(f"revision {db.upgrade(settings)}")
        db.create_reader(settings, READER, READER_PASSWORD)
    console.rule(f"simulate {events:,} events (seed {seed}, from {start:%Y-%m-%d %H:%M} UTC)")
    produce.simulate_cmd(events=events, rate=0.0, seed=seed, symbols=20, accounts=10, start=start.isoformat(),
                         json_out=False, quiet=False)
    console.rule("project until caught up")
    project.run(group=None, instance_id=None, until_caught_up=True, batch_size=5000, status_interval=5.0,
                max_seconds=None, json_out=False, verbose=False)
    console.rule("positions (first 15)")
    views.positions(account=None, symbol=None, json_out=False, flat=False, limit=15)
    console.rule("P&L by account")
    views.pnl(account=None, json_out=False)
    console.rule(f"psql as read-only role {READER}")
    _psql(settings, DEMO_SQL)


def _psql(settings: object, query: str) -> None:
    psql = shutil.which("psql")
    url = make_url(settings.database_url_value)  # type: ignore[attr-defined]
    if psql is None:
        console.print("psql not installed (Debian: apt-get install postgresql-client); query was:\n" + query)
        return
    console.print(f"$ psql -h {url.host} -p {url.port} -U {READER} -d {url.database} -c \"{query}\"")
    env = {**os.environ, "PGPASSWORD": READER_PASSWORD}
    result = subprocess.run([psql, "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", READER,
                             "-d", url.database or "backbone", "-c", query], env=env, check=False)
    if result.returncode != 0:
        raise typer.Exit(code=result.returncode)
