"""The librdkafka settings every consumer of the project shares (projector, replay, rebuild)."""

from __future__ import annotations

from typing import Any

from backbone.kafka.health import FoldingLog, client_config
from backbone.settings import Settings

CONSUMER_DEFAULTS: dict[str, Any] = {
    # librdkafka prefetches until its queue holds `queued.min.messages` per partition, then waits
    # `fetch.queue.backoff.ms` (default 1000 ms) before it looks again. A consumer that decodes
    # and folds in Python drains 100 000 records in well under a second, so with the default it
    # sat idle for the rest of that second, every time: a raw read of 300 000 records ran at
    # ~195k records/s with the default and ~400-600k/s with 10-100 ms (2026-12-02, local broker).
    "fetch.queue.backoff.ms": 50,
    # What one fetch brings per partition (librdkafka's default is 1 MB). Reading a few records
    # of each of 24 partitions (the tail of `state --as-of`) fetched and decompressed up to
    # 24 MB and took ~230 ms before every partition had delivered; with 64 KB, 26-42 ms. A full
    # read of 1M records ran at the same rate either way (~475-615k vs ~515-520k records/s).
    # A record batch larger than this still comes whole (the broker's rule since KIP-74).
    "max.partition.fetch.bytes": 64 * 1024,
    # Every client isolates like the projector: aborted transactional records are never seen.
    "isolation.level": "read_committed",
    # Ends of ranges and "caught up" are detected from EOF events.
    "enable.partition.eof": True,
    # Offsets are the projection's (in Postgres), never librdkafka's own.
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    # never jump over records silently: an offset that left the log is reported, not skipped
    "auto.offset.reset": "error",
}


def consumer_config(settings: Settings, log: FoldingLog | None = None, /, **overrides: Any) -> dict[str, Any]:
    """`settings.kafka_config()` with `CONSUMER_DEFAULTS` and a FoldingLog (`log`, else a new
    one) as logger and error_cb; `overrides` win."""
    return client_config(settings, log, **{**CONSUMER_DEFAULTS, **overrides})
