"""Postgres unavailable mid-run, or refusing a transaction with a serialization failure: the
projector retries, stays alive, advances nothing, then finishes with exactly the state of an
uninterrupted run."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from conftest import scratch_database
from sqlalchemy.engine import make_url
from support import checkpoint_total, project, publish, spawn_projector, table_dump

from backbone import db
from backbone.settings import Settings
from consumers.config import LoopConfig
from consumers.database import HELD_DB_IDLE_S
from consumers.runtime import ProjectionLoop
from producers.simulator import SimulationConfig, simulate
from projections.rebuild import psycopg_url
from projections.trading import TradingProjection

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PROXY = Path(__file__).parent / "tcp_proxy.py"


def start_proxy(listen: int, target: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(PROXY), str(listen), str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _stderr_lines(proc: subprocess.Popen) -> list[str]:
    """The process's stderr lines as they come (a reader thread; the list grows)."""
    import threading

    lines: list[str] = []

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait_for_line(lines: list[str], text: str, timeout: float = 120) -> None:
    """Wait for the next line holding `text` (those seen before are consumed)."""
    deadline = time.monotonic() + timeout
    while True:
        for i, line in enumerate(lines):
            if text in line:
                del lines[:i + 1]
                return
        assert time.monotonic() < deadline, f"no line with {text!r} in {timeout} s"
        time.sleep(0.05)


def test_database_outage_is_retried_without_advancing_offsets(created_topics: Settings, services, names) -> None:
    settings = created_topics
    publish(settings, list(simulate(SimulationConfig(events=15_000, seed=77))))
    with scratch_database(settings, services.database_url) as ref:
        project(ref, names.group("ref"))
        expected = table_dump(ref)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    real = make_url(settings.database_url_value)
    via_proxy = settings.with_overrides(
        database_url=real.set(port=port).render_as_string(hide_password=False))
    proxy = start_proxy(port, real.port)
    projector = spawn_projector(via_proxy, names.group("outage"), "--batch-size", "100")
    try:
        deadline = time.monotonic() + 120
        while checkpoint_total(settings) == 0:
            assert time.monotonic() < deadline and projector.poll() is None, "projector made no progress"
            time.sleep(0.05)
        proxy.kill()  # the database vanishes mid-run
        proxy.wait()
        # It retries: once it says so, the batch in flight failed; a commit the server had
        # already received may still have landed before that. Two more retries later, alive and
        # still waiting, nothing more has landed.
        said = _stderr_lines(projector)
        _wait_for_line(said, "retrying in")
        frozen = checkpoint_total(settings)
        _wait_for_line(said, "retrying in")
        _wait_for_line(said, "retrying in")
        assert projector.poll() is None, "the projector died during the outage"
        assert checkpoint_total(settings) == frozen  # nothing advanced while the database was away
        proxy = start_proxy(port, real.port)  # the database is back
        out, _err = projector.communicate(timeout=300)
        assert projector.returncode == 0, "".join(said)
        assert json.loads(out)["db_retries"] >= 1
    finally:
        projector.kill()
        proxy.kill()
    assert table_dump(settings) == expected


def test_serialization_failures_are_retried_and_apply_every_batch_once(created_topics: Settings, names,
                                                                       services) -> None:
    """Postgres answers a batch's transaction with SQLSTATE 40001 (what a serializable conflict
    or a deadlock victim gets): the same batch is retried, nothing is lost or applied twice."""
    settings = created_topics
    publish(settings, list(simulate(SimulationConfig(events=3_000, seed=78))))
    with scratch_database(settings, services.database_url) as ref:
        project(ref, names.group("ref"), batch_size=200)
        expected = table_dump(ref)

    failures = 4
    with db.make_engine(settings).begin() as conn:
        # A sequence, not a table: nextval survives the rollback of the transaction it fails.
        conn.exec_driver_sql("create sequence test_conflicts")
        conn.exec_driver_sql(f"""
            create function test_conflict() returns trigger language plpgsql as $$
            begin
              if nextval('test_conflicts') <= {failures} then
                raise exception 'injected conflict' using errcode = 'serialization_failure';
              end if;
              return new;
            end $$""")
        conn.exec_driver_sql("create trigger test_conflict before insert or update on projection_checkpoints "
                             "for each row execute function test_conflict()")
    stats = project(settings, names.group("conflicts"), batch_size=200)
    assert stats.db_retries == failures  # each refused transaction was retried, once
    assert stats.dead_letters == 0
    assert table_dump(settings) == expected


