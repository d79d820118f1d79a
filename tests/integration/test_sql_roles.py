"""Who may do what in the database (docs/sql.md, "Roles"): a reader reads and nothing else, the
application's role owns and writes the tables, and the reader owns nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url

from backbone import db
from backbone.settings import Settings

pytestmark = pytest.mark.integration

REFUSED = (psycopg.errors.InsufficientPrivilege,)
MARK = "(symbol, kafka_partition, mark_price, event_time, event_id) values ('X', 0, 1, now(), 'e1')"


@pytest.fixture
def migrated(base_settings: Settings, empty_database: str) -> Settings:
    db.upgrade(base_settings, url=empty_database)
    return base_settings.with_overrides(database_url=empty_database)


@pytest.fixture
def reader(migrated: Settings) -> Iterator[psycopg.Connection]:
    name = f"reader_{uuid.uuid4().hex[:10]}"
    db.create_reader(migrated, name, "reader-pw")
    url = make_url(migrated.database_url_value)
    try:
        with psycopg.connect(host=url.host, port=url.port, dbname=url.database, user=name, password="reader-pw",
                             autocommit=True) as conn:
            yield conn
    finally:
        with psycopg.connect(_plain(migrated), autocommit=True) as admin:
            admin.execute(f"revoke connect on database {url.database} from {name}")
            admin.execute(f"drop role {name}")


def _plain(settings: Settings) -> str:
    return make_url(settings.database_url_value).set(drivername="postgresql").render_as_string(hide_password=False)


def test_a_reader_cannot_create_temporary_tables(reader: psycopg.Connection) -> None:
    with pytest.raises(REFUSED, match="permission denied to create temporary tables"):
        reader.execute("create temp table scratch (x int)")


@pytest.mark.parametrize("statement", [
    "create table public.mine (x int)",
    "create view public.mine as select 1 as x",
    "create schema mine",
    f"insert into marks {MARK}",
    "update orders set status = 'FILLED'",
    "delete from positions",
    "truncate executions",
    "drop table orders",
    "alter table orders add column x int",
    "create function public.mine() returns int language sql as 'select 1'",
    "comment on table orders is 'mine'",
])
def test_a_reader_can_write_or_create_nothing(reader: psycopg.Connection, statement: str) -> None:
    with pytest.raises(REFUSED):
        reader.execute(statement)


def test_a_reader_reads_every_table_and_view(reader: psycopg.Connection) -> None:
    relations = [r[0] for r in reader.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'public' and c.relkind in ('r', 'v')").fetchall()]
    assert {"orders", "executions", "positions", "marks", "positions_pnl", "audit_records"} <= set(relations)
    for relation in relations:
        reader.execute(f"select * from {relation} limit 1").fetchall()


def test_the_application_role_owns_and_writes_the_tables_and_the_reader_owns_nothing(
        migrated: Settings, reader: psycopg.Connection) -> None:
    app_role = make_url(migrated.database_url_value).username
    with psycopg.connect(_plain(migrated), autocommit=True) as conn:
        owners = set(conn.execute(
            "select distinct pg_get_userbyid(c.relowner) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'public'").fetchall())
        assert owners == {(app_role,)}
        owned_by_readers = conn.execute(
            "select count(*) from pg_class where relowner in (select oid from pg_roles where rolname = %(group)s "
            "union select m.member from pg_auth_members m join pg_roles g on g.oid = m.roleid "
            "where g.rolname = %(group)s)", {"group": migrated.database_readonly_role}).fetchone()
        assert owned_by_readers == (0,)
        conn.execute("create temp table scratch (x int)")  # it owns the database: TEMPORARY kept
        conn.execute(f"insert into marks {MARK}")
        assert conn.execute("select count(*) from marks").fetchone() == (1,)
