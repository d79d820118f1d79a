"""Time boundaries to the microsecond against the real broker and database (docs/replay.md,
"Point-in-time semantics"): events 900 µs, 1 µs and 0 µs before T and 1 µs and 900 µs after it,
orders and marks, in T's millisecond and the ones beside it. Every path that takes a time
(`state --as-of` in one process, split between processes and from snapshots, `replay
--to-timestamp/--from-timestamp`, `checkpoints create --as-of`) keeps exactly the records at or
before T: a record stamped in T's millisecond is judged by its own event time."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from support import publish, settings_env
from tape import Tape
from typer.testing import CliRunner

from backbone.domain.events import MarketMark, OrderEvent, Side
from backbone.kafka.partitioner import symbol_partition
from backbone.settings import Settings
from cli.main import app
from projections import parallel

pytestmark = pytest.mark.integration

US = timedelta(microseconds=1)
T_MID = datetime(2026, 11, 20, 15, 15, 0, 500, tzinfo=UTC)  # in the middle of its millisecond
T_EDGE = datetime(2026, 11, 20, 15, 15, 1, 0, tzinfo=UTC)  # the first microsecond of its millisecond
AROUND = (-900, -1, 0, 1, 900)  # µs from T


@pytest.fixture
def cli_env(created_topics: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings as BACKBONE_* for the CLI; a split as-of splits whatever its size."""
    for key, value in settings_env(created_topics).items():
        if key.startswith("BACKBONE_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setattr(parallel, "SPLIT_FROM_RECORDS", 0)
    return created_topics


def invoke_json(*args: str) -> Any:
    out = CliRunner().invoke(app, [*args, "--json"])
    assert out.exit_code == 0, (args, out.output)
    return json.loads(out.stdout)


def two_symbols(partitions: int) -> tuple[str, str]:
    """Two symbols of different partitions, so that a split fold has records in each process."""
    first = "MU0"
    other = next(s for s in (f"MU{i}" for i in range(1, 100))
                 if symbol_partition(s, partitions) != symbol_partition(first, partitions))
    return first, other


class Log:
    """Per symbol: a position of 10 and an open order of 100 at 14:00; then, at T + each of
    AROUND for both Ts, a mark (price 101, 102, …) and a fill of 1 of that order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.symbols = two_symbols(settings.partitions)
        tape = Tape(start=datetime(2026, 11, 20, 14, 0, tzinfo=UTC), step=US)
        for s in self.symbols:
            tape.order(f"P-{s}", "ACC", s, Side.BUY, 10, price=100)
            tape.fill(f"P-{s}", 10, 100)
            tape.order(f"Q-{s}", "ACC", s, Side.BUY, 100, price=100)
        price = 100
        for t in (T_MID, T_EDGE):
            for k in AROUND:
                price += 1
                for s in self.symbols:
                    tape.clock = t + k * US - tape.step  # the next tick is at exactly t + k µs
                    tape.mark(s, price)
                    tape.clock = t + k * US - tape.step
                    tape.fill(f"Q-{s}", 1, 100)
        self.records = tape.records
        assert [r.event_time for r in self.records] == sorted(r.event_time for r in self.records)

    def tp(self, record: OrderEvent | MarketMark) -> tuple[str, int]:
        topic = self.settings.topic_orders if isinstance(record, OrderEvent) else self.settings.topic_marketdata
        return topic, symbol_partition(record.symbol, self.settings.partitions)

    def count(self, keep: Any) -> Counter[tuple[str, int]]:
        """Records per partition that `keep(event_time)` holds for."""
        return Counter(self.tp(r) for r in self.records if keep(r.event_time))

    def positions(self, t: datetime) -> dict[str, tuple[Decimal, Decimal | None]]:
        """Symbol -> (qty, mark price) as of t: every record at or before t."""
        out: dict[str, tuple[Decimal, Decimal | None]] = {}
        for s in self.symbols:
            mine = [r for r in self.records if r.symbol == s and r.event_time <= t]
            qty = sum((r.last_qty or Decimal(0) for r in mine if isinstance(r, OrderEvent)), Decimal(0))
            marks = [r.mark_price for r in mine if isinstance(r, MarketMark)]
            out[s] = (qty, marks[-1] if marks else None)
        return out


def cut_offsets(partitions: list[dict[str, Any]]) -> Counter[tuple[str, int]]:
    return Counter({(p["topic"], p["partition"]): p["to_offset"] for p in partitions if p["to_offset"]})


def shown_positions(out: dict[str, Any]) -> dict[str, tuple[Decimal, Decimal | None]]:
    return {p["symbol"]: (Decimal(p["qty"]), None if p["mark_price"] is None else Decimal(p["mark_price"]))
            for p in out["positions"]}


@pytest.mark.parametrize("t", [T_MID, T_EDGE], ids=["mid-millisecond", "millisecond-start"])
def test_state_and_replay_keep_exactly_the_records_at_or_before_t(cli_env: Settings, t: datetime) -> None:
    log = Log(cli_env)
    publish(cli_env, log.records)
    at_or_before = log.count(lambda when: when <= t)
    # the boundary is inside the millisecond: a millisecond cut would keep a record after t
    assert at_or_before != log.count(lambda when: when.replace(microsecond=when.microsecond // 1000 * 1000)
                                     <= t.replace(microsecond=t.microsecond // 1000 * 1000))

    for processes in ("1", "2"):
        out = invoke_json("state", "--as-of", t.isoformat(), "--processes", processes, "-q")
        assert out["processes"] == int(processes)
        assert cut_offsets(out["partitions"]) == at_or_before, processes
        assert shown_positions(out) == log.positions(t), processes

    to = invoke_json("replay", "--from-beginning", "--to-timestamp", t.isoformat(), "--dry-run", "-q")
    assert cut_offsets(to["partitions"]) == at_or_before

    # from T to T: exactly the records at T, one per partition with records
    exact = invoke_json("replay", "--from-timestamp", t.isoformat(), "--to-timestamp", t.isoformat(), "--dry-run",
                        "-q")
    before = log.count(lambda when: when < t)
    for p in exact["partitions"]:
        tp = (p["topic"], p["partition"])
        assert (p["from_offset"], p["to_offset"], p["replayed"]) == (before[tp], at_or_before[tp],
                                                                     at_or_before[tp] - before[tp]), tp
    assert exact["replayed"] == sum(1 for r in log.records if r.event_time == t) == 4


def test_snapshots_at_an_as_of_cut_hold_the_records_at_or_before_t_and_never_more(cli_env: Settings) -> None:
    log = Log(cli_env)
    publish(cli_env, log.records)
    t = T_MID

    # a snapshot 1 µs after t lies inside t's millisecond: as of t must not start from it
    later = invoke_json("checkpoints", "create", "--as-of", (t + US).isoformat(), "-q")
    assert {(r["topic"], r["partition"]): r["next_offset"] for r in later if r["next_offset"]} == \
        log.count(lambda when: when <= t + US)
    out = invoke_json("state", "--as-of", t.isoformat(), "-q")
    assert cut_offsets(out["partitions"]) == log.count(lambda when: when <= t)
    assert shown_positions(out) == log.positions(t)

    # a snapshot at t is at the exact cut, and as of t then needs no tail
    at = invoke_json("checkpoints", "create", "--as-of", t.isoformat(), "-q")
    assert {(r["topic"], r["partition"]): r["next_offset"] for r in at if r["next_offset"]} == \
        log.count(lambda when: when <= t)
    again = invoke_json("state", "--as-of", t.isoformat(), "--processes", "2", "-q")
    for p in again["partitions"]:
        if p["to_offset"]:
            assert p["snapshot_id"] is not None and p["state_from_offset"] == p["to_offset"], p
    assert shown_positions(again) == log.positions(t)
