"""`backbone db …`: schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from backbone import db
from cli.common import console, load_settings, user_errors

app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)


@app.command()
def upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    settings = load_settings()
    with user_errors():
        now = db.upgrade(settings, revision)
    console.print(f"database at revision {now}")


@app.command()
def current() -> None:
    """Print the revision the database is at, and whether it is the newest."""
    settings = load_settings()
    with user_errors():
        now = db.current(settings)
    head = db.head_revision()
    console.print(f"{now or '(empty)'}{' (head)' if now == head else f' (head is {head})'}")


@app.command("create-reader")
def create_reader(
    name: Annotated[str, typer.Argument(help="login role to create for an analyst")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, envvar="BACKBONE_READER_PASSWORD",
                                          help="its password (prompted, or from BACKBONE_READER_PASSWORD)")],
) -> None:
    """Create (or reset) a login role in the read-only group: SELECT on tables and views, no writes."""
    settings = load_settings()
    with user_errors():
        db.create_reader(settings, name, password)
    console.print(f"role {name} can now read (member of {settings.database_readonly_role})")
