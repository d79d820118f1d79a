"""One sampling pass: where every consumer group and every projection stands on our topics.

- Consumer groups: listed through the admin API, their offsets committed to Kafka (source
  "kafka"). Kafka keeps no commit time, so a group's `last_commit` is when the sampler first saw
  its current offset.
- Projections: their checkpoints in `projection_checkpoints` (source "postgres", the
  authoritative progress; `last_commit` is the checkpoint's `updated_at`), under the
  projection's default consumer group id (`backbone-trading-<orders>+<marketdata>`): the group
  that mirrors them to Kafka has the same name and source "kafka", unless the projector runs
  with a `--group` of its own (then the mirror is reported under that name).
- Log end: the last stable offset (ListOffsets under read_committed), what the projector and
  every read_committed reader can reach.
- Lag seconds: the sample time minus the Kafka timestamp of the record at the committed offset
  (0 when caught up). Record timestamps never change, so they are cached by (topic, partition,
  offset): a pass reads only the partitions whose committed offset moved, all in one consumer.

A failure never leaves a pass as an exception: it becomes the `error` of the samples it
concerns (status ERR), and every other sample is still taken.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from backbone import db
from backbone.kafka.consumer import consumer_config
from backbone.kafka.health import FoldingLog, admin_client, reason
from backbone.kafka.reader import sort
from backbone.settings import Settings
from consumers.config import default_group_id
from monitoring.model import PartitionSample, Source

log = logging.getLogger(__name__)

TP = tuple[str, int]
Key = tuple[str, Source, str, int]  # group, source, topic, partition
_OFFSET_UNSET = 0  # librdkafka answers a partition without a committed offset with a negative one
# Consumers the project runs for reading ranges never commit; listed groups that did are judged.
_SCRATCH_PREFIXES = ("backbone-replay-", "backbone-scan-", "backbone-lag-")
# Offsets of one partition closer than this are read in one range (cheaper than another round)
_RANGE_GAP = 2000
_MICRO = Decimal("0.000001")


def _error_text(e: BaseException) -> str:
    if isinstance(e, KafkaException) and e.args and hasattr(e.args[0], "str"):
        return reason(e.args[0].str())
    return db.first_line(e)


@dataclass
class _Seen:
    committed: int
    since: datetime  # when the sampler first saw this committed offset


class Sampler:
    """Takes samples of every group and projection that reads `topics` (default: the orders and
    market-data topics). Holds an admin client, a reading consumer and the caches between
    passes; `close()` when done. `groups`, when given, limits the pass to those groups and
    projections."""

    def __init__(self, settings: Settings, *, topics: Sequence[str] | None = None,
                 groups: Iterable[str] | None = None, timeout_s: float = 10.0,
                 forget_after: timedelta = timedelta(minutes=5)) -> None:
        self.settings = settings
        self.topics = list(topics) if topics else [settings.topic_orders, settings.topic_marketdata]
        self.only = set(groups) if groups is not None else None
        self.timeout_s = timeout_s
        self.forget_after = forget_after  # a group gone that long is no longer reported as ERR
        self.kafka_log = FoldingLog()
        self._admin: AdminClient | None = None
        self._consumer: Consumer | None = None
        self._engine: Any = None
        self._timestamps: dict[tuple[str, int, int], int] = {}  # (topic, partition, offset) -> ms
        self._seen: dict[Key, _Seen] = {}
        self._last_seen: dict[Key, datetime] = {}  # when each key last had a sample without error
        #: per pass: the number of records read for timestamps (cache misses)
        self.reads = 0
        #: the failures of the last pass that concern everything (broker down, database down)
        self.problems: list[str] = []

    # -- clients -------------------------------------------------------------------------------

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = admin_client(self.settings, self.kafka_log)
        return self._admin

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(consumer_config(self.settings, self.kafka_log, **{
                "group.id": f"backbone-lag-{uuid.uuid4().hex}",
                "fetch.wait.max.ms": 10,
                # one record per partition is wanted: fetch little
                "max.partition.fetch.bytes": 16 * 1024,
            }))
        return self._consumer

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        self.kafka_log.flush()

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pass ------------------------------------------------------------------------------

    def sample(self, at: datetime | None = None) -> list[PartitionSample]:
        """One pass over every group, projection and partition. Never raises for a service that
        cannot be reached: its samples carry the error."""
        now = at or datetime.now(tz=UTC)
        self.problems = []
        self.reads = 0
        partitions, topic_errors, leaderless = self._partitions()
        committed: dict[tuple[str, Source], dict[TP, tuple[int | None, datetime | None]]] = {}
        for group, in_kafka in self._kafka_groups().items():
            committed[(group, "kafka")] = {tp: (o, None) for tp, o in in_kafka.items()}
        for group, offsets in self._projections().items():
            # a partition of a topic it reads that has no checkpoint yet is read from the log start
            for topic in {t for t, _p in offsets}:
                for p in partitions.get(topic, []):
                    offsets.setdefault((topic, p), (None, None))
            committed[(group, "postgres")] = offsets
        # the log ends after the committed offsets: read before, a group that committed in
        # between would be ahead of its log end
        tps = [(t, p) for t in self.topics for p in partitions.get(t, []) if (t, p) not in leaderless]
        ends, end_errors = self._log_ends(tps)
        end_errors.update(leaderless)
        lows = self._log_starts([tp for offs in committed.values() for tp, (o, _) in offs.items() if o is None])
        needed: set[tuple[str, int, int]] = set()
        for offs in committed.values():
            for tp, (o, _) in offs.items():
                start = o if o is not None else lows.get(tp)
                if start is not None and tp in ends and start < ends[tp]:
                    needed.add((tp[0], tp[1], start))
        self._read_timestamps(needed)
        samples: list[PartitionSample] = []
        for (group, source), offs in sorted(committed.items()):
            for tp, (o, commit_time) in sorted(offs.items()):
                key: Key = (group, source, tp[0], tp[1])
                start = o if o is not None else lows.get(tp)
                error = topic_errors.get(tp[0]) or end_errors.get(tp)
                if error is None and tp[0] in partitions and tp[1] not in partitions[tp[0]]:
                    error = f"{tp[0]}[{tp[1]}] does not exist"
                samples.append(self._sample(now, key, start, ends.get(tp), commit_time, error))
        samples.extend(self._gone(now, {(s.group, s.source, s.topic, s.partition) for s in samples}))
        self._timestamps = {k: v for k, v in self._timestamps.items() if k in needed}
        return samples

    def _sample(self, now: datetime, key: Key, committed: int | None, end: int | None,
                commit_time: datetime | None, error: str | None) -> PartitionSample:
        group, source, topic, partition = key
        if committed is not None:
            seen = self._seen.get(key)
            if seen is None or seen.committed != committed:
                seen = self._seen[key] = _Seen(committed, now)
            if commit_time is None:
                commit_time = seen.since
        lag = lag_s = None
        if error is None and committed is not None and end is not None:
            lag = max(end - committed, 0)
            if lag == 0:
                lag_s = Decimal(0)
            else:
                ms = self._timestamps.get((topic, partition, committed))
                if ms is not None:
                    lag_s = max(Decimal(int(now.timestamp() * 1_000_000) - ms * 1000) / 1_000_000, Decimal(0))
                    lag_s = lag_s.quantize(_MICRO)
        elif error is None and end is None:
            error = f"no log end for {topic}[{partition}]"
        if error is None:
            self._last_seen[key] = now
        return PartitionSample(at=now, group=group, source=source, topic=topic, partition=partition,
                               committed=committed, log_end=end, lag_records=lag, lag_seconds=lag_s,
                               last_commit=commit_time, error=error)

    def _gone(self, now: datetime, present: set[Key]) -> list[PartitionSample]:
        """ERR samples for the partitions of groups seen lately that this pass did not find; once
        gone for `forget_after`, they are forgotten."""
        out = []
        for key, last in list(self._last_seen.items()):
            if key in present:
                continue
            if now - last > self.forget_after:
                del self._last_seen[key]
                self._seen.pop(key, None)
                continue
            group, source, topic, partition = key
            why = self.problems[0] if self.problems else (
                "group gone" if source == "kafka" else "projection checkpoint gone")
            out.append(PartitionSample(at=now, group=group, source=source, topic=topic, partition=partition,
                                       committed=None, log_end=None, lag_records=None, lag_seconds=None,
                                       error=why))
        return out

    # -- Kafka ---------------------------------------------------------------------------------

    def _partitions(self) -> tuple[dict[str, list[int]], dict[str, str], dict[TP, str]]:
        """The partitions of each topic; an error per topic missing, and per partition without a
        leader."""
        try:
            meta = self.admin.list_topics(timeout=self.timeout_s)
        except KafkaException as e:
            self._problem(f"Kafka: {_error_text(e)}")
            return {}, {t: f"Kafka: {_error_text(e)}" for t in self.topics}, {}
        out: dict[str, list[int]] = {}
        errors: dict[str, str] = {}
        leaderless: dict[TP, str] = {}
        for topic in self.topics:
            t = meta.topics.get(topic)
            if t is None or not t.partitions:
                errors[topic] = f"topic {topic} missing"
                continue
            out[topic] = sorted(t.partitions)
            for p, info in t.partitions.items():
                if info.leader < 0:
                    leaderless[(topic, p)] = f"{topic}[{p}] has no leader"
        return out, errors, leaderless

    def _offsets(self, tps: Sequence[TP], spec: OffsetSpec) -> tuple[dict[TP, int], dict[TP, str]]:
        if not tps:
            return {}, {}
        try:
            futures = self.admin.list_offsets({TopicPartition(t, p): spec for t, p in tps},
                                              isolation_level=IsolationLevel.READ_COMMITTED,
                                              request_timeout=self.timeout_s)
        except KafkaException as e:
            self._problem(f"Kafka: {_error_text(e)}")
            return {}, {tp: f"Kafka: {_error_text(e)}" for tp in tps}
        out: dict[TP, int] = {}
        errors: dict[TP, str] = {}
        for tp, future in futures.items():
            key = (tp.topic, tp.partition)
            try:
                out[key] = future.result().offset
            except KafkaException as e:
                errors[key] = f"log end of {tp.topic}[{tp.partition}]: {_error_text(e)}"
        if errors and not out:
            self._problem(next(iter(errors.values())))
        return out, errors

    def _log_ends(self, tps: Sequence[TP]) -> tuple[dict[TP, int], dict[TP, str]]:
        return self._offsets(tps, OffsetSpec.latest())

    def _log_starts(self, tps: Sequence[TP]) -> dict[TP, int]:
        return self._offsets(sorted(set(tps)), OffsetSpec.earliest())[0]

    def _kafka_groups(self) -> dict[str, dict[TP, int]]:
        """The committed offsets on our topics of every consumer group that has any."""
        if self.problems:
            return {}  # the broker did not answer: the groups' partitions become ERR in `_gone`
        try:
            listed = self.admin.list_consumer_groups(request_timeout=self.timeout_s).result()
        except KafkaException as e:
            self._problem(f"Kafka: {_error_text(e)}")
            return {}
        ids = sorted(g.group_id for g in listed.valid if not g.group_id.startswith(_SCRATCH_PREFIXES)
                     and (self.only is None or g.group_id in self.only))
        # one request per group (the admin API takes one), all in flight at once
        futures: dict[str, Future[Any]] = {}
        for group in ids:
            try:
                futures.update(self.admin.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(group)], request_timeout=self.timeout_s))
            except KafkaException as e:
                log.warning("offsets of group %s: %s", group, _error_text(e))
        wanted = set(self.topics)
        out: dict[str, dict[TP, int]] = {}
        for group, future in futures.items():
            try:
                result = future.result()
            except KafkaException as e:
                log.warning("offsets of group %s: %s", group, _error_text(e))
                continue
            offsets = {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or []
                       if tp.topic in wanted and tp.offset >= _OFFSET_UNSET and tp.error is None}
            if offsets:
                out[group] = offsets
        return out

    def _read_timestamps(self, needed: set[tuple[str, int, int]]) -> None:
        """Fill the timestamp cache for `needed` (topic, partition, offset): per partition, the
        offsets close together are read as one range; partitions are read together, one range
        each per round."""
        missing = sorted(k for k in needed if k not in self._timestamps)
        if not missing:
            return
        by_tp: dict[TP, list[int]] = {}
        for topic, partition, offset in missing:
            by_tp.setdefault((topic, partition), []).append(offset)
        rounds: list[dict[TP, list[int]]] = []
        for tp, offsets in by_tp.items():
            cluster: list[int] = []
            k = 0
            for offset in offsets:
                if cluster and offset - cluster[0] > _RANGE_GAP:
                    _add_round(rounds, k, tp, cluster)
                    k, cluster = k + 1, []
                cluster.append(offset)
            _add_round(rounds, k, tp, cluster)
        for wanted in rounds:
            try:
                self._read_round(wanted)
            except KafkaException as e:
                self._problem(f"Kafka: reading record times: {_error_text(e)}")
                return

    def _read_round(self, wanted: dict[TP, list[int]]) -> None:
        consumer = self.consumer
        remaining = {tp: set(offsets) for tp, offsets in wanted.items()}
        assigned = [TopicPartition(t, p, min(offsets)) for (t, p), offsets in wanted.items()]
        consumer.assign(assigned)
        deadline = time.monotonic() + self.timeout_s
        try:
            ended: list[TP] = []  # applied after each batch's records: an end comes after the records before it
            while remaining and time.monotonic() < deadline:
                ended.clear()
                records = sort(consumer.consume(num_messages=1000, timeout=0.05),
                               on_eof=lambda tp, _at: ended.append(tp),
                               on_out_of_range=lambda tp, _at: ended.append(tp))
                for msg in records:
                    tp = (msg.topic(), msg.partition())
                    todo = remaining.get(tp)
                    if todo is None:
                        continue
                    offset, ms = msg.offset(), msg.timestamp()[1]
                    self.reads += 1
                    # the record at a committed offset, or the first after it (a transaction
                    # marker or an aborted record has no timestamp of its own to give)
                    for o in [o for o in todo if o <= offset]:
                        self._timestamps[(tp[0], tp[1], o)] = ms
                        todo.discard(o)
                    if not todo:
                        # no pause(): a partition resumed in a later round waited ~1 s before
                        # its first fetch; what it fetches meanwhile is 16 KB at most
                        del remaining[tp]
                for tp in ended:
                    remaining.pop(tp, None)
        finally:
            consumer.unassign()

    # -- Postgres ------------------------------------------------------------------------------

    def _projections(self) -> dict[str, dict[TP, tuple[int | None, datetime | None]]]:
        """Every projection's checkpoints on our topics by its default group id; a partition of
        such a topic without one is read from the log start (offset None here)."""
        try:
            if self._engine is None:
                self._engine = db.make_engine(self.settings, pool_size=1)
            with self._engine.connect() as sa_conn:
                conn: psycopg.Connection = db.psycopg_connection(sa_conn)
                with conn.cursor() as cur:
                    cur.execute("select projection, topic, partition, next_offset, updated_at "
                                "from projection_checkpoints where topic = any(%s) order by 1, 2, 3",
                                (self.topics,))
                    rows = cur.fetchall()
                sa_conn.rollback()
        except db.DATABASE_FAILURES as e:  # this pass's ERR, not a crash
            self._problem(f"Postgres: {db.connection_error(e)}")
            return {}
        out: dict[str, dict[TP, tuple[int | None, datetime | None]]] = {}
        for projection, topic, partition, nxt, updated in rows:
            group = default_group_id(projection, [self.settings.topic_orders, self.settings.topic_marketdata])
            if self.only is None or group in self.only or projection in self.only:
                out.setdefault(group, {})[(topic, partition)] = (nxt, updated)
        return out

    def _problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)


def _add_round(rounds: list[dict[TP, list[int]]], k: int, tp: TP, offsets: list[int]) -> None:
    while len(rounds) <= k:
        rounds.append({})
    rounds[k][tp] = offsets
