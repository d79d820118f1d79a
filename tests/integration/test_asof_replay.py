"""Point-in-time state and replay against the real broker and database (docs/replay.md).

The reference everywhere is the definition: "state as of T" = for each partition, every record
before its first record after T (by event time, to the microsecond), in offset order. `expected_state` folds the
published records by that definition in pure Python (no Kafka, no snapshots); the live
projector's tables, `state --as-of` (snapshot + tail) and a full replay must all equal it.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from support import TABLE_KEYS, project, publish, rows, schema_dump, settings_env, table_dump
from typer.testing import CliRunner

from backbone import db
from backbone.codec.avro import AvroCodec
from backbone.domain.events import MarketMark, OrderEvent
from backbone.errors import InvalidOrderTransition
from backbone.kafka import topics
from backbone.kafka.partitioner import symbol_partition
from backbone.kafka.producer import KafkaProducer
from backbone.record_time import timestamp_ms
from backbone.settings import Settings
from cli.main import app
from producers.simulator import SimulationConfig, simulate
from projections import read_model, snapshots
from projections.replay import Replayer
from projections.state import TradingState

pytestmark = pytest.mark.integration

PROJECTED = tuple(TABLE_KEYS)  # orders, executions, positions, marks


# -- the definition, in pure Python ------------------------------------------------------------------

@dataclass(frozen=True)
class Logged:
    topic: str
    partition: int
    offset: int
    ts_ms: int
    record: OrderEvent | MarketMark


def log_of(settings: Settings, records: list[OrderEvent | MarketMark], start: Counter | None = None) -> list[Logged]:
    """Where each record lands when published in this order (idempotent producer: no gaps)."""
    next_offset = start if start is not None else Counter()
    out = []
    for r in records:
        topic = settings.topic_orders if isinstance(r, OrderEvent) else settings.topic_marketdata
        tp = (topic, symbol_partition(r.symbol, settings.partitions))
        out.append(Logged(topic, tp[1], next_offset[tp], timestamp_ms(r.event_time), r))
        next_offset[tp] += 1
    return out


def cut(log: list[Logged], tp: tuple[str, int], when: datetime) -> int:
    """The first offset of tp whose record is after `when`, or its end."""
    mine = [x for x in log if (x.topic, x.partition) == tp]
    return next((x.offset for x in mine if x.record.event_time > when), mine[-1].offset + 1 if mine else 0)


def fold(entries: list[Logged]) -> TradingState:
    state = TradingState()
    for x in sorted(entries, key=lambda x: (x.topic, x.partition, x.offset)):
        if isinstance(x.record, OrderEvent):
            try:
                state.apply_order_event(x.record, x.partition, x.offset)
            except InvalidOrderTransition:
                pass  # dead-lettered
        else:
            state.apply_mark(x.record, x.partition)
    return state


def expected_state(log: list[Logged], when: datetime) -> TradingState:
    cuts = {tp: cut(log, tp, when) for tp in {(x.topic, x.partition) for x in log}}
    return fold([x for x in log if x.offset < cuts[(x.topic, x.partition)]])


def comparable(state: TradingState) -> tuple:
    """What `state --as-of` prints (read first: a replayed state is restored lazily), then every row."""
    shown = (read_model.position_rows(state), read_model.open_order_rows(state))
    state.thaw_all()
    return shown, (state.orders, state.order_partition, state.executions, state.positions, state.position_partition,
                   state.marks)


# -- helpers ----------------------------------------------------------------------------------------

def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def cli_env(created_topics: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's settings with small snapshot intervals, also as BACKBONE_* for the CLI."""
    settings = created_topics.with_overrides(snapshot_every_events=150, snapshot_every_seconds=0)
    for key, value in settings_env(settings).items():
        if key.startswith("BACKBONE_"):
            monkeypatch.setenv(key, value)
    return settings


