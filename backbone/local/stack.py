"""`backbone local up|down|status|logs`: the whole local stack, Kafka and PostgreSQL.

Native mode (the default) runs the real servers as local processes; docker mode
runs `docker-compose.yml` when a Docker engine answers. Both expose the same addresses.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from backbone.errors import ServiceError
from backbone.local import kafka, postgres, process, security
from backbone.settings import Settings

Mode = Literal["native", "docker"]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    version: str
    address: str
    log_file: Path

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "running": self.running, "pid": self.pid, "version": self.version,
                "address": self.address, "log_file": str(self.log_file)}


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=20).returncode == 0


def compose_file() -> Path:
    path = Path(__file__).resolve().parents[2] / "docker-compose.yml"
    if not path.exists():
        raise ServiceError(f"{path} not found: docker mode needs a checkout of the repository")
    return path


def up(settings: Settings, mode: Mode = "native", *, secure: bool = False) -> list[ServiceStatus]:
    """Start the stack; `secure` (native only) makes a fresh state directory a secure stack
    (backbone.local.security). A secure state directory stays secure without it."""
    if mode == "docker":
        if secure:
            raise ServiceError("--secure runs natively only; use --mode native")
        if not docker_available():
            raise ServiceError("no Docker engine answers `docker info`; use --mode native")
        result = subprocess.run(["docker", "compose", "-f", str(compose_file()), "up", "-d", "--wait"],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceError(f"docker compose up failed:\n{result.stderr.strip()}")
        return status(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if secure:
        formatted = [kafka.KafkaPaths.of(settings).data / "meta.properties",
                     postgres.PostgresPaths.of(settings).data / "PG_VERSION"]
        security.ensure(settings, plain_stack_exists=any(p.exists() for p in formatted))
    postgres.start(settings)
    kafka.start(settings)
    if security.enabled(settings):
        security.grant_acls(settings)
    return status(settings)


def down(settings: Settings, mode: Mode = "native") -> list[str]:
    """Stop exactly the processes this stack started; returns the names of those stopped."""
    if mode == "docker":
        subprocess.run(["docker", "compose", "-f", str(compose_file()), "down"], check=True)
        return ["kafka", "postgres"]
    stopped = []
    if kafka.stop(settings):
        stopped.append("kafka")
    if postgres.stop(settings):
        stopped.append("postgres")
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    kpaths, ppaths = kafka.KafkaPaths.of(settings), postgres.PostgresPaths.of(settings)
    kpid = kafka.running(settings)
    ppid = postgres.running(settings)
    kready = kpid is not None and kafka.is_ready(settings)
    pready = ppid is not None and postgres.is_ready(settings)
    return [
        ServiceStatus("kafka", kready, kpid, f"Apache Kafka {kafka.kafka_version()} (KRaft)",
                      f"127.0.0.1:{settings.kafka_port}", kpaths.log_file),
        ServiceStatus("postgres", pready, ppid, f"PostgreSQL {_pg_version_or_unknown()}",
                      f"127.0.0.1:{settings.postgres_port}", ppaths.log_file),
    ]


def _pg_version_or_unknown() -> str:
    try:
        return postgres.server_version()
    except ServiceError:
        return "(not installed)"


def log_files(settings: Settings) -> dict[str, Path]:
    return {"kafka": kafka.KafkaPaths.of(settings).log_file,
            "postgres": postgres.PostgresPaths.of(settings).log_file}


def logs(settings: Settings, service: str, lines: int) -> str:
    files = log_files(settings)
    if service not in files:
        raise ServiceError(f"unknown service {service!r}; choose one of {', '.join(files)}")
    return process.tail(files[service], lines)
