"""A real single-node Apache Kafka broker (KRaft combined mode) run from Maven Central jars.

Layout under `<state_dir>/kafka/`: `server.properties`, `data/` (log dirs, formatted once),
`kafka.log` (broker log, via log4j2), `stdout.log` (the JVM's own output) and `kafka.pid`.
Jars are resolved once by Maven into `<cache_dir>/kafka-<version>-<pom digest>/libs` (outside
the repo): a changed pom (a log4j bump, another dependency) resolves into a fresh directory
instead of reusing jars resolved for the old one.
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from backbone.errors import ServiceError
from backbone.local import process, security
from backbone.settings import Settings

MAIN_CLASS = "kafka.Kafka"


def pom_text() -> str:
    return resources.files("backbone.local").joinpath("kafka-pom.xml").read_text()


def kafka_version() -> str:
    """The Kafka version pinned in the bundled pom."""
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom_text())
    if match is None:  # the pom ships with the package; this is a packaging bug
        raise ServiceError("kafka-pom.xml has no <kafka.version>")
    return match.group(1)


@dataclass(frozen=True)
class KafkaPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    @property
    def log_file(self) -> Path:
        return self.root / "kafka.log"

    @property
    def stdout_file(self) -> Path:
        return self.root / "stdout.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "kafka.pid"

    @classmethod
    def of(cls, settings: Settings) -> KafkaPaths:
        return cls(settings.state_dir / "kafka")


def libs_dir(settings: Settings) -> Path:
    digest = hashlib.sha256(pom_text().encode()).hexdigest()[:12]
    return settings.cache_dir / f"kafka-{kafka_version()}-{digest}" / "libs"


def resolve_jars(settings: Settings) -> Path:
    """Download the broker's jars with Maven once; later calls reuse the cache."""
    libs = libs_dir(settings)
    done = libs.parent / ".complete"
    if done.exists():
        return libs
    process.require_tool("java", "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)")
    mvn = process.require_tool("mvn", "install Apache Maven (Debian: apt-get install maven)")
    libs.mkdir(parents=True, exist_ok=True)
    with resources.as_file(resources.files("backbone.local").joinpath("kafka-pom.xml")) as pom:
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
            capture_output=True, text=True, check=False,
        )
    if result.returncode != 0:
        out = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise ServiceError("Maven could not resolve the Kafka jars:\n" + "\n".join(out))
    done.write_text(kafka_version())
    return libs


def server_properties(settings: Settings, paths: KafkaPaths) -> str:
    port, cport = settings.kafka_port, settings.kafka_controller_port
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{cport}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={paths.data}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "",
    ])


def _java_cmd(libs: Path, heap: str, *args: str) -> list[str]:
    return ["java", f"-Xmx{heap}", "-cp", f"{libs}/*", *args]


TOOL_HEAP = "256m"


def ensure_formatted(paths: KafkaPaths, libs: Path, extra: list[str] | None = None) -> None:
    if (paths.data / "meta.properties").exists():
        return
    paths.data.mkdir(parents=True, exist_ok=True)
    cluster_id = subprocess.run(
        _java_cmd(libs, TOOL_HEAP, "kafka.tools.StorageTool", "random-uuid"),
        capture_output=True, text=True, check=False,
    ).stdout.strip().splitlines()[-1:]
    if not cluster_id:
        raise ServiceError("kafka.tools.StorageTool random-uuid printed nothing; is the jar cache complete?")
    tool = ["kafka.tools.StorageTool", "format", "-t", cluster_id[0], "-c", str(paths.config), *(extra or [])]
    with security.argument_file(tool) as args:  # `extra` may hold SCRAM passwords
        result = subprocess.run(_java_cmd(libs, TOOL_HEAP, *args), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")


def running(settings: Settings) -> int | None:
    paths = KafkaPaths.of(settings)
    return process.running_pid(paths.pid_file, str(paths.config))


def is_ready(settings: Settings) -> bool:
    conf: dict[str, Any] = {"bootstrap.servers": f"127.0.0.1:{settings.kafka_port}", "logger": _quiet_logger()}
    if security.enabled(settings):
        conf.update(security.client_config(settings, security.ADMIN))
    admin = AdminClient(conf)  # a logger is a valid setting, which confluent-kafka's stubs do not list
    try:
        metadata = admin.list_topics(timeout=2)
    except Exception:  # noqa: BLE001 - any failure here means "not ready yet"; the caller retries
        return False
    return bool(metadata.brokers)


def _quiet_logger() -> logging.Logger:
    """librdkafka logs every refused connection while the broker boots; keep that off stderr."""
    logger = logging.getLogger("backbone.local.kafka.readiness")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


def start(settings: Settings) -> int:
    """Start the broker unless ours already runs; wait until it answers metadata requests."""
    paths = KafkaPaths.of(settings)
    pid = running(settings)
    if pid is not None:
        # ours, but perhaps still booting (an earlier start timed out, or log recovery is slow):
        # "up" means answering, not merely alive
        process.wait_until(lambda: is_ready(settings), timeout=settings.startup_timeout_s, what="Kafka",
                           log_files=[paths.log_file, paths.stdout_file],
                           alive=lambda: running(settings) is not None)
        return pid
    process.ensure_port_free(settings.kafka_port, "Kafka")
    process.ensure_port_free(settings.kafka_controller_port, "the Kafka controller")
    libs = resolve_jars(settings)
    paths.root.mkdir(parents=True, exist_ok=True)
    properties = server_properties(settings, paths)
    if security.enabled(settings):
        properties = security.kafka_properties(settings, properties)
    paths.config.write_text(properties)
    paths.config.chmod(0o600)  # secure mode writes admin's password into it
    ensure_formatted(paths, libs, security.format_arguments(settings) if security.enabled(settings) else None)
    log4j = resources.files("backbone.local").joinpath("log4j2.yaml")
    with resources.as_file(log4j) as log4j_path, paths.stdout_file.open("ab") as out:
        proc = subprocess.Popen(
            _java_cmd(libs, settings.kafka_heap, f"-Dlog4j2.configurationFile={log4j_path}",
                      f"-Dbackbone.kafka.logfile={paths.log_file}", MAIN_CLASS, str(paths.config)),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    paths.pid_file.write_text(str(proc.pid))
    process.wait_until(
        lambda: is_ready(settings), timeout=settings.startup_timeout_s, what="Kafka",
        log_files=[paths.log_file, paths.stdout_file],
        alive=lambda: proc.poll() is None,
    )
    return proc.pid


def stop(settings: Settings) -> bool:
    paths = KafkaPaths.of(settings)
    pid = running(settings)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)
        return False
    process.stop_pid(pid, str(paths.config), timeout=60)
    paths.pid_file.unlink(missing_ok=True)
    return True
