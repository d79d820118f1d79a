"""A real Apache Kafka broker (KRaft combined mode) run from Maven Central jars: one node, or a
cluster of `kafka_brokers` nodes, each a broker and a voter of the controller quorum.

Layout of a node: `server.properties`, `data/` (log dirs, formatted once), `kafka.log` (broker
log, via log4j2), `stdout.log` (the JVM's own output) and `kafka.pid`; a single node keeps them in
`<state_dir>/kafka/`, node n of a cluster in `<state_dir>/kafka/node-n/` (all formatted with one
cluster id, kept in `<state_dir>/kafka/cluster.id`).
Jars are resolved once by Maven into `<cache_dir>/kafka-<version>-<pom digest>/libs` (outside
the repo): a changed pom (a log4j bump, another dependency) resolves into a fresh directory
instead of reusing jars resolved for the old one.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from backbone.errors import ServiceError
from backbone.local import process, security
from backbone.settings import Settings, local_node_ports, replication_for

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


@dataclass(frozen=True)
class KafkaNode:
    node_id: int
    port: int
    controller_port: int
    paths: KafkaPaths

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def nodes(settings: Settings, count: int | None = None) -> list[KafkaNode]:
    """The nodes of the local stack (`count`, else `kafka_brokers`), node 1 first."""
    count = settings.kafka_brokers if count is None else count
    root = KafkaPaths.of(settings).root
    return [KafkaNode(i + 1, port, cport, KafkaPaths(root if count == 1 else root / f"node-{i + 1}"))
            for i, (port, cport) in enumerate(local_node_ports(settings.kafka_port, settings.kafka_controller_port,
                                                                count))]


def free_ports(brokers: int) -> tuple[int, int, int]:
    """(Kafka port, controller port, PostgreSQL port) for a stack of `brokers` nodes beside the
    configured one (tests, benchmarks), every port of it free now. Below Linux's ephemeral range
    (32768 on), which the clients' own sockets take."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 32_000, 100)
        ports = [p for pair in local_node_ports(base, base + 1, brokers) for p in pair] + [base + 5]
        if all(process.can_bind(p) for p in ports):
            return base, base + 1, base + 5
    raise ServiceError("no free range of ports for a local stack between 20000 and 32000")


def _node_dirs(settings: Settings) -> list[KafkaPaths]:
    """Every node directory of the state dir, whichever size of stack created it."""
    root = KafkaPaths.of(settings).root
    return [KafkaPaths(root), *(KafkaPaths(p) for p in sorted(root.glob("node-*")) if p.is_dir())]


def running_count(settings: Settings) -> int | None:
    """How many nodes the running stack of this state dir has (its layout tells), or None."""
    single, *cluster = _node_dirs(settings)
    if _running_at(single) is not None:
        return 1
    if any(_running_at(p) is not None for p in cluster):
        return len(cluster)
    return None


def _running_at(paths: KafkaPaths) -> int | None:
    return process.running_pid(paths.pid_file, str(paths.config))


def running_node(node: KafkaNode) -> int | None:
    return _running_at(node.paths)


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


def server_properties(settings: Settings, paths: KafkaPaths, node: KafkaNode | None = None) -> str:
    """The configuration of `node` (default: node 1) of the stack `settings` describe."""
    cluster = nodes(settings)
    node = node or cluster[0]
    port, cport = node.port, node.controller_port
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in cluster)
    # the internal topics (offsets, transactions) as replicated as the default for topics
    factor, min_isr = replication_for(len(cluster))
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node.node_id}",
        f"controller.quorum.voters={voters}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={paths.data}",
        "num.partitions=1",
        f"default.replication.factor={factor}",
        f"min.insync.replicas={min_isr}",
        f"offsets.topic.replication.factor={factor}",
        f"transaction.state.log.replication.factor={factor}",
        f"transaction.state.log.min.isr={min_isr}",
        f"share.coordinator.state.topic.replication.factor={factor}",
        f"share.coordinator.state.topic.min.isr={min_isr}",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "",
    ])


def _java_cmd(libs: Path, heap: str, *args: str) -> list[str]:
    return ["java", f"-Xmx{heap}", "-cp", f"{libs}/*", *args]


TOOL_HEAP = "256m"


def new_cluster_id(libs: Path) -> str:
    cluster_id = subprocess.run(
        _java_cmd(libs, TOOL_HEAP, "kafka.tools.StorageTool", "random-uuid"),
        capture_output=True, text=True, check=False,
    ).stdout.strip().splitlines()[-1:]
    if not cluster_id:
        raise ServiceError("kafka.tools.StorageTool random-uuid printed nothing; is the jar cache complete?")
    return cluster_id[0]


