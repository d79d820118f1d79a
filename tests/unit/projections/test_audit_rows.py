"""The audit projection's rows, folded in memory: each record decoded once (the trading fold's
decode gives the archive's columns too), and every row of a simulated session written as the
one text parameter `store.send_rows` sends (bytes in bytea's hex form), none a statement a row."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

from backbone.codec.avro import AvroCodec
from backbone.domain.events import OrderEvent
from backbone.kafka.partitioner import symbol_partition
from backbone.settings import Settings
from producers.simulator import SimulationConfig, simulate
from projections import store
from projections.audit import RECORD_COLS, ArchivedRecord, AuditProjection

PARTITIONS = 3
SETTINGS = Settings().with_overrides(topic_orders="o", topic_marketdata="m")


def _session(codec: AvroCodec, events: int) -> list[ArchivedRecord]:
    """A simulated session as the records a projector reads, each on its symbol's partition."""
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for i, record in enumerate(simulate(SimulationConfig(events=events, seed=3, symbols=5, accounts=3))):
        topic = "o" if isinstance(record, OrderEvent) else "m"
        partition = symbol_partition(record.symbol, PARTITIONS)
        offset = offsets[(topic, partition)] = offsets.get((topic, partition), -1) + 1
        out.append(ArchivedRecord(topic, partition, offset, 1_700_000_000_000 + i, record.symbol.encode(),
                                  codec.encode(record)))
    # a record without a key, one with an empty key, one that does not decode, a tombstone
    out += [ArchivedRecord("m", 0, offsets[("m", 0)] + 1 + n, 1_800_000_000_000, key, value)
            for n, (key, value) in enumerate([(None, out[0].value()), (b"", out[0].value()),
                                              (b"X", b"\xc3\x01garbage"), (b"X", None)])]
    # an order event with a NUL in a text, which the trading rules refuse (nul_character)
    last = next(r for r in reversed(out) if r.topic() == "o")
    event = codec.decode(last.value()).replace(account="A\x00B")
    out.append(ArchivedRecord("o", last.partition(), last.offset() + 1, 1_800_000_000_000, last.key(),
                              codec.encode(event)))
    return out


def _fold(codec: AvroCodec, records: list[ArchivedRecord]) -> list[tuple[Any, ...]]:
    audit = AuditProjection(SETTINGS, codec)
    audit.place({"o": PARTITIONS, "m": PARTITIONS})
    for r in records:
        assert audit.apply_at(r, r.topic(), r.partition(), r.offset()) is None
    return audit.prepare().records


def test_each_record_is_decoded_once_and_its_columns_come_from_that_decode() -> None:
    codec = AvroCodec()
    records = _session(codec, 2000)
    decoded: list[bytes] = []
    plain = codec.decoder()

    def counting() -> Callable[[bytes], Any]:
        def decode(value: bytes) -> Any:
            decoded.append(value)
            return plain(value)
        return decode

    codec.decoder = counting  # type: ignore[method-assign]
    rows = _fold(codec, records)
    with_value = [r.value() for r in records if r.value()]
    assert decoded == with_value  # the trading fold's decode, and no second one
    assert len(rows) == len(records)
    column = {name: i for i, name in enumerate(RECORD_COLS)}
    for r, row in zip(records, rows, strict=True):
        try:
            event = plain(r.value()) if r.value() else None
        except Exception:
            event = None
        for name in ("event_id", "order_id", "cl_ord_id", "exec_id", "account", "symbol", "event_time"):
            text = getattr(event, name, None)
            assert row[column[name]] == (text.replace("\x00", "\\x00") if isinstance(text, str) else text), name


def test_every_row_of_a_simulated_session_goes_as_text() -> None:
    codec = AvroCodec()
    rows = _fold(codec, _session(codec, 2000))
    assert len(store.COLUMN_TYPES["audit_records"]) == len(RECORD_COLS)
    text = store._rows_text(rows)
    assert text is not None and text == store._rows_text_python(rows)
    lines = text.split("\x1e")
    assert len(lines) == len(rows)
    first = lines[0].split("\x1f")
    assert first[RECORD_COLS.index("record_value")] == "\\x" + rows[0][RECORD_COLS.index("record_value")].hex()
    keys = [line.split("\x1f")[RECORD_COLS.index("record_key")] for line in lines[-5:-1]]
    assert keys == ["\x1d", "\\x", "\\x58", "\\x58"]  # NULL and an empty key stay apart
    nul = dict(zip(RECORD_COLS, rows[-1], strict=True))
    assert (nul["account"], nul["dead_letter_reason"]) == ("A\\x00B", "nul_character")  # Postgres text holds no NUL


def test_a_dropped_projection_frees_its_state_at_once() -> None:
    """No reference cycle through the decoder it hands the trading fold: its state (every order
    folded) goes when it goes, not at some later full collection."""
    codec = AvroCodec()
    audit = AuditProjection(SETTINGS, codec)
    audit.place({"o": PARTITIONS, "m": PARTITIONS})
    for r in _session(codec, 200):
        audit.apply_at(r, r.topic(), r.partition(), r.offset())
    state = weakref.ref(audit._trading.state)
    gc.disable()
    try:
        del audit
        assert state() is None
    finally:
        gc.enable()
