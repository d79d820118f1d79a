"""consumer_config: the settings every consumer of the project shares (no broker needed)."""

from __future__ import annotations

from confluent_kafka import Consumer

from backbone.kafka.consumer import CONSUMER_DEFAULTS, consumer_config
from backbone.settings import Settings


def test_librdkafka_accepts_every_property() -> None:
    # A misspelt or unknown property makes librdkafka refuse the configuration here.
    Consumer(consumer_config(Settings(), **{"group.id": "never-joins"})).close()


def test_prefetch_backoff_is_shorter_than_librdkafka_default_second() -> None:
    # With the default 1000 ms a Python consumer idled whenever it drained the prefetch queue.
    assert CONSUMER_DEFAULTS["fetch.queue.backoff.ms"] < 1000


def test_offsets_are_never_librdkafka_own_and_never_reset_silently() -> None:
    conf = consumer_config(Settings(), **{"group.id": "g"})
    assert conf["enable.auto.commit"] is False and conf["enable.auto.offset.store"] is False
    assert conf["auto.offset.reset"] == "error"
    assert conf["isolation.level"] == "read_committed"


def test_overrides_win_and_connection_settings_stay() -> None:
    settings = Settings()
    conf = consumer_config(settings, **{"group.id": "g", "auto.offset.reset": "earliest"})
    assert conf["auto.offset.reset"] == "earliest" and conf["group.id"] == "g"
    assert conf["bootstrap.servers"] == settings.kafka_bootstrap_servers
