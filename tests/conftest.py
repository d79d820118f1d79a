"""Session fixtures: where the real Kafka broker and PostgreSQL server come from.

In order: services named by BACKBONE_TEST_KAFKA_BOOTSTRAP_SERVERS and BACKBONE_TEST_DATABASE_URL;
else testcontainers when a Docker engine answers; else the project's own local runner
(`backbone local up`, the same stack the demo uses). Every test gets unique topic and group
names (`names` fixture); database tests get a fresh database of their own.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).parent))  # tests/factories.py and friends

from backbone import db  # noqa: E402
from backbone.kafka import topics  # noqa: E402
from backbone.settings import Settings  # noqa: E402

TEST_PARTITIONS = 6


@dataclass(frozen=True)
class Services:
    bootstrap: str
    database_url: str  # a role that may create databases
    source: str  # "env" | "testcontainers" | "local"


def _docker_engine_answers() -> bool:
    import shutil
    import subprocess

    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=15).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    bootstrap = os.environ.get("BACKBONE_TEST_KAFKA_BOOTSTRAP_SERVERS")
    url = os.environ.get("BACKBONE_TEST_DATABASE_URL")
    if bootstrap and url:
        yield Services(bootstrap, url, "env")
        return
    if _docker_engine_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka, \
                PostgresContainer("postgres:16", driver="psycopg") as pg:
            yield Services(kafka.get_bootstrap_server(), pg.get_connection_url(), "testcontainers")
        return
    from backbone.local import stack

    settings = Settings()
    stack.up(settings)
    yield Services(settings.kafka_bootstrap_servers, settings.database_url_value, "local")


@pytest.fixture(scope="session")
def base_settings(services: Services) -> Settings:
    # Tests simulate sessions on fixed past dates; with the default 7-day market-data retention
    # the broker would delete those marks (retention is by record timestamp) mid-test.
    return Settings().with_overrides(kafka_bootstrap_servers=services.bootstrap,
                                     database_url=services.database_url, partitions=TEST_PARTITIONS,
                                     marketdata_retention_ms=-1)


@dataclass(frozen=True)
class Names:
    prefix: str

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def group(self, name: str = "g") -> str:
        return f"{self.prefix}-{name}"


@pytest.fixture
def names(request: pytest.FixtureRequest) -> Names:
    return Names(f"t{uuid.uuid4().hex[:10]}-{request.node.name[:40].replace('[', '-').replace(']', '')}")


def _psycopg_url(url: str, database: str | None = None) -> str:
    parsed = make_url(url)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(admin_url: str) -> str:
    """A fresh, empty database; returns its SQLAlchemy URL."""
    name = f"bb_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_psycopg_url(admin_url), autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    db.drop_database(_psycopg_url(admin_url), str(make_url(url).database))


@pytest.fixture
def empty_database(services: Services) -> Iterator[str]:
    url = create_database(services.database_url)
    yield url
    drop_database(services.database_url, url)


@pytest.fixture
def settings(base_settings: Settings, names: Names, empty_database: str) -> Iterator[Settings]:
    """Settings of one test: its own topics (not yet created; deleted afterwards if they were)
    and its own migrated database."""
    db.upgrade(base_settings, url=empty_database)
    test_settings = base_settings.with_overrides(
        topic_orders=names.topic("orders"), topic_marketdata=names.topic("marketdata"),
        topic_deadletter=names.topic("deadletter"), topic_alerts=names.topic("alerts"),
        database_url=empty_database,
    )
    yield test_settings
    delete_test_topics(test_settings)


@pytest.fixture
def created_topics(settings: Settings) -> Settings:
    reports = topics.create_topics(settings)
    assert [r.action for r in reports] == ["created"] * 4, reports
    return settings


def delete_test_topics(settings: Settings) -> None:
    """Tests leave no topics behind: a broker with thousands of stale partitions starts slowly."""
    admin = topics.admin_client(settings)
    existing = admin.list_topics(timeout=30).topics
    names = [t for t in settings.topic_names() if t in existing]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result()