def live_dump(settings: Settings) -> dict[str, list[tuple]]:
    dump = table_dump(settings)
    return {t: dump[t] for t in PROJECTED}


def history_dump(settings: Settings, schema: str) -> dict[str, list[tuple]]:
    """The projection's day rows in `schema` (position_days, mark_days), in key order."""
    return {t: [tuple(r.values()) for r in rows(settings, f"select * from {schema}.{t} order by {key}")]
            for t, key in (("position_days", "account, symbol, day"), ("mark_days", "symbol, day"))}


def in_memory(settings: Settings, when: datetime, *, use_snapshots: bool,
              replayer: Replayer | None = None) -> tuple[TradingState, list]:
    """The state as of `when` and the per-partition reports (plan, exact cut)."""
    if replayer is not None:
        result = replayer.run(replayer.plan_as_of(when, use_snapshots=use_snapshots))
        return result.state, list(result.reports.values())
    engine = db.make_engine(settings)
    try:
        with Replayer(settings, engine) as r:
            return in_memory(settings, when, use_snapshots=use_snapshots, replayer=r)
    finally:
        engine.dispose()


def clean_boundaries(records: list[OrderEvent | MarketMark]) -> list[int]:
    """Indexes i where record i is stamped in a later millisecond than record i-1: a chunk that
    ends before i ends exactly at an as-of cut."""
    ms = [timestamp_ms(r.event_time) for r in records]
    return [i for i in range(1, len(records)) if ms[i] > ms[i - 1]]


# -- tests ------------------------------------------------------------------------------------------

def test_snapshot_plus_tail_equals_full_replay_equals_live_state_at_random_cuts(cli_env: Settings, names) -> None:
    settings, rng = cli_env, random.Random(20261120)
    records = list(simulate(SimulationConfig(events=2400, seed=31, symbols=12, accounts=6)))
    log = log_of(settings, records)
    bounds = sorted(rng.sample(clean_boundaries(records)[100:-100], 3)) + [len(records)]

    live: dict[datetime, dict[str, list[tuple]]] = {}
    history: dict[datetime, dict[str, list[tuple]]] = {}
    start = 0
    for end in bounds:  # publish a chunk, let the real projector catch up, dump its tables
        publish(settings, records[start:end])
        stats = project(settings, names.group("live"), batch_size=200)
        assert stats.events == end - start and stats.dead_letters == 0
        live[records[end - 1].event_time] = live_dump(settings)
        history[records[end - 1].event_time] = history_dump(settings, "public")
        start = end

    with db.make_engine(settings).connect() as sa_conn:
        taken = snapshots.list_snapshots(sa_conn.connection.driver_connection, "trading")
    assert len(taken) >= 5, "small snapshot settings should have left several snapshots"

    for k, (when, dump) in enumerate(live.items()):
        # The live projector's tables at the cut == the definition.
        exp = expected_state(log, when)
        assert sum(len(v) for v in dump.values()) > 0
        asof = invoke("state", "--as-of", when.isoformat(), "--into", f"asof_{k}", "--json")
        assert asof.exit_code == 0, asof.output
        summary = json.loads(asof.stdout)
        days = history_dump(settings, f"asof_{k}")  # the days booked after the snapshots (docs/sql.md)
        assert summary["rows_written"] == sum(len(v) for v in (*dump.values(), *days.values()))
        full = invoke("replay", "--from-beginning", "--to-timestamp", when.isoformat(), "--into", f"full_{k}",
                      "--json")
        assert full.exit_code == 0, full.output
        cuts = {tp: cut(log, tp, when) for tp in {(x.topic, x.partition) for x in log}}
        assert json.loads(full.stdout)["records_read"] == sum(1 for x in log if x.offset < cuts[(x.topic, x.partition)])
        assert schema_dump(settings, f"asof_{k}") == dump, f"state --as-of {when} differs from the live state"
        assert schema_dump(settings, f"full_{k}") == dump, f"full replay to {when} differs from the live state"
        assert history_dump(settings, f"full_{k}") == history[when], f"full replay to {when}: other day rows"
        state, reports = in_memory(settings, when, use_snapshots=True)
        assert comparable(state) == comparable(exp)
        if k == len(live) - 1:
            assert any(r.plan.snapshot is not None for r in reports), "the last cut should start from snapshots"

    # Many more cut times, anywhere (before the first record, inside, after the last):
    first, last = records[0].event_time, records[-1].event_time
    span_us = int((last - first) / timedelta(microseconds=1))
    cuts = [first - timedelta(milliseconds=5), first, last + timedelta(seconds=1)]
    cuts += [first + timedelta(microseconds=rng.randrange(span_us)) for _ in range(9)]
    used_snapshot = 0
    engine = db.make_engine(settings)
    replayer = Replayer(settings, engine)  # one reader for every cut: reading again after reading works
    for when in cuts:
        with_snaps, reports = in_memory(settings, when, use_snapshots=True, replayer=replayer)
        without, plain = in_memory(settings, when, use_snapshots=False, replayer=replayer)
        assert all(r.plan.snapshot is None and r.plan.start == 0 for r in plain)
        exp = comparable(expected_state(log, when))
        assert comparable(with_snaps) == exp, f"snapshot + tail at {when.isoformat()}"
        assert comparable(without) == exp, f"full replay at {when.isoformat()}"
        used_snapshot += any(r.plan.snapshot is not None for r in reports)
        for r in reports:  # the newest usable snapshot was chosen, and the tail is what remains
            p = r.plan
            assert r.end == cut(log, p.tp, when)
            assert p.start == (p.snapshot.next_offset if p.snapshot else 0) <= r.end
            assert r.caught_up + r.replayed == r.end - p.start
            later = [s for s in taken if (s.topic, s.partition) == p.tp and p.start < s.next_offset <= r.end]
            assert not later, f"{p.tp}: a newer snapshot at or before the cut was ignored"
    replayer.close()
    engine.dispose()
    assert used_snapshot >= 3  # where snapshots fall depends on batch boundaries; most cuts use one


