"""`backbone dashboard` in a real headless browser (Debian's chromium, driven by Playwright): the
page renders the projected state, its P&L equals `backbone pnl --json`'s, it redraws itself
after new events are projected, its consumer lag is `backbone lag --json`'s while events wait
and 0 once they are projected; and it reads as the read-only role only.

BACKBONE_DASHBOARD_SCREENSHOT=docs/img/dashboard.png also saves the rendered page there (the
README's picture; docs/dashboard.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from confluent_kafka import Producer
from support import project, publish, settings_env
from tape import Tape

from backbone import db
from backbone.domain.events import Side
from backbone.errors import ConfigError
from backbone.settings import Settings
from consumers.config import default_group_id
from dashboard import lag, queries
from producers.simulator import SimulationConfig, simulate
from projections.trading import NAME

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DEADLINE_S = 60


@pytest.fixture
def reader_settings(created_topics: Settings) -> Iterator[Settings]:
    """The test's settings with BACKBONE_READER_DATABASE_URL: a login made by `db create-reader`."""
    name = f"desk_{uuid.uuid4().hex[:10]}"
    db.create_reader(created_topics, name, "desk-pw")
    url = sa.engine.make_url(created_topics.database_url_value)
    try:
        yield created_topics.with_overrides(reader_database_url=url.set(username=name, password="desk-pw")
                                            .render_as_string(hide_password=False))
    finally:
        admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"select pg_terminate_backend(pid) from pg_stat_activity where usename = '{name}'")
            conn.execute(f"revoke connect on database {url.database} from {name}")
            conn.execute(f"drop role {name}")


def _env(settings: Settings) -> dict[str, str]:
    """settings_env, with the reader's URL unmasked (settings_env has it as `config show` prints it)."""
    env = {k: v for k, v in settings_env(settings).items() if k != "BACKBONE_READER_DATABASE_URL"}
    reader = settings.reader_database_url.get_secret_value()
    return env | ({"BACKBONE_READER_DATABASE_URL": reader} if reader else {})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dashboard_url(reader_settings: Settings) -> Iterator[str]:
    """`backbone dashboard` as its own process, redrawing every second; its URL once it answers."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "dashboard", "--port", str(port), "--refresh", "1"],
                            env=_env(reader_settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            assert proc.poll() is None, f"backbone dashboard ended: {proc.stdout.read() if proc.stdout else ''}"
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.read() == b"ok":
                        break
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, f"the dashboard did not answer at {url} within {DEADLINE_S} s"
            time.sleep(0.2)  # the next poll of the health endpoint
        yield url
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C does
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, -signal.SIGINT), proc.stdout.read() if proc.stdout else ""


@pytest.fixture
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (`make deps` installs it): the dashboard's browser test "
                    "needs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def _pnl_json(settings: Settings) -> list[dict[str, str]]:
    result = subprocess.run([sys.executable, "-m", "cli.main", "pnl", "--json"], env=_env(settings),
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def _lag_json(settings: Settings, group: str) -> dict[str, int]:
    """`backbone lag --json --group G`'s lag in records per topic."""
    result = subprocess.run([sys.executable, "-m", "cli.main", "lag", "--json", "--group", group, "--interval", "0.1"],
                            env=_env(settings), capture_output=True, text=True, check=True)
    return {g["topic"]: g["lag_records"] for g in json.loads(result.stdout)["groups"] if g["source"] == "postgres"}


def _shown(value: Decimal) -> str:
    """A P&L figure as the page writes it: 2 places half-even, thousands separators."""
    return f"{value.quantize(Decimal('0.01')):,}"