@pytest.mark.parametrize("quiet_spell, retries", [(True, 0), (False, 1)])
def test_a_connection_killed_during_a_quiet_spell_is_replaced_without_a_retry(
        created_topics: Settings, names, quiet_spell: bool, retries: int) -> None:
    """The projector holds one connection between batches. The server (or a firewall) may drop it
    while no records come: after HELD_DB_IDLE_S without a batch the next one checks out a pinged
    connection, so a dropped one costs nothing; within the limit it costs one retry."""
    settings = created_topics
    publish(settings, list(simulate(SimulationConfig(events=600, seed=79))))
    engine = db.make_engine(settings)
    holder: dict[str, ProjectionLoop] = {}

    def kill_the_held_connection(records: list, committed_at: float) -> None:
        loop = holder["loop"]
        if loop.stats.batches == 1:
            held = loop.db.held
            assert held is not None
            with psycopg.connect(psycopg_url(settings), autocommit=True) as admin:
                admin.execute("select pg_terminate_backend(%s)", (held.connection.driver_connection.info.backend_pid,))
            if quiet_spell:
                loop.db.used_at -= HELD_DB_IDLE_S + 1

    try:
        loop = holder["loop"] = ProjectionLoop(settings, TradingProjection(settings), engine,
                                               LoopConfig(group_id=names.group(), batch_size=100),
                                               on_commit=kill_the_held_connection)
        stats = loop.run(until_caught_up=True, max_seconds=300)
    finally:
        engine.dispose()
    assert stats.events == 600 and stats.batches >= 2
    assert stats.db_retries == retries
    assert checkpoint_total(settings) == 600


def test_an_outage_past_max_seconds_ends_the_run_and_the_status_says_what_it_waits_for(
        created_topics: Settings, names) -> None:
    """--max-seconds holds while the database is away: the run ends then, in error (nothing of
    the batch in flight committed); meanwhile the status names the database and shows no lag."""
    from backbone.errors import DatabaseUnavailable

    settings = created_topics
    publish(settings, list(simulate(SimulationConfig(events=3_000, seed=78))))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    real = make_url(settings.database_url_value)
    via_proxy = settings.with_overrides(database_url=real.set(port=port).render_as_string(hide_password=False),
                                        database_connect_timeout_s=2)
    proxy = start_proxy(port, real.port)
    statuses: list[tuple[int | None, str | None]] = []

    def cut_the_database(records: list, committed_at: float) -> None:
        if proxy.poll() is None:
            proxy.kill()
            proxy.wait()

    engine = db.make_engine(via_proxy)
    try:
        loop = ProjectionLoop(via_proxy, TradingProjection(via_proxy), engine,
                              LoopConfig(group_id=names.group(), batch_size=100, status_interval_s=0.5,
                                         max_db_backoff_s=1),
                              on_status=lambda st: statuses.append((st.lag, st.waiting_for)),
                              on_commit=cut_the_database)
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="--max-seconds passed while waiting for the database"):
            loop.run(max_seconds=8)
        assert time.monotonic() - started < 8 + 15  # the deadline, a connect timeout, the close
    finally:
        engine.dispose()
        if proxy.poll() is None:
            proxy.kill()
    waiting = [(lag, what) for lag, what in statuses if what and what.startswith("the database")]
    assert waiting and all(lag is None for lag, _ in waiting), statuses
    assert checkpoint_total(settings) == 100  # the first batch only: nothing after the outage
