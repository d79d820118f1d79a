"""The trading projection against the real broker and database."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from conftest import TEST_PARTITIONS, scratch_database
from psycopg import sql
from sqlalchemy.engine import make_url
from support import checkpoints, project, publish, rows, table_dump
from tape import Tape

from backbone import db
from backbone.codec.avro import AvroCodec
from backbone.domain.events import EventType, MarketMark, Side
from backbone.errors import InvariantViolation, KafkaError
from backbone.kafka import topics
from backbone.kafka.partitioner import partition_for
from backbone.kafka.producer import KafkaProducer
from backbone.settings import Settings
from consumers import runtime
from consumers.checkpoints import send_checkpoint_moves
from consumers.config import LoopConfig
from consumers.runtime import ProjectionLoop
from producers.simulator import SimulationConfig, simulate
from projections import store
from projections.rebuild import psycopg_url
from projections.trading import TradingProjection

pytestmark = pytest.mark.integration
D = Decimal


def golden_tape() -> Tape:
    """Long build-up, partial reduce, flip long→short, cover to flat, then a bust and a correction."""
    t = Tape()
    t.order("O1", "ACC1", "GOLD", Side.BUY, 100, price=10)
    t.fill("O1", 100, 10, commission="1")                  # long 100 @ 10
    t.order("O2", "ACC1", "GOLD", Side.BUY, 50, price=13)
    t.fill("O2", 50, 13, commission="0.5")                 # long 150 @ 11
    t.order("O3", "ACC1", "GOLD", Side.SELL, 60, price=12)
    t.fill("O3", 60, 12, commission="0.6")                 # reduce: +60 realized, long 90 @ 11
    t.order("O4", "ACC1", "GOLD", Side.SELL, 150, price=9)
    t.fill("O4", 150, 9, commission="1.5")                 # flip: -180 realized, short 60 @ 9
    t.order("O5", "ACC1", "GOLD", Side.BUY, 60, price=8)
    t.fill("O5", 60, 8, commission="0.6")                  # cover: +60 realized, flat
    t.order("O6", "ACC1", "GOLD", Side.BUY, 10, price=20)
    x6 = t.fill("O6", 10, 20)                              # long 10 @ 20
    t.order("O7", "ACC1", "GOLD", Side.BUY, 10, price=22)
    x7 = t.fill("O7", 10, 22)                              # long 20 @ 21
    t.bust("O6", x6)                                       # as if X6 never happened: 10 @ 22
    t.correct("O7", x7, qty=10, px=21)                     # corrected price: 10 @ 21
    t.order("S1", "ACC2", "GOLD", Side.SELL_SHORT, 30, price=30)
    t.fill("S1", 30, 30, commission="0.3")                 # short 30 @ 30
    t.mark("GOLD", 25)
    return t


def test_golden_pnl_scenarios(created_topics: Settings, names) -> None:
    settings = created_topics
    publish(settings, golden_tape().records)
    stats = project(settings, names.group())
    assert stats.dead_letters == 0
    (acc1,) = rows(settings, "select * from positions_pnl where account = 'ACC1'")
    assert acc1["qty"] == D(10)
    assert acc1["avg_px"] == D(21)
    assert acc1["realized_pnl"] == D(-60)                  # 60 - 180 + 60
    assert acc1["commission"] == D("4.2")
    assert acc1["realized_commission"] == D("4.2")         # everything closed was charged
    assert acc1["open_commission"] == D(0)                 # the open lot paid none
    assert acc1["mark_price"] == D(25)
    assert acc1["unrealized_pnl"] == D(40)                 # (25 - 21) * 10
    assert acc1["total_pnl"] == D("-24.2")                 # -60 + 40 - 4.2
    assert acc1["fill_count"] == 6                         # X6 busted
    (acc2,) = rows(settings, "select * from positions_pnl where account = 'ACC2'")
    assert (acc2["qty"], acc2["avg_px"], acc2["unrealized_pnl"]) == (D(-30), D(30), D(150))  # short gains
    assert acc2["total_pnl"] == D("149.7")
    by_account = {r["account"]: r for r in rows(settings, "select * from pnl_by_account")}
    assert by_account["ACC1"]["total_pnl"] == D("-24.2")
    executions = {r["exec_id"]: r for r in rows(settings, "select * from executions")}
    assert executions["X6"]["busted"] and not executions["X7"]["busted"]
    assert executions["X7"]["corrected"] and executions["X7"]["price"] == D(21)
    assert executions["X7"]["original_price"] == D(22)
    orders = {r["order_id"]: r for r in rows(settings, "select * from orders")}
    assert orders["O6"]["status"] == "NEW" and orders["O6"]["cum_qty"] == D(0)  # busted back to working
    assert orders["O7"]["status"] == "FILLED" and orders["O7"]["avg_px"] == D(21)
    exposure = {r["symbol"]: r for r in rows(settings, "select * from exposure_by_symbol")}
    assert exposure["GOLD"]["net_qty"] == D(-20) and exposure["GOLD"]["gross_notional"] == D(1000)
    open_orders = {r["order_id"] for r in rows(settings, "select order_id from open_orders")}
    assert open_orders == {"O6"}


def test_resent_event_is_applied_once(created_topics: Settings, names) -> None:
    settings = created_topics
    tape = Tape()
    tape.order("O1", "ACC1", "DUP", Side.BUY, 100, price=10)
    tape.fill("O1", 40, 10)
    fill = tape.records[-1]
    tape.fill("O1", 60, 11)
    records = list(tape.records)
    records.insert(4, fill)      # a producer retry: the same event (same event id) again, right after
    records.append(fill)         # and once more, much later
    publish(settings, records)
    stats = project(settings, names.group())
    assert stats.dead_letters == 0 and stats.duplicates == 2  # recognised, counted, not dead letters
    (pos,) = rows(settings, "select qty, avg_px from positions where symbol = 'DUP'")
    assert pos["qty"] == D(100) and pos["avg_px"] == D("10.6")
    assert rows(settings, "select count(*) as n from executions")[0]["n"] == 2
    # A second projector run over the same log changes nothing: offsets live in Postgres.
    before = table_dump(settings)
    assert project(settings, names.group()).events == 0
    assert table_dump(settings) == before


def test_every_bad_input_kind_is_dead_lettered_with_its_reason(created_topics: Settings, names) -> None:
    settings = created_topics
    codec = AvroCodec()
    good = Tape()
    good.order("O1", "ACC1", "BAD", Side.BUY, 100, price=10)
    good.fill("O1", 100, 10)                                  # O1 is now FILLED (terminal)
    publish(settings, good.records)

    def event(order_id: str, event_type: EventType, seq: int, **fields):
        base = good.records[-1]
        return base.replace(event_id=f"bad-{order_id}-{seq}-{event_type}", order_id=order_id, event_type=event_type,
                            seq=seq, **fields)

    bad_records = [
        (b"\x00garbage", "decode_error"),
        (b"\xc3\x01" + b"\x11" * 8 + b"\x02", "decode_error"),  # unknown schema fingerprint
        (codec.encode(event("GHOST", EventType.FILLED, 1, exec_id="XG")), "unknown_order"),
        (codec.encode(event("O1", EventType.FILLED, 5, exec_id="XS")), "sequence_gap"),
        (codec.encode(event("O1", EventType.FILLED, 4, exec_id="XT", last_qty=D(1), last_px=D(10),
                            cum_qty=D(101), leaves_qty=D(0))), "terminal_order"),
        (codec.encode(MarketMark("m1", "BAD", good.clock, D(1))), "unexpected_record"),
        # valid Avro and a valid transition, but Postgres text and JSON cannot hold NUL: written,
        # it failed the batch's transaction on every restart
        (codec.encode(event("O1", EventType.CANCEL_REJECTED, good.records[-1].seq + 1, exec_id=None, last_qty=None,
                            last_px=None).replace(event_id="nul\x00")), "nul_character"),
    ]
    over = Tape()
    over.order("O2", "ACC1", "BAD", Side.BUY, 10, price=10)
    ok_events = list(over.records)
    overfill = ok_events[-1].replace(event_id="over", event_type=EventType.FILLED, seq=3, exec_id="XO",
                                     last_qty=D(11), last_px=D(10), cum_qty=D(11), leaves_qty=D(0))
    with KafkaProducer(settings) as producer:
        for payload, _reason in bad_records:
            producer.produce(settings.topic_orders, payload, key=b"BAD")
        for e in ok_events:
            producer.produce(settings.topic_orders, codec.encode(e), key=b"BAD")
        producer.produce(settings.topic_orders, codec.encode(overfill), key=b"BAD")
        producer.produce(settings.topic_marketdata, codec.encode(MarketMark("m2", "BAD", good.clock, D(-5))),
                         key=b"BAD")
        producer.produce(settings.topic_marketdata, codec.encode(MarketMark("m3", "BAD", good.clock, D(5),
                                                                            source="feed\x00")), key=b"BAD")
    expected = sorted([r for _p, r in bad_records] + ["overfill", "bad_value:mark_price", "nul_character"])
    stats = project(settings, names.group())
    assert stats.dead_letters == len(expected)
    table = rows(settings, "select reason, detail, source_topic, projection from dead_letters")
    assert sorted(r["reason"] for r in table) == expected
    assert all("[" in r["detail"] and "]@" in r["detail"] for r in table)  # names topic[partition]@offset
    # The valid events around the bad ones were applied.
    orders = {r["order_id"]: r["status"] for r in rows(settings, "select order_id, status from orders")}
    assert orders == {"O1": "FILLED", "O2": "NEW"}
    consumer = Consumer(settings.kafka_config(**{"group.id": names.group("dlq"), "auto.offset.reset": "earliest"}))
    consumer.subscribe([settings.topic_deadletter])
    letters = []
    try:
        for _ in range(60):
            letters += [m for m in consumer.consume(100, timeout=1.0) if m.error() is None]
            if len(letters) >= len(expected):
                break
    finally:
        consumer.close()
    reasons = sorted(dict(m.headers())["reason"].decode() for m in letters)
    assert reasons == expected
    headers = dict(letters[0].headers())
    assert {"reason", "detail", "source", "source_topic", "source_partition", "source_offset",
            "projection"} <= set(headers)


def test_read_only_role_can_select_and_cannot_write(created_topics: Settings, names) -> None:
    settings = created_topics
    publish(settings, golden_tape().records)
    project(settings, names.group())
    reader = f"reader_{names.prefix[1:9]}"
    db.create_reader(settings, reader, "pw-for-test")
    url = make_url(settings.database_url_value)
    conninfo = psycopg.conninfo.make_conninfo(host=url.host, port=url.port, dbname=url.database, user=reader,
                                              password="pw-for-test")
    with psycopg.connect(conninfo) as conn:
        for view in ("positions_pnl", "pnl_by_account", "open_orders", "exposure_by_symbol", "orders", "executions"):
            conn.execute(f"select * from {view}").fetchall()
        assert conn.execute("select count(*) from positions").fetchone()[0] == 2
        for statement in ("update positions set qty = 0", "delete from orders", "insert into marks (symbol, "
                          "kafka_partition, mark_price, event_time, event_id) values ('X', 0, 1, now(), 'e')",
                          "create table sneaky (x int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
    db.create_reader(settings, reader, "pw-again")  # a reader's password may be reset
    # any other existing role is refused, never altered: the application's own above all
    with pytest.raises(db.DatabaseError, match=f"role {url.username} exists and is not a reader"):
        db.create_reader(settings, url.username, "hijacked")
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)  # its password still works
        # roles are server-wide: this run's would outlive the test database
        conn.execute(sql.SQL("revoke connect on database {} from {}").format(sql.Identifier(url.database),
                                                                            sql.Identifier(reader)))
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(reader)))


def test_records_deleted_before_they_were_projected_stop_the_projector(created_topics: Settings, names) -> None:
    """Kafka would reset to the log start without a word; orders are refused, expired marks counted,
    and a checkpoint beyond the end of the log (a recreated topic) is refused too."""
    settings = created_topics
    publish(settings, list(simulate(SimulationConfig(events=300, seed=5, symbols=4, accounts=2))))
    group = names.group()
    assert project(settings, group).events == 300
    before = table_dump(settings)

    p = partition_for(b"ZZZ", TEST_PARTITIONS)
    with KafkaProducer(settings) as producer:  # three records nobody projects, then deleted
        for _ in range(3):
            producer.produce(settings.topic_marketdata, b"never read", key=b"ZZZ")
    admin = topics.admin_client(settings)
    consumer = Consumer(settings.kafka_config(**{"group.id": "watermarks"}))
    try:
        mark_end = consumer.get_watermark_offsets(TopicPartition(settings.topic_marketdata, p), timeout=10)[1]
        cut = [TopicPartition(settings.topic_marketdata, p, mark_end)]
        for future in admin.delete_records(cut, request_timeout=30).values():
            future.result()
        stats = project(settings, group)  # marks expire by design: counted, the run goes on
        assert stats.events == 0 and stats.expired_skipped == 3
        assert table_dump(settings) == before

        with KafkaProducer(settings) as producer:
            for _ in range(2):
                producer.produce(settings.topic_orders, b"never read", key=b"ZZZ")
        end = consumer.get_watermark_offsets(TopicPartition(settings.topic_orders, p), timeout=10)[1]
    finally:
        consumer.close()
    for future in admin.delete_records([TopicPartition(settings.topic_orders, p, end)], request_timeout=30).values():
        future.result()
    with pytest.raises(KafkaError, match=rf"{settings.topic_orders}\[{p}\]: the next offset to project is "
                                         rf"{end - 2} but the log starts at {end}"):
        project(settings, group)
    assert table_dump(settings) == before

    # A checkpoint beyond the end of the log (the topic recreated): new records would be skipped as
    # already applied.
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        conn.execute("insert into projection_checkpoints (projection, topic, partition, next_offset) "
                     "values ('trading', %s, %s, %s) on conflict (projection, topic, partition) "
                     "do update set next_offset = excluded.next_offset", (settings.topic_orders, p, end + 5))
    with pytest.raises(KafkaError, match=rf"{settings.topic_orders}\[{p}\]: the next offset to project is "
                                         rf"{end + 5} but the log ends at {end}: the topic was recreated"):
        project(settings, group)


@pytest.mark.parametrize("topic_attr", ["topic_orders", "topic_marketdata"])
def test_records_deleted_while_the_projector_holds_the_partition(created_topics: Settings, names, monkeypatch,
                                                                 topic_attr: str) -> None:
    """Retention catching up with a partition after the assignment check: the broker answers the
    fetch with "offset out of range" and Kafka's auto.offset.reset would jump over the records.
    The projector decides as at assignment instead: orders refused, expired marks counted."""
    settings = created_topics
    topic = getattr(settings, topic_attr)
    publish(settings, list(simulate(SimulationConfig(events=300, seed=5, symbols=4, accounts=2))))
    group = names.group()
    assert project(settings, group).events == 300
    p = partition_for(b"ZZZ", TEST_PARTITIONS)
    with KafkaProducer(settings) as producer:  # three records nobody reads: deleted below
        for _ in range(3):
            producer.produce(topic, b"never read", key=b"ZZZ")
    tape = Tape()
    if topic_attr == "topic_marketdata":
        tape.mark("ZZZ", 7)
    else:
        tape.order("OZ", "ACC9", "ZZZ", Side.BUY, 5, price=7)
    publish(settings, tape.records)  # one valid record after them, kept
    before = table_dump(settings)
    consumer = Consumer(settings.kafka_config(**{"group.id": "watermarks"}))
    try:
        end = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
    finally:
        consumer.close()
    stored = rows(settings, "select next_offset from projection_checkpoints where topic = :t and partition = :p",
                  t=topic, p=p)
    start = stored[0]["next_offset"] if stored else 0  # the next offset the projector will fetch

    checks: list[int] = []
    original = ProjectionLoop._within_log

    def delete_after_the_check(self: ProjectionLoop, consumer: Consumer, tp: tuple[str, int], start: int) -> int:
        if tp == (topic, p):
            checks.append(start)
        resume = original(self, consumer, tp, start)
        if tp == (topic, p) and len(checks) == 1:  # passed at assignment, gone before the first fetch
            admin = topics.admin_client(settings)
            for future in admin.delete_records([TopicPartition(topic, p, end - 1)], request_timeout=30).values():
                future.result()
        return resume

    monkeypatch.setattr(ProjectionLoop, "_within_log", delete_after_the_check)
    if topic_attr == "topic_orders":
        with pytest.raises(KafkaError, match=rf"{topic}\[{p}\]: the next offset to project is {start} but the "
                                             rf"log starts at {end - 1}: records {start}..{end - 2} were deleted"):
            project(settings, group)
        assert checks == [start, start]  # at assignment, then on the broker's out-of-range answer
        assert table_dump(settings) == before
    else:
        stats = project(settings, group)
        assert checks == [start, start]
        assert stats.expired_skipped == end - 1 - start >= 3 and stats.events == 1 and stats.dead_letters == 0
        (mark,) = rows(settings, "select mark_price from marks where symbol = 'ZZZ'")
        assert mark["mark_price"] == Decimal(7)


def test_a_small_batch_sends_its_rows_and_checkpoint_moves_in_one_round_trip(created_topics: Settings, names,
                                                                             monkeypatch) -> None:
    """A batch's upserts and its checkpoint compare-and-set go to Postgres in one pipeline (one
    sync): the moves are sent while the pipeline is open, and the loop opens one pipeline per
    committed batch."""
    settings = created_topics
    publish(settings, list(simulate(SimulationConfig(events=600, seed=12, symbols=4, accounts=2))))
    opened: list[int] = []
    during_moves: list[str] = []
    pipeline, send_moves = psycopg.Connection.pipeline, send_checkpoint_moves

    def counting_pipeline(self: psycopg.Connection):  # type: ignore[no-untyped-def]
        opened.append(1)
        return pipeline(self)

    def recording_moves(conn: psycopg.Connection, *args, **kwargs):  # type: ignore[no-untyped-def]
        during_moves.append(psycopg.pq.PipelineStatus(conn.pgconn.pipeline_status).name)
        return send_moves(conn, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "pipeline", counting_pipeline)
    monkeypatch.setattr(runtime, "send_checkpoint_moves", recording_moves)
    stats = project(settings, names.group(), batch_size=50)
    assert stats.events == 600 and stats.batches >= 12
    assert during_moves == ["ON"] * stats.batches
    assert len(opened) == stats.batches


#: How store.send_rows formats a table's rows: the default (the compiled text where the C
#: extension is built), the Python text (what runs without the build), or none (every row a
#: statement of its own, as for a value the text cannot hold).
ROW_PATHS = {"default": store._rows_text, "python": store._rows_text_python, "per-row": lambda rows: None}


def test_text_and_per_row_upserts_write_the_same_rows(created_topics: Settings, services, names,
                                                     monkeypatch) -> None:
    """send_rows sends a table's rows as one text parameter, or a statement a row when the text
    cannot hold a value: every path gives the same tables, row for row; and so does the loop
    that commits each batch before it polls again, against the one that folds the next batch
    while the last is in flight (all records are there already: it always has one to fold)."""
    settings = created_topics
    publish(settings, list(simulate(SimulationConfig(events=3000, seed=11, symbols=6, accounts=3))))
    stats = project(settings, names.group("default"), batch_size=500)
    assert stats.events == 3000 and stats.overlapped >= 1
    reference = table_dump(settings)
    for path in ("python", "per-row"):
        monkeypatch.setattr(store, "_rows_text", ROW_PATHS[path])
        with scratch_database(settings, services.database_url) as other:
            assert project(other, names.group(path), batch_size=500).events == 3000
            assert table_dump(other) == reference, path
    with scratch_database(settings, services.database_url) as other:
        stats = project(other, names.group("one-by-one"), batch_size=200, overlap=False)
        assert stats.events == 3000 and stats.overlapped == 0
        assert table_dump(other) == reference
    assert len(reference["orders"]) > 500 and len(reference["executions"]) > 100


def test_awkward_values_are_written_as_they_are(settings: Settings, monkeypatch) -> None:
    """Values the text parameter carries as they are (quotes, backslashes, tabs, newlines, what
    looks like COPY's NULL, an empty text, decimals of any exponent, times with and without
    microseconds) and values it cannot hold (a separator character: a statement a row, and
    psycopg's own adaptation) come back from the table exactly, through every path."""
    carried = ["quote'\"", "back\\slash", "tab\there", "line\nfeed", "\\N", "NULL", "", "é€😀"]
    refused = ["sep\x1fin", "row\x1ein", "null\x1din"]
    decimals = [Decimal("1E+2"), Decimal("0E-8"), Decimal("-0.5"), Decimal("123456789012345678901234567890.12345678"),
                Decimal("1E-20"), Decimal("7")]
    when = [datetime(2026, 12, 3, 1, 2, 3, tzinfo=UTC), datetime(2026, 12, 3, 1, 2, 3, 4, tzinfo=UTC)]

    def marks(texts: list[str], first: int) -> list[tuple]:
        return sorted((f"S{i}-{t}", i % 3, decimals[i % len(decimals)],
                       None if i % 2 else decimals[(i + 1) % len(decimals)], None, Decimal(i), when[i % 2], f"E{i}", t)
                      for i, t in enumerate(texts, first))

    plain, awkward = marks(carried, 0), marks(refused, len(carried))
    assert store._rows_text_python(plain) is not None and store._rows_text_python(awkward) is None
    for path, rows_text in ROW_PATHS.items():
        monkeypatch.setattr(store, "_rows_text", rows_text)
        with psycopg.connect(psycopg_url(settings)) as conn:
            for batch in (plain, awkward):  # two batches: one refused row sends its whole table a row at a time
                assert store.send_rows(conn, [("marks", store.MARK_COLS, ("symbol",), batch)])() == len(batch)
            back = conn.execute(f"select {', '.join(store.MARK_COLS)} from marks order by symbol").fetchall()
            conn.rollback()
        expected = sorted(plain + awkward)
        assert [tuple(v.astimezone(UTC) if isinstance(v, datetime) else v for v in row) for row in back] == expected, \
            path
        # NUMERIC keeps a decimal's scale, not a positive exponent: 1E+2 comes back as 100 (equal, above)
        assert [str(row[2]) for row in back] == [{"1E+2": "100"}.get(str(r[2]), str(r[2])) for r in expected], path


def test_the_text_parameter_casts_to_the_column_types(settings: Settings) -> None:
    with psycopg.connect(psycopg_url(settings)) as conn:
        for table, cols in (("orders", store.ORDER_COLS), ("executions", store.EXEC_COLS),
                            ("positions", store.POSITION_COLS), ("marks", store.MARK_COLS),
                            ("position_days", store.POSITION_DAY_COLS), ("mark_days", store.MARK_DAY_COLS)):
            found = conn.execute("select column_name, udt_name from information_schema.columns where table_schema = "
                                 "'public' and table_name = %s order by ordinal_position", (table,)).fetchall()
            assert found == list(zip(cols, store.COLUMN_TYPES[table], strict=True)), table


def test_a_batch_committed_while_partitions_load_is_not_folded_onto_older_rows(created_topics: Settings, services,
                                                                                names, monkeypatch) -> None:
    """Another owner's batch commits between the statements that load a partition (a consumer
    kicked out of the group while it retried its commit). The load reads rows and checkpoints in
    one snapshot, so the newcomer's first compare-and-set fails and it reloads; read separately,
    it held rows older than its checkpoint and folded the next events onto them."""
    settings = created_topics
    records = list(simulate(SimulationConfig(events=900, seed=8, symbols=4, accounts=2)))
    publish(settings, records[:300])
    assert project(settings, names.group("first")).events == 300
    publish(settings, records[300:600])
    original = TradingProjection.load
    others: list[int] = []

    def load_while_another_owner_commits(self: TradingProjection, conn: psycopg.Connection,
                                         assigned: list[tuple[str, int]]) -> None:
        original(self, conn, assigned)
        if not others:  # once: the other owner's own load passes straight through
            others.append(0)
            others[0] = project(settings, names.group("other")).events  # commits 300..599
            publish(settings, records[600:])

    monkeypatch.setattr(TradingProjection, "load", load_while_another_owner_commits)
    stats = project(settings, names.group("late"))
    assert others == [300]
    assert stats.fenced >= 1 and stats.dead_letters == 0
    monkeypatch.undo()
    with scratch_database(settings, services.database_url) as reference:
        assert project(reference, names.group("reference")).dead_letters == 0
        assert table_dump(settings) == table_dump(reference)


@pytest.mark.parametrize("path", ["default", "per-row"])
def test_an_id_another_partition_owns_is_refused_not_overwritten(created_topics: Settings, names, monkeypatch,
                                                                 path: str) -> None:
    """orders rows are keyed by the order_id, not the symbol: a record reusing the id of an order
    another partition owns (here partition 99, as if another projector's) used to overwrite that
    row. The table refuses the write, the batch is abandoned and folded again with those records
    dead-lettered; the owner's rows stay as they were. An exec id is unique within its order only
    (FIX: per sell side), so another order's fill reusing XM is that order's own execution."""
    settings = created_topics
    monkeypatch.setattr(store, "_rows_text", ROW_PATHS[path])
    first = Tape()
    first.order("OF", "ACC1", "GOLD", Side.BUY, 10, price=5)
    first.fill("OF", 10, 5, exec_id="XM")
    publish(settings, first.records)
    group = names.group()
    assert project(settings, group).events == len(first.records)
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        conn.execute("update orders set kafka_partition = 99 where order_id = 'OF'")
        conn.execute("update executions set kafka_partition = 99 where exec_id = 'XM'")
        conn.execute("update positions set kafka_partition = 99 where symbol = 'GOLD'")
    owned = (rows(settings, "select * from orders where order_id = 'OF'"),
             rows(settings, "select * from executions where order_id = 'OF'"))

    later = Tape(start=first.clock + timedelta(hours=1))
    later.order("OF", "ACC2", "SILVER", Side.SELL, 3, price=7)  # the id of GOLD's order
    later.order("ON", "ACC2", "SILVER", Side.BUY, 4, price=7)
    later.fill("ON", 4, 7, exec_id="XM")                        # GOLD's exec id, ON's own fill
    later.order("OK", "ACC2", "SILVER", Side.BUY, 1, price=7)
    publish(settings, later.records)
    stats = project(settings, group)
    assert stats.fenced == 1  # the refusal found in one batch, folded again once
    reasons = Counter(r["reason"] for r in rows(settings, "select reason from dead_letters"))
    intruders = sum(1 for r in later.records if r.order_id == "OF")
    assert reasons == {"order_id_in_other_partition": intruders}
    assert (rows(settings, "select * from orders where order_id = 'OF'"),
            rows(settings, "select * from executions where order_id = 'OF'")) == owned
    status = {r["order_id"]: r["status"] for r in rows(settings, "select order_id, status from orders")}
    assert status == {"OF": "FILLED", "ON": "FILLED", "OK": "NEW"}
    assert [(r["order_id"], r["symbol"]) for r in rows(settings, "select * from executions where exec_id = 'XM' "
                                                                 "order by order_id")] == [("OF", "GOLD"),
                                                                                           ("ON", "SILVER")]


def test_offsets_are_mirrored_to_kafka_and_a_reload_checks_positions(created_topics: Settings, names) -> None:
    """Postgres holds the offsets; the group's committed offsets in Kafka mirror them, so ordinary
    lag tools see it. A reload refolds each position from its executions and refuses a row that
    disagrees (a bug, or a hand-edited table), rather than carrying it on."""
    settings = created_topics
    publish(settings, golden_tape().records)
    group = names.group()
    project(settings, group)
    stored, mirrored = checkpoints_and_mirror(settings, group)
    assert stored and mirrored == stored

    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        conn.execute("update positions set qty = qty + 1 where account = 'ACC1'")
    with pytest.raises(InvariantViolation, match=r"position ACC1/GOLD: stored qty=11\.?0* but its executions "
                                                 r"fold to 10"):
        project(settings, group)


def checkpoints_and_mirror(settings: Settings,
                           group: str) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """The next offsets in projection_checkpoints, and the group's committed offsets in Kafka
    for the same partitions."""
    stored = checkpoints(settings)
    consumer = Consumer(settings.kafka_config(**{"group.id": group}))
    try:
        committed = consumer.committed([TopicPartition(t, p) for t, p in stored], timeout=30)
    finally:
        consumer.close()
    return stored, {(tp.topic, tp.partition): tp.offset for tp in committed}


class _CountingCommits:
    """The loop's consumer, counting the offset commits (the Kafka mirror) it is asked for."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self.commits: list[bool] = []  # asynchronous?

    def commit(self, *args, **kwargs):
        self.commits.append(kwargs.get("asynchronous", True))
        return self._consumer.commit(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._consumer, name)


@pytest.mark.parametrize("interval, per_batch", [(0.0, True), (3600.0, False)])
def test_offsets_are_mirrored_at_most_once_an_interval_and_on_close(created_topics: Settings, names,
                                                                     interval: float, per_batch: bool) -> None:
    """Mirroring every batch kept the broker busy with OffsetCommits (~100/s at 5k events/s): the
    loop mirrors at most once per `mirror_interval_s` (once per poll at 0), and whatever is left
    when it closes, so the group's offsets in Kafka end equal to Postgres's either way."""
    settings = created_topics
    publish(settings, list(simulate(SimulationConfig(events=2_000, seed=31))))
    group = names.group()
    engine = db.make_engine(settings)
    try:
        loop = ProjectionLoop(settings, TradingProjection(settings), engine,
                              LoopConfig(group_id=group, batch_size=100, mirror_interval_s=interval))
        counting = loop._consumer = _CountingCommits(loop._consumer)  # noqa: SLF001
        stats = loop.run(until_caught_up=True, max_seconds=300)
    finally:
        engine.dispose()
    assert stats.events == 2_000 and stats.batches >= 20
    if per_batch:
        # the assignment's offsets, then at most one per batch, and the last batch's on close
        assert all(counting.commits[:-1]) and 2 <= len(counting.commits) <= stats.batches + 2
    else:
        assert counting.commits == [False]  # only the synchronous one on close
    stored, mirrored = checkpoints_and_mirror(settings, group)
    assert stored and mirrored == stored


def test_kafka_offsets_follow_postgres_while_idle_for_every_partition(created_topics: Settings, names) -> None:
    """Lag tools read the group's offsets in Kafka. Within the mirror interval of the projector
    catching up they equal Postgres's while it keeps running idle, and every assigned partition
    has one, also those no record ever reached (they are at the log start)."""
    import signal
    import subprocess
    import sys
    import time

    from support import checkpoint_total, settings_env

    settings = created_topics
    publish(settings, list(simulate(SimulationConfig(events=1_500, seed=32, symbols=2, accounts=2))))
    group = names.group()
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "project", "run", "--group", group,
                             "--mirror-interval", "1", "--batch-size", "100"], env=settings_env(settings),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while checkpoint_total(settings) < 1_500:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the projector did not catch up"
            time.sleep(0.05)
        stored = checkpoints(settings)
        everything = [TopicPartition(t, p) for t in (settings.topic_orders, settings.topic_marketdata)
                      for p in range(TEST_PARTITIONS)]
        expected = {(tp.topic, tp.partition): stored.get((tp.topic, tp.partition), 0) for tp in everything}
        assert sum(1 for tp in expected if tp not in stored) >= 2  # some partitions never got a record
        consumer = Consumer(settings.kafka_config(**{"group.id": group}))
        try:
            deadline = time.monotonic() + 15  # 1 s interval: well within, on a busy machine too
            while True:
                mirrored = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(everything, timeout=30)}
                if mirrored == expected:
                    break
                assert time.monotonic() < deadline, {tp: (mirrored[tp], n) for tp, n in expected.items()
                                                     if mirrored[tp] != n}
                time.sleep(0.1)
        finally:
            consumer.close()
        assert proc.poll() is None  # still running: the mirror did not wait for the exit
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_the_default_group_is_the_projection_and_its_topics() -> None:
    from consumers.config import default_group_id

    a = default_group_id("trading", ["trading.orders", "trading.marketdata"])
    assert a == "backbone-trading-trading.orders+trading.marketdata"
    assert default_group_id("trading", ["desk2.orders", "desk2.marketdata"]) != a