def test_state_as_of_prints_positions_pnl_and_open_orders_like_the_views(cli_env: Settings, names) -> None:
    settings = cli_env
    records = list(simulate(SimulationConfig(events=1500, seed=8, symbols=6, accounts=4)))
    publish(settings, records)
    project(settings, names.group("live"), batch_size=300)
    when = records[900].event_time
    as_json = invoke("state", "--as-of", when.isoformat(), "--json", "--include-flat")
    assert as_json.exit_code == 0, as_json.output
    out = json.loads(as_json.stdout)
    assert invoke("state", "--as-of", when.isoformat(), "--into", "asof_views").exit_code == 0

    def canon(table: list[dict]) -> list[dict]:
        from cli.common import canonical_value
        return [{k: canonical_value(v) for k, v in r.items()} for r in table]

    # --json keeps full precision: the exact views (positions_pnl and pnl_by_account round money)
    assert out["positions"] == canon(rows(settings, "select * from asof_views.positions_pnl_exact "
                                                    "order by account, symbol"))
    assert out["pnl_by_account"] == canon(rows(settings, "select * from asof_views.pnl_by_account_exact "
                                                         "order by account"))
    view_orders = rows(settings, "select * from asof_views.open_orders order by last_event_time desc, order_id desc")
    assert out["open_orders"] == canon(view_orders)
    assert out["positions"] and out["open_orders"]

    one = out["positions"][0]
    filtered = json.loads(invoke("state", "--as-of", when.isoformat(), "--account", one["account"], "--symbol",
                                 one["symbol"], "--json", "--include-flat").stdout)
    assert filtered["positions"] == [one]
    assert {p["partition"] for p in filtered["partitions"]} == {symbol_partition(one["symbol"], settings.partitions)}
    table = invoke("state", "--as-of", when.isoformat(), "--account", one["account"])
    assert table.exit_code == 0 and "P&L by account" in table.output and "open orders" in table.output

    # Readers may query the scratch schema; a second --into the same schema is refused.
    again = invoke("state", "--as-of", when.isoformat(), "--into", "asof_views")
    assert again.exit_code == 1 and "already exists" in again.stderr
    assert invoke("state", "--as-of", "yesterday-ish").exit_code == 2  # a usage error


