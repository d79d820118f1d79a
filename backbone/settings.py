"""One typed, frozen settings object, read from `BACKBONE_*` environment variables and `.env`.

Build it once at the edge (`Settings()` in the CLI or a test fixture) and pass it down; nothing
else in the project reads the environment. Secrets are `SecretStr`: they render as `**********`
in reprs, logs and `backbone config show`, and are revealed only when handed to a client.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from backbone.errors import ConfigError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
# OAUTHBEARER is not offered: it needs a token provider (sasl.oauthbearer.* or a callback), which
# these settings do not configure; username and password would be ignored by librdkafka.
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

DAY_MS = 24 * 3600 * 1000


# Node n of a local cluster listens on the configured ports plus (n - 1) * this.
NODE_PORT_STRIDE = 10


def local_node_ports(kafka_port: int, controller_port: int, brokers: int) -> list[tuple[int, int]]:
    """(broker port, controller port) of each node of the local stack, node 1 first."""
    return [(kafka_port + i * NODE_PORT_STRIDE, controller_port + i * NODE_PORT_STRIDE) for i in range(brokers)]


def local_bootstrap(kafka_port: int, controller_port: int = 0, brokers: int = 1) -> str:
    """The local stack's brokers (`backbone local up`)."""
    return ",".join(f"127.0.0.1:{port}" for port, _ in local_node_ports(kafka_port, controller_port, brokers))


def replication_for(brokers: int) -> tuple[int, int]:
    """(replication factor, min in-sync replicas) a cluster of `brokers` nodes gets by default:
    3 / 2 from three nodes on, so that one node may be down while acks=all writes go on."""
    factor = min(brokers, 3)
    return factor, 2 if factor >= 3 else 1


def local_database_url(postgres_port: int) -> str:
    """The local stack's database and application role (`backbone local up`)."""
    return f"postgresql+psycopg://backbone:backbone@127.0.0.1:{postgres_port}/backbone"


_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg"}


def normalize_database_url(raw: str, variable: str = "BACKBONE_DATABASE_URL") -> str:
    """A database URL with the psycopg driver named, as SQLAlchemy needs it. Raises ConfigError
    (naming `variable`) with a message that never repeats the URL (it may hold a password)."""
    try:
        url = make_url(raw)
        port = url.port  # a non-numeric port raises ValueError here, not at parse time
    except (ArgumentError, ValueError):
        raise ConfigError(f"{variable} is not a URL of the form "
                          "postgresql://user:password@host:port/database") from None
    if url.drivername not in _POSTGRES_SCHEMES:
        raise ConfigError(f"{variable}: scheme {url.drivername}:// is not supported; use "
                          "postgresql:// (or postgres://, postgresql+psycopg://)")
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"{variable}: port {port} is not between 1 and 65535")
    return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _default_state_dir() -> Path:
    # PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user,
    # which cannot enter /root: keep the state where that user can reach it.
    if os.geteuid() == 0:
        return Path("/var/lib/trading-backbone")
    return Path("~/.local/state/trading-backbone")


