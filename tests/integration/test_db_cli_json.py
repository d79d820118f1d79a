"""`--json` of `db upgrade`, `db current` and `db create-reader` on the real PostgreSQL server:
the objects docs/commands.md shows, read back as a script would."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url
from support import export_env
from typer.testing import CliRunner

from backbone import db
from backbone.settings import Settings
from cli.main import app
from projections.rebuild import psycopg_url

pytestmark = pytest.mark.integration


def run_json(*args: str) -> Any:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_upgrade_and_current_say_the_revision_as_json(base_settings: Settings, empty_database: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    export_env(base_settings.with_overrides(database_url=empty_database), monkeypatch)
    head = db.head_revision()
    assert run_json("db", "current") == {"revision": None, "head": head, "at_head": False}
    assert run_json("db", "upgrade") == {"from": None, "revision": head, "head": head, "at_head": True}
    assert run_json("db", "upgrade") == {"from": head, "revision": head, "head": head, "at_head": True}
    assert run_json("db", "current") == {"revision": head, "head": head, "at_head": True}


def test_create_reader_says_created_then_reset_as_json(settings: Settings, names,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    export_env(settings, monkeypatch)
    reader = f"reader_{names.prefix[1:9]}"
    url = make_url(settings.database_url_value)
    try:
        for password, action in (("first-pw", "created"), ("second-pw", "reset")):
            assert run_json("db", "create-reader", reader, "--password", password) == {
                "role": reader, "action": action, "member_of": settings.database_readonly_role}
        conninfo = psycopg.conninfo.make_conninfo(host=url.host, port=url.port, dbname=url.database,
                                                  user=reader, password="second-pw")
        with psycopg.connect(conninfo) as conn:
            assert conn.execute("select count(*) from positions").fetchone() == (0,)
    finally:
        with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
            # roles are server-wide: this one would outlive the test database
            conn.execute(sql.SQL("revoke connect on database {} from {}").format(
                sql.Identifier(url.database), sql.Identifier(reader)))
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(reader)))