def test_state_as_of_verify_refolds_what_the_tail_left_in_the_snapshot(cli_env: Settings, names) -> None:
    """Without --verify, a position the tail never restates prints as its snapshot stored it;
    --verify refolds it from its fills first, so a snapshot that disagrees is caught."""
    import psycopg

    settings = cli_env
    records = list(simulate(SimulationConfig(events=1200, seed=12, symbols=6, accounts=4)))
    publish(settings, records)
    snap_at, when = records[799].event_time, records[809].event_time
    assert invoke("checkpoints", "create", "--as-of", snap_at.isoformat()).exit_code == 0
    plain = json.loads(invoke("state", "--as-of", when.isoformat(), "--json", "--include-flat").stdout)
    checked = invoke("state", "--as-of", when.isoformat(), "--json", "--include-flat", "--verify")
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["verified"] is True and plain["verified"] is False
    assert json.loads(checked.stdout)["positions"] == plain["positions"] and plain["positions"]

    # Damage one position's stored summary in the newest snapshot of its partition.
    replayed = {(r.account, r.symbol) for r in records[800:810] if isinstance(r, OrderEvent)}
    victim = next(p for p in plain["positions"] if (p["account"], p["symbol"]) not in replayed)
    partition = symbol_partition(victim["symbol"], settings.partitions)
    url = settings.database_url_value.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        snap_id, payload = conn.execute(
            "select id, state from projection_snapshots where topic = %s and partition = %s "
            "order by next_offset desc limit 1", (settings.topic_orders, partition)).fetchone()
        header, sections = snapshots.unpack(bytes(payload))
        stored = next(p for p in header["positions"] if (p["account"], p["symbol"]) == (victim["account"],
                                                                                         victim["symbol"]))
        stored["qty"] = str(Decimal(stored["qty"]) + 1)
        conn.execute("update projection_snapshots set state = %s where id = %s",
                     (snapshots._framed(header, [bytes(sections)]), snap_id))

    unchecked = json.loads(invoke("state", "--as-of", when.isoformat(), "--json", "--include-flat").stdout)
    shown = next(p for p in unchecked["positions"] if (p["account"], p["symbol"]) == (victim["account"],
                                                                                      victim["symbol"]))
    assert Decimal(shown["qty"]) == Decimal(victim["qty"]) + 1  # the stored summary, as stored
    refused = invoke("state", "--as-of", when.isoformat(), "--verify")
    assert refused.exit_code == 1
    assert "error:" in refused.stderr and f"{victim['account']}/{victim['symbol']}" in refused.stderr