class Settings(BaseSettings):
    """Everything configurable. Environment variable = `BACKBONE_` + field name in capitals."""

    # hide_input_in_errors: a refused value may be a URL with its password in it
    model_config = SettingsConfigDict(
        env_prefix="BACKBONE_", env_file=".env", env_file_encoding="utf-8", frozen=True, extra="ignore",
        hide_input_in_errors=True,
    )

    # --- Kafka connection -------------------------------------------------------------------
    # default: the local broker at kafka_port (see _local_addresses)
    kafka_bootstrap_servers: str = Field("", description="host:port[,host:port…]")
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: Path | None = Field(None, description="CA bundle (PEM) to verify brokers")
    kafka_ssl_certificate_location: Path | None = Field(None, description="client certificate (PEM)")
    kafka_ssl_key_location: Path | None = Field(None, description="client private key (PEM)")
    kafka_ssl_key_password: SecretStr | None = None
    kafka_client_id: str = "trading-backbone"
    kafka_connect_timeout_s: float = Field(10.0, ge=1, le=3600, description="how long commands wait for a "
                                           "broker to answer before they give up (backbone.kafka.health)")

    # --- Topics -----------------------------------------------------------------------------
    topic_orders: str = "trading.orders"
    topic_marketdata: str = "trading.marketdata"
    topic_deadletter: str = "trading.deadletter"
    topic_alerts: str = "trading.alerts"
    partitions: int = Field(12, ge=1, le=10_000)
    # unset: replication_for(kafka_brokers) (see _local_addresses)
    replication_factor: int = Field(1, ge=1, le=32)
    min_insync_replicas: int = Field(1, ge=1, le=32)
    marketdata_retention_ms: int = Field(7 * DAY_MS, ge=-1, description="-1 keeps everything")
    alerts_retention_ms: int = Field(30 * DAY_MS, ge=-1)
    # librdkafka's default message.max.bytes: what the project's producers can send at most
    max_record_bytes: int = Field(1_000_000, ge=1024, description="a record value larger than this is "
                                  "dead-lettered by the projections (reason `oversize`)")

    # --- Database ---------------------------------------------------------------------------
    # default: the local server at postgres_port (see _local_addresses)
    database_url: SecretStr = SecretStr("")
    database_connect_timeout_s: int = Field(10, ge=2, le=3600, description="seconds a connection attempt to "
                                            "PostgreSQL may take (libpq connect_timeout, 2 at least)")
    database_readonly_role: str = Field("backbone_reader", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # `backbone dashboard` reads as this login only (docs/dashboard.md); unset: it refuses to start
    reader_database_url: SecretStr = SecretStr("")

    # --- Projection snapshots (docs/replay.md) ------------------------------------------------
    snapshot_every_events: int = Field(100_000, ge=0, description="snapshot a partition after this many "
                                       "records since its last snapshot; 0 = never by count")
    snapshot_every_seconds: float = Field(300.0, ge=0, description="snapshot a partition that has new records "
                                          "this long after its last snapshot; 0 = never by time")
    snapshot_whole_every: int = Field(16, ge=1, description="of the snapshots `checkpoints create` and a "
                                      "bounded projector take of an orders partition, every this many-th is "
                                      "whole, the others hold what changed since the one before; 1 = all whole")
    bounded_state: bool = Field(True, description="the projector keeps only the open book in memory and reads "
                                "what a late event needs back from PostgreSQL (docs/live-state.md)")

    # --- Replays and point-in-time reads (docs/replay.md) ----------------------------------------
    replay_processes: int = Field(2, ge=1, le=64, description="processes that fold `state --as-of`, `replay "
                                  "--dry-run` and `checkpoints create --as-of` (partitions split between them); "
                                  "1 = the command's own process only")

    # --- Local stack (`backbone local …`) ------------------------------------------------------
    state_dir: Path = Field(default_factory=lambda: _default_state_dir(), description="data, logs, pid files")
    cache_dir: Path = Field(Path("~/.cache/trading-backbone"), description="Kafka jars resolved by Maven")
    kafka_port: int = Field(19092, ge=1, le=65535)
    kafka_controller_port: int = Field(19093, ge=1, le=65535)
    kafka_brokers: int = Field(1, ge=1, le=9, description="KRaft nodes of the local stack (each broker and "
                               "controller); node n's ports are the two above plus (n - 1) * 10")
    postgres_port: int = Field(15432, ge=1, le=65535)
    kafka_heap: str = "512m"
    startup_timeout_s: float = Field(120.0, gt=0)

    @model_validator(mode="after")
    def _local_addresses(self) -> Settings:
        """Unset addresses point at the local stack on its configured ports: moving a port
        (BACKBONE_KAFKA_PORT, BACKBONE_POSTGRES_PORT) moves the clients with the servers."""
        if not self.kafka_bootstrap_servers:
            object.__setattr__(self, "kafka_bootstrap_servers", local_bootstrap(
                self.kafka_port, self.kafka_controller_port, self.kafka_brokers))
        # A replicated local cluster gets replicated topics unless told otherwise.
        if "replication_factor" not in self.model_fields_set:
            object.__setattr__(self, "replication_factor", replication_for(self.kafka_brokers)[0])
        if "min_insync_replicas" not in self.model_fields_set:
            object.__setattr__(self, "min_insync_replicas", replication_for(self.replication_factor)[1])
        if not self.database_url.get_secret_value():
            object.__setattr__(self, "database_url", SecretStr(local_database_url(self.postgres_port)))
        return self

    @field_validator("database_url", "reader_database_url", mode="after")
    @classmethod
    def _psycopg_url(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        """postgres://, postgresql:// and postgresql+psycopg:// all mean the psycopg driver, the
        one installed; anything else is refused here rather than by a traceback at first use."""
        raw = value.get_secret_value()
        return SecretStr(normalize_database_url(raw, f"BACKBONE_{str(info.field_name).upper()}")) if raw else value

    @field_validator("state_dir", "cache_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @model_validator(mode="after")
    def _check(self) -> Settings:
        ports = [p for pair in local_node_ports(self.kafka_port, self.kafka_controller_port, self.kafka_brokers)
                 for p in pair]
        if len(set(ports)) != len(ports) or max(ports) > 65535:
            raise ValueError(f"the local stack's {self.kafka_brokers} Kafka node(s) need distinct ports up to "
                             f"65535; BACKBONE_KAFKA_PORT and BACKBONE_KAFKA_CONTROLLER_PORT give {ports}")
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) cannot exceed "
                f"replication_factor ({self.replication_factor})"
            )
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError("SASL security protocol needs BACKBONE_KAFKA_SASL_MECHANISM, _USERNAME and _PASSWORD")
        return self

    # --- Rendering --------------------------------------------------------------------------
    def kafka_config(self, **overrides: Any) -> dict[str, Any]:
        """The librdkafka configuration shared by every client; `overrides` win."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
            "client.id": self.kafka_client_id,
            # one connection attempt (TCP, TLS, SASL); librdkafka goes on retrying after it
            "socket.connection.setup.timeout.ms": round(self.kafka_connect_timeout_s * 1000),
        }
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            conf["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password:
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        for key, path in (
            ("ssl.ca.location", self.kafka_ssl_ca_location),
            ("ssl.certificate.location", self.kafka_ssl_certificate_location),
            ("ssl.key.location", self.kafka_ssl_key_location),
        ):
            if path is not None:
                if not path.exists():
                    raise ConfigError(f"{key} file {path} does not exist")
                conf[key] = str(path)
        if self.kafka_ssl_key_password:
            conf["ssl.key.password"] = self.kafka_ssl_key_password.get_secret_value()
        conf.update(overrides)
        return conf

    @property
    def database_url_value(self) -> str:
        """The database URL with its password, for the driver only. Never print it."""
        return self.database_url.get_secret_value()

    def database_url_safe(self) -> str:
        """The database URL with the password masked, for messages."""
        return make_url(self.database_url_value).render_as_string(hide_password=True)

    def display(self) -> dict[str, str]:
        """Every setting as text, secrets masked: for `backbone config show`."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name == "database_url":
                out[name] = self.database_url_safe()
            elif name == "reader_database_url":
                raw = value.get_secret_value()
                out[name] = make_url(raw).render_as_string(hide_password=True) if raw else ""
            elif isinstance(value, SecretStr):
                out[name] = "**********"
            else:
                out[name] = "" if value is None else str(value)
        return out

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed (tests: unique topic names, other ports)."""
        unknown = set(changes) - set(type(self).model_fields)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        # Re-validate so overrides get the same coercion as the environment (str -> SecretStr).
        return type(self).model_validate({**dict(self), **changes})

    def topic_names(self) -> list[str]:
        return [self.topic_orders, self.topic_marketdata, self.topic_deadletter, self.topic_alerts]
