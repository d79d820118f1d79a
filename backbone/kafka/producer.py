"""A thin typed wrapper over confluent_kafka.Producer.

- Idempotent, `acks=all`, Java-compatible `murmur2_random` partitioning, compression.
- Delivery failures are captured by the delivery callback and raised as `DeliveryError` on
  the next `produce()` or `flush()`: no failure is lost silently. Only failures call back
  (`delivery.report.only.error`), so the hot path pays nothing for successful deliveries.
  A caller that wants one record's report (publish refusing a record the broker finds too
  large, a relay recording where each record went) passes `on_delivery` with it; a failure it
  returns False for is raised as usual.
- A full local queue is backpressure, not loss: `produce()` serves the delivery queue and
  retries until `max_block_s`, then raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Message, Producer

from backbone.errors import DeliveryError, KafkaError
from backbone.kafka.health import FoldingLog, client_config
from backbone.settings import Settings

Headers = Sequence[tuple[str, bytes | str]]
#: Told of one record's delivery report (error or None, the record); True when it dealt with a
#: failure (not raised then). Successes report only with `delivery.report.only.error=False`.
OnDelivery = Callable[[RdKafkaError | None, Message], bool]

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",  # Java's default: a symbol lands where Java producers put it
    "compression.type": "lz4",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 512 * 1024,
    "delivery.report.only.error": True,
    "message.timeout.ms": 120_000,
}


class KafkaProducer:
    """Produce records; raise every delivery failure on the next call. Use as a context manager."""

    def __init__(self, settings: Settings, *, max_block_s: float = 60.0, log: FoldingLog | None = None,
                 **overrides: Any) -> None:
        self._errors: list[str] = []
        self.log = log or FoldingLog()
        config = client_config(settings, self.log, **{**PRODUCER_DEFAULTS, **overrides})
        config["on_delivery"] = self._on_delivery
        self._producer = Producer(config)
        self._max_block_s = max_block_s
        self.produced = 0
        self.failed = 0

    def _on_delivery(self, err: RdKafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed += 1
            self._errors.append(f"{msg.topic()}[{msg.partition()}] key={msg.key()!r}: {err.str()}")

    def _on_record_delivery(self, on_delivery: OnDelivery, err: RdKafkaError | None, msg: Message) -> None:
        if not on_delivery(err, msg) and err is not None:
            self._on_delivery(err, msg)

    def _raise_pending(self) -> None:
        if self._errors:
            errors, self._errors = self._errors, []
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise DeliveryError(f"delivery failed: {errors[0]}{more}")

    def produce(self, topic: str, value: bytes, *, key: bytes | None = None, timestamp_ms: int = 0,
                headers: Headers | None = None, partition: int | None = None,
                on_delivery: OnDelivery | None = None) -> None:
        if self._errors:
            self._raise_pending()
        kwargs: dict[str, Any] = {"key": key, "value": value, "timestamp": timestamp_ms}
        if headers:
            kwargs["headers"] = list(headers)
        if partition is not None:
            kwargs["partition"] = partition
        if on_delivery is not None:
            kwargs["on_delivery"] = partial(self._on_record_delivery, on_delivery)
        try:
            self._producer.produce(topic, **kwargs)
        except BufferError:
            self._produce_blocking(topic, kwargs)
        except KafkaException as e:
            raise KafkaError(f"produce to {topic} failed: {e.args[0].str()}", code=e.args[0].code()) from e
        self.produced += 1
        if self.produced & 0x3FF == 0:
            self._producer.poll(0)

    def _produce_blocking(self, topic: str, kwargs: dict[str, Any]) -> None:
        deadline = time.monotonic() + self._max_block_s
        while True:
            self._producer.poll(0.05)  # serve the queue: deliveries free space
            try:
                self._producer.produce(topic, **kwargs)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise KafkaError(f"local producer queue full for {self._max_block_s:.0f}s producing to "
                                     f"{topic}: is the broker reachable?") from None

    def poll(self, timeout: float = 0) -> None:
        self._producer.poll(timeout)
        self._raise_pending()

    def flush(self, timeout: float = 120.0) -> None:
        """Wait for every record; raise if any failed or is still in flight after `timeout`."""
        remaining = self._producer.flush(timeout)
        self._raise_pending()
        if remaining:
            raise DeliveryError(f"{remaining} record(s) still undelivered after {timeout:.0f}s flush")

    def abandon(self) -> int:
        """Drop everything still queued or in flight (a shutdown while the cluster is gone);
        returns how many records were dropped. Say so to the user: they were not delivered."""
        pending = len(self._producer)
        self._producer.purge()
        self._producer.flush(0)
        self._errors.clear()
        return pending

    def __enter__(self) -> KafkaProducer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                self.flush()
            else:  # leave the original error visible; still try to deliver what was accepted
                self._producer.flush(10)
        finally:
            self.log.flush()
