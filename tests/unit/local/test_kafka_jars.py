"""Where `backbone local up` keeps the broker's jars: keyed on the whole pom, not only the version."""

from __future__ import annotations

from pathlib import Path

import pytest

from backbone.local import kafka
from backbone.settings import Settings


def test_a_changed_pom_resolves_into_a_new_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings().with_overrides(cache_dir=tmp_path)
    bundled, version = kafka.pom_text(), kafka.kafka_version()
    first = kafka.libs_dir(settings)
    assert first.parent.name.startswith(f"kafka-{kafka.kafka_version()}-") and first.is_relative_to(tmp_path)
    assert kafka.libs_dir(settings) == first  # stable for the same pom
    monkeypatch.setattr(kafka, "pom_text", lambda: bundled.replace("<log4j.version>", "<log4j.version>9"))
    assert kafka.kafka_version() == version
    assert kafka.libs_dir(settings) != first  # same Kafka version, other jars: not the old cache
