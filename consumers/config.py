"""How a consumer loop is configured (`LoopConfig`, the projector's fetch settings, the default
group id) and what it reports (`RunStats`)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def default_group_id(projection: str, topics: list[str]) -> str:
    """The consumer group of a projection when none is named: derived from the projection and
    its topics, so deployments with other topic names on one cluster never share a group."""
    return f"backbone-{projection}-{'+'.join(topics)}"


@dataclass
class RunStats:
    batches: int = 0
    events: int = 0
    dead_letters: int = 0
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)  # the same, by reason
    dead_letters_relayed: int = 0  # to the dead-letter topic (consumers.deadletter_relay)
    duplicates: int = 0  # resent records (a producer retry) recognised and skipped
    rows_written: int = 0
    db_retries: int = 0
    fenced: int = 0
    rebalances: int = 0
    expired_skipped: int = 0  # records of expiring topics deleted by retention before they were read
    partitions_loaded: int = 0  # from Postgres, on assignments and reloads
    partitions_kept: int = 0  # given back by a rebalance unchanged: their state stayed in memory
    overlapped: int = 0  # batches folded while the one before was still in flight
    last_batch_s: float = 0.0  # the last batch committed, from the start of its fold to its commit
    started: float = field(default_factory=time.monotonic)
    lag: int | None = None  # None: not known (nothing assigned yet, or the broker did not answer)
    waiting_for: str | None = None  # what the loop is waiting for, when it is (an outage, the group)

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.events / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True)
class LoopConfig:
    group_id: str
    instance_id: str | None = None  # static membership: a restarted instance takes its place at once
    session_timeout_ms: int = 10_000
    batch_size: int = 5000
    poll_timeout_s: float = 0.5
    status_interval_s: float = 10.0
    max_db_backoff_s: float = 30.0
    freeze_heap: bool = True  # backbone.gc_policy.FrozenHeap after every batch (off: thresholds only)
    # Mirroring every batch was an OffsetCommit a batch, ~100/s at 5k events/s; with this and
    # PROJECTOR_FETCH the broker used 0.31-0.37 of a core instead of 0.47-0.50 (2026-12-02; the
    # two were not measured apart). The mirror only serves lag tools.
    mirror_interval_s: float = 1.0
    # Fold the next batch while Postgres runs the last one's statements (its commit waits until
    # then, or until the poll finds nothing fetched); off: each batch commits before the next poll.
    overlap: bool = True


#: The projector's fetch, on top of CONSUMER_DEFAULTS. With the broker's default (answer as soon
#: as one byte is there), a projector at 5 000 events/s got a fetch response per few records:
#: ~0.5 of a core of the 2-core machine's broker vs ~0.35 with these (2026-12-02, same load;
#: with the offset mirror above). A response waits for 16 KB or 5 ms, whichever comes first (10 ms:
#: the same broker CPU, p50 22.6 / 26.7 ms vs 17.6 / 17.6 ms with 5, alternating).
PROJECTOR_FETCH: dict[str, Any] = {"fetch.min.bytes": 16 * 1024, "fetch.wait.max.ms": 5}
