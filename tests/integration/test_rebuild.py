"""`backbone rebuild trading`: shadow tables built from the log, swapped in while readers read and
the live projector projects; exactly once across the swap (real broker and database)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import psycopg
import pytest
from alembic import command
from confluent_kafka import Consumer, TopicPartition
from conftest import TEST_PARTITIONS, scratch_database
from sqlalchemy.engine import make_url
from support import checkpoint_total, project, publish, rows, settings_env, table_dump, uncommented
from typer.testing import CliRunner

from backbone import db
from backbone.domain.events import MarketMark
from backbone.kafka import topics
from backbone.kafka.partitioner import partition_for
from backbone.kafka.producer import KafkaProducer
from backbone.settings import Settings
from cli.main import app
from producers.simulator import SimulationConfig, simulate
from projections import ddl, snapshots, store
from projections.rebuild import RebuildError, RebuildOptions, psycopg_url, rebuild
from projections.rebuild.procedure import Procedure
from projections.state import TradingState
from projections.trading import NAME as TRADING

pytestmark = pytest.mark.integration

READER = ("rebuild_reader", "rebuild-reader-pw")
# What an analyst runs: through a view (positions + marks) and straight on a table.
QUERIES = {
    "positions_pnl": "select count(*) as n, sum(qty) as qty, sum(realized_pnl) as realized, "
                     "sum(unrealized_pnl) as unrealized from positions_pnl",
    "orders": "select tableoid::bigint as oid, count(*) as n, sum(cum_qty) as cum from orders group by tableoid",
}


def _oids(settings: Settings) -> dict[str, int]:
    return {r["t"]: r["oid"] for r in rows(settings, "select c.relname as t, c.oid::bigint as oid from pg_class c "
                                                     "where c.relnamespace = 'public'::regnamespace and c.relname in "
                                                     "('orders', 'executions', 'positions', 'marks')")}


def _index_names(settings: Settings) -> list[tuple[str, str]]:
    return [(r["tablename"], r["indexname"]) for r in rows(
        settings, "select tablename, indexname from pg_indexes where schemaname = 'public' "
                  "and tablename in ('orders', 'executions', 'positions', 'marks') order by 1, 2")]


def _leftover_schemas(settings: Settings) -> list[str]:
    return [r["n"] for r in rows(settings, "select nspname as n from pg_namespace where nspname like 'rebuild%'")]


def _projections(settings: Settings) -> list[str]:
    return [r["p"] for r in rows(settings, "select distinct projection as p from projection_checkpoints")]


class ReaderLoop(threading.Thread):
    """Runs one query over and over, as the read-only role, recording every answer."""

    def __init__(self, settings: Settings, query: str) -> None:
        super().__init__(daemon=True)
        self.url, self.query = make_url(settings.database_url_value), query
        self.observations: list[tuple[Any, ...]] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            with psycopg.connect(host=self.url.host, port=self.url.port, dbname=self.url.database, user=READER[0],
                                 password=READER[1], autocommit=True) as conn:
                while not self.stop.is_set():
                    self.observations.append(tuple(conn.execute(self.query).fetchall()))
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 60
        while len(self.observations) < count and not self.errors:
            assert time.monotonic() < deadline, f"the reader made {len(self.observations)} of {count} reads in 60 s"
            time.sleep(0.01)
        assert not self.errors, self.errors


def _dlq_size(settings: Settings) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(settings.kafka_config(**{"group.id": "rebuild-test-dlq"}))
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(settings.topic_deadletter, p), timeout=10)[1]
                   for p in range(TEST_PARTITIONS))
    finally:
        consumer.close()


def _reference_dump(settings: Settings, services, names) -> dict[str, list[tuple]]:
    """The same log projected by one uninterrupted run into a database of its own."""
    with scratch_database(settings, services.database_url) as reference:
        project(reference, names.group("reference"))
        return table_dump(reference)


def test_readers_see_the_full_state_throughout_a_rebuild(created_topics: Settings, names) -> None:
    settings = created_topics
    publish(settings, list(simulate(SimulationConfig(events=3000, seed=11, symbols=12, accounts=6))))
    with KafkaProducer(settings) as producer:  # one dead letter, which must survive the swap as it was
        producer.produce(settings.topic_orders, b"not avro", key=b"AAPL")
    project(settings, names.group())
    before, oids_before, indexes_before = table_dump(settings), _oids(settings), _index_names(settings)
    dlq_before = _dlq_size(settings)
    expected = {name: tuple(tuple(r.values()) for r in rows(settings, q)) for name, q in QUERIES.items()}
    assert expected["positions_pnl"][0][0] > 0 and len(before["dead_letters"]) == 1

    db.create_reader(settings, *READER)
    readers = {name: ReaderLoop(settings, q) for name, q in QUERIES.items()}
    for reader in readers.values():
        reader.start()
    for reader in readers.values():
        reader.wait_for(3)
    # An open REPEATABLE READ transaction that has not read the tables yet: the swap waits for it.
    snapshot = psycopg.connect(psycopg_url(settings))
    snapshot.execute("set transaction isolation level repeatable read")
    snapshot.execute("select 1")
    snapshot_pid = snapshot.info.backend_pid
    events: list[tuple[str, dict[str, Any]]] = []

    def on_event(kind: str, info: dict[str, Any]) -> None:
        events.append((kind, info))
        if kind == "waiting":
            snapshot.commit()

    try:
        result = rebuild(settings, options=RebuildOptions(batch_size=400, reader_wait_s=60), on_event=on_event)
    finally:
        snapshot.close()
    counts = {name: len(reader.observations) for name, reader in readers.items()}
    for name, reader in readers.items():
        reader.wait_for(counts[name] + 3)
        reader.stop.set()
        reader.join(timeout=30)

    for name, reader in readers.items():
        assert not reader.errors, reader.errors
        wrong = [o for o in reader.observations if o != expected[name]
                 and not (name == "orders" and o[0][1:] == expected[name][0][1:])]
        assert not wrong, f"{name}: {len(wrong)} of {len(reader.observations)} observations differ, e.g. {wrong[0]}"
    # The orders reader saw both the old table and the new one, always complete.
    assert {o[0][0] for o in readers["orders"].observations} == {oids_before["orders"], _oids(settings)["orders"]}

    waiting = [info for kind, info in events if kind == "waiting"]
    assert waiting and snapshot_pid in waiting[0]["pids"]
    assert result.older_transactions_ignored == []
    assert result.comparable and result.identical is True
    assert [c.table for c in result.comparison] == ["orders", "executions", "positions", "marks", "dead_letters"]
    assert all(c.match and c.old.rows == c.new.rows for c in result.comparison)
    assert result.comparison[0].old.rows == len(before["orders"])
    assert result.events == 3001 and result.dead_letters == 1 and result.generation == 1
    assert result.newly_refused == 0 and result.no_longer_refused == 0

    oids_after = _oids(settings)
    assert all(oids_after[t] != oids_before[t] for t in oids_before), "the tables were not swapped"
    assert _index_names(settings) == indexes_before
    with psycopg.connect(psycopg_url(settings)) as conn:  # the swapped-in tables came with their comments
        assert uncommented(conn, "public") == []
    assert table_dump(settings) == before  # rows, dead letters and checkpoints, exactly
    assert _leftover_schemas(settings) == [] and _projections(settings) == ["trading"]
    assert _dlq_size(settings) == dlq_before  # historical dead letters were not re-published


def _spawn_live(settings: Settings, group: str) -> subprocess.Popen:
    """A long-running `backbone project run` (stopped with SIGTERM), small batches."""
    return subprocess.Popen([sys.executable, "-m", "cli.main", "project", "run", "--group", group,
                             "--batch-size", "100", "--json"], env=settings_env(settings),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_until(predicate, what: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the live projector exited ({proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s")
        time.sleep(0.05)


def test_rebuild_under_a_live_projector_is_exactly_once_and_fences_its_memory(
        created_topics: Settings, services, names) -> None:
    settings = created_topics
    log = list(simulate(SimulationConfig(events=6000, seed=5, symbols=12, accounts=6)))
    # before the live projector, during the catch-up, while the swap has the live projector paused, after
    chunks = log[:2000], log[2000:3500], log[3500:4800], log[4800:]
    publish(settings, chunks[0])
    project(settings, names.group("first"))
    # Damage one mark (a time in the future) before the live projector loads it into memory: a
    # projector that kept that memory after the swap would ignore every later mark of the symbol.
    symbol = next(r.symbol for r in chunks[3] if isinstance(r, MarketMark))
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        assert conn.execute("update marks set event_time = '2100-01-01Z', mark_price = 1 where symbol = %s",
                            (symbol,)).rowcount == 1

    live = _spawn_live(settings, names.group("live"))
    try:
        publish(settings, chunks[1][:300])
        _wait_until(lambda: checkpoint_total(settings) > len(chunks[0]), "progress", live)

        published = {"during catch-up": False, "during the swap": False}

        def on_event(kind: str, _info: dict[str, Any]) -> None:
            if kind == "pass" and not published["during catch-up"]:
                published["during catch-up"] = True
                publish(settings, chunks[1][300:])
            elif kind == "frozen" and not published["during the swap"]:
                published["during the swap"] = True
                publish(settings, chunks[2])

        result = rebuild(settings, options=RebuildOptions(batch_size=300), on_event=on_event)
        assert all(published.values())
        publish(settings, chunks[3])
        _wait_until(lambda: checkpoint_total(settings) == len(log), "catching up", live)
    finally:
        live.send_signal(signal.SIGTERM)
        out, err = live.communicate(timeout=120)
    assert live.returncode == 0, err
    assert json.loads(out)["fenced_batches"] >= 1  # its compare-and-set failed after the swap: it reloaded
    # caught up before the SIGTERM (waited for above): a run of the same group finds nothing left
    assert project(settings, names.group("live")).events == 0

    # Like for like at the live offsets: only the damaged mark differs.
    assert result.comparable and result.identical is False
    assert {c.table: c.match for c in result.comparison} == {
        "orders": True, "executions": True, "positions": True, "marks": False, "dead_letters": True}
    mark_partition = (settings.topic_marketdata, partition_for(symbol.encode(), TEST_PARTITIONS))
    assert result.differing_partitions == [mark_partition]
    assert result.generation == 1
    assert sum(result.new_offsets.values()) > sum(result.old_offsets.values())  # beyond the paused live projector

    assert table_dump(settings) == _reference_dump(settings, services, names)
    assert _leftover_schemas(settings) == [] and _projections(settings) == ["trading"]


def test_a_projector_idle_through_the_swap_is_fenced_too(created_topics: Settings, services, names) -> None:
    """No record arrives during the rebuild, so no offset moves: only the checkpoint generation
    tells the running projector that its memory is of the old tables."""
    settings = created_topics
    log = list(simulate(SimulationConfig(events=2500, seed=7, symbols=6, accounts=4)))
    first, warm, later = log[:1500], log[1500:1510], log[1510:]
    publish(settings, first)
    project(settings, names.group("first"))
    symbol = next(r.symbol for r in later if isinstance(r, MarketMark))  # damaged, then marked again later
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        assert conn.execute("update marks set event_time = '2100-01-01Z', mark_price = 1 where symbol = %s",
                            (symbol,)).rowcount == 1

    live = _spawn_live(settings, names.group("live"))
    try:
        publish(settings, warm)  # it has loaded the damaged mark and is idle at the end of the log
        _wait_until(lambda: checkpoint_total(settings) == len(first) + len(warm), "the warm-up", live)
        result = rebuild(settings)
        assert result.old_offsets == result.new_offsets, "no record arrived: every partition was idle"
        assert result.identical is False and result.generation == 1
        assert result.differing_partitions == [(settings.topic_marketdata,
                                                partition_for(symbol.encode(), TEST_PARTITIONS))]
        publish(settings, later)
        _wait_until(lambda: checkpoint_total(settings) == len(log), "catching up", live)
    finally:
        live.send_signal(signal.SIGTERM)
        out, err = live.communicate(timeout=120)
    assert live.returncode == 0, err
    assert json.loads(out)["fenced_batches"] >= 1

    assert table_dump(settings) == _reference_dump(settings, services, names)


def test_the_swap_gives_way_to_readers_and_retries_cleanly(created_topics: Settings, services, names) -> None:
    """A reader transaction holds a view and, while the swap waits for it, asks for one the swap has
    already locked: a lock cycle. The swap gives way (its attempts end before deadlock_timeout) and
    the reader never sees an error. A view created in the middle of the swap makes it start over:
    the shadow forgets the tail that attempt applied, and the retry is still exactly once.
    Analysts' own views on the tables follow the swap."""
    settings = created_topics
    log = list(simulate(SimulationConfig(events=1500, seed=9, symbols=8, accounts=4)))
    publish(settings, log[:1200])
    project(settings, names.group())
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        conn.execute("create view my_orders as select order_id, status from orders")
    reader_done, reader_errors, reader_reads = threading.Event(), [], []

    def hold_and_read() -> None:  # holds open_orders, then reads positions_pnl again and again
        try:
            with psycopg.connect(psycopg_url(settings)) as conn:
                conn.execute("select count(*) from open_orders").fetchall()
                while not reader_done.is_set():
                    reader_reads.append(conn.execute("select count(*) from positions_pnl").fetchone()[0])
                    time.sleep(0.01)
                conn.commit()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            reader_errors.append(e)

    reader = threading.Thread(target=hold_and_read, daemon=True)
    seen: dict[str, int] = {}

    def on_event(kind: str, _info: dict[str, Any]) -> None:
        seen[kind] = seen.get(kind, 0) + 1
        if kind == "frozen" and seen[kind] == 1:
            publish(settings, log[1200:])  # the swap's tail goes beyond the live offsets
            reader.start()
            deadline = time.monotonic() + 60
            while not reader_reads:  # the reader holds its snapshot before the swap goes on
                assert not reader_errors, reader_errors
                assert time.monotonic() < deadline, "the reader made no read in 60 s"
                time.sleep(0.01)
        elif kind == "locking" and seen[kind] == 1:
            with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
                conn.execute("create view my_fills as select exec_id, qty from executions")
        elif kind == "lock_wait" and seen[kind] == 3:
            reader_done.set()

    result = rebuild(settings, options=RebuildOptions(batch_size=200), on_event=on_event)
    reader.join(timeout=30)
    assert not reader_errors, reader_errors
    assert seen["lock_wait"] >= 3 and result.reader_lock_attempts >= 4
    assert result.swap_attempts == 2 and seen["frozen"] == 2  # the view appeared: started over
    assert result.events == 1500 and sum(result.new_offsets.values()) == 1500

    depends = rows(settings, "select distinct v.relname as v, t.oid = t2.oid as current from pg_depend d "
                             "join pg_rewrite r on r.oid = d.objid join pg_class v on v.oid = r.ev_class "
                             "join pg_class t on t.oid = d.refobjid join pg_class t2 on t2.relname = t.relname "
                             "and t2.relnamespace = 'public'::regnamespace where v.relname in ('my_orders', "
                             "'my_fills') and d.refobjid <> v.oid order by 1")
    assert depends == [{"v": "my_fills", "current": True}, {"v": "my_orders", "current": True}]
    assert table_dump(settings) == _reference_dump(settings, services, names)