def test_replay_from_offset_and_from_timestamp_give_what_the_definition_says(cli_env: Settings, names) -> None:
    settings = cli_env
    records = list(simulate(SimulationConfig(events=2000, seed=12, symbols=8, accounts=4)))
    log = log_of(settings, records)
    publish(settings, records)
    # snapshots in the batches, every 150 records (a build beside the loop would be outpaced)
    project(settings.with_overrides(bounded_state=False), names.group("live"), batch_size=250)
    orders_tp = max({(x.topic, x.partition) for x in log if x.topic == settings.topic_orders},
                    key=lambda tp: sum(1 for x in log if (x.topic, x.partition) == tp))
    size = sum(1 for x in log if (x.topic, x.partition) == orders_tp)
    with db.make_engine(settings).connect() as sa_conn:
        taken = snapshots.list_snapshots(sa_conn.connection.driver_connection, "trading", *orders_tp)
    assert taken and taken[0].next_offset < size - 40  # where batches end decides where snapshots are
    begin = taken[0].next_offset + 17
    stop = begin + (size - begin) // 2
    newest_before = max((s for s in taken if s.next_offset <= begin), key=lambda s: s.next_offset)
    p = orders_tp[1]

    dry = invoke("replay", "--from-offset", f"{p}:{begin}", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.stdout)
    (part,) = report["partitions"]
    assert (part["topic"], part["partition"], part["from_offset"], part["to_offset"]) == (*orders_tp, begin, size)
    assert part["replayed"] == size - begin and report["dead_letters"] == {}
    assert (part["snapshot_id"], part["state_from_offset"]) == (newest_before.id, newest_before.next_offset)
    assert part["caught_up"] == begin - newest_before.next_offset

    ranged = invoke("replay", "--from-offset", f"orders:{p}:{begin}", "--to-offset", f"{p}:{stop}",
                    "--into", "ranged", "--json")
    assert ranged.exit_code == 0, ranged.output
    assert json.loads(ranged.stdout)["replayed"] == stop - begin
    want = fold([x for x in log if (x.topic, x.partition) == orders_tp and x.offset < stop])
    got = schema_dump(settings, "ranged")
    assert sorted(r[0] for r in got["orders"]) == sorted(want.orders)
    assert sorted((r[1], r[0]) for r in got["executions"]) == sorted(want.executions)  # (order_id, exec_id)
    assert {(r[0], r[1]): r[3] for r in got["positions"]} == {k: v.qty for k, v in want.positions.items()}
    assert got["marks"] == []
    engine = db.make_engine(settings)
    try:
        with Replayer(settings, engine) as r:
            plans = r.plan_replay(from_offsets={orders_tp: begin}, to_offsets={orders_tp: stop})
            assert comparable(r.run(plans).state) == comparable(want)
    finally:
        engine.dispose()

    t1, t2 = records[500].event_time, records[1400].event_time
    timed = invoke("replay", "--from-timestamp", t1.isoformat(), "--to-timestamp", t2.isoformat(),
                   "--into", "timed", "--json")
    assert timed.exit_code == 0, timed.output
    out = json.loads(timed.stdout)
    for part in out["partitions"]:
        tp = (part["topic"], part["partition"])
        mine = [x for x in log if (x.topic, x.partition) == tp]
        assert part["from_offset"] == next((x.offset for x in mine if x.record.event_time >= t1), len(mine))
        assert part["to_offset"] == cut(log, tp, t2)
        assert part["replayed"] == sum(1 for x in mine if t1 <= x.record.event_time <= t2)
    state, _ = in_memory(settings, t2, use_snapshots=True)
    assert comparable(state) == comparable(expected_state(log, t2))
    assert invoke("state", "--as-of", t2.isoformat(), "--into", "asof_t2").exit_code == 0
    assert schema_dump(settings, "timed") == schema_dump(settings, "asof_t2")  # the state at the end: as of t2


