"""The secure local stack (`backbone local up --secure`): Kafka with SASL_SSL, SCRAM-SHA-512 and
ACLs, PostgreSQL with TLS only; the CLI through it as each principal; refusals in one line.

The stack is this module's own: a fresh state directory and free ports (never the shared stack).
Commands run as subprocesses: librdkafka writes to file descriptor 2 itself, and "one line on
stderr" is part of what is tested.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from backbone.local import security, stack
from backbone.settings import Settings, local_database_url
from cli.common import EXIT_AUTH

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 3000
SESSION = "2026-01-05T14:30:00Z"
AFTER_SESSION = "2026-02-01T00:00:00Z"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def secure() -> Iterator[Settings]:
    # under /tmp, not pytest's tmp_path: as root PostgreSQL runs as `postgres`, which must reach it
    state = Path(tempfile.mkdtemp(prefix="backbone-secure-"))
    state.chmod(0o711)
    settings = Settings().with_overrides(
        state_dir=state, kafka_port=_free_port(), kafka_controller_port=_free_port(), postgres_port=_free_port(),
        kafka_bootstrap_servers="", database_url="", partitions=6, marketdata_retention_ms=-1)
    try:
        stack.up(settings, secure=True)
        yield settings
    finally:
        stack.down(settings)
        shutil.rmtree(state, ignore_errors=True)


def _env(settings: Settings, principal: str, **extra: str) -> dict[str, str]:
    """The environment `backbone local env --as principal` gives, evaluated."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKBONE_")}
    env.update(BACKBONE_STATE_DIR=str(settings.state_dir), BACKBONE_KAFKA_PORT=str(settings.kafka_port),
               BACKBONE_KAFKA_CONTROLLER_PORT=str(settings.kafka_controller_port),
               BACKBONE_POSTGRES_PORT=str(settings.postgres_port), BACKBONE_PARTITIONS="6",
               BACKBONE_MARKETDATA_RETENTION_MS="-1", BACKBONE_KAFKA_CONNECT_TIMEOUT_S="60")
    env.update(_evaluated_exports(env, principal))
    env.update({f"BACKBONE_{k.upper()}": v for k, v in extra.items()})
    return env


def _evaluated_exports(env: dict[str, str], principal: str) -> dict[str, str]:
    script = f'eval "$({sys.executable} -m cli.main local env --as {principal})" && env -0'
    out = subprocess.run(["bash", "-c", script], env=env, cwd=ROOT, capture_output=True, check=True).stdout
    pairs = (item.split(b"=", 1) for item in out.split(b"\0") if b"=" in item)
    wanted = (b"BACKBONE_KAFKA_", b"BACKBONE_DATABASE_URL")
    return {k.decode(): v.decode() for k, v in pairs if k.startswith(wanted)}


def _backbone(args: list[str], env: dict[str, str], timeout_s: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, capture_output=True, text=True,
                          timeout=timeout_s, cwd=ROOT)


def _ok(args: list[str], env: dict[str, str]) -> str:
    done = _backbone(args, env)
    assert done.returncode == 0, f"{args}: {done.stderr[-3000:]}"
    return done.stdout


def _one_line_error(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-3000:]
    return lines[0]


def test_postgres_takes_tls_connections_only(secure: Settings) -> None:
    url = local_database_url(secure.postgres_port).replace("+psycopg", "")
    ca = security.SecurityPaths.of(secure).ca_cert
    with psycopg.connect(f"{url}?sslmode=verify-full&sslrootcert={ca}") as conn:
        assert conn.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone() == (True,)
    with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry.*no encryption"):
        psycopg.connect(f"{url}?sslmode=disable", connect_timeout=5)
    plain = _backbone(["db", "current"], _env(secure, "admin", database_url=f"{url}?sslmode=disable"))
    line = _one_line_error(plain)
    assert plain.returncode == EXIT_AUTH and "refused the credentials" in line and "no encryption" in line


