"""The rebuild's dead letters: at the swap, the projection's letters become the shadow's; after
it, what only the new projection refused is relayed to the dead-letter topic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from backbone.db import one_row
from backbone.settings import Settings
from consumers.deadletter_relay import DeadLetterRelay
from projections.rebuild.model import APPLICATION_NAME, LETTER_COLS, TP, psycopg_url
from projections.trading import NAME as TRADING


def swap(w: psycopg.Connection, old_schema: str, shadow_schema: str) -> tuple[list[tuple[str, int, int]], int]:
    """In the swap's transaction: the old letters are kept beside the old tables, a letter both
    refused keeps its first-refusal time and where it was relayed, the shadow's others come new.
    Returns the coordinates only the shadow refused, and how many only the old one did."""
    old, shadow = sql.Identifier(old_schema), sql.Identifier(shadow_schema)
    same = sql.SQL("(o.source_topic, o.source_partition, o.source_offset) = "
                   "(n.source_topic, n.source_partition, n.source_offset)")
    w.execute(sql.SQL("create table {}.dead_letters as select * from public.dead_letters where projection = %s")
              .format(old), (TRADING,))
    newly = w.execute(sql.SQL("select n.source_topic, n.source_partition, n.source_offset from {}.dead_letters n "
                              "where not exists (select 1 from {}.dead_letters o where {}) order by 1, 2, 3")
                      .format(shadow, old, same)).fetchall()
    no_longer = one_row(w.execute(sql.SQL(
        "select count(*) from {}.dead_letters o where not exists (select 1 from {}.dead_letters n where {})")
        .format(old, shadow, same)))[0]
    w.execute("delete from public.dead_letters where projection = %s", (TRADING,))
    w.execute(sql.SQL("insert into public.dead_letters (projection, {cols}, created_at, source_time, "
                      "relay_partition, relay_from, relayed_offset) "
                      "select n.projection, {ncols}, coalesce(o.created_at, n.created_at), "
                      "coalesce(n.source_time, o.source_time), o.relay_partition, o.relay_from, o.relayed_offset "
                      "from {shadow}.dead_letters n left join {old}.dead_letters o on {same} order by n.id").format(
        cols=sql.SQL(LETTER_COLS),
        ncols=sql.SQL(", ").join(sql.SQL("n." + c.strip()) for c in LETTER_COLS.split(",")),
        shadow=shadow, old=old, same=same))
    return newly, int(no_longer)


def relay(settings: Settings, tps: list[TP]) -> str | None:
    """After the swap committed: relay the unrelayed letters of `tps` (a live projector relays
    whatever this leaves, when it next loads those partitions). Why it failed, or None."""
    if not tps:
        return None

    @contextmanager
    def transaction() -> Iterator[psycopg.Connection]:
        with psycopg.connect(psycopg_url(settings), application_name=APPLICATION_NAME) as conn:
            yield conn  # committed when the block ends

    relayer = DeadLetterRelay(settings, TRADING, transaction)
    try:
        return relayer.relay(tps).failed
    finally:
        relayer.close()