def test_transaction_markers_and_aborted_records_leave_gaps_replay_handles(cli_env: Settings, names) -> None:
    """A transactional producer leaves a control marker after each transaction (an offset with no
    record) and aborted records that read_committed skips: ranges ending anywhere still end."""
    settings, codec = cli_env, AvroCodec()
    records = list(simulate(SimulationConfig(events=600, seed=5, symbols=1, accounts=3)))
    orders = [r for r in records if isinstance(r, OrderEvent)]
    a, b, c = orders[:150], orders[150:300], orders[300:]
    publish(settings, a)
    tx = Producer(settings.kafka_config(**{"transactional.id": f"{names.prefix}-tx", "enable.idempotence": True,
                                           "partitioner": "murmur2_random"}))
    tx.init_transactions(30)
    for chunk in (b[:75], b[75:]):  # two committed transactions: two markers
        tx.begin_transaction()
        for r in chunk:
            tx.produce(settings.topic_orders, codec.encode(r), key=r.symbol.encode(),
                       timestamp=timestamp_ms(r.event_time))
        tx.commit_transaction(30)
    tx.begin_transaction()  # an aborted one: records and a marker nobody reads
    tx.produce(settings.topic_orders, codec.encode(c[0]), key=c[0].symbol.encode(),
               timestamp=timestamp_ms(c[0].event_time))
    tx.flush(30)
    tx.abort_transaction(30)
    publish(settings, c)
    p = symbol_partition(orders[0].symbol, settings.partitions)
    consumer = Consumer(settings.kafka_config(**{"group.id": "watermarks", "isolation.level": "read_uncommitted"}))
    high = topics.watermarks(consumer, TopicPartition(settings.topic_orders, p))[1]
    consumer.close()
    assert high == len(orders) + 2 + 2  # two commit markers, one aborted record and its marker

    visible = a + b + c
    full = invoke("replay", "--from-beginning", "--dry-run", "--json")
    assert full.exit_code == 0, full.output
    assert json.loads(full.stdout)["records_read"] == len(visible)
    for stop in (150, 151, 226, 227, 302, 303, 304, high):  # at, just after and between markers
        ranged = invoke("replay", "--from-offset", f"{p}:0", "--to-offset", f"{p}:{stop}", "--dry-run", "--json")
        assert ranged.exit_code == 0, ranged.output
        got = json.loads(ranged.stdout)["replayed"]
        assert got == sum(1 for o in _visible_offsets(len(a), len(b)) if o < stop), stop
    stats = project(settings, names.group("live"))
    assert stats.dead_letters == 0
    asof = invoke("state", "--as-of", (c[-1].event_time + timedelta(seconds=1)).isoformat(), "--into", "gaps")
    assert asof.exit_code == 0, asof.output
    assert schema_dump(settings, "gaps") == live_dump(settings)
    # Markers are stamped with the broker's clock (now), records with their (simulated, earlier)
    # event time: offsets_for_times stops at a marker, the exact cut is found by reading on.
    logged = [Logged(settings.topic_orders, p, o, timestamp_ms(r.event_time), r)
              for o, r in zip(_visible_offsets(len(a), len(b)), visible, strict=False)]  # offsets run on past c
    for when in (b[40].event_time, b[100].event_time, c[10].event_time, c[-1].event_time):
        state, reports = in_memory(settings, when, use_snapshots=True)
        assert comparable(state) == comparable(expected_state(logged, when)), when
        (rep,) = [r for r in reports if r.plan.tp == (settings.topic_orders, p)]
        assert rep.end == cut(logged, rep.plan.tp, when) if when != c[-1].event_time else rep.end == high
    mid = invoke("replay", "--from-offset", f"{p}:225", "--dry-run", "--json")  # starts on a marker
    assert mid.exit_code == 0, mid.output
    assert json.loads(mid.stdout)["replayed"] == len(visible) - 225


def _visible_offsets(a: int, b: int) -> list[int]:
    """Offsets holding committed records: a, then b in two transactions with a marker after
    each, then the aborted record and its marker, then the rest."""
    half = b // 2
    offsets = list(range(a)) + list(range(a, a + half)) + list(range(a + half + 1, a + b + 1))
    tail_start = a + b + 2 + 2
    return offsets + list(range(tail_start, tail_start + 10_000))