def test_a_server_certificate_the_ca_did_not_sign_is_refused(secure: Settings, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other",
                    "-keyout", str(tmp_path / "other.key"), "-out", str(other_ca)], capture_output=True, check=True)
    url = local_database_url(secure.postgres_port) + f"?sslmode=verify-full&sslrootcert={other_ca}"
    done = _backbone(["db", "current"], _env(secure, "admin", database_url=url))
    line = _one_line_error(done)
    assert done.returncode == EXIT_AUTH and "TLS with the database" in line and "certificate verify failed" in line


def test_the_cli_works_through_the_secure_stack_as_each_principal(secure: Settings) -> None:
    admin, producer = _env(secure, "admin"), _env(secure, "producer")
    projector, reader = _env(secure, "projector"), _env(secure, "reader")
    assert "sslmode=verify-full" in admin["BACKBONE_DATABASE_URL"]
    assert admin["BACKBONE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    _ok(["topics", "create"], admin)
    _ok(["db", "upgrade"], admin)
    produced = json.loads(_ok(["simulate", "-n", str(EVENTS), "--seed", "5", "--start", SESSION, "-q", "--json"],
                              producer))
    assert produced["produced"] == EVENTS
    projected = json.loads(_ok(["project", "run", "--until-caught-up", "--json"], projector))
    assert projected["events"] == EVENTS and projected["dead_letters"] == 0
    state = json.loads(_ok(["state", "--as-of", AFTER_SESSION, "--json"], reader))
    assert state["records_replayed"] == EVENTS
    positions = json.loads(_ok(["positions", "--json", "--limit", "100000"], reader))
    assert positions and state["positions"] == positions
    replay = json.loads(_ok(["replay", "--projection", "trading", "--from-beginning", "--dry-run", "--json"], reader))
    assert replay["replayed"] == EVENTS
    assert "trading.orders" in _ok(["topics", "describe"], admin)


def test_a_wrong_password_ends_the_command_at_once_naming_the_user(secure: Settings) -> None:
    env = _env(secure, "projector", kafka_sasl_password="not-the-password")
    t0 = time.monotonic()
    done = _backbone(["project", "run", "--until-caught-up"], env, timeout_s=30)
    line = _one_line_error(done)
    assert done.returncode == EXIT_AUTH, line
    assert "refused the connection of user projector" in line and "SCRAM-SHA-512" in line, line
    assert "not-the-password" not in done.stdout + done.stderr
    assert time.monotonic() - t0 < 30  # not the 60 s connect timeout


@pytest.mark.parametrize(("principal", "command", "refused"), [
    ("reader", ["simulate", "-n", "10", "-q"], "WRITE on topic trading.orders to user reader"),
    ("producer", ["project", "run", "--until-caught-up"], "READ on topic trading.orders to user producer"),
    ("projector", ["simulate", "-n", "10", "-q"], "WRITE on topic trading.orders to user projector"),
    ("projector", ["project", "run", "--until-caught-up", "--group", "mine"], "READ on group mine to user projector"),
])
def test_a_missing_acl_ends_the_command_at_once_naming_what_was_refused(secure: Settings, principal: str,
                                                                  command: list[str], refused: str) -> None:
    _ok(["topics", "create"], _env(secure, "admin"))
    _ok(["db", "upgrade"], _env(secure, "admin"))
    done = _backbone(command, _env(secure, principal), timeout_s=30)
    line = _one_line_error(done)
    assert done.returncode == EXIT_AUTH and f"Kafka refused {refused}: no ACL allows it" in line, line


def test_only_admin_creates_topics(secure: Settings) -> None:
    done = _backbone(["topics", "create"], _env(secure, "projector", topic_alerts="other.alerts"), timeout_s=30)
    line = _one_line_error(done)
    assert done.returncode == EXIT_AUTH and "creating topic other.alerts: Authorization failed" in line, line


def test_no_password_in_a_command_line_or_a_log(secure: Settings) -> None:
    passwords = [security.password(secure, p) for p in security.PRINCIPALS]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        assert not any(p in cmdline for p in passwords), f"a password in the command line of pid {pid}"
    logs = [p for p in secure.state_dir.rglob("*.log")]
    assert logs
    for log in logs:
        text = log.read_text(errors="replace")
        assert not any(p in text for p in passwords), f"a password in {log}"
    assert (secure.state_dir / "kafka" / "server.properties").stat().st_mode & 0o077 == 0
