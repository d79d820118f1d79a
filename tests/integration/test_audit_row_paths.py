"""The audit archive's rows go through `store.send_rows` as plain inserts: one text parameter a
chunk (bytes in bytea's hex form), or a statement a row when the text cannot hold a value; both
give the table the same rows, and the text casts to the tables' column types."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from backbone.settings import Settings
from projections import store
from projections.audit import GAP_COLS, RECORD_COLS
from projections.rebuild import psycopg_url

pytestmark = pytest.mark.integration

PATHS = {"default": store._rows_text, "python": store._rows_text_python, "per-row": lambda rows: None}
WHEN = [datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC), datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=UTC)]


def _row(offset: int, key: bytes | None, value: bytes | None, account: str | None) -> tuple:
    return ("orders", 0, offset, 1_765_000_000_000 + offset, key, value, None if value is None else value[2:10],
            f"E{offset}", "FILLED", "O1", "C1", None, "X1", None, account, "AAPL", WHEN[offset % 2],
            WHEN[(offset + 1) % 2], "FILLED", None, None, bytes(range(offset, offset + 32)))


def test_the_text_casts_to_the_audit_tables_column_types(settings: Settings) -> None:
    with psycopg.connect(psycopg_url(settings)) as conn:
        for table, cols in (("audit_records", RECORD_COLS), ("audit_gaps", GAP_COLS)):
            found = conn.execute("select column_name, udt_name from information_schema.columns where table_schema = "
                                 "'public' and table_name = %s order by ordinal_position", (table,)).fetchall()
            written = [f for f in found if f[0] not in ("archived_at", "detected_at")]  # their defaults: now()
            assert written == list(zip(cols, store.COLUMN_TYPES[table], strict=True)), table


@pytest.mark.parametrize("path", list(PATHS))
def test_every_path_archives_the_rows_as_given(settings: Settings, monkeypatch, path: str) -> None:
    """Keys NULL, empty and binary, a value with every byte, texts with quotes, backslashes and
    newlines; then a batch with a separator in a text, which sends its table a row at a time."""
    monkeypatch.setattr(store, "_rows_text", PATHS[path])
    plain = [_row(0, None, b"\xc3\x01" + bytes(range(256)), "quote'\"back\\slash"), _row(1, b"", b"", "line\nfeed"),
             _row(2, b"AAPL", None, None)]
    awkward = [_row(3, b"\x1f\x1e\x1d\x00", b"\xc3\x01abc", "sep\x1fin")]
    gaps = [("marketdata", 1, 5, 9, "expired: deleted by retention before it was archived")]
    with psycopg.connect(psycopg_url(settings)) as conn:
        for records in (plain, awkward):
            tables = [("audit_records", RECORD_COLS, (), records), ("audit_gaps", GAP_COLS, (), gaps)]
            assert store.send_rows(conn, tables)() == len(records) + 1
            gaps = [(*gaps[0][:2], gaps[0][2] + 10, gaps[0][3] + 10, gaps[0][4])]
        back = conn.execute(f"select {', '.join(RECORD_COLS)} from audit_records order by kafka_offset").fetchall()
        gaps_back = conn.execute(f"select {', '.join(GAP_COLS)} from audit_gaps order by first_offset").fetchall()
        conn.rollback()
    assert [tuple(bytes(v) if isinstance(v, memoryview) else v.astimezone(UTC) if isinstance(v, datetime) else v
                  for v in row) for row in back] == plain + awkward
    assert gaps_back == [("marketdata", 1, 5, 9, "expired: deleted by retention before it was archived"),
                         ("marketdata", 1, 15, 19, "expired: deleted by retention before it was archived")]