def test_out_of_order_timestamps_are_cut_by_offset(cli_env: Settings) -> None:
    settings, codec = cli_env, AvroCodec()
    t0 = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    stamps = [1.0, 3.0, 2.0, 0.5, 4.0]  # offset 2 is late, offset 3 is later still and stamped earliest
    with KafkaProducer(settings) as producer:
        for i, s in enumerate(stamps):
            when = t0 + timedelta(seconds=s)
            mark = MarketMark(f"m{i}", "LATE", when, Decimal(100 + i))
            producer.produce(settings.topic_marketdata, codec.encode(mark), key=b"LATE",
                             timestamp_ms=timestamp_ms(when))
        producer.flush()

    def marks_as_of(seconds: float) -> tuple[list[int], str | None]:
        out = json.loads(invoke("state", "--as-of", (t0 + timedelta(seconds=seconds)).isoformat(), "--symbol", "LATE",
                                "--json").stdout)
        (part,) = [p for p in out["partitions"] if p["topic"] == settings.topic_marketdata]
        state, _ = in_memory(settings, t0 + timedelta(seconds=seconds), use_snapshots=False)
        mark = state.marks.get("LATE")
        return [part["to_offset"]], None if mark is None else mark.mark.event_id

    assert marks_as_of(0.7) == ([0], None)        # offset 3 is stamped 0.5 s but sits after the cut
    assert marks_as_of(1.0) == ([1], "m0")
    assert marks_as_of(2.5) == ([1], "m0")        # offset 2 (2.0 s) is after offset 1 (3.0 s): excluded
    assert marks_as_of(3.0) == ([4], "m1")        # offsets 0-3 all stamped <= 3 s; newest mark wins
    assert marks_as_of(3.0 + 0.000999) == ([4], "m1")  # the first record after it is still offset 4
    assert marks_as_of(4.0) == ([5], "m4")


def test_retention_lost_start_is_refused(cli_env: Settings, names) -> None:
    settings = cli_env
    records = list(simulate(SimulationConfig(events=800, seed=3, symbols=3, accounts=3)))
    log = log_of(settings, records)
    publish(settings, records)
    project(settings, names.group("live"))
    tp = max({(x.topic, x.partition) for x in log if x.topic == settings.topic_orders},
             key=lambda tp: sum(1 for x in log if (x.topic, x.partition) == tp))
    size = sum(1 for x in log if (x.topic, x.partition) == tp)
    lost = size // 2
    admin = topics.admin_client(settings)
    for future in admin.delete_records([TopicPartition(tp[0], tp[1], lost)], request_timeout=30).values():
        future.result()
    p = tp[1]

    below = invoke("replay", "--from-offset", f"{p}:{lost - 1}", "--dry-run")
    assert below.exit_code == 1
    assert f"{tp[0]}[{p}]@{lost - 1}" in below.stderr and f"below the log start offset {lost}" in below.stderr
    assert "Traceback" not in below.output
    beyond = invoke("replay", "--from-offset", f"{p}:{size + 5}", "--dry-run")
    assert beyond.exit_code == 1 and "beyond the end of the log" in beyond.stderr
    whole = invoke("replay", "--from-beginning", "--dry-run")
    assert whole.exit_code == 1 and f"{tp[0]}[{p}]@0" in whole.stderr and "retention" in whole.stderr

    # From the log start there is no snapshot at or before it (the projector took none below
    # it that survived): refused, naming why.
    with db.make_engine(settings).begin() as sa_conn:
        conn = sa_conn.connection.driver_connection
        conn.execute("delete from projection_snapshots")
    at_start = invoke("replay", "--from-offset", f"{p}:{lost}", "--dry-run")
    assert at_start.exit_code == 1 and "deleted by retention" in at_start.stderr
    end = (records[-1].event_time + timedelta(seconds=1)).isoformat()
    assert invoke("state", "--as-of", end).exit_code == 1

    # A snapshot of the live state (at the end of the partition) makes both answerable again.
    created = invoke("checkpoints", "create", "--json")
    assert created.exit_code == 0, created.output
    asof = invoke("state", "--as-of", end, "--into", "after_retention")
    assert asof.exit_code == 0, asof.output
    assert schema_dump(settings, "after_retention") == live_dump(settings)
    mid = records[[i for i, x in enumerate(log) if (x.topic, x.partition) == tp][lost + 5]].event_time
    refused = invoke("state", "--as-of", mid.isoformat())
    assert refused.exit_code == 1 and "deleted by retention" in refused.stderr


