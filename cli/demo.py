"""`backbone demo`: the whole flow end to end on the configured stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.text import Text
from sqlalchemy.engine import make_url

from backbone import db
from backbone.kafka import topics
from backbone.settings import Settings
from cli.common import console, kafka_reachable, load_settings, user_errors
from producers.simulator import session_start

READER, READER_PASSWORD = "backbone_analyst", "analyst"
DEMO_SQL = ("select account, open_positions, realized_pnl, unrealized_pnl, commission, total_pnl "
            "from pnl_by_account order by total_pnl desc limit 5")


def demo(events: Annotated[int, typer.Option("--events", "-n", min=1)] = 100_000,
         seed: Annotated[int | None, typer.Option(help="simulator seed (default: the session's date as "
                                                        "YYYYMMDD)")] = None) -> None:
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
    _backbone("simulate", "-n", str(events), "--seed", str(seed), "--symbols", "20", "--accounts", "10",
              "--start", start.isoformat())
    console.rule("project until caught up")
    _backbone("project", "run", "--until-caught-up", "--status-interval", "5")
    console.rule("positions (first 15)")
    _backbone("positions", "--limit", "15")
    console.rule("P&L by account")
    _backbone("pnl")
    console.rule(f"psql as read-only role {READER}")
    _psql(settings, DEMO_SQL)


def _backbone(*args: str) -> None:
    """Run a `backbone` command as a user would (same environment, same output); its failure
    ends the demo with its exit code."""
    done = subprocess.run([sys.executable, "-m", "cli.main", *args], check=False)
    if done.returncode != 0:
        raise typer.Exit(code=done.returncode)


def _psql(settings: Settings, query: str) -> None:
    psql = shutil.which("psql")
    url = make_url(settings.database_url_value)
    if psql is None:
        console.print("psql not installed (Debian: apt-get install postgresql-client); query was:\n" + query)
        return
    console.print(f"$ psql -h {url.host} -p {url.port} -U {READER} -d {url.database} -c \"{query}\"")
    env = {**os.environ, "PGPASSWORD": READER_PASSWORD}
    result = subprocess.run([psql, "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", READER,
                             "-d", url.database or "backbone", "-c", query], env=env, check=False)
    if result.returncode != 0:
        raise typer.Exit(code=result.returncode)
