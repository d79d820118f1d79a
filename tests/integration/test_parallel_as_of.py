"""`state --as-of`, `replay --dry-run` and `checkpoints create --as-of` split between processes
(projections.parallel) against the real broker and database: the output equals one process's,
row for row (snapshots byte for byte); a helper's error is the command's error; a helper that
dies is reported, not waited for, and a helper does not outlive its parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import psycopg
import pytest
from support import project, publish, settings_env
from typer.testing import CliRunner

from backbone import db
from backbone.domain.events import OrderEvent
from backbone.kafka.partitioner import symbol_partition
from backbone.kafka.producer import KafkaProducer
from backbone.settings import Settings
from cli.main import app
from producers.simulator import SimulationConfig, simulate
from projections import parallel
from projections.parallel import HelperFailed, PartitionWorkers, split_plans
from projections.replay import Replayer

pytestmark = pytest.mark.integration


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def cli_env(created_topics: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Small snapshot intervals, the settings as BACKBONE_* for the CLI, and every as-of split
    whatever its size (the test sessions are far below SPLIT_FROM_RECORDS)."""
    settings = created_topics.with_overrides(snapshot_every_events=150, snapshot_every_seconds=0)
    for key, value in settings_env(settings).items():
        if key.startswith("BACKBONE_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setattr(parallel, "SPLIT_FROM_RECORDS", 0)
    return settings


def as_of_json(when: str, *args: str) -> dict:
    out = invoke("state", "--as-of", when, "--json", *args)
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_split_between_processes_prints_what_one_process_prints(cli_env: Settings, names) -> None:
    settings = cli_env
    records = list(simulate(SimulationConfig(events=2400, seed=41, symbols=10, accounts=5)))
    publish(settings, records)
    project(settings, names.group("live"), batch_size=200)  # leaves snapshots every ~150 records a partition
    for i in (300, 1200, 2399):
        when = records[i].event_time.isoformat()
        account = next(r.account for r in records[i::-1] if isinstance(r, OrderEvent))  # records[i] may be a mark
        for extra in (("--include-flat",), ("--account", account)):
            one = as_of_json(when, "--processes", "1", *extra)
            two = as_of_json(when, "--processes", "2", *extra)
            assert (one["processes"], two["processes"]) == (1, 2)
            for key in ("positions", "pnl_by_account", "open_orders", "records_replayed", "partitions"):
                assert two[key] == one[key], f"{key} at record {i} {extra}"
            assert one["positions"] and one["records_replayed"] > 0
    engine = db.make_engine(settings)
    with Replayer(settings, engine) as r:
        plans = r.plan_as_of(records[2399].event_time)
    engine.dispose()
    assert any(p.snapshot is not None for p in plans), "the cuts should start from snapshots"


def test_replay_dry_run_split_between_processes_reports_what_one_process_reports(cli_env: Settings, names) -> None:
    settings = cli_env
    records = list(simulate(SimulationConfig(events=2000, seed=45, symbols=10, accounts=5)))
    publish(settings, records)
    with KafkaProducer(settings) as producer:  # undecodable records in two partitions: dead letters
        for partition in (0, settings.partitions - 1):
            producer.produce(settings.topic_orders, b"junk", key=b"JUNK", partition=partition)
        producer.flush()
    project(settings, names.group("live"), batch_size=200)
    used = Counter(symbol_partition(r.symbol, settings.partitions) for r in records if isinstance(r, OrderEvent))
    middle = next(p for p in sorted(used) if p not in (0, settings.partitions - 1) and used[p] > 5)
    for args in (["--from-beginning"], ["--from-timestamp", records[700].event_time.isoformat()],
                 ["--from-offset", f"0:0,{middle}:5,{settings.partitions - 1}:0"]):
        runs = [invoke("replay", *args, "--dry-run", "--json", "--processes", n) for n in ("1", "2")]
        assert all(r.exit_code == 0 for r in runs), [r.output for r in runs]
        one, two = (json.loads(r.stdout) for r in runs)
        assert (one["processes"], two["processes"]) == (1, 2), args
        for key in ("records_read", "replayed", "caught_up", "dead_letters", "partitions"):
            assert two[key] == one[key], f"{key} of {args}"
        assert sorted(map(str, two["first_dead_letters"])) == sorted(map(str, one["first_dead_letters"]))
        if args[0] != "--from-timestamp":
            assert one["dead_letters"] == {"decode_error": 2}, one["dead_letters"]


def test_checkpoints_create_as_of_split_between_processes_creates_the_same_snapshots(cli_env: Settings,
                                                                                      names) -> None:
    settings = cli_env
    records = list(simulate(SimulationConfig(events=2000, seed=46, symbols=10, accounts=5)))
    publish(settings, records)
    project(settings, names.group("live"), batch_size=200)  # snapshots to start from
    url = settings.database_url_value.replace("postgresql+psycopg://", "postgresql://")
    when = records[1500].event_time.isoformat()
    made = {}
    for processes in ("1", "2"):
        with psycopg.connect(url) as conn:
            before = conn.execute("select coalesce(max(id), 0) from projection_snapshots").fetchone()[0]
        out = invoke("checkpoints", "create", "--as-of", when, "--processes", processes, "--json")
        assert out.exit_code == 0, out.output
        taken = json.loads(out.stdout)
        with psycopg.connect(url) as conn:
            made[processes] = (taken, conn.execute(
                "select topic, partition, next_offset, max_timestamp, events_covered, md5(state) "
                "from projection_snapshots where id > %s order by topic, partition", (before,)).fetchall())
            conn.execute("delete from projection_snapshots where id > %s", (before,))  # the next run creates them again
    assert made["2"] == made["1"]
    assert sum(1 for t in made["1"][0] if t["action"] == "created") == len(made["1"][1]) > 0


def test_an_error_in_the_helper_is_the_command_error(cli_env: Settings, names) -> None:
    settings = cli_env
    records = list(simulate(SimulationConfig(events=1500, seed=42, symbols=10, accounts=5)))
    publish(settings, records)
    project(settings, names.group("live"), batch_size=200)
    when = records[-1].event_time
    engine = db.make_engine(settings)
    with Replayer(settings, engine) as r:
        groups = split_plans(r.plan_as_of(when), 2)
    engine.dispose()
    victim = next(p for p in groups[1] if p.snapshot is not None)  # a partition the helper folds
    url = settings.database_url_value.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        conn.execute("update projection_snapshots set state = %s where id = %s",
                     (b"not a snapshot", victim.snapshot.id))

    for processes in ("1", "2"):
        out = invoke("state", "--as-of", when.isoformat(), "--processes", processes)
        assert out.exit_code == 1, out.output
        assert "error:" in out.stderr and "not zlib-compressed JSON" in out.stderr, out.stderr


def test_a_helper_that_dies_is_reported_and_the_next_fold_runs_here(cli_env: Settings, names) -> None:
    settings = cli_env
    records = list(simulate(SimulationConfig(events=600, seed=43, symbols=8, accounts=3)))
    publish(settings, records)
    when = records[-1].event_time
    with PartitionWorkers(settings, 2, projection="trading") as workers:
        engine = db.make_engine(settings)
        with Replayer(settings, engine) as r:
            plans = r.plan_as_of(when)
            seen: list[int] = []
            assert workers.fold(r, plans, progress=seen.append).processes == 2
            assert seen == sorted(seen) and seen[-1] == len(records), "progress counts both processes' records"
            proc, _conn = workers._helpers[0]
            proc.kill()
            proc.join()
            with pytest.raises(HelperFailed, match="--processes 1"):
                workers.fold(r, plans)
            again = workers.fold(r, plans)  # the helpers are stopped: this process folds alone
            assert again.processes == 1 and again.records == len(records)
        engine.dispose()


def test_a_helper_does_not_outlive_its_parent(created_topics: Settings) -> None:
    """A forked helper holds a copy of the parent's end of its pipe unless it closes it: then a
    killed parent leaves it waiting for a job forever."""
    env = settings_env(created_topics)
    script = ("import sys, time\n"
              "from backbone.settings import Settings\n"
              "from projections.parallel import PartitionWorkers\n"
              "workers = PartitionWorkers(Settings(), 3, projection='trading')\n"
              "print(workers.start_method, *[proc.pid for proc, _conn in workers._helpers], flush=True)\n"
              "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    method, *helpers = parent.stdout.readline().split()
    assert method == "fork" and len(helpers) == 2
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 20
    alive = set(helpers)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if os.path.exists(f"/proc/{pid}") and not _zombie(pid)}
        time.sleep(0.1)
    for pid in alive:
        os.kill(int(pid), signal.SIGKILL)
    assert not alive, f"helpers {sorted(alive)} outlived their parent"


def _zombie(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_the_command_forks_its_helper_and_splits_a_long_tail(created_topics: Settings) -> None:
    """A real `backbone state` process: single-threaded at start, so the helper is forked;
    a tail above SPLIT_FROM_RECORDS is split."""
    settings = created_topics
    records = list(simulate(SimulationConfig(events=parallel.SPLIT_FROM_RECORDS + 2000, seed=44, symbols=10,
                                             accounts=5)))
    publish(settings, records)
    env = settings_env(settings)

    def run(processes: str) -> tuple[dict, str]:
        out = subprocess.run([sys.executable, "-c", _NOTING_START_METHOD, "state", "--as-of",
                              records[-1].event_time.isoformat(), "--json", "--no-snapshots", "--processes", processes],
                             env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout), out.stderr

    (one, _), (two, noted) = run("1"), run("2")
    assert "start method: fork" in noted, noted
    assert two["processes"] == 2 and two["records_replayed"] == len(records)
    assert {k: v for k, v in two.items() if k not in ("seconds", "processes")} == \
        {k: v for k, v in one.items() if k not in ("seconds", "processes")}


# `backbone` with multiprocessing.get_context noting the start method it is asked for on stderr
_NOTING_START_METHOD = """
import multiprocessing, sys
get_context = multiprocessing.get_context
def noting(method=None):
    print(f"start method: {method}", file=sys.stderr)
    return get_context(method)
multiprocessing.get_context = noting
from cli.main import app
sys.argv[0] = "backbone"
app()
"""