def test_dry_run_writes_nothing(cli_env: Settings, names) -> None:
    settings = cli_env
    records = list(simulate(SimulationConfig(events=800, seed=4, symbols=4, accounts=3)))
    publish(settings, records)
    with KafkaProducer(settings) as producer:  # one undecodable record: a dead letter in any replay
        producer.produce(settings.topic_orders, b"junk", key=b"JUNK", partition=0, timestamp_ms=1)
        producer.flush()
    junk_at = sum(1 for x in log_of(settings, records) if (x.topic, x.partition) == (settings.topic_orders, 0))
    project(settings, names.group("live"))
    admin = topics.admin_client(settings)

    def world() -> tuple:
        groups = sorted(g.group_id for g in admin.list_consumer_groups(request_timeout=30).result().valid)
        schemas = rows(settings, "select nspname from pg_namespace order by 1")
        snaps = rows(settings, "select id, next_offset, md5(state) from projection_snapshots order by id")
        return table_dump(settings), schemas, snaps, [g for g in groups if g.startswith("backbone-replay")]

    before = world()
    for args in (["--from-beginning"], ["--from-timestamp", records[300].event_time.isoformat()],
                 ["--from-offset", "0:0,marketdata:1:0"]):
        result = invoke("replay", *args, "--dry-run", "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["dry_run"] is True and report["rows_written"] is None
        if args[0] != "--from-timestamp":  # the junk record (stamped 1970) is in the range
            assert report["dead_letters"] == {"decode_error": 1}
            assert report["first_dead_letters"][0]["record"] == f"{settings.topic_orders}[0]@{junk_at}"
    table = invoke("replay", "--from-beginning", "--dry-run")
    assert table.exit_code == 0 and "decode_error 1" in table.output and "dry run: nothing written" in table.output
    assert invoke("state", "--as-of", records[500].event_time.isoformat(), "--json").exit_code == 0
    assert world() == before

    both = invoke("replay", "--from-beginning", "--dry-run", "--into", "x")
    neither = invoke("replay", "--from-beginning")
    assert both.exit_code == neither.exit_code == 1 and "exactly one of --into" in neither.stderr
    assert invoke("replay", "--from-beginning", "--from-offset", "0:0", "--dry-run").exit_code == 1
    bad = invoke("replay", "--from-offset", "nine:zero", "--dry-run")
    assert bad.exit_code == 1 and "PARTITION:OFFSET" in bad.stderr
    assert invoke("replay", "--from-beginning", "--into", "public").exit_code == 1
    assert world() == before


def test_restart_between_snapshots_keeps_exact_max_timestamp(cli_env: Settings, names) -> None:
    """A projector restarted between two snapshots did not see the records before its
    checkpoint; the snapshot it takes next still records the exact highest timestamp."""
    settings = cli_env.with_overrides(snapshot_every_events=10_000)  # none during the first run
    records = list(simulate(SimulationConfig(events=600, seed=9, symbols=2, accounts=2)))
    # Out-of-order timestamps: an early mark carries the highest stamp of its partition.
    assert isinstance(records[0], MarketMark)
    records[0] = records[0].replace(event_time=records[-1].event_time + timedelta(seconds=30))
    log = log_of(settings, records)
    publish(settings, records[:400])
    project(settings, names.group("live"))
    publish(settings, records[400:])
    later = cli_env.with_overrides(snapshot_every_events=50)
    project(later, names.group("live"))
    with db.make_engine(settings).connect() as sa_conn:
        taken = snapshots.list_snapshots(sa_conn.connection.driver_connection, "trading")
    assert taken
    for s in taken:
        below = [x.ts_ms for x in log if (x.topic, x.partition) == (s.topic, s.partition) and x.offset < s.next_offset]
        assert timestamp_ms(s.max_timestamp) == max(below), s
        assert s.events_covered == s.next_offset
