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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).parent))  # tests/factories.py and friends

from backbone import db  # noqa: E402
from backbone.kafka import topics  # noqa: E402
from backbone.settings import Settings, local_bootstrap, local_database_url  # noqa: E402

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
    if bootstrap or url:
        raise pytest.UsageError("set both BACKBONE_TEST_KAFKA_BOOTSTRAP_SERVERS and BACKBONE_TEST_DATABASE_URL, "
                                "or neither (then the tests start their own services)")
    if _docker_engine_answers():
        yield from _containers()
        return
    from backbone.local import stack

    # The local stack's own addresses, never BACKBONE_KAFKA_BOOTSTRAP_SERVERS / BACKBONE_DATABASE_URL
    # from the environment: those may name a real cluster (docs/operations.md, "Against a real
    # cluster"), where the tests would create and delete topics and databases.
    configured = Settings()
    settings = configured.with_overrides(kafka_bootstrap_servers=local_bootstrap(configured.kafka_port),
                                         database_url=local_database_url(configured.postgres_port))
    stack.up(settings)
    yield Services(settings.kafka_bootstrap_servers, settings.database_url_value, "local")


KAFKA_IMAGE = "apache/kafka:4.2.1"  # the version `backbone local up` runs (backbone/local/kafka-pom.xml)
POSTGRES_IMAGE = "postgres:15"  # Debian bookworm's server, which the local stack runs


def _containers() -> Iterator[Services]:
    """Kafka (KRaft, one node, the settings of docker-compose.yml) and PostgreSQL in containers.

    testcontainers' KafkaContainer drives Confluent Platform images only, so the Apache image
    runs as a generic container: its advertised listener must name the host port, which is
    therefore chosen before the start instead of left to Docker."""
    import socket
    import time

    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient
    from testcontainers.core.container import DockerContainer
    from testcontainers.postgres import PostgresContainer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        "KAFKA_NODE_ID": "1", "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_LISTENERS": "PLAINTEXT://0.0.0.0:9092,CONTROLLER://localhost:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER", "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1", "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1", "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false", "KAFKA_HEAP_OPTS": "-Xmx512m",
    }
    kafka = DockerContainer(KAFKA_IMAGE).with_bind_ports(9092, port)
    for key, value in env.items():
        kafka = kafka.with_env(key, value)
    with kafka, PostgresContainer(POSTGRES_IMAGE, driver="psycopg") as pg:
        bootstrap = f"127.0.0.1:{port}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        deadline = time.monotonic() + 120
        while True:  # the broker answers metadata requests once it is up
            try:
                if admin.list_topics(timeout=5).brokers:
                    break
                problem = "no broker in the metadata"
            except KafkaException as e:  # while it boots
                problem = str(e)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Kafka container at {bootstrap} did not come up in 120 s: {problem}")
            time.sleep(1)
        yield Services(bootstrap, pg.get_connection_url(), "testcontainers")


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


@contextmanager
def scratch_database(settings: Settings, admin_url: str) -> Iterator[Settings]:
    """`settings` pointed at a fresh, migrated database of its own (a reference run beside the
    test's), dropped afterwards."""
    url = create_database(admin_url)
    try:
        db.upgrade(settings, url=url)
        yield settings.with_overrides(database_url=url)
    finally:
        drop_database(admin_url, url)


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