def test_the_page_shows_the_pnl_of_backbone_pnl_and_redraws_after_new_events(
        reader_settings: Settings, dashboard_url: str, browser: object) -> None:
    from playwright.sync_api import expect

    settings = reader_settings
    # a session of about 100 minutes (a 3 s mean gap), so that the charts spread out as on a desk
    session = list(simulate(SimulationConfig(events=2000, seed=11, mean_gap_us=3_000_000)))
    publish(settings, session)
    project(settings, "dash")
    pnl = _pnl_json(settings)
    total = sum(Decimal(r["total_pnl"]) for r in pnl)

    page = browser.new_page(viewport={"width": 1400, "height": 3200})  # type: ignore[attr-defined]
    page.goto(dashboard_url)
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Total P&L").locator(
        '[data-testid="stMetricValue"]')
    expect(metric).to_have_text(_shown(total), timeout=DEADLINE_S * 1000)
    expect(page.locator('table[data-table="pnl"] tr.total td[data-column="total_pnl"]')).to_have_text(_shown(total))
    for row in pnl:
        cells = page.locator('table[data-table="pnl"] tbody tr').filter(
            has=page.locator('td[data-column="account"]', has_text=row["account"]))
        expect(cells.locator('td[data-column="total_pnl"]')).to_have_text(_shown(Decimal(row["total_pnl"])))
    for name in ("positions", "fills", "orders", "exposure", "health"):  # drawn after the metrics: waited for
        expect(page.locator(f'table[data-table="{name}"] tbody tr td[data-column]').first).to_be_visible()
    expect(page.locator('[data-testid="stVegaLiteChart"]').first).to_be_visible()
    projection = default_group_id(NAME, [settings.topic_orders, settings.topic_marketdata])

    def lag_cell(topic: str) -> Any:
        row = page.locator('table[data-table="lag"] tbody tr').filter(
            has=page.locator('td[data-column="group"]', has_text=re.compile(f"^{re.escape(projection)}$"))).filter(
            has=page.locator('td[data-column="source"]', has_text="postgres")).filter(
            has=page.locator('td[data-column="topic"]', has_text=re.compile(f"^{re.escape(topic)}$")))
        return row.locator('td[data-column="lag_records"]')

    for topic in (settings.topic_orders, settings.topic_marketdata):
        expect(lag_cell(topic)).to_have_text("0", timeout=DEADLINE_S * 1000)

    tape = Tape(start=max(r.event_time for r in session) + timedelta(minutes=1))
    tape.order("DASH-1", "DESK1", "DASHX", Side.BUY, 100, price=10)
    tape.fill("DASH-1", 100, 10, commission=1)
    tape.mark("DASHX", "12.5")
    publish(settings, tape.records)
    producer = Producer(settings.kafka_config())
    producer.produce(settings.topic_orders, key=b"DASHX", value=b"not a record")
    assert producer.flush(30) == 0
    waiting = _lag_json(settings, projection)  # published, not yet projected
    assert waiting[settings.topic_orders] > 0 and waiting[settings.topic_marketdata] > 0, waiting
    for topic, records in waiting.items():
        expect(lag_cell(topic)).to_have_text(f"{records:,}", timeout=DEADLINE_S * 1000)
    project(settings, "dash")
    after = sum(Decimal(r["total_pnl"]) for r in _pnl_json(settings))
    assert after == total + Decimal(249)  # 100 x (12.5 - 10) - 1

    expect(metric).to_have_text(_shown(after), timeout=DEADLINE_S * 1000)  # redrawn by itself, no reload
    desk = page.locator('table[data-table="pnl"] tbody tr').filter(has=page.locator("td", has_text="DESK1"))
    expect(desk.locator('td[data-column="total_pnl"]')).to_have_text("249.00")
    expect(page.locator('table[data-table="dead-letter-reasons"] td[data-column="count"]')).to_have_text("1")
    expect(page.locator('table[data-table="fills"] td[data-column="account"]').first).to_have_text("DESK1")
    for topic in waiting:
        expect(lag_cell(topic)).to_have_text("0", timeout=DEADLINE_S * 1000)
    # events/s: the checkpoints' advance between two redraws, once the tab has read them twice
    expect(page.locator('table[data-table="health"] td[data-column="rate"]').first).to_have_text(
        re.compile(r"^\d[\d,]*\.\d$"))
    expect(page.locator('table[data-table="health-partitions"] tbody tr')).to_have_count(
        2 * settings.partitions)
    shot = os.environ.get("BACKBONE_DASHBOARD_SCREENSHOT")
    if shot:
        page.set_viewport_size({"width": 1400, "height": 1180})
        page.screenshot(path=shot)


def test_the_dashboard_connection_cannot_write(reader_settings: Settings) -> None:
    engine = queries.reader_engine(reader_settings)
    try:
        assert queries.check_read_only(engine, reader_settings).startswith("desk_")
        with engine.connect() as conn:
            assert conn.execute(sa.text("show default_transaction_read_only")).scalar_one() == "on"
        with engine.connect() as conn:
            conn.execute(sa.text("set transaction read write"))  # past the session default: the role still refuses
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied for table marks"):
                conn.execute(sa.text("insert into marks (symbol, kafka_partition, mark_price, event_time, event_id) "
                                     "values ('X', 0, 1, now(), 'e1')"))
    finally:
        engine.dispose()


def test_the_dashboard_refuses_a_login_that_may_write_or_none(reader_settings: Settings) -> None:
    owner = reader_settings.with_overrides(reader_database_url=reader_settings.database_url_value)
    engine = queries.reader_engine(owner)
    try:
        with pytest.raises(ConfigError, match="may write .*backbone db create-reader"):
            queries.check_read_only(engine, owner)
    finally:
        engine.dispose()
    nobody = reader_settings.with_overrides(reader_database_url="")
    for env in (_env(owner), _env(nobody)):  # the application's login; none at all
        result = subprocess.run([sys.executable, "-m", "cli.main", "dashboard", "--port", str(_free_port())],
                                env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "backbone db create-reader NAME" in result.stderr


def test_the_lag_board_samples_once_per_interval_on_kept_clients_and_says_when_kafka_is_down(
        reader_settings: Settings) -> None:
    slow = lag.LagBoard(reader_settings, 3600)
    every = lag.LagBoard(reader_settings, 0)
    try:
        first = slow.read()
        assert first.problems == (), first.problems
        assert slow.read() is first  # within the interval: the same sample, whatever the number of tabs
        one, two = every.read(), every.read()
        assert two is not one and two.at >= one.at
        admin = every.sampler.admin
        every.read()
        assert every.sampler.admin is admin  # the Kafka clients live as long as the board
    finally:
        slow.close()
        every.close()
    down = lag.LagBoard(reader_settings.with_overrides(kafka_bootstrap_servers="127.0.0.1:1"), 0, timeout_s=2)
    try:
        reading = down.read()
    finally:
        down.close()
    assert reading.problems and reading.problems[0].startswith("Kafka: "), reading.problems
