"""Projection tables and views in a schema of their own (scratch `--into`, rebuild shadows).

`public` gets its tables from the Alembic migrations; a scratch or shadow schema copies their
definitions (`create table … (like public.… including all)`) so both can never drift, and gets
the documented views from the read model that the migration creates them from too, bound to its
own tables, and the comments of all of them (`like` copies the columns' comments only; a
rebuild's tables keep theirs when swapped into `public`).
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from projections import comments, read_model

TABLES = ("orders", "executions", "positions", "marks")
#: The projection's history (`store.day_rows`): in every schema, but not swapped by a rebuild,
#: which rebuilds TABLES; the live history goes on in `public`.
HISTORY_TABLES = ("position_days", "mark_days")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(name: str) -> str:
    if not _SCHEMA_NAME.match(name) or name in ("public", "information_schema") or name.startswith("pg_"):
        raise ValueError(f"schema name {name!r}: use lower-case letters, digits and _ (not public, not pg_…)")
    return name


def create_schema(conn: psycopg.Connection, schema: str, *, reader_role: str | None = None) -> None:
    """A fresh schema with empty projection tables and the views; fails if it exists."""
    check_schema_name(schema)
    ident = sql.Identifier(schema)
    conn.execute(sql.SQL("create schema {}").format(ident))
    for table in (*TABLES, *HISTORY_TABLES):
        conn.execute(sql.SQL("create table {}.{} (like public.{} including all)").format(
            ident, sql.Identifier(table), sql.Identifier(table)))
    for statement in read_model.view_statements(schema):
        conn.execute(statement)
    comments.write_comments(conn, schema, (*TABLES, *HISTORY_TABLES, *read_model.VIEWS))
    if reader_role:
        conn.execute(sql.SQL("grant usage on schema {} to {}").format(ident, sql.Identifier(reader_role)))
        conn.execute(sql.SQL("grant select on all tables in schema {} to {}").format(
            ident, sql.Identifier(reader_role)))


def drop_schema(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(check_schema_name(schema))))
