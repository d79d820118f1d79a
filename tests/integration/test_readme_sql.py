"""The example queries of docs/sql.md run, as the read-only role, on a projected database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url
from support import project, publish

from backbone import db
from backbone.kafka.producer import KafkaProducer
from backbone.settings import Settings
from monitoring.monitor import Monitor
from monitoring.rules import parse_rules
from producers.simulator import SimulationConfig, simulate

pytestmark = pytest.mark.integration
SQL_DOC = Path(__file__).resolve().parents[2] / "docs" / "sql.md"


def readme_queries() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", SQL_DOC.read_text(), flags=re.S)
    assert blocks, "docs/sql.md has no ```sql block"
    statements = [s.strip() for block in blocks for s in block.split(";")]
    return [s for s in statements if s and not all(line.startswith("--") for line in s.splitlines())]


def test_readme_sql_examples_run_as_the_read_only_role(created_topics: Settings, names) -> None:
    settings = created_topics
    publish(settings, list(simulate(SimulationConfig(events=3000, seed=8))))
    with KafkaProducer(settings) as producer:  # so the dead-letter example has something to show
        producer.produce(settings.topic_orders, b"not avro", key=b"AAPL")
    project(settings, names.group())
    _fire_a_lag_alert(settings)
    db.create_reader(settings, "readme_reader", "readme-pw")
    url = make_url(settings.database_url_value)
    queries = readme_queries()
    assert len(queries) >= 5
    with psycopg.connect(host=url.host, port=url.port, dbname=url.database, user="readme_reader",
                         password="readme-pw") as conn:
        for query in queries:
            rows = conn.execute(query).fetchall()
            assert rows, f"no rows for docs/sql.md query: {query}"


#: a projection behind by one record or more fires at once: the alerts examples have rows
_BEHIND = """
[[rule]]
name = "Behind"
metric = "lag_records"
threshold = 0
for = "0s"
severity = "WARNING"
"""


def _fire_a_lag_alert(settings: Settings) -> None:
    """Records the projection has not read, and two monitor passes a window apart (the first
    window after a start holds alerts): the alert fires and its transition is recorded."""
    publish(settings, list(simulate(SimulationConfig(events=20, seed=9))))
    window = timedelta(seconds=1)
    monitor = Monitor(settings, parse_rules(_BEHIND, "test"), sinks=[], interval=window, window=window)
    try:
        now = datetime.now(tz=UTC)
        monitor.run_pass(now)
        report = monitor.run_pass(now + window)
    finally:
        monitor.close()
    assert [t.key.rule for t in report.transitions if t.kind == "firing"], report.line()
