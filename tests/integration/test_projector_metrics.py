"""`backbone project run --metrics-port N` serves the projector's Prometheus metrics: records
and dead letters counted as they commit, batch durations, last commit time, partitions owned."""

from __future__ import annotations

import signal
import socket
import time
import urllib.request
from collections.abc import Callable

import pytest
from confluent_kafka import Producer
from conftest import TEST_PARTITIONS
from prometheus_client.parser import text_string_to_metric_families
from support import publish, spawn_projector
from tape import Tape

from backbone.domain.events import Side
from backbone.kafka.partitioner import symbol_partition
from backbone.settings import Settings

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> Samples | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None  # not serving yet
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _until(port: int, done: Callable[[Samples], bool], what: str, proc, timeout_s: float = 90) -> Samples:
    deadline = time.monotonic() + timeout_s
    last: Samples | None = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the projector exited: {proc.communicate()[1][-2000:]}"
        last = _scrape(port)
        if last is not None and done(last):
            return last
        time.sleep(0.2)  # the poll's pace, not a wait for the outcome
    raise AssertionError(f"{what} not seen within {timeout_s} s; last scrape: {last}")


def test_the_projector_serves_its_metrics(created_topics: Settings, names) -> None:
    settings = created_topics
    port = _free_port()
    started = time.time()
    proc = spawn_projector(settings, names.group(), "--metrics-port", str(port), "--batch-size", "50",
                           until_caught_up=False)
    try:
        projection = ("projection", "trading")
        records = ("backbone_projector_records_total", (projection,))
        _until(port, lambda m: records in m and m[("backbone_projector_partitions_owned", ())] == 2 * TEST_PARTITIONS,
               "every partition owned", proc)

        tape = Tape()
        for i in range(40):
            tape.order(f"O{i}", "A1", ("AAPL", "MSFT", "PEP")[i % 3], Side.BUY, 100, price=10)
            tape.fill(f"O{i}", 100, 10)
        tape.mark("AAPL", 11)
        publish(settings, tape.records)
        producer = Producer(settings.kafka_config(**{"enable.idempotence": True, "acks": "all"}))
        aapl = symbol_partition("AAPL", TEST_PARTITIONS)
        producer.produce(settings.topic_orders, None, key=b"AAPL", partition=aapl)  # a tombstone
        producer.produce(settings.topic_marketdata, None, key=b"AAPL", partition=aapl)
        producer.produce(settings.topic_orders, b"", key=b"AAPL", partition=aapl)
        assert producer.flush(30) == 0
        total = len(tape.records) + 3

        def letters(reason: str) -> tuple[str, tuple[tuple[str, str], ...]]:
            return "backbone_projector_dead_letters_total", (projection, ("reason", reason))

        metrics = _until(port, lambda m: m.get(records) == total and m.get(letters("empty_value")) == 1
                         and m.get(letters("null_value")) == 2, f"{total} records and 3 dead letters", proc)
        assert sorted(k for k in metrics if k[0] == "backbone_projector_dead_letters_total") == [
            letters("empty_value"), letters("null_value")]
        batches = metrics[("backbone_projector_batch_duration_seconds_count", ())]
        assert batches >= total / 50
        assert 0 < metrics[("backbone_projector_batch_duration_seconds_sum", ())] < 60 * batches
        assert metrics[("backbone_projector_batch_duration_seconds_bucket", (("le", "+Inf"),))] == batches
        assert started <= metrics[("backbone_projector_last_commit_timestamp_seconds", ())] <= time.time()
        assert metrics[("backbone_projector_partitions_owned", ())] == 2 * TEST_PARTITIONS
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert _scrape(port) is None  # the server went with the command


def test_a_busy_metrics_port_is_one_line_and_exit_2(created_topics: Settings, names) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = spawn_projector(created_topics, names.group(), "--metrics-port", str(port))
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert err.strip() == f"error: --metrics-port {port}: cannot serve metrics on 0.0.0.0:{port}: in use"
