"""docker-compose.yml as a deployment, as Compose itself resolves it: Debian's docker-compose
runs `config` on the file (no Docker engine needed), and the resolved services are checked:
a health check on every long-running one, start order by conditions, Kafka's and PostgreSQL's
data on named volumes, the project's services from the image the Dockerfile builds."""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from lag_support import debian_binary

ROOT = Path(__file__).resolve().parents[3]

APP = {"migrate", "projector", "dashboard", "lag-monitor"}


@functools.cache
def resolved(*profiles: str) -> dict[str, Any]:
    """The file as Compose reads it: anchors merged, variables substituted, syntax validated."""
    compose = debian_binary("docker-compose", package="docker-compose")
    args = [arg for profile in profiles for arg in ("--profile", profile)]
    done = subprocess.run([compose, "-f", str(ROOT / "docker-compose.yml"), *args, "config"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def in_profile(config: dict[str, Any], profile: str) -> dict[str, dict[str, Any]]:
    """The services `--profile <profile> up` starts (docker-compose 1.x's `config` lists all)."""
    return {name: s for name, s in config["services"].items() if profile in s.get("profiles", [profile])}


def one_shot(services: dict[str, dict[str, Any]]) -> set[str]:
    """Services others wait to have exited successfully: they run once, they are not served."""
    return {name for s in services.values() for name, dep in s.get("depends_on", {}).items()
            if dep.get("condition") == "service_completed_successfully"}


def volume_at(service: dict[str, Any], path: str) -> str | None:
    for volume in service.get("volumes", []):
        source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) else volume.split(":")[:2]
        if target == path:
            return str(source)
    return None


def command(service: dict[str, Any]) -> str:
    value = service.get("command", [])
    return value if isinstance(value, str) else " ".join(value)


@pytest.mark.parametrize("profile", ["app", "single", "cluster"])
def test_every_long_running_service_is_health_checked_and_started_in_order(profile: str) -> None:
    config = resolved(profile)
    services = in_profile(config, profile)
    assert services, f"profile {profile} starts nothing"
    once = one_shot(services)
    for name, service in services.items():
        if name not in once:
            test = service.get("healthcheck", {}).get("test")
            assert test and test != ["NONE"], f"{name} runs without a health check"
        for dependency, dep in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} needs {dependency}, not in profile {profile}"
            assert dep.get("condition") in ("service_healthy", "service_completed_successfully"), (
                f"{name} starts before {dependency} is ready")
            if dep["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no health check to wait for"


@pytest.mark.parametrize("profile", ["app", "single", "cluster"])
def test_kafka_and_postgres_keep_their_data_on_named_volumes(profile: str) -> None:
    config = resolved(profile)
    services = in_profile(config, profile)
    brokers = {name: s for name, s in services.items() if s["image"].startswith("apache/kafka:")}
    assert brokers
    for name, broker in brokers.items():
        log_dirs = broker["environment"].get("KAFKA_LOG_DIRS")
        assert log_dirs, f"{name}: no KAFKA_LOG_DIRS, the image keeps its log in the container's /tmp"
        for path in str(log_dirs).split(","):
            assert volume_at(broker, path) in config["volumes"], f"{name}: {path} is not on a named volume"
    assert volume_at(services["postgres"], "/var/lib/postgresql/data") in config["volumes"]


@pytest.mark.parametrize("profile", ["app", "single", "cluster"])
def test_each_broker_health_check_asks_a_listener_bound_where_it_asks(profile: str) -> None:
    # a listener named by the container's hostname binds its network address, not loopback
    for name, broker in in_profile(resolved(profile), profile).items():
        if not broker["image"].startswith("apache/kafka:"):
            continue
        asked = re.search(r"--bootstrap-server (\S+):(\d+)", " ".join(broker["healthcheck"]["test"]))
        assert asked, f"{name}: the health check names no bootstrap server"
        bound = dict(re.fullmatch(r"\w+://(.*):(\d+)", listener).group(2, 1)  # type: ignore[union-attr]
                     for listener in broker["environment"]["KAFKA_LISTENERS"].split(","))
        assert bound.get(asked.group(2)) in ("0.0.0.0", asked.group(1)), f"{name}: nothing listens on {asked.group(0)}"


def test_the_app_profile_runs_the_project_from_the_dockerfile_image() -> None:
    services = in_profile(resolved("app"), "app")
    assert APP <= set(services) and {"kafka", "postgres"} <= set(services)
    assert one_shot(services) == {"migrate"}
    for name in APP:
        assert services[name]["build"]["context"] == str(ROOT) and services[name]["image"] == "trading-backbone:latest"
        assert services[name]["environment"]["BACKBONE_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9094"
    migrate = command(services["migrate"])
    assert "backbone db upgrade" in migrate and "backbone topics create" in migrate
    # each served port is the one its health check asks
    for name, served in (("projector", r"project run --metrics-port (\d+)"),
                         ("dashboard", r"dashboard --port (\d+) --address 0\.0\.0\.0"),
                         ("lag-monitor", r"lag monitor --metrics-port (\d+)")):
        found = re.fullmatch(served, command(services[name]))
        assert found, f"{name}: {command(services[name])}"
        assert f"127.0.0.1:{found.group(1)}/" in " ".join(services[name]["healthcheck"]["test"])
    # the dashboard reads as the read-only login migrate creates, never as the application's role
    assert services["dashboard"]["environment"]["BACKBONE_READER_DATABASE_URL"].startswith("postgresql+psycopg://desk:")
    assert "create-reader" in migrate and services["migrate"]["environment"]["BACKBONE_DASHBOARD_ROLE"] == "desk"


def test_the_dockerfile_builds_the_project_on_python_slim() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", dockerfile, re.M) == ["python:3.11-slim", "python:3.11-slim"]
    assert "pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ." in dockerfile
    assert re.search(r"^ENTRYPOINT \[\"backbone\"\]", dockerfile, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
