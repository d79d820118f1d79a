"""`backbone db …`: schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from backbone import db
from cli.common import JsonFlag, console, load_settings, print_json, user_errors

app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)


def _revision(now: str | None) -> dict[str, object]:
    head = db.head_revision()
    return {"revision": now, "head": head, "at_head": now == head}


@app.command()
def upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head",
            json_out: JsonFlag = False) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    settings = load_settings()
    with user_errors():
        before = db.current(settings)
        now = db.upgrade(settings, revision)
    if json_out:
        print_json({"from": before, **_revision(now)})
        return
    console.print(f"database at revision {now}")


@app.command()
def current(json_out: JsonFlag = False) -> None:
    """Print the revision the database is at, and whether it is the newest."""
    settings = load_settings()
    with user_errors():
        now = db.current(settings)
    state = _revision(now)
    if json_out:
        print_json(state)
        return
    head = state["head"]
    console.print(f"{now or '(empty)'}{' (head)' if state['at_head'] else f' (head is {head})'}")


@app.command("create-reader")
def create_reader(
    name: Annotated[str, typer.Argument(help="login role to create for an analyst")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, envvar="BACKBONE_READER_PASSWORD",
                                          help="its password (prompted, or from BACKBONE_READER_PASSWORD)")],
    json_out: JsonFlag = False,
) -> None:
    """Create (or reset) a login role in the read-only group: SELECT on tables and views, no writes."""
    settings = load_settings()
    with user_errors():
        action = db.create_reader(settings, name, password)
    if json_out:
        print_json({"role": name, "action": action, "member_of": settings.database_readonly_role})
        return
    console.print(f"role {name} can now read (member of {settings.database_readonly_role})")
