"""What every table, view and column of the schema holds: the text of their `COMMENT ON`.

Migration 0014 writes them on `public`; `projections.ddl` writes them on the tables and views of
a scratch or shadow schema, so a `replay --into` schema explains itself as `public` does, and a
rebuild's tables, swapped into `public`, keep them. `\\d+ NAME` in psql shows them;
tests/integration/test_sql_comments.py checks that nothing lacks one.

A column's comment is its relation's own entry, else the one of `COLUMNS` (a name that means
the same wherever it appears). Money columns of the rounded views say so; see docs/sql.md.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg import sql

from projections import read_model

_EIGHT = "rounded half-even to 8 places"
_ROUNDED = f"{_EIGHT} (the exact values: the view named *_exact)"

#: Columns that mean the same in every relation that has them.
COLUMNS: dict[str, str] = {
    "account": "the trading account",
    "symbol": "the instrument; the Kafka key of its events",
    "order_id": "the order's id (from the events)",
    "exec_id": "the execution's id, unique within its order (FIX ExecID)",
    "cl_ord_id": "the client order id of the request",
    "orig_cl_ord_id": "the client order id a cancel or replace request names",
    "exec_ref_id": "the execution a bust or correction restates",
    "kafka_partition": "the Kafka partition of the symbol's events: a projector loads the rows of its partitions",
    "side": "BUY, SELL or SELL_SHORT",
    "order_type": "MARKET, LIMIT, STOP or STOP_LIMIT",
    "time_in_force": "DAY, GTC, IOC, FOK, GTD or OPG",
    "status": "the order's status (docs/events.md)",
    "order_qty": "the ordered quantity",
    "price": "the limit price; NULL for a market order",
    "cum_qty": "quantity filled so far",
    "leaves_qty": "quantity still open: 0 once the order is done",
    "avg_px": "average price",
    "first_event_time": "event time of the order's first event (UTC)",
    "last_event_time": "event time of the order's latest applied event (UTC)",
    "event_time": "the event's time (UTC)",
    "event_id": "the event's id",
    "ingest_time": "when the event was ingested (UTC)",
    "event_type": "the order event's type; NULL for a mark",
    "topic": "the Kafka topic",
    "reason": "why the record was refused (a stable id)",
    "detail": "the refusal in words",
    "projection": "the projection's name (trading, audit; trading@<schema> for a rebuild's shadow)",
    "qty": "signed quantity: > 0 long, < 0 short",
    "commission": "commission paid",
    "realized_pnl": "realized P&L, gross (prices only)",
    "unrealized_pnl": "(mark_price - avg_px) * qty; NULL without a mark",
    "total_pnl": "realized_pnl + unrealized_pnl - commission (unrealized counted 0 without a mark)",
    "mark_price": "the symbol's latest mark price",
    "mark_time": "event time of that mark (UTC)",
    "updated_at": "when the row was last written",
    "rule": "the alert rule's name",
    "group_id": "the consumer group (or projection) the alert is about",
    "severity": "the rule's severity",
    "value": "the measured value that crossed the threshold",
    "generation": "bumped by each rebuild swap; a projector that loaded another generation is fenced",
    "next_offset": "the offset of the next record to read",
    "partition": "the Kafka partition",
    "record_key": "the record's key bytes; NULL: no key",
}

#: relation -> (its comment, its own column comments).
RELATIONS: dict[str, tuple[str, dict[str, str]]] = {
    # -- projection tables
    "orders": ("One row per order: its state-machine state as the trading projection folded it", {
        "stop_price": "the stop price of a STOP or STOP_LIMIT order",
        "avg_px": "average fill price",
        "seq": "events applied to the order",
        "state": "what the order state machine keeps beyond the columns (fills, open requests, ids seen), "
                 "for reload",
    }),
    "executions": ("One row per fill, as executed and as restated since (busted, corrected); qty, price and "
                   "commission are the latest", {
        "source_offset": "offset of the fill event",
        "qty": "filled quantity (> 0), the latest",
        "price": "fill price, the latest",
        "commission": "the fill's commission, the latest",
        "currency": "the fill's currency, if given",
        "liquidity": "ADDED, REMOVED, ROUTED, AUCTION or NULL",
        "exec_time": "the fill event's time (UTC)",
        "busted": "a TRADE_CANCELED restated the fill away: not in positions",
        "corrected": "a TRADE_CORRECTED restated qty, price or commission",
        "original_qty": "before the first correction",
        "original_price": "before the first correction",
        "last_event_id": "the latest event that wrote the row",
        "updated_at": "event time of that event (UTC)",
    }),
    "positions": ("One row per account and symbol: the net position, average-cost netting (docs/pnl.md); exact "
                  "values", {
        "qty": "signed: > 0 long, < 0 short",
        "avg_px": "average open price; 0 when flat",
        "realized_pnl": "gross, prices only",
        "realized_commission": "commission attributed to closed quantity",
        "open_commission": "commission attributed to the open quantity; 0 when flat",
        "commission": "total paid",
        "fill_count": "live (not busted) fills",
        "last_fill_time": "latest exec time among the live fills",
    }),
    "marks": ("The newest market-data mark per symbol (by event time)", {
        "mark_price": "the price positions are valued at",
        "bid": "best bid, if given",
        "ask": "best ask, if given",
        "last": "last trade price, if given",
        "source": "where the mark came from, if given",
    }),
    "position_days": ("Each position as it ended each UTC day it changed (cumulative figures; view pnl_daily)", {
        "day": "the UTC date the change is booked on: the event's, or the position's last fill's if later",
        "last_offset": "offset of the day's last change (-1: the position as migration 0014 found it)",
        "realized_pnl": "cumulative realized P&L, gross, at the end of the day",
        "realized_commission": "cumulative commission attributed to closed quantity",
        "commission": "cumulative commission paid",
    }),
    "mark_days": ("Each symbol's last mark of each UTC day (view pnl_daily)", {
        "day": "the mark's UTC date",
        "mark_price": "the day's last mark price",
        "event_time": "that mark's event time",
        "event_id": "that mark's event id",
    }),
    # -- projector bookkeeping
    "dead_letters": ("Records a projection refused (outbox of the dead-letter topic; docs/architecture.md)", {
        "id": "the row's id, in order of refusal",
        "source_topic": "the refused record's topic",
        "source_partition": "the refused record's partition",
        "source_offset": "the refused record's offset",
        "payload": "the refused record's value bytes",
        "created_at": "when the record was first refused",
        "source_time": "the refused record's timestamp, which the relayed record carries",
        "relay_partition": "the dead-letter topic's partition the row is relayed to",
        "relay_from": "that partition's end offset before the row was produced",
        "relayed_offset": "where the row is on the dead-letter topic; NULL: not yet; -1: relayed, offset not "
                          "recorded",
    }),
    "projection_checkpoints": ("Per projection and source partition, the next offset to read; written in the "
                               "transaction of the rows it covers", {
        "updated_at": "when the checkpoint was last written",
    }),
    "projection_snapshots": ("The projection's state at an offset, so replays and as-of start from there "
                             "(docs/replay.md)", {
        "id": "the snapshot's id",
        "next_offset": "the state folds every record of the partition below this offset",
        "max_timestamp": "highest record timestamp covered; null if none",
        "events_covered": "records folded into the state (applied, duplicate or dead-lettered)",
        "created_at": "when the snapshot was taken",
        "state": "the state: format 2 (b'TBS2', a zlib-compressed JSON header, a section per account and "
                 "symbol), format 3 (the same framing; what changed since base_next_offset) or format 1 (one "
                 "zlib-compressed JSON body); projections.snapshots",
        "base_next_offset": "a change on the snapshot of this projection and partition at this next_offset "
                            "(format 3); null: the whole state",
    }),
    "alembic_version": ("The Alembic revision the schema is at (backbone db current)", {
        "version_num": "the revision id",
    }),
    # -- audit archive (docs/audit.md)
    "audit_records": ("The append-only audit archive: every record of the trading topics with a hash chain "
                      "per partition", {
        "kafka_offset": "the record's offset",
        "kafka_timestamp_ms": "the record's Kafka timestamp, ms",
        "record_key": "NULL: the record had no key",
        "record_value": "the record's bytes; NULL: a tombstone",
        "schema_fingerprint": "CRC-64-AVRO of the writer schema (header bytes)",
        "exec_id": "the fill's execution id, if any",
        "account": "the trading account, if any",
        "symbol": "the instrument, if any",
        "status_after": "the order's status after the event (unchanged if refused)",
        "dead_letter_reason": "NULL: applied; else why the trading rules refuse it",
        "dead_letter_detail": "the refusal in words",
        "chain_hash": "docs/audit.md#the-hash-chain",
        "archived_at": "when the row was archived",
    }),
    "audit_gaps": ("Offset ranges of the trading topics the archive could not read (expired before archiving)", {
        "first_offset": "the first offset missing",
        "last_offset": "the last offset missing",
        "reason": "why they are missing",
        "detected_at": "when the gap was found",
    }),
    "audit_order_events": ("Every archived order event with the order's status before and after it", {
        "kafka_offset": "the record's offset",
        "kafka_timestamp_ms": "the record's Kafka timestamp, ms",
        "exec_id": "the fill's execution id, if any",
        "status_before": "the order's status before the event",
        "status_after": "the order's status after the event (unchanged if refused)",
        "dead_letter_reason": "NULL: applied; else why the trading rules refuse it",
        "dead_letter_detail": "the refusal in words",
    }),
    "audit_executions": ("Every applied fill in the archive with its busts and corrections and the mark in force "
                         "at its event time", {
        "kafka_offset": "the fill record's offset",
        "status_after_fill": "the order's status after the fill",
        "busted": "a TRADE_CANCELED restated the fill away",
        "corrected": "a TRADE_CORRECTED restated it",
        "restated_by": "the exec ids of the busts and corrections, in log order",
        "mark_partition": "partition of the mark in force at the fill's event time",
        "mark_offset": "offset of that mark",
        "mark_time": "event time of that mark",
    }),
    # -- lag monitor (docs/operations.md#lag)
    "lag_alerts": ("One row per lag alert whose condition holds", {
        "phase": "pending or firing",
        "since": "when the condition started to hold",
        "fired_at": "when the alert fired; NULL while pending",
    }),
    "lag_alert_history": ("Every lag-alert transition (firing, resolved)", {
        "id": "the transition's id",
        "kind": "firing or resolved",
        "at": "when the transition happened",
        "message": "the alert's text",
        "recorded_at": "when the row was written",
    }),
    "lag_alert_deliveries": ("Each lag-alert transition's delivery to each sink (an outbox)", {
        "history_id": "the transition (lag_alert_history.id)",
        "sink": "kafka, webhook or alertmanager",
        "attempts": "delivery attempts so far",
        "next_attempt_at": "when the next attempt is due",
        "delivered_at": "when it was delivered; NULL until then",
        "last_error": "the last attempt's error",
    }),
    # -- the read model's views (projections.read_model)
    "positions_pnl_exact": ("Each position with its mark and P&L, exact (the source of backbone positions "
                            "--json)", {
        "net_realized_pnl": "realized_pnl - realized_commission",
        "realized_commission": "commission attributed to closed quantity",
        "open_commission": "commission attributed to the open quantity",
        "avg_px": "average open price; 0 when flat",
        "fill_count": "live (not busted) fills",
        "last_fill_time": "latest exec time among the live fills",
    }),
    "pnl_by_account_exact": ("P&L per account, exact (the source of backbone pnl --json)", {
        "open_positions": "positions with qty <> 0",
        "realized_pnl": "sum of the positions' realized P&L",
        "unrealized_pnl": "sum of the known unrealized P&L; NULL if none is known",
        "commission": "sum of the commission paid",
        "total_pnl": "sum of the positions' total P&L",
        "missing_marks": "an open position has no mark: its unrealized P&L is left out",
    }),
    "positions_pnl": (f"positions_pnl_exact with money {_ROUNDED}", {}),
    "pnl_by_account": (f"pnl_by_account_exact with money {_ROUNDED}", {}),
    "open_orders": ("Orders that may still execute (not terminal; GTC/GTD done for the day)", {
        "avg_px": "average fill price",
    }),
    "exposure_by_symbol": ("Net and gross exposure per symbol at its mark, over every account", {
        "net_qty": "sum of the positions' qty",
        "long_qty": "sum of the long quantities",
        "short_qty": "sum of the short quantities, positive",
        "net_notional": f"sum of qty * mark_price, {_EIGHT}",
        "gross_notional": f"sum of abs(qty) * mark_price, {_EIGHT}",
        "accounts": "accounts with an open position",
    }),
    "trades_daily": ("Per account, symbol and UTC trading day, the live (not busted) fills at their current qty "
                     "and price", {
        "trade_date": "the fills' exec time's UTC date",
        "fills": "live fills that day",
        "bought_qty": "quantity bought (BUY)",
        "sold_qty": "quantity sold (SELL and SELL_SHORT), positive",
        "bought_notional": "sum of qty * price bought, rounded half-even to 8 places",
        "sold_notional": "sum of qty * price sold, rounded half-even to 8 places",
        "buy_vwap": "bought_notional / bought_qty (exact sums), rounded half-even to 8 places; NULL: none bought",
        "sell_vwap": "sold_notional / sold_qty (exact sums), rounded half-even to 8 places; NULL: none sold",
        "commission": "commission of the fills, rounded half-even to 8 places",
        "realized_pnl": "the position's realized P&L booked that day (position_days), rounded half-even to 8 "
                        "places; NULL: none booked",
    }),
    "pnl_daily": ("Per account and UTC day on which one of its positions changed: the day's P&L; unchanged "
                  "positions carry forward", {
        "trade_date": "the UTC day",
        "open_positions": "positions with qty <> 0 at the end of the day",
        "realized_pnl": "realized P&L booked that day (gross), rounded half-even to 8 places",
        "commission": "commission booked that day, rounded half-even to 8 places",
        "unrealized_pnl": "end-of-day unrealized P&L at each symbol's last mark on or before the day, rounded "
                          "half-even to 8 places; NULL: no mark",
        "total_pnl": "the day's P&L: the change of cumulative_pnl since the account's previous day",
        "cumulative_pnl": "realized + unrealized - commission at the end of the day",
        "missing_marks": "an open position had no mark on or before the day: its unrealized P&L is left out",
    }),
    "symbol_stats": ("Per symbol, period (day or hour, UTC) and liquidity flag, the live fills' statistics", {
        "period": "day or hour",
        "period_start": "the period's start (UTC)",
        "liquidity": "ALL (every fill), or ADDED, REMOVED, ROUTED, AUCTION, NONE (no flag)",
        "fills": "live fills",
        "volume": "sum of their qty",
        "notional": "sum of qty * price, rounded half-even to 8 places",
        "vwap": "notional / volume (exact sums), rounded half-even to 8 places",
        "high": "highest fill price",
        "low": "lowest fill price",
        "first_exec_time": "the first fill's exec time",
        "last_exec_time": "the last fill's exec time",
    }),
    "dead_letters_summary": ("Dead letters per projection, topic and reason, with the newest as a sample", {
        "letters": "records refused",
        "first_seen": "when the first was refused",
        "last_seen": "when the newest was refused",
        "unrelayed": "letters not yet on the dead-letter topic",
        "sample_partition": "the newest letter's source partition",
        "sample_offset": "the newest letter's source offset",
        "sample_detail": "the newest letter's detail",
    }),
}


def column_comment(relation: str, column: str) -> str:
    own = RELATIONS[relation][1]
    if column in own:
        return own[column]
    if relation in ("positions_pnl", "pnl_by_account"):  # the rounded views: their exact twin's words
        exact = RELATIONS[relation + "_exact"][1]
        text = exact.get(column) or COLUMNS[column]
        return f"{text}; {_EIGHT}" if column in read_model.MONEY_COLUMNS[relation] else text
    return COLUMNS[column]


def write_comments(conn: psycopg.Connection, schema: str, relations: Iterable[str]) -> None:
    """`comment on` each relation of `schema` and each of its columns (as the catalog lists them):
    a relation or column without an entry here raises KeyError, so none is left out."""
    for relation in relations:
        found = conn.execute(
            "select c.relkind, array_agg(a.attname::text order by a.attnum) from pg_class c "
            "join pg_namespace n on n.oid = c.relnamespace "
            "join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped "
            "where n.nspname = %s and c.relname = %s group by c.relkind", (schema, relation)).fetchone()
        if found is None:
            raise KeyError(f"no relation {schema}.{relation}")
        kind, columns = found
        conn.execute(sql.SQL("comment on {} {} is {}").format(
            sql.SQL("view" if kind == "v" else "table"), sql.Identifier(schema, relation),
            sql.Literal(RELATIONS[relation][0])))
        for column in columns:
            conn.execute(sql.SQL("comment on column {} is {}").format(
                sql.Identifier(schema, relation, column), sql.Literal(column_comment(relation, column))))