def ensure_formatted(paths: KafkaPaths, libs: Path, cluster_id: str | None = None,
                     extra: list[str] | None = None) -> None:
    """Format the node's storage once, with `cluster_id` (every node of a cluster shares one)."""
    if (paths.data / "meta.properties").exists():
        return
    paths.data.mkdir(parents=True, exist_ok=True)
    tool = ["kafka.tools.StorageTool", "format", "-t", cluster_id or new_cluster_id(libs), "-c", str(paths.config),
            *(extra or [])]
    with security.argument_file(tool) as args:  # `extra` may hold SCRAM passwords
        result = subprocess.run(_java_cmd(libs, TOOL_HEAP, *args), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")


def running(settings: Settings) -> int | None:
    """The pid of node 1 (the only node of a single-node stack) if it runs."""
    return running_node(nodes(settings)[0])


def broker_ids(settings: Settings, cluster: list[KafkaNode] | None = None) -> set[int]:
    """The ids of the brokers the cluster's metadata lists (registered and not fenced), asked of
    any node; empty when none answers."""
    cluster = cluster or nodes(settings)
    conf: dict[str, Any] = {"bootstrap.servers": ",".join(n.address for n in cluster), "logger": _quiet_logger()}
    if security.enabled(settings):
        conf.update(security.client_config(settings, security.ADMIN))
    admin = AdminClient(conf)  # a logger is a valid setting, which confluent-kafka's stubs do not list
    try:
        metadata = admin.list_topics(timeout=2)
    except Exception:  # noqa: BLE001 - any failure here means "not ready yet"; the caller retries
        return set()
    return set(metadata.brokers)


def answering(settings: Settings, node: KafkaNode) -> bool:
    """The node answers metadata requests itself and lists itself as a broker. Asked of the node
    alone: the others list a node killed moments ago until its session times out."""
    return node.node_id in broker_ids(settings, [node])


def is_ready(settings: Settings) -> bool:
    """Every node of the stack answers."""
    return all(answering(settings, n) for n in nodes(settings))


def _quiet_logger() -> logging.Logger:
    """librdkafka logs every refused connection while the broker boots; keep that off stderr."""
    logger = logging.getLogger("backbone.local.kafka.readiness")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


def _cluster_id(settings: Settings, cluster: list[KafkaNode], libs: Path) -> str | None:
    """The id every node of a cluster is formatted with: created once, then read back."""
    if len(cluster) == 1:
        return None
    path = KafkaPaths.of(settings).root / "cluster.id"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_cluster_id(libs) + "\n")
    return path.read_text().strip()


def _spawn(settings: Settings, node: KafkaNode, libs: Path, cluster_id: str | None) -> subprocess.Popen[bytes]:
    paths = node.paths
    paths.root.mkdir(parents=True, exist_ok=True)
    properties = server_properties(settings, paths, node)
    if security.enabled(settings):
        properties = security.kafka_properties(settings, properties)
    paths.config.write_text(properties)
    paths.config.chmod(0o600)  # secure mode writes admin's password into it
    ensure_formatted(paths, libs, cluster_id,
                     security.format_arguments(settings) if security.enabled(settings) else None)
    log4j = resources.files("backbone.local").joinpath("log4j2.yaml")
    with resources.as_file(log4j) as log4j_path, paths.stdout_file.open("ab") as out:
        proc = subprocess.Popen(
            _java_cmd(libs, settings.kafka_heap, f"-Dlog4j2.configurationFile={log4j_path}",
                      f"-Dbackbone.kafka.logfile={paths.log_file}", MAIN_CLASS, str(paths.config)),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    paths.pid_file.write_text(str(proc.pid))
    return proc


def start(settings: Settings) -> int:
    """Start every node of the stack not already running; wait until the cluster lists them all.
    Returns node 1's pid."""
    return start_nodes(settings)[0]


def start_nodes(settings: Settings, node_ids: list[int] | None = None) -> list[int]:
    """Start these nodes (default: all) unless they run; wait until the cluster lists every node
    of the stack. A node of a cluster answers only once a quorum of voters runs, so all are
    started before any is waited for. Returns the pids of all nodes."""
    cluster = nodes(settings)
    size = running_count(settings)
    if size is not None and size != len(cluster):
        raise ServiceError(f"a Kafka stack of {size} node(s) from {settings.state_dir} is running; "
                           f"stop it (`backbone local down`) before starting one of {len(cluster)}")
    wanted = [n for n in cluster if node_ids is None or n.node_id in node_ids]
    to_start = [n for n in wanted if running_node(n) is None]
    for node in to_start:
        # ours, but perhaps still booting (an earlier start timed out, or log recovery is slow):
        # "up" means answering, not merely alive; the wait below covers those
        suffix = "" if len(cluster) == 1 else f" node {node.node_id}"
        process.ensure_port_free(node.port, f"Kafka{suffix}")
        process.ensure_port_free(node.controller_port, f"the Kafka controller{suffix}")
    if to_start:
        libs = resolve_jars(settings)
        cluster_id = _cluster_id(settings, cluster, libs)
        for node in to_start:
            _spawn(settings, node, libs, cluster_id)
    process.wait_until(
        lambda: is_ready(settings), timeout=settings.startup_timeout_s, what="Kafka",
        log_files=[f for n in wanted for f in (n.paths.log_file, n.paths.stdout_file)],
        alive=lambda: all(running_node(n) is not None for n in wanted),
    )
    return [running_node(n) or 0 for n in cluster]


def stop(settings: Settings) -> bool:
    """Stop every node this state dir's stack runs, whatever its size; True if one ran."""
    dirs = [p for p in _node_dirs(settings) if _running_at(p) is not None]
    # all at once: a node stopping alone waits for a quorum the others' sequential stop would take away
    with ThreadPoolExecutor(max_workers=max(1, len(dirs))) as pool:
        list(pool.map(_stop_at, dirs))
    for paths in _node_dirs(settings):
        if _running_at(paths) is None:
            paths.pid_file.unlink(missing_ok=True)
    return bool(dirs)


def stop_node(settings: Settings, node_id: int) -> bool:
    """Stop one node (a controlled shutdown: its leaderships move first); True if it ran."""
    (node,) = [n for n in nodes(settings) if n.node_id == node_id]
    return _stop_at(node.paths)


def _stop_at(paths: KafkaPaths) -> bool:
    pid = _running_at(paths)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)
        return False
    process.stop_pid(pid, str(paths.config), timeout=60)
    paths.pid_file.unlink(missing_ok=True)
    return True
