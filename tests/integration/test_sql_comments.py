"""The schema explains itself (docs/sql.md): every table, view and column of a migrated `public`
and of a `replay --into` schema has a comment, and the money of the rounded views is rounded
half-even where PostgreSQL's round() would round half away from zero."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from sqlalchemy.engine import make_url
from support import uncommented

from backbone import db
from backbone.settings import Settings
from projections import replay
from projections.state import TradingState

pytestmark = pytest.mark.integration



@pytest.fixture
def migrated(base_settings: Settings, empty_database: str) -> str:
    db.upgrade(base_settings, url=empty_database)
    return make_url(empty_database).set(drivername="postgresql").render_as_string(hide_password=False)


def test_no_table_view_or_column_lacks_a_comment_in_public_or_a_replay_schema(migrated: str) -> None:
    with psycopg.connect(migrated) as conn:
        with conn.transaction():
            replay.write_into(conn, TradingState(), "replayed", reader_role=None)
        for schema in ("public", "replayed"):
            relations = conn.execute("select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                                     "where n.nspname = %s and c.relkind in ('r', 'v')", (schema,)).fetchone()
            assert relations is not None and relations[0] >= 10, schema
            assert uncommented(conn, schema) == [], schema


def test_the_snapshot_state_comment_says_what_format_2_holds(migrated: str) -> None:
    with psycopg.connect(migrated) as conn:
        (comment,) = conn.execute("select col_description('projection_snapshots'::regclass, attnum) "
                                  "from pg_attribute where attrelid = 'projection_snapshots'::regclass "
                                  "and attname = 'state'").fetchone() or (None,)
    assert comment is not None and "format 2" in comment and "TBS2" in comment


def test_round_half_even_rounds_ties_to_even_and_the_rest_to_nearest(migrated: str) -> None:
    values = ["0.000000005", "0.000000015", "-0.000000005", "-0.000000025", "2.123456785", "2.1234567850000001",
              "-7.99999999500", "12.3", "0", "-0.000000004999"]
    with psycopg.connect(migrated) as conn:
        got = conn.execute("select round_half_even(v, 8), round(v, 8) from unnest(%s::numeric[]) v",
                           ([Decimal(v) for v in values],)).fetchall()
        assert conn.execute("select round_half_even(null, 8)").fetchone() == (None,)
    assert [even for even, _ in got] == [Decimal(v) for v in (
        "0", "0.00000002", "0", "-0.00000002", "2.12345678", "2.12345679", "-8", "12.3", "0", "0")]
    assert {even.as_tuple().exponent for even, _ in got} == {-8}
    assert [away for _, away in got][:4] == [Decimal(v) for v in ("1E-8", "2E-8", "-1E-8", "-3E-8")]  # round()
