"""Point-in-time state and replay across market data that expired before it was read, against the
real broker and database (docs/replay.md, "Expired marks").

Retention (here `delete_records`, which moves the log start exactly as retention does) deletes
marks the projector may never have read; the projector skips them by design and counts them
(`expired_skipped`). `state --as-of`, `replay` and `checkpoints create --as-of` decide the same
way: expired marks are skipped, counted and reported with their offset ranges; a gap in
`trading.orders` is refused. The reference is the definition over the records that remain: for
each partition, every retained record before the first retained offset stamped after T.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta

import pytest
from confluent_kafka import TopicPartition
from support import checkpoints, project, publish, schema_dump, settings_env
from typer.testing import CliRunner

from backbone import db
from backbone.domain.events import MarketMark, OrderEvent
from backbone.errors import InvalidOrderTransition
from backbone.kafka import topics
from backbone.kafka.partitioner import symbol_partition
from backbone.record_time import timestamp_ms
from backbone.settings import Settings
from cli.main import app
from producers.simulator import SimulationConfig, simulate
from projections import parallel, read_model
from projections import replay as rp
from projections.replay import Replayer
from projections.state import TradingState

pytestmark = pytest.mark.integration

TP = tuple[str, int]
Logged = tuple[str, int, int, int, OrderEvent | MarketMark]  # topic, partition, offset, ms, record


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def cli_env(created_topics: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's settings, also as BACKBONE_* for the CLI; the projector takes no snapshots by
    itself (each test decides where snapshots are)."""
    settings = created_topics.with_overrides(snapshot_every_events=0, snapshot_every_seconds=0)
    for key, value in settings_env(settings).items():
        if key.startswith("BACKBONE_"):
            monkeypatch.setenv(key, value)
    return settings


def log_of(settings: Settings, records: list[OrderEvent | MarketMark]) -> list[Logged]:
    """Where each record lands when published in this order (idempotent producer: no gaps)."""
    nxt: Counter[TP] = Counter()
    out = []
    for r in records:
        topic = settings.topic_orders if isinstance(r, OrderEvent) else settings.topic_marketdata
        tp = (topic, symbol_partition(r.symbol, settings.partitions))
        out.append((*tp, nxt[tp], timestamp_ms(r.event_time), r))
        nxt[tp] += 1
    return out


def expected_state(log: list[Logged], when: datetime) -> TradingState:
    """The definition, over the records in `log` (the retained ones)."""
    cuts: dict[TP, int] = {}
    for topic, p, offset, _ms, r in log:
        if r.event_time > when and (topic, p) not in cuts:
            cuts[(topic, p)] = offset
    state = TradingState()
    for topic, p, offset, _ms, r in sorted(log, key=lambda x: x[:3]):
        if offset >= cuts.get((topic, p), offset + 1):
            continue
        if isinstance(r, MarketMark):
            state.apply_mark(r, p)
        else:
            try:
                state.apply_order_event(r, p, offset)
            except InvalidOrderTransition:
                pass  # dead-lettered
    return state


def comparable(state: TradingState) -> tuple:
    shown = (read_model.position_rows(state), read_model.open_order_rows(state))
    state.thaw_all()
    return shown, (state.orders, state.executions, state.positions, state.marks)


def delete_below(settings: Settings, cuts: dict[TP, int]) -> None:
    """Move each partition's log start to its offset, as retention does."""
    admin = topics.admin_client(settings)
    for future in admin.delete_records([TopicPartition(t, p, o) for (t, p), o in cuts.items()],
                                       request_timeout=30).values():
        future.result()


def sizes(log: list[Logged], topic: str) -> dict[TP, int]:
    return dict(Counter((t, p) for t, p, *_ in log if t == topic))


def expired_of(out: dict) -> dict[TP, list[tuple[int, int]]]:
    """The expired offset ranges a command's JSON reports, by partition (only those with any)."""
    return {(p["topic"], p["partition"]): [(r["from_offset"], r["to_offset"]) for r in p["expired_ranges"]]
            for p in out["partitions"] if p["expired_ranges"]}


