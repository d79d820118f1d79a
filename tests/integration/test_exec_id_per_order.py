"""An exec id is unique within its order, as FIX identifies executions (issue #24): an exec id
reused by another order, on another symbol's partition, is that order's own fill."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic import command
from conftest import TEST_PARTITIONS
from support import TABLE_KEYS, project, publish, rows, schema_dump, settings_env, table_dump
from tape import Tape
from typer.testing import CliRunner

from backbone import db
from backbone.domain.events import Side
from backbone.errors import BackboneError
from backbone.kafka.partitioner import symbol_partition
from backbone.settings import Settings
from cli.main import app

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("first", ["GOLD", "SILVER"])
def test_an_exec_id_reused_by_another_order_on_another_partition_keeps_both_fills(
        created_topics: Settings, names, monkeypatch: pytest.MonkeyPatch, first: str) -> None:
    """Order OG (GOLD) fills with X-1, order OS (SILVER, another partition) fills with X-1 too:
    both orders are filled and both positions are there, whichever is published (and folded)
    first, nothing is dead-lettered, and the state as of the end (from snapshots) equals the live
    tables. A bust of one X-1 leaves the other. The schema cannot go back to executions keyed by
    exec_id alone while they share it."""
    settings = created_topics.with_overrides(snapshot_every_events=2, snapshot_every_seconds=0)
    for key, value in settings_env(settings).items():
        if key.startswith("BACKBONE_"):
            monkeypatch.setenv(key, value)
    assert symbol_partition("GOLD", TEST_PARTITIONS) != symbol_partition("SILVER", TEST_PARTITIONS)
    t = Tape()
    t.order("OG", "ACC1", "GOLD", Side.BUY, 10, price=5)
    t.fill("OG", 10, 5, commission="1", exec_id="X-1")
    t.order("OS", "ACC1", "SILVER", Side.SELL, 4, price=7)
    t.fill("OS", 4, 7, commission="0.5", exec_id="X-1")
    gold, silver = t.records[:3], t.records[3:]
    publish(settings, gold + silver if first == "GOLD" else silver + gold)
    stats = project(settings, names.group())
    assert (stats.events, stats.dead_letters) == (len(t.records), 0)
    assert rows(settings, "select reason from dead_letters") == []
    orders = {r["order_id"]: (r["status"], r["cum_qty"]) for r in rows(settings, "select * from orders")}
    assert orders == {"OG": ("FILLED", 10), "OS": ("FILLED", 4)}
    executions = {(r["order_id"], r["exec_id"]): (r["symbol"], r["qty"], r["kafka_partition"])
                  for r in rows(settings, "select * from executions")}
    assert executions == {("OG", "X-1"): ("GOLD", 10, symbol_partition("GOLD", TEST_PARTITIONS)),
                          ("OS", "X-1"): ("SILVER", 4, symbol_partition("SILVER", TEST_PARTITIONS))}
    positions = {r["symbol"]: (r["qty"], r["fill_count"]) for r in rows(settings, "select * from positions")}
    assert positions == {"GOLD": (10, 1), "SILVER": (-4, 1)}

    def as_of_equals_live(schema: str) -> None:
        when = t.clock + timedelta(seconds=1)
        shown = CliRunner().invoke(app, ["state", "--as-of", when.isoformat(), "--into", schema])
        assert shown.exit_code == 0, shown.output
        live = table_dump(settings)
        assert schema_dump(settings, schema) == {table: live[table] for table in TABLE_KEYS}

    as_of_equals_live("asof_both")

    published = len(t.records)
    t.bust("OG" if first == "GOLD" else "OS", "X-1")
    publish(settings, t.records[published:])
    stats = project(settings, names.group())
    assert (stats.events, stats.dead_letters) == (1, 0)
    busted = {(r["order_id"], r["exec_id"]): r["busted"] for r in rows(settings, "select * from executions")}
    assert busted == {("OG", "X-1"): first == "GOLD", ("OS", "X-1"): first != "GOLD"}
    positions = {r["symbol"]: (r["qty"], r["fill_count"]) for r in rows(settings, "select * from positions")}
    assert positions == ({"GOLD": (0, 0), "SILVER": (-4, 1)} if first == "GOLD" else
                         {"GOLD": (10, 1), "SILVER": (0, 0)})
    as_of_equals_live("asof_busted")

    alembic = db.alembic_config(settings.database_url_value, settings.database_readonly_role)
    with pytest.raises(BackboneError, match=r"cannot downgrade below 0008: .* X-1 \(orders OG, OS\)"):
        command.downgrade(alembic, "0007")
    assert db.current(settings) == db.head_revision()


def test_original_qty_and_price_keep_the_values_from_before_the_first_correction(created_topics: Settings,
                                                                                  names) -> None:
    """What the columns' comments say, and what the projector keeps through two corrections."""
    settings = created_topics
    t = Tape()
    t.order("O1", "ACC1", "GOLD", Side.BUY, 10, price=5)
    t.fill("O1", 10, 5, exec_id="X-1")
    t.correct("O1", "X-1", qty=10, px="5.5")
    t.correct("O1", "X-1", qty=8, px=6)
    publish(settings, t.records)
    assert project(settings, names.group()).dead_letters == 0
    (row,) = rows(settings, "select qty, price, original_qty, original_price, corrected from executions")
    assert row == {"qty": 8, "price": 6, "original_qty": 10, "original_price": 5, "corrected": True}
    comments = {r["column_name"]: r["comment"] for r in rows(
        settings, "select column_name, col_description('executions'::regclass, ordinal_position) as comment "
                  "from information_schema.columns where table_schema = 'public' and table_name = 'executions' "
                  "and column_name like 'original%'")}
    assert comments == {"original_qty": "before the first correction", "original_price": "before the first correction"}
