"""Commands end a permanent failure quickly, in one line, with its documented exit code.

The Kafka cases run `backbone` as a subprocess: librdkafka writes to file descriptor 2 itself,
which typer's CliRunner would not see, and "nothing else on stderr" is part of what is tested.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from backbone.kafka.health import FoldingLog
from backbone.settings import Settings
from cli.common import EXIT_AUTH, EXIT_CONFIG, EXIT_UNAVAILABLE
from cli.main import app

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONNECT_TIMEOUT_S = 3
SLACK_S = 7  # interpreter start and imports on a busy two-core machine, and the probe's last step

KAFKA_COMMANDS = {
    "topics describe": ["topics", "describe"],
    "topics create": ["topics", "create"],
    "simulate": ["simulate", "-n", "100", "-q"],
    "project run --until-caught-up": ["project", "run", "--until-caught-up"],
    "project run --max-seconds": ["project", "run", "--max-seconds", "20"],
}


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**backbone: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKBONE_")}
    env.update({f"BACKBONE_{k.upper()}": v for k, v in backbone.items()})
    return env


def _backbone(args: list[str], env: dict[str, str], timeout_s: float) -> tuple[subprocess.CompletedProcess, float]:
    """Run the command; the time limit is its exit, not a sleep."""
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=timeout_s, cwd=ROOT)
    return done, time.monotonic() - t0


def _one_line_error(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("command", KAFKA_COMMANDS)
@pytest.mark.parametrize("where", ["closed port", "unknown host"])
def test_an_unreachable_broker_ends_the_command_within_the_connect_timeout(command: str, where: str,
                                                                          closed_port: int) -> None:
    bootstrap = f"127.0.0.1:{closed_port}" if where == "closed port" else "no-such-host.invalid:9092"
    env = _env(kafka_bootstrap_servers=bootstrap, kafka_connect_timeout_s=str(CONNECT_TIMEOUT_S))
    done, seconds = _backbone(KAFKA_COMMANDS[command], env, CONNECT_TIMEOUT_S + SLACK_S)
    line = _one_line_error(done.stderr)
    assert done.returncode == EXIT_UNAVAILABLE, line
    assert seconds < CONNECT_TIMEOUT_S + SLACK_S
    if where == "closed port":
        assert f"no Kafka broker reachable at {bootstrap} within {CONNECT_TIMEOUT_S} s" in line
        assert "Connection refused" in line
    else:
        assert "unknown Kafka broker host" in line and "no-such-host.invalid:9092" in line


@pytest.mark.parametrize("command", KAFKA_COMMANDS)
def test_a_refused_authentication_ends_the_command_at_once(command: str, services) -> None:
    """SASL_PLAINTEXT against the test broker's PLAINTEXT listener: the broker refuses the SASL
    handshake, which librdkafka reports as _AUTHENTICATION, like a wrong password on a SASL
    listener. The connect timeout is long: the command must not wait it out."""
    env = _env(kafka_bootstrap_servers=services.bootstrap, kafka_connect_timeout_s="60",
               kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
               kafka_sasl_username="backbone", kafka_sasl_password="not-the-password")
    done, seconds = _backbone(KAFKA_COMMANDS[command], env, 30)
    line = _one_line_error(done.stderr)
    assert done.returncode == EXIT_AUTH, line
    assert "refused the connection" in line and "SASL" in line
    assert "not-the-password" not in done.stderr + done.stdout
    assert seconds < 30


def test_a_client_says_a_repeated_failure_once_with_its_count(closed_port: int) -> None:
    """A real librdkafka client retrying a closed port: the failure is said when first seen,
    then once more with the number of repeats, however many attempts there were."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("test.folding")
    logger.propagate = False
    logger.addHandler(Keep())
    log = FoldingLog(logger, every_s=3600)
    refusals = []

    def error_cb(err: object) -> None:
        refusals.append(err)
        log.error(err)

    producer = Producer({"bootstrap.servers": f"127.0.0.1:{closed_port}", "logger": log, "error_cb": error_cb})
    deadline = time.monotonic() + 30
    while len([e for e in refusals if "Connection refused" in e.str()]) < 4 and time.monotonic() < deadline:
        producer.poll(0.1)
    attempts = len([e for e in refusals if "Connection refused" in e.str()])
    assert attempts >= 4
    log.flush()
    line = f"127.0.0.1:{closed_port}/bootstrap: Connect to ipv4#127.0.0.1:{closed_port} failed: Connection refused"
    assert [r for r in records if "refused" in r] == [line, f"{line} ({attempts - 1} more times)"]


# -- PostgreSQL ---------------------------------------------------------------------------------------------

def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def db_env(created_topics: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The test's broker, topics and (migrated) database in the environment, nothing else."""
    settings = created_topics
    for name in [n for n in os.environ if n.startswith("BACKBONE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("BACKBONE_KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    monkeypatch.setenv("BACKBONE_TOPIC_ORDERS", settings.topic_orders)
    monkeypatch.setenv("BACKBONE_TOPIC_MARKETDATA", settings.topic_marketdata)
    yield settings


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_postgres_and_postgresql_urls_both_reach_the_database(scheme: str, db_env: Settings,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    url = make_url(db_env.database_url_value).set(drivername=scheme)
    monkeypatch.setenv("BACKBONE_DATABASE_URL", url.render_as_string(hide_password=False))
    current = _invoke("db", "current")
    assert current.exit_code == 0, current.output
    assert "(head)" in current.stdout
    positions = _invoke("positions", "--json")
    assert positions.exit_code == 0, positions.output
    assert positions.stdout.strip() == "[]"


DB_COMMANDS = [["db", "current"], ["db", "upgrade"], ["positions"], ["checkpoints", "list"], ["checkpoints", "create"],
               ["state", "--as-of", "2026-01-01T00:00:00Z", "-q"], ["project", "run", "--max-seconds", "20"]]


@pytest.mark.parametrize("command", DB_COMMANDS, ids=" ".join)
@pytest.mark.parametrize(("failure", "code", "says"), [
    ("closed port", EXIT_UNAVAILABLE, ["cannot reach the database", "Connection refused"]),
    ("wrong password", EXIT_AUTH, ["refused the credentials", "password authentication failed"]),
])
def test_a_database_failure_is_one_line_with_its_exit_code(command: list[str], failure: str, code: int,
                                                            says: list[str], db_env: Settings, closed_port: int,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    url = make_url(db_env.database_url_value).set(password="not-the-password")
    if failure == "closed port":
        url = url.set(port=closed_port)
    monkeypatch.setenv("BACKBONE_DATABASE_URL", url.render_as_string(hide_password=False))
    result = _invoke(*command)
    line = _one_line_error(result.stderr)
    assert result.exit_code == code, line
    assert all(s in line for s in says), line
    assert "not-the-password" not in result.output


@pytest.mark.parametrize("url", ["postgresql://backbone:secret@host:port/db", "not a url at all secret",
                                 "mysql://backbone:secret@host/db"])
def test_a_malformed_database_url_is_a_configuration_error(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKBONE_DATABASE_URL", url)
    result = _invoke("db", "current")
    line = _one_line_error(result.stderr)
    assert result.exit_code == EXIT_CONFIG, line
    assert "BACKBONE_DATABASE_URL" in line and "secret" not in result.output