# -- the command ----------------------------------------------------------------------------------

@pytest.fixture
def projected(created_topics: Settings, names, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in settings_env(created_topics).items():
        if key.startswith("BACKBONE_"):
            monkeypatch.setenv(key, value)
    publish(created_topics, list(simulate(SimulationConfig(events=1500, seed=3, symbols=8, accounts=4))))
    project(created_topics, names.group())
    return created_topics


def test_cli_rebuild_json_keep_old_and_errors(projected: Settings) -> None:
    settings, before = projected, table_dump(projected)
    result = CliRunner().invoke(app, ["rebuild", "trading", "--json", "--keep-old", "--batch-size", "500"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["projection"] == "trading" and out["events"] == 1500
    assert out["compared_at_same_offsets"] is True and out["identical"] is True
    assert [t["table"] for t in out["tables"]] == ["orders", "executions", "positions", "marks", "dead_letters"]
    assert all(t["match"] and t["old"] == t["new"] for t in out["tables"])
    assert out["old_schema_kept"] is True and _leftover_schemas(settings) == [out["old_schema"]]
    assert "swapped" in result.stderr
    assert table_dump(settings) == before
    kept = rows(settings, f"select count(*) as n from {out['old_schema']}.orders")[0]["n"]
    assert kept == len(before["orders"])

    unknown = CliRunner().invoke(app, ["rebuild", "nope"])
    assert unknown.exit_code == 1
    assert unknown.stderr.strip().splitlines() == ["error: unknown projection 'nope' (known: trading)"]

    with psycopg.connect(psycopg_url(settings), autocommit=True) as other:  # a rebuild already running
        other.execute("select pg_advisory_lock(hashtext('backbone rebuild trading'))")
        busy = CliRunner().invoke(app, ["rebuild", "trading"])
    assert busy.exit_code == 1
    assert busy.stderr.strip().splitlines() == [
        "error: another rebuild of trading is running on this database; wait for it to end"]


def test_order_states_written_before_the_json_column_compare_as_the_same_value(projected: Settings) -> None:
    """Migration 0005 made orders.state json, kept as written: rows from before it hold jsonb's
    spelling (key order, spaces), the rebuild's shadow the projector's. The checksum compares
    values, so the same states are identical; a changed state is not."""
    settings = projected
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        conn.execute("update orders set state = state::jsonb::json")  # what `alter … using state::json` left
        spelled = conn.execute("select count(*) from orders where state::text like '{\"fills\": %'").fetchone()[0]
    assert spelled > 0  # jsonb's own order and spacing, not the projector's
    result = rebuild(settings, options=RebuildOptions(batch_size=500))
    assert result.identical is True

    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        conn.execute("update orders set state = jsonb_set(state::jsonb, '{prior_status}', '\"NEW\"')::json "
                     "where order_id = (select min(order_id) from orders)")
    result = rebuild(settings, options=RebuildOptions(batch_size=500))
    assert result.identical is False
    assert [c.table for c in result.comparison if not c.match] == ["orders"]


def test_migration_0006_keeps_only_what_has_no_column_and_reloads_the_same_orders(projected: Settings, services,
                                                                                  names) -> None:
    """Migration 0006: `orders.state` holds fills, prior status, event and exec ids; the rest is
    the row's columns. Downgraded, every row gets its whole state back (what the projector wrote
    before) and loads as the same orders, and the projector carries on from such rows; upgraded,
    the tables equal those of a projector that ran on 0006 from the start, row for row."""
    settings = projected
    session = list(simulate(SimulationConfig(events=1800, seed=3, symbols=8, accounts=4)))  # `projected`'s + 300

    def loaded() -> dict[str, str]:
        state = TradingState()
        with psycopg.connect(psycopg_url(settings)) as conn:
            store.load_partitions(conn, state, range(TEST_PARTITIONS), [])
        return {order_id: repr(order) for order_id, order in state.orders.items()}  # repr: decimal exponents too

    def state_keys() -> set[frozenset[str]]:
        return {frozenset(r["keys"]) for r in rows(settings, "select array(select json_object_keys(state)) as keys "
                                                             "from orders")}

    history, whole = frozenset(store.ORDER_HISTORY), frozenset(store.ORDER_COLS) - {"kafka_partition", "state"}
    now = loaded()
    assert state_keys() == {history}
    alembic = db.alembic_config(settings.database_url_value, settings.database_readonly_role)
    command.downgrade(alembic, "0005")
    assert state_keys() == {whole | history}
    assert loaded() == now
    # The projector needs the newest schema: the rows as the projector before 0006 wrote them,
    # put back at the head revision, are what it must carry on from.
    written_before = rows(settings, "select order_id, state::text as state from orders")
    db.upgrade(settings, url=settings.database_url_value)
    with psycopg.connect(psycopg_url(settings)) as conn:
        conn.cursor().executemany("update orders set state = %s::json where order_id = %s",
                                  [(r["state"], r["order_id"]) for r in written_before])
    assert state_keys() == {whole | history}
    assert loaded() == now

    publish(settings, session[1500:])
    stats = project(settings, names.group("after-downgrade"))
    assert stats.events == 300 and stats.dead_letters == 0
    assert state_keys() == {whole | history, history}  # the orders it changed written the new way
    command.downgrade(alembic, "0005")
    db.upgrade(settings, url=settings.database_url_value)
    assert state_keys() == {history}
    with scratch_database(settings, services.database_url) as reference:
        assert project(reference, names.group("reference")).events == 1800
        assert table_dump(settings) == table_dump(reference)


def test_an_interrupted_rebuild_swaps_nothing_and_the_next_one_cleans_up(projected: Settings) -> None:
    settings = projected
    before, oids = table_dump(settings), _oids(settings)
    polls = iter(range(1_000_000))
    with pytest.raises(RebuildError, match="interrupted before the swap: nothing was swapped"):
        rebuild(settings, options=RebuildOptions(batch_size=100), stop_requested=lambda: next(polls) >= 3)
    assert _oids(settings) == oids and table_dump(settings) == before
    assert _leftover_schemas(settings) == [] and _projections(settings) == ["trading"]

    # What a SIGKILLed rebuild leaves behind: its shadow schema and checkpoints.
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        ddl.create_schema(conn, "rebuild_20000101000000")
        conn.execute("insert into projection_checkpoints (projection, topic, partition, next_offset) "
                     "values ('trading@rebuild_20000101000000', %s, 0, 1)", (settings.topic_orders,))
    result = rebuild(settings)
    assert result.warnings == ["dropped rebuild_20000101000000, the shadow of an interrupted rebuild"]
    assert result.identical is True and table_dump(settings) == before
    assert _leftover_schemas(settings) == [] and _projections(settings) == ["trading"]


def test_the_swap_replaces_the_old_snapshots_with_the_shadows(projected: Settings) -> None:
    """Snapshots folded by the replaced code must not serve `state --as-of` after a rebuild."""
    settings = projected.with_overrides(snapshot_every_events=200, snapshot_every_seconds=0)
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        snapshots.insert(conn, [snapshots.NewSnapshot(TRADING, settings.topic_orders, 0, 1, None, 1, b"old")])
        old = {s.id for s in snapshots.list_snapshots(conn)}
        # what an interrupted rebuild leaves behind: a shadow's snapshot, its schema gone
        snapshots.insert(conn, [snapshots.NewSnapshot(f"{TRADING}@rebuild_20000101000000", settings.topic_orders,
                                                      0, 1, None, 1, b"orphan")])
    result = rebuild(settings)
    assert result.identical is True
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        after = snapshots.list_snapshots(conn)
        assert after, "the shadow took snapshots every 200 records"
        assert {s.projection for s in after} == {TRADING}
        assert not old & {s.id for s in after}
        for s in after:  # each one restores, and agrees with its own position summaries
            kind = snapshots.kind_of(settings, s.topic)
            snapshots.restore_snapshot(conn, TradingState(), kind, s)


def test_rebuild_from_snapshots_reads_only_the_tail_and_gives_the_same_state(created_topics: Settings, names,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    settings = created_topics.with_overrides(snapshot_every_events=200, snapshot_every_seconds=0)
    for key, value in settings_env(settings).items():
        if key.startswith("BACKBONE_"):
            monkeypatch.setenv(key, value)
    with KafkaProducer(settings) as producer:  # a dead letter below the snapshots: not read again, kept
        producer.produce(settings.topic_orders, b"not avro", key=b"AAPL")
    records = list(simulate(SimulationConfig(events=1500, seed=3, symbols=8, accounts=4)))
    publish(settings, records)
    project(settings, names.group())
    before = table_dump(settings)
    aapl = partition_for(b"AAPL", TEST_PARTITIONS)
    assert [(r[1], r[2], r[3]) for r in before["dead_letters"]] == [(settings.topic_orders, aapl, 0)]
    with psycopg.connect(psycopg_url(settings), autocommit=True) as conn:
        live = {(s.topic, s.partition): s.next_offset for s in snapshots.list_snapshots(conn, TRADING)}
    assert (settings.topic_orders, aapl) in live

    result = CliRunner().invoke(app, ["rebuild", "trading", "--from-snapshot", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    seeded = {k: v for k, v in out["seeded_from_snapshots"].items()}
    # every partition with a snapshot started at its newest one (the live checkpoints are at the log end)
    newest: dict[str, int] = {}
    for (t, p), o in live.items():
        newest[f"{t}[{p}]"] = max(o, newest.get(f"{t}[{p}]", 0))
    assert seeded == newest
    assert out["events"] == len(records) + 1 - sum(seeded.values())  # only the records after the snapshots
    assert out["compared_at_same_offsets"] is True and out["identical"] is True
    assert "seeded from snapshots" in result.stderr
    assert table_dump(settings) == before  # the dead letter below the snapshot included

    # A snapshot that no longer fits the log (records after it deleted) is refused, nothing swapped.
    tp = (settings.topic_orders, aapl)
    with KafkaProducer(settings) as producer:  # so that the log goes on past the newest snapshot
        producer.produce(settings.topic_orders, b"not avro either", key=b"AAPL")
    admin = topics.admin_client(settings)
    cut = TopicPartition(tp[0], tp[1], newest[f"{tp[0]}[{aapl}]"] + 1)
    for future in admin.delete_records([cut], request_timeout=30).values():
        future.result()
    refused = CliRunner().invoke(app, ["rebuild", "trading", "--from-snapshot"])
    assert refused.exit_code == 1
    assert f"does not fit the log of {tp[0]}[{aapl}]" in refused.stderr
    # and so is a rebuild from the beginning: it would silently miss the deleted records
    from_zero = CliRunner().invoke(app, ["rebuild", "trading"])
    assert from_zero.exit_code == 1
    assert f"the log of {tp[0]}[{aapl}] no longer starts at offset 0 (first offset {cut.offset})" in from_zero.stderr
    assert _leftover_schemas(settings) == [] and table_dump(settings) == before


@pytest.mark.parametrize("topic_attr", ["topic_orders", "topic_marketdata"])
def test_records_deleted_while_the_rebuild_reads_are_never_skipped_silently(
        projected: Settings, monkeypatch: pytest.MonkeyPatch, topic_attr: str) -> None:
    """Retention catching up with the shadow after the log-start check: the broker answers its fetch
    with "offset out of range", where auto.offset.reset would jump over the records."""
    settings = projected
    before, topic = table_dump(settings), getattr(settings, topic_attr)
    consumer = Consumer(settings.kafka_config(**{"group.id": "watermarks"}))
    try:
        p = max(range(TEST_PARTITIONS),
                key=lambda q: consumer.get_watermark_offsets(TopicPartition(topic, q), timeout=10)[1])
    finally:
        consumer.close()
    original = Procedure._check_log_start

    def delete_after_the_check(self: Procedure) -> None:
        original(self)
        admin = topics.admin_client(settings)
        for future in admin.delete_records([TopicPartition(topic, p, 2)], request_timeout=30).values():
            future.result()

    monkeypatch.setattr(Procedure, "_check_log_start", delete_after_the_check)
    if topic_attr == "topic_orders":
        with pytest.raises(RebuildError, match=rf"{topic}\[{p}\]: the next offset to project is 0 but the log starts "
                                               r"at 2: records 0..1 were deleted .*nothing was swapped"):
            rebuild(settings)
        assert table_dump(settings) == before and _leftover_schemas(settings) == []
    else:
        result = rebuild(settings)
        assert f"{topic}[{p}]: records 0..1 expired (retention) before the rebuild read them; marks older than " \
               "that are not in the rebuilt state" in result.warnings
        assert result.events == 1500 - 2


def test_a_lock_not_granted_after_readers_are_locked_out_retries_the_swap(projected: Settings) -> None:
    """Moving the snapshots waits for a transaction that holds a live snapshot row (a `checkpoints
    prune`, say) under the short lock timeout of the reader lock-out: that attempt is retried,
    the rebuild does not fail."""
    settings = projected
    holder = psycopg.connect(psycopg_url(settings))
    try:
        snapshots.insert(holder, [snapshots.NewSnapshot(TRADING, settings.topic_orders, 0, 1, None, 1, b"old")])
        holder.commit()
        events: list[str] = []

        def on_event(kind: str, _info: dict) -> None:
            events.append(kind)
            if kind == "frozen" and events.count("frozen") == 1:  # after the wait for older transactions
                holder.execute("select id from projection_snapshots where projection = %s for update", (TRADING,))
            if kind == "retry":
                holder.rollback()  # the prune is done: the next attempt gets the rows

        result = rebuild(settings, on_event=on_event)
    finally:
        holder.close()
    assert result.swap_attempts >= 2 and "retry" in events and "swapped" in events
    assert result.identical is True