def refused(result, topic: str, partition: int) -> None:
    """Exit code 1 and one line naming the partition, no traceback."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and f"{topic}[{partition}]" in lines[0], result.stderr
    assert "Traceback" not in result.output


# -- tests ------------------------------------------------------------------------------------------

def test_marks_expired_before_any_snapshot_are_skipped_and_reported_like_the_projector(cli_env: Settings,
                                                                                      names) -> None:
    settings = cli_env
    records = list(simulate(SimulationConfig(events=1600, seed=23, symbols=6, accounts=4)))
    log = log_of(settings, records)
    publish(settings, records)
    # The first half of every marketdata partition expires before anything read it.
    low = {tp: n // 2 for tp, n in sizes(log, settings.topic_marketdata).items() if n >= 4}
    delete_below(settings, low)
    stats = project(settings, names.group("live"))
    assert stats.expired_skipped == sum(low.values()) > 0 and stats.dead_letters == 0
    retained = [x for x in log if x[2] >= low.get(x[:2], 0)]
    want_ranges = {tp: [(0, o)] for tp, o in low.items()}

    end = (records[-1].event_time + timedelta(seconds=1)).isoformat()
    out = invoke("state", "--as-of", end, "--json", "--include-flat")
    assert out.exit_code == 0, out.output
    state = json.loads(out.stdout)
    assert state["expired"] == stats.expired_skipped
    assert expired_of(state) == want_ranges
    assert {p["expired"] for p in state["partitions"] if p["topic"] == settings.topic_orders} == {0}
    lost = {p for _t, p in low}
    assert state["expired_mark_symbols"] == sorted({r["symbol"] for r in state["positions"]
                                                    if symbol_partition(r["symbol"], settings.partitions) in lost})
    assert state["expired_mark_symbols"]
    into = invoke("state", "--as-of", end, "--into", "expired_end", "--json")
    assert into.exit_code == 0, into.output
    assert json.loads(into.stdout)["expired"] == stats.expired_skipped
    # the live projector skipped the same records
    assert schema_dump(settings, "expired_end") == schema_dump(settings, "public")

    text = invoke("state", "--as-of", end, "--include-flat")
    assert text.exit_code == 0, text.output
    (line,) = [x for x in text.output.splitlines() if "records expired" in x]
    assert f"{stats.expired_skipped:,} records expired" in line
    assert all(f"{t}[{p}] offsets 0..{o - 1}" in line for (t, p), o in low.items())
    assert f"marks of {', '.join(state['expired_mark_symbols'])} may be stale or missing" in line

    # Times in the intact later part, and one in the expired stretch: the definition over what remains.
    newest_lost = max(ms for t, p, o, ms, _r in log if o < low.get((t, p), 0))
    later = [r.event_time for r in records if timestamp_ms(r.event_time) > newest_lost]
    engine = db.make_engine(settings)
    try:
        with Replayer(settings, engine) as r:
            for when in (later[len(later) // 3], later[-1], records[10].event_time):
                result = r.run(r.plan_as_of(when))
                assert comparable(result.state) == comparable(expected_state(retained, when)), when
                assert result.expired == stats.expired_skipped
    finally:
        engine.dispose()

    dry = invoke("replay", "--from-beginning", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.stdout)
    assert (report["expired"], report["records_read"]) == (stats.expired_skipped, len(retained))
    assert expired_of(report) == want_ranges
    dry_text = invoke("replay", "--from-beginning", "--dry-run")
    assert dry_text.exit_code == 0 and f"{stats.expired_skipped:,} records expired" in dry_text.output
    mid = later[len(later) // 2].isoformat()
    full = invoke("replay", "--from-beginning", "--to-timestamp", mid, "--into", "replayed_mid", "--json")
    assert full.exit_code == 0, full.output
    assert invoke("state", "--as-of", mid, "--into", "asof_mid").exit_code == 0
    assert schema_dump(settings, "replayed_mid") == schema_dump(settings, "asof_mid")
    marks_tp = min(low)
    from_marks = invoke("replay", "--from-offset", f"marketdata:{marks_tp[1]}:0", "--dry-run", "--json")
    assert from_marks.exit_code == 0, from_marks.output
    assert expired_of(json.loads(from_marks.stdout)) == {marks_tp: [(0, low[marks_tp])]}

    created = invoke("checkpoints", "create", "--as-of", end, "--json")
    assert created.exit_code == 0, created.output
    taken = {(x["topic"], x["partition"]): x for x in json.loads(created.stdout)}
    assert {tp: x["expired"] for tp, x in taken.items() if x["expired"]} == low
    created_text = invoke("checkpoints", "create", "--as-of", mid)
    assert created_text.exit_code == 0 and "records expired" in created_text.output
    again = invoke("state", "--as-of", end, "--into", "from_snapshots", "--json")
    assert again.exit_code == 0, again.output
    assert all(p["snapshot_id"] is not None for p in json.loads(again.stdout)["partitions"]
               if (p["topic"], p["partition"]) in low)
    assert schema_dump(settings, "from_snapshots") == schema_dump(settings, "public")

    # Orders are the record: a gap there is refused by each command, in one line.
    orders_tp = max(sizes(log, settings.topic_orders).items(), key=lambda kv: kv[1])[0]
    delete_below(settings, {orders_tp: 5})
    with db.make_engine(settings).begin() as sa_conn:
        sa_conn.connection.driver_connection.execute("delete from projection_snapshots")
    refused(invoke("state", "--as-of", end), *orders_tp)
    refused(invoke("state", "--as-of", end, "--json", "--processes", "2"), *orders_tp)
    refused(invoke("replay", "--from-beginning", "--dry-run"), *orders_tp)
    refused(invoke("checkpoints", "create", "--as-of", end), *orders_tp)


def test_marks_expired_after_a_snapshot_are_skipped_from_the_snapshot_on(cli_env: Settings, names,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots older than the log start: the tail skips from the snapshot to the log start, as the
    projector whose checkpoint is there skips; split between processes, the same answer."""
    settings = cli_env
    records = list(simulate(SimulationConfig(events=1800, seed=29, symbols=6, accounts=4)))
    log = log_of(settings, records)
    first = 700
    publish(settings, records[:first])
    project(settings, names.group("live"))
    snapped = invoke("checkpoints", "create", "--json")  # the live state at its checkpoints
    assert snapped.exit_code == 0, snapped.output
    at = checkpoints(settings)
    publish(settings, records[first:])
    marks = sizes(log, settings.topic_marketdata)
    low = {tp: at.get(tp, 0) + (n - at.get(tp, 0)) // 2 for tp, n in marks.items() if n - at.get(tp, 0) >= 4}
    delete_below(settings, low)
    stats = project(settings, names.group("live"))
    assert stats.expired_skipped == sum(o - at.get(tp, 0) for tp, o in low.items()) > 0

    end = (records[-1].event_time + timedelta(seconds=1)).isoformat()
    one = invoke("state", "--as-of", end, "--json", "--include-flat", "--processes", "1")
    assert one.exit_code == 0, one.output
    out = json.loads(one.stdout)
    assert out["expired"] == stats.expired_skipped
    assert expired_of(out) == {tp: [(at.get(tp, 0), o)] for tp, o in low.items()}
    snap_of = {(p["topic"], p["partition"]): p for p in out["partitions"]}
    assert all(snap_of[tp]["snapshot_id"] is not None for tp in low if at.get(tp))
    assert invoke("state", "--as-of", end, "--into", "after_gap").exit_code == 0
    assert schema_dump(settings, "after_gap") == schema_dump(settings, "public")

    monkeypatch.setattr(parallel, "SPLIT_FROM_RECORDS", 0)  # split whatever the size
    two = invoke("state", "--as-of", end, "--json", "--include-flat", "--processes", "2")
    assert two.exit_code == 0, two.output
    split = json.loads(two.stdout)
    assert split["processes"] == 2
    for key in ("positions", "pnl_by_account", "open_orders", "partitions", "expired", "expired_mark_symbols"):
        assert split[key] == out[key], key
    dry = invoke("replay", "--from-timestamp", records[first].event_time.isoformat(), "--dry-run", "--json",
                 "--processes", "2")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["expired"] == stats.expired_skipped
    created = invoke("checkpoints", "create", "--as-of", end, "--json", "--processes", "2")
    assert created.exit_code == 0, created.output
    assert {(x["topic"], x["partition"]): x["expired"] for x in json.loads(created.stdout) if x["expired"]} == {
        tp: o - at.get(tp, 0) for tp, o in low.items()}


def test_records_deleted_while_a_replay_reads_them(cli_env: Settings) -> None:
    """Retention catching up with a partition between planning and reading: the broker answers
    "offset out of range"; marks are skipped from there to the new log start and counted, a gap in
    orders is refused (as the projector decides mid-run)."""
    settings = cli_env
    records = list(simulate(SimulationConfig(events=900, seed=37, symbols=4, accounts=3)))
    log = log_of(settings, records)
    publish(settings, records)
    when = records[-1].event_time
    marks_tp, n = max(sizes(log, settings.topic_marketdata).items(), key=lambda kv: kv[1])
    orders_tp, n_orders = max(sizes(log, settings.topic_orders).items(), key=lambda kv: kv[1])
    engine = db.make_engine(settings)
    try:
        with Replayer(settings, engine) as r:
            plans = r.plan_as_of(when)  # before the records are deleted: nothing expired yet
            delete_below(settings, {marks_tp: n // 2})
            result = r.run(plans)
            report = result.reports[marks_tp]
            assert report.expired_ranges == [(0, n // 2)] and result.expired == n // 2
            assert report.end == n and report.caught_up + report.replayed == n - n // 2
            retained = [x for x in log if x[:2] != marks_tp or x[2] >= n // 2]
            assert comparable(result.state) == comparable(expected_state(retained, when))

            plans = r.plan_as_of(when)
            assert next(p for p in plans if p.tp == marks_tp).expired == n // 2
            delete_below(settings, {orders_tp: n_orders // 2})
            with pytest.raises(rp.ReplayRefused, match=rf"{orders_tp[0]}\[{orders_tp[1]}\]@0: records "
                                                       rf"0..{n_orders // 2 - 1} were deleted while they were read"):
                r.run(plans)
    finally:
        engine.dispose()
