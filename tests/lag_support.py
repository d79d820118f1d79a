"""Helpers for the lag monitor's integration tests: a steady publisher of marks stamped now, a
monitor process whose JSON events are read as they come, and an HTTP receiver of webhooks."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from factories import make_market_mark
from support import settings_env

from backbone.codec.avro import AvroCodec
from backbone.kafka import topics
from backbone.kafka.producer import KafkaProducer
from backbone.settings import Settings
from producers.publisher import EventPublisher

#: the status rule the tests fire: a partition standing still while records wait, at once
STALLED_RULE = """
[[rule]]
name = "Stalled"
metric = "status"
statuses = ["STALL", "STOP"]
for = "0s"
severity = "CRITICAL"
"""

SYMBOLS = ["AAPL", "MSFT", "IBM", "TSLA", "NVDA", "AMD", "INTC", "ORCL"]


class SteadyMarks:
    """Publishes a mark stamped now every `every_s` seconds from a thread, until stopped."""

    def __init__(self, settings: Settings, every_s: float = 0.02) -> None:
        self.settings, self.every_s = settings, every_s
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyMarks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with KafkaProducer(self.settings, **{"linger.ms": 0}) as producer:
            publisher = EventPublisher(self.settings, producer, AvroCodec())
            while not self._stop.wait(self.every_s):  # the publishing pace
                now = datetime.now(tz=UTC)
                publisher.publish(make_market_mark(symbol=SYMBOLS[self.sent % len(SYMBOLS)], event_time=now,
                                                   mark_price=Decimal(100 + self.sent % 50)))
                self.sent += 1
                producer.poll(0)


class MonitorProcess:
    """`backbone lag monitor --json ...` as a process; its events are collected by a thread."""

    def __init__(self, settings: Settings, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", "lag", "monitor", "--json", *args],
                                     env=settings_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.events: list[dict[str, Any]] = []
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._arrived:
                self.events.append(json.loads(line))
                self._arrived.notify_all()
        with self._arrived:
            self._arrived.notify_all()

    def mark(self) -> int:
        """Where the events stand now: `wait_for(..., since=mark)` looks at the later ones only."""
        return len(self.events)

    def wait_for(self, what: str, condition: Callable[[dict[str, Any]], bool], timeout: float,
                 since: int | None = None) -> dict[str, Any]:
        """The first event at or after `since` (default: the next one) for which `condition` holds."""
        deadline = time.monotonic() + timeout
        at = self.mark() if since is None else since
        with self._arrived:
            while True:
                while at < len(self.events):
                    event = self.events[at]
                    at += 1
                    if condition(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    raise AssertionError(f"no {what} within {timeout} s (monitor exit {self.proc.poll()}); "
                                         f"last events: {self.events[-3:]}")
                self._arrived.wait(min(left, 0.5))

    def alerts(self, rule: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "alert" and rule in (None, e["rule"])]

    def stop(self) -> str:
        """SIGTERM, wait; returns stderr (empty when all went well)."""
        self.proc.terminate()
        _out, err = self.proc.communicate(timeout=60)
        self._reader.join(timeout=10)
        return err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)


def active(event: dict[str, Any]) -> bool:
    """A pass with alerts evaluated (the first window after a start holds them)."""
    return event["event"] == "pass" and not event["alerts_held"]


def group_status(event: dict[str, Any], group: str, topic: str) -> str | None:
    if event["event"] != "pass":
        return None
    found = [g["status"] for g in event["groups"] if (g["group"], g["topic"]) == (group, topic)
             and g["source"] == "postgres"] or [g["status"] for g in event["groups"]
                                                 if (g["group"], g["topic"]) == (group, topic)]
    return found[0] if found else None


class Receiver:
    """A local HTTP server collecting the JSON bodies POSTed to it; `status` is what it answers,
    `hang_s` how long it waits before answering."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.attempts = 0
        self.status = 200
        self.hang_s = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server interface
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.attempts += 1
                if receiver.hang_s:
                    time.sleep(receiver.hang_s)  # a receiver that hangs: what the test is about
                if receiver.status == 200:
                    receiver.bodies.append(json.loads(body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def commit_plain(settings: Settings, group: str, offsets: dict[int, int]) -> None:
    """A plain confluent-kafka consumer group committing `offsets` of the marks topic to Kafka."""
    consumer = Consumer(settings.kafka_config(**{"group.id": group, "enable.auto.commit": False}))
    try:
        consumer.commit(offsets=[TopicPartition(settings.topic_marketdata, p, o) for p, o in offsets.items()],
                        asynchronous=False)
    finally:
        consumer.close()


def log_ends(settings: Settings) -> dict[int, int]:
    """The end offset of each partition of the marks topic."""
    consumer = Consumer(settings.kafka_config(**{"group.id": "unused"}))
    try:
        return {p: topics.watermarks(consumer, TopicPartition(settings.topic_marketdata, p))[1]
                for p in range(settings.partitions)}
    finally:
        consumer.close()


def rules_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return str(path)


def debian_binary(*names: str, package: str) -> str:
    """A server from a Debian package; a hard requirement where `make deps` can install it (CI,
    root with apt-get), skipped elsewhere (the chromium test's policy)."""
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    if os.environ.get("CI") == "true" or (os.geteuid() == 0 and shutil.which("apt-get")):
        pytest.fail(f"{names[0]} is missing: `make deps` installs it")
    pytest.skip(f"{names[0]} is not installed and this user cannot install packages (apt-get install {package})")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str) -> Any:
    """The JSON a local server answers, None while it does not answer yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - the test's own server
            return json.loads(response.read())
    except OSError:
        return None


def wait_until(what: str, condition: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)  # polling interval
    return found
