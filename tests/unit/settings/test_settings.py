from __future__ import annotations

import os

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from backbone.errors import ConfigError
from backbone.settings import Settings
from cli.main import app


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The defaults under test, not whatever BACKBONE_* the shell exports or ./.env holds."""
    for name in [n for n in os.environ if n.startswith("BACKBONE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_render_a_librdkafka_config() -> None:
    conf = Settings().kafka_config(**{"acks": "all"})
    assert conf["bootstrap.servers"] and conf["acks"] == "all"
    assert "sasl.password" not in conf


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKBONE_PARTITIONS", "24")
    monkeypatch.setenv("BACKBONE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("BACKBONE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("BACKBONE_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("BACKBONE_KAFKA_SASL_PASSWORD", "hunter2")
    s = Settings()
    assert s.partitions == 24
    conf = s.kafka_config()
    assert conf["sasl.password"] == "hunter2" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.display())


def test_sasl_without_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKBONE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    with pytest.raises(ValidationError, match="SASL"):
        Settings()


def test_min_isr_above_replication_is_refused() -> None:
    with pytest.raises(ValidationError, match="min_insync_replicas"):
        Settings(replication_factor=1, min_insync_replicas=2)


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        Settings().partitions = 3  # type: ignore[misc]


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKBONE_DATABASE_URL", "postgresql+psycopg://app:topsecret@db:5432/x")
    monkeypatch.setenv("BACKBONE_KAFKA_SASL_PASSWORD", "kafkasecret")
    result = CliRunner().invoke(app, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    assert "topsecret" not in result.output and "kafkasecret" not in result.output
    assert "app:***@db:5432/x" in result.output


def test_bad_environment_value_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKBONE_PARTITIONS", "many")
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert "BACKBONE_PARTITIONS" in result.output


def test_unset_addresses_follow_the_local_stack_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """The busy-port message says to move BACKBONE_KAFKA_PORT / BACKBONE_POSTGRES_PORT: the
    clients must move with the servers, and an address that is set stays as set."""
    for name in ("BACKBONE_KAFKA_BOOTSTRAP_SERVERS", "BACKBONE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BACKBONE_KAFKA_PORT", "29092")
    monkeypatch.setenv("BACKBONE_POSTGRES_PORT", "25432")
    moved = Settings(_env_file=None)
    assert moved.kafka_bootstrap_servers == "127.0.0.1:29092"
    assert moved.database_url_value == "postgresql+psycopg://backbone:backbone@127.0.0.1:25432/backbone"
    monkeypatch.setenv("BACKBONE_KAFKA_BOOTSTRAP_SERVERS", "b1:9093")
    monkeypatch.setenv("BACKBONE_DATABASE_URL", "postgresql+psycopg://u:p@db:5432/x")
    kept = Settings(_env_file=None)
    assert (kept.kafka_bootstrap_servers, kept.database_url_value) == ("b1:9093", "postgresql+psycopg://u:p@db:5432/x")


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
def test_every_postgres_url_scheme_means_the_psycopg_driver(scheme: str) -> None:
    settings = Settings(database_url=f"{scheme}://app:pw@db:5432/x")
    assert settings.database_url_value == "postgresql+psycopg://app:pw@db:5432/x"


@pytest.mark.parametrize(("url", "says"), [
    ("postgresql://app:topsecret@db:port/x", "is not a URL"),
    ("topsecret", "is not a URL"),
    ("postgresql://app:topsecret@db:70000/x", "port 70000"),
    ("mysql://app:topsecret@db/x", "scheme mysql:// is not supported"),
    ("postgresql+psycopg2://app:topsecret@db/x", r"scheme postgresql\+psycopg2:// is not supported"),
])
def test_a_database_url_that_cannot_work_is_one_line_and_exit_2(url: str, says: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=says) as refused:
        Settings(database_url=url)
    assert "topsecret" not in str(refused.value)
    monkeypatch.setenv("BACKBONE_DATABASE_URL", url)
    result = CliRunner().invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {refused.value}"]
    assert "topsecret" not in result.output


def test_a_refused_value_is_not_repeated_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKBONE_KAFKA_CONNECT_TIMEOUT_S", "topsecret")
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert "topsecret" not in str(refused.value)


def test_the_reader_url_is_normalized_masked_and_named_in_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(reader_database_url="postgres://desk:topsecret@db:5432/x")
    assert settings.reader_database_url.get_secret_value() == "postgresql+psycopg://desk:topsecret@db:5432/x"
    assert settings.display()["reader_database_url"] == "postgresql+psycopg://desk:***@db:5432/x"
    with pytest.raises(ConfigError, match="^BACKBONE_READER_DATABASE_URL: scheme mysql://") as refused:
        Settings(reader_database_url="mysql://desk:topsecret@db/x")
    assert "topsecret" not in str(refused.value)
