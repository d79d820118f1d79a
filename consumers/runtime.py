"""The supervised batch loop that drives a projection from Kafka into Postgres, exactly once.

Commit protocol, per batch (mirrored by `# Step n` comments in `_process`, `_send`, `_settle`):

1. Apply the batch in memory: decode every record and apply it to the projection's state;
   a record the projection refuses becomes a dead letter and the batch goes on.
2. Write the changed rows (the projection's writer) and the dead letters (table).
3. Write the next offset of every partition the batch touched into `projection_checkpoints`,
   as a compare-and-set from the offset and the generation this owner loaded: if another
   consumer moved it, or a rebuild swapped the tables (new generation), the whole transaction
   is abandoned (`FencedError`) and the partitions are reloaded. Steps 2 and 3 are sent without
   waiting, in one round trip (the projection's `send`).
4. Wait for every result (rows refused, offsets not moved: `FencedError`) and commit the
   Postgres transaction: rows, dead letters and offsets become visible together.
5. Relay the batch's dead letters to `trading.deadletter` (consumers.deadletter_relay: the
   table is an outbox, each letter reaches the topic once). Mirror the offsets to Kafka (async
   commit) so ordinary lag tools see the group: every `mirror_interval_s`, idle or not, the
   committed offset of every assigned partition that Kafka does not have yet; on revoke for the
   partitions given away, and synchronously on close.

Step 4 of a batch runs when the next batch has been applied in memory (step 1), so the server
works on one batch while the projector folds the next; or at once when no record is fetched
yet, on a rebalance, and on close. One batch at most is in flight. The next batch's
compare-and-set expects the in-flight batch's offsets: if that batch is abandoned, so is the
next (never sent), and both are read again after the reload. A connection loss or a
serialization failure rolls the in-flight transaction back and sends the same batch again, as
it was captured when it was sent (`Projection.prepare`), with backoff; offsets do not advance
meanwhile and the process stays alive.

On start and on every assignment the projection loads the assigned partitions' rows and the
consumer seeks to the offsets stored in Postgres (the beginning when there are none). A partition
the eager ("range") rebalance revoked and gave straight back keeps its state in memory when its
checkpoint and the checkpoint generation are still the ones this owner committed: no other owner
committed anything for it in between, so the rows equal the state (a reload costs ~10 s per
million projected events). Rebalances happen only inside `consume()`, between batches; the
batch in flight settles first, while this owner still holds its partitions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from sqlalchemy import Engine, RootTransaction

from backbone import deadletters
from backbone.deadletters import DeadLetter
from backbone.errors import KafkaError, KafkaUnavailable
from backbone.gc_policy import FrozenHeap, fewer_collections
from backbone.kafka import log_bounds, reader
from backbone.kafka.batches import next_batch, partitions_of, refetch, watermarks
from backbone.kafka.consumer import consumer_config
from backbone.kafka.health import FoldingLog
from backbone.settings import Settings
from consumers.checkpoints import FencedError, read_checkpoints, read_generation, send_checkpoint_moves
from consumers.config import PROJECTOR_FETCH, LoopConfig, RunStats
from consumers.database import RETRIABLE, Database
from consumers.deadletter_relay import DeadLetterRelay
from consumers.projection import Projection, fold

log = logging.getLogger(__name__)

TP = tuple[str, int]


@dataclass
class _InFlight:
    """A batch whose statements were sent and whose transaction is still open."""

    records: list[reader.Record]
    moves: dict[TP, tuple[int | None, int]]  # partition: (offset expected, next offset)
    letters: list[tuple[reader.Record, DeadLetter]]
    prepared: Any  # the projection's capture (`Projection.prepare`): what a retry sends again
    transaction: RootTransaction | None = None
    check: Callable[[], int] | None = None  # None: to be sent (again)
    started: float = 0.0  # monotonic time its fold began


class ProjectionLoop:
    """One consumer in a group, feeding one projection. Not thread-safe; no hidden threads."""

    def __init__(self, settings: Settings, projection: Projection, engine: Engine, config: LoopConfig,
                 *, stop_requested: Callable[[], bool] = lambda: False,
                 on_status: Callable[[RunStats], None] | None = None,
                 on_commit: Callable[[list[reader.Record], float], None] | None = None) -> None:
        self.settings, self.projection, self.engine, self.config = settings, projection, engine, config
        self.stop_requested = stop_requested
        self.on_status = on_status
        self.on_commit = on_commit  # (records, wall-clock commit time): for latency measurements
        self.stats = RunStats()
        self.assigned: set[TP] = set()
        self.positions: dict[TP, int | None] = {}  # next offset this owner expects (None: no checkpoint)
        self._fetch_from: dict[TP, int] = {}  # where fetching (re)started: the checkpoint, or past expired records
        self.generation = 0  # of the checkpoints the state was loaded under (a rebuild's swap bumps it)
        self.at_end: set[TP] = set()
        self._eof: dict[TP, int] = {}  # the end offset each partition was last seen at
        # a connection held from batch to batch (a checkout from the pool pinged the server every
        # batch), and the retries of every database wait
        self.db = Database(engine, max_backoff_s=config.max_db_backoff_s, stop_requested=stop_requested,
                           while_waiting=self._status_if_due)
        attach_reader = getattr(projection, "attach_reader", None)  # optional: rows read back on demand
        if attach_reader is not None:
            attach_reader(lambda work, isolation_level="REPEATABLE READ": self.db.load(
                work, isolation_level=isolation_level), engine)
        self._relay = DeadLetterRelay(settings, projection.name, self.db.transaction)
        self._relay_due: set[TP] = set()  # source partitions with dead letters not relayed yet
        self._relay_at = 0.0  # monotonic time of the next relay round while some are due
        self._relay_delay = 0.0
        # next offsets committed in Postgres (the log start where none: the fetch starts there),
        # and what this owner committed to the group in Kafka, of the assigned partitions
        self._committed: dict[TP, int] = {}
        self._mirrored: dict[TP, int] = {}
        # revoked, their state still in memory, with the next offset this owner committed: kept if
        # the next assignment gives them back unchanged (`_load`), dropped otherwise
        self._held: dict[TP, int | None] = {}
        self._mirrored_at = time.monotonic()
        self._inflight: _InFlight | None = None  # sent, not yet committed (at most one)
        self._heap: FrozenHeap | None = None  # while run() runs, with freeze_heap
        self._status_at = time.monotonic()
        extra = {"group.instance.id": config.instance_id} if config.instance_id else {}
        self._kafka_log = FoldingLog()  # librdkafka's lines said once; what failed, for the status
        # auto.offset.reset=error (CONSUMER_DEFAULTS): an offset that left the log is _out_of_range
        self._consumer = Consumer(consumer_config(settings, self._kafka_log, **PROJECTOR_FETCH, **extra, **{
            "group.id": config.group_id,
            "session.timeout.ms": config.session_timeout_ms,
            "partition.assignment.strategy": "range",  # co-partitioned topics: same p on one consumer
        }))

    # -- rebalance callbacks: run inside consume(), between batches ------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle()  # none in flight after an eager revoke; settled all the same before loading
        tps = [(tp.topic, tp.partition) for tp in partitions]
        self.projection.place({t: len(partitions_of(consumer, t)) for t in self.projection.topics()})
        # One generation for all the state held: the eager ("range") assignment revokes every
        # partition before assigning, and `_load` keeps no state loaded under an older generation.
        checkpoints = self.db.load(lambda conn: self._load(conn, tps), isolation_level="REPEATABLE READ")
        # Every partition checked before any is taken: a refusal leaves nothing half-assigned.
        resume = {tp: self._within_log(consumer, tp, checkpoints.get(tp, 0)) for tp in tps}
        for tp in partitions:
            key = (tp.topic, tp.partition)
            offset = checkpoints.get(key)
            # An explicit offset even without a checkpoint: OFFSET_BEGINNING would resolve to
            # wherever the log starts when the fetch begins, past records deleted meanwhile.
            tp.offset = self._fetch_from[key] = resume[key]
            self.positions[key] = offset
            self._committed[key] = resume[key]  # for lag tools: where this group goes on
        self.assigned |= set(tps)
        self.stats.rebalances += 1
        consumer.assign(partitions)
        self._relay_due |= set(tps)  # an owner before this one may have left some unrelayed
        self._relay_at = 0.0
        log.info("assigned %s", ", ".join(f"{t}[{p}]@{checkpoints.get((t, p), 'beginning')}" for t, p in tps))

    def _within_log(self, consumer: Consumer, tp: TP, start: int) -> int:
        """Where to read `tp` from, given that this owner's next offset is `start`.

        Below the log start: records were deleted before this projection read them. Beyond the
        end: the topic was recreated or truncated, and every new record below the old offset
        would be taken for one already applied. Kafka would silently reset to the log start in
        both cases (the consumer is configured to report it instead): refuse, unless the
        projection says the topic's records may expire; then count them and go on from the start."""
        t, p = tp
        low, high = watermarks(consumer, t, p)
        bounds = log_bounds.Bounds(t, p, start, low, high)
        verdict = log_bounds.classify(bounds, expiring=self.projection.expiring(t))
        if verdict == "within":
            return start
        if verdict == "expired":
            self.stats.expired_skipped += bounds.missing
            log.warning("%s[%s]: records %s..%s expired before they were projected (retention); "
                        "going on from %s", t, p, start, low - 1, low)
            return low
        remedy = ("rebuild the projection from the new log (backbone rebuild trading)" if verdict == "beyond_end"
                  else "restore them to the topic (nothing at or after that offset was projected)")
        raise KafkaError(log_bounds.refusal(bounds, verdict, remedy))

    def _out_of_range(self, tp: TP, offset: int) -> None:
        """The broker refused a fetch: the partition's next offset left the log while this owner
        held it (retention or `delete_records` caught up with it, or the topic was recreated).
        The same decision as at assignment."""
        if tp not in self.assigned:
            return
        start = offset if offset >= 0 else self._next_to_fetch(tp)
        self._fetch_from[tp] = self._within_log(self._consumer, tp, start)
        refetch(self._consumer, tp, self._fetch_from[tp], self._next_to_fetch)

    def _next_to_fetch(self, tp: TP) -> int:
        """Where `tp` goes on when nothing was handed over since its fetch (re)started: the next
        offset committed, or the restart point when that is later (expired records skipped)."""
        return max(self.positions.get(tp) or 0, self._fetch_from.get(tp, 0))

    def _load(self, conn: psycopg.Connection, tps: list[TP]) -> dict[TP, int]:
        # In one REPEATABLE READ snapshot (the callers' transaction): rows, checkpoints and the
        # generation as of one moment. Under READ COMMITTED, another owner's batch (or a swap)
        # committing between the statements left rows older than the checkpoint loaded with them,
        # and the compare-and-set could not tell: later events were folded onto stale orders.
        generation = read_generation(conn, self.projection.name)
        stored = read_checkpoints(conn, self.projection.name)
        # Held state is current where the checkpoint is still the one this owner committed: any
        # other owner's commit would have moved it (compare-and-set), a swap the generation. A
        # retried transaction finds nothing held and loads everything.
        held, self._held = self._held, {}
        keep = ({tp for tp in tps if tp in held and held[tp] == stored.get(tp)}
                if generation == self.generation else set())
        self.projection.drop(sorted(tp for tp in held if tp not in keep))
        self.generation = generation
        load = [tp for tp in tps if tp not in keep]
        if load:
            self.projection.load(conn, load)
        self.stats.partitions_loaded += len(load)
        self.stats.partitions_kept += len(keep)
        if keep:
            log.info("kept in memory (unchanged since revoked): %s", ", ".join(f"{t}[{p}]" for t, p in sorted(keep)))
        return {tp: stored[tp] for tp in tps if tp in stored}

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(tp.topic, tp.partition) for tp in partitions]
        # still the owner here: the batch in flight commits (or is fenced) before the partitions go
        settled = self._settle(reload=False)
        # the mirror of what it committed goes before the partitions do
        self._mirror(tps, asynchronous=True)
        if settled:
            # nothing in flight any more: the state is what was committed
            self._held.update({tp: self.positions.get(tp) for tp in tps})
        else:
            self.projection.drop(tps)  # abandoned: what it folded is not in Postgres
        self._forget(tps)
        if not settled and self.assigned:
            self._reload_assigned()  # kept partitions (a cooperative assignor): their state reloaded
        log.info("revoked %s", ", ".join(f"{t}[{p}]" for t, p in tps))

    def _forget(self, tps: list[TP]) -> None:
        for tp in tps:
            self.assigned.discard(tp)
            self.positions.pop(tp, None)
            self._fetch_from.pop(tp, None)
            self._committed.pop(tp, None)
            self._mirrored.pop(tp, None)
            self._eof.pop(tp, None)
            self.at_end.discard(tp)
        self.stats.rebalances += 1

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a revoke (the group went on without this member): their
        offsets are another member's to commit now, so nothing is mirrored, and their state is
        dropped at once."""
        tps = [(tp.topic, tp.partition) for tp in partitions]
        # The batch in flight commits only if the compare-and-set finds its offsets still ours.
        settled = self._settle(reload=False)
        self.projection.drop(tps)
        self._forget(tps)
        if not settled and self.assigned:
            self._reload_assigned()
        log.info("lost %s", ", ".join(f"{t}[{p}]" for t, p in tps))

    # -- the loop ----------------------------------------------------------------------------------

    def run(self, *, until_caught_up: bool = False, max_seconds: float | None = None) -> RunStats:
        """Consume until stopped (signal flag), caught up (if asked) or `max_seconds` elapsed."""
        self._consumer.subscribe(self.projection.topics(), on_assign=self._on_assign, on_revoke=self._on_revoke,
                                 on_lost=self._on_lost)
        # the fold keeps what it allocates: fewer collections, and none that rescans the state
        heap = self._heap = FrozenHeap() if self.config.freeze_heap else None
        with fewer_collections(), heap or nullcontext():  # backbone.gc_policy
            deadline = self.db.deadline = None if max_seconds is None else time.monotonic() + max_seconds
            self._status_at = time.monotonic()
            try:
                while not self.stop_requested():
                    # With a batch in flight only what is fetched already is taken: none means
                    # nothing to overlap with, and the batch settles at once instead of waiting.
                    records = self._sort(next_batch(self._consumer, self.config.batch_size,
                                                    0 if self._inflight else self.config.poll_timeout_s))
                    if records:
                        self._process(records)
                    elif self._inflight is not None:
                        self._settle()
                    if self._relay_due:
                        self._relay_letters()
                    now = time.monotonic()
                    if now - self._mirrored_at >= self.config.mirror_interval_s:
                        self._mirror(self.assigned, asynchronous=True)  # also when idle
                    self._status_if_due()
                    if until_caught_up and self._caught_up():
                        self._settle()  # a fenced last batch is read again: not caught up after all
                        if self._caught_up():
                            break
                    if deadline is not None and now >= deadline:
                        if self.stats.rebalances == 0:  # never got a partition: nothing was done
                            raise KafkaUnavailable(f"no partition was assigned within --max-seconds "
                                                   f"({max_seconds:g} s): {self._kafka_log.last or 'no answer'} "
                                                   "(check the broker with `backbone topics describe`; "
                                                   "its group coordinator must answer)")
                        break
                self.stats.lag = self.lag()  # from the watermarks last seen, before close() forgets the assignment
            finally:
                try:
                    self.close()
                finally:
                    self.stats.db_retries = self.db.retries
        return self.stats

    def _caught_up(self) -> bool:
        return bool(self.assigned) and self.assigned <= self.at_end

    def _sort(self, messages: list[Message]) -> list[reader.Record]:
        """The records to apply: those of partitions this owner holds, from where it expects."""
        records = []
        for msg in reader.sort(messages, on_eof=self._at_end, on_out_of_range=self._out_of_range):
            tp = (msg.topic(), msg.partition())
            if tp not in self.assigned:
                continue  # fetched before a revoke; its new owner will process it
            offset = msg.offset()
            expected = self.positions.get(tp)
            if expected is not None and offset < expected:
                continue  # prefetched before a seek to the stored offset: already applied
            if offset >= self._eof.get(tp, offset + 1):
                self.at_end.discard(tp)  # a record past the end seen: not at the end any more
            records.append(msg)
        return records

    def _at_end(self, tp: TP, end: int) -> None:
        if tp in self.assigned:
            self.at_end.add(tp)
            self._eof[tp] = end

    def _process(self, records: list[reader.Record]) -> None:
        # Step 1: apply the batch in memory; refused records become dead letters. The batch
        # before may still be in flight: its server work overlaps this fold.
        started = time.monotonic()
        try:
            letters, moves = fold(self.projection, records, self.positions)
        except FencedError as e:  # rows the fold read back were another owner's: as a fenced batch
            self.stats.fenced += 1
            log.warning("abandoning batch: %s; reloading my partitions from Postgres", e)
            if self._settle(reload=False):
                self.projection.abandon()
            self._reload_assigned()
            return
        if self._inflight is not None:
            self.stats.overlapped += 1
        if not self._settle():
            return  # the batch before was abandoned and the partitions reloaded: this one is read again
        if self._heap is not None:
            # What the fold kept is frozen here: after the batch before settled (its rows are
            # garbage now, freed by their counts) and before this one's rows are built (alive
            # until it settles). Frozen, in-flight rows piled up until a full collection: 0.46 s
            # pauses, p99 0.3-1.4 s at 5,000 events/s.
            self._heap.after_batch()
        batch = _InFlight(records, moves, letters, self.projection.prepare(), started=started)
        # The next batch's compare-and-set expects these offsets: this one commits first, or
        # both are abandoned and the partitions reloaded.
        for tp, (_old, nxt) in moves.items():
            self.positions[tp] = nxt
        try:
            self._send(batch)
        except RETRIABLE as e:
            self.db.failed(e)  # _settle sends it again
        self._inflight = batch  # not on any other error: close() must not send it again
        if not self.config.overlap:
            self._settle()

    def _send(self, batch: _InFlight) -> None:
        """Steps 2 and 3: begin the batch's transaction on the held connection and send its rows,
        then its dead letters and checkpoint moves, in one round trip (the projection's `send`); nothing
        waits for the server here."""
        batch.transaction, conn = self.db.begin()

        def tail(conn: psycopg.Connection) -> Callable[[], None]:
            # Step 2 (table part): the dead letters.
            deadletters.insert(conn, [d for _m, d in batch.letters])
            # Step 3: the next offsets, compare-and-set against what this owner loaded; checked
            # (FencedError) once the results are in, before anything commits.
            return send_checkpoint_moves(conn, self.projection.name, batch.moves, self.generation)

        batch.check = self.projection.send(conn, batch.prepared, tail)

    def _settle(self, *, reload: bool = True) -> bool:
        """Finish the batch in flight, if any: wait for its results, check them, commit (step 4),
        mirror (step 5). False if it was abandoned (another owner or a rebuild moved a checkpoint,
        or its rows belong to another partition): every batch not committed is forgotten and,
        with `reload`, the assigned partitions are reloaded from Postgres."""
        batch, self._inflight = self._inflight, None
        if batch is None:
            return True
        try:
            written = self._commit(batch)
        except FencedError as e:
            self.stats.fenced += 1
            log.warning("abandoning batch: %s; reloading my partitions from Postgres", e)
            self.projection.abandon()
            if reload:
                self._reload_assigned()
            return False
        self.projection.committed(batch.prepared)
        self.stats.duplicates = self.projection.duplicates
        self.stats.last_batch_s = time.monotonic() - batch.started
        self.stats.dead_letter_reasons.update(d.reason for _m, d in batch.letters)
        if self.on_commit is not None:
            self.on_commit(batch.records, time.time())
        self.stats.batches += 1
        self.stats.events += len(batch.records)
        self.stats.dead_letters += len(batch.letters)
        self.stats.rows_written += written
        # Step 5: relay the dead letters (the table is the outbox), mirror the offsets to Kafka
        # for lag tools; Postgres stays the source of truth of both.
        if batch.letters:
            self._relay_due |= {(m.topic(), m.partition()) for m, _d in batch.letters}
            self._relay_at = 0.0
            self._relay_letters()
        self._committed.update({tp: nxt for tp, (_old, nxt) in batch.moves.items()})
        return True

    def _commit(self, batch: _InFlight) -> int:
        """Check the batch's results and commit it; on connection loss or a serialization
        failure, roll back and send the same batch again (as `prepare` captured it) with backoff,
        offsets not advanced. Raises FencedError (rolled back) if it must be abandoned."""
        delay = 0.2
        while True:
            try:
                if batch.check is None:
                    self._send(batch)
                check, batch.check = batch.check, None
                assert check is not None and batch.transaction is not None
                written = check()
                batch.transaction.commit()  # Step 4: rows, dead letters and offsets visible together
                self.db.down = None
                return written
            except RETRIABLE as e:
                self.db.failed(e)
                delay = self.db.pause(e, delay)
            except FencedError:
                self.db.drop()  # rolls the transaction back
                raise

    def _status_if_due(self) -> None:
        if time.monotonic() - self._status_at >= self.config.status_interval_s:
            self._status()

    def _status(self) -> None:
        """Refresh the lag and what the loop waits for; report them. A failure of Kafka that
        waiting cannot cure (credentials refused) ends the run."""
        self._status_at = time.monotonic()
        self.stats.db_retries = self.db.retries
        failure = self._kafka_log.verdict(self.settings)
        if failure is not None:
            raise failure
        self.stats.lag = None if self.db.down else self.lag(fresh=True)
        if self.db.down:
            self.stats.waiting_for = f"the database ({self.db.down})"
        elif not self.assigned:
            self.stats.waiting_for = "partitions from the group coordinator" + (
                f" (Kafka: {self._kafka_log.last})" if self._kafka_log.last else "")
        elif self.stats.lag is None:
            self.stats.waiting_for = f"Kafka ({self._kafka_log.last or 'no answer'})"
        else:
            self.stats.waiting_for = None
        if self.on_status:
            self.on_status(self.stats)

    def _mirror(self, tps: Iterable[TP], *, asynchronous: Literal[True, False]) -> None:
        """Commit to the group in Kafka the committed offsets of `tps` it does not have yet."""
        # Literal, not bool: confluent-kafka types commit() by each value of `asynchronous`
        self._mirrored_at = time.monotonic()
        offsets = {tp: self._committed[tp] for tp in tps
                   if tp in self._committed and self._mirrored.get(tp) != self._committed[tp]}
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=[TopicPartition(t, p, nxt) for (t, p), nxt in sorted(offsets.items())],
                                  asynchronous=asynchronous)
        except KafkaException as e:  # a mirror only: progress is already safe in Postgres
            log.warning("could not mirror offsets to Kafka: %s", e.args[0].str())
            return
        self._mirrored.update(offsets)

    def _reload_assigned(self) -> None:
        tps = sorted(self.assigned)
        checkpoints = self.db.load(lambda conn: self._load(conn, tps), isolation_level="REPEATABLE READ")
        for t, p in tps:
            offset = checkpoints.get((t, p))
            self.positions[(t, p)] = offset
            # explicit: a range deleted meanwhile comes back as "out of range" (_out_of_range)
            self._fetch_from[(t, p)] = 0 if offset is None else offset
            if offset is not None:
                self._committed[(t, p)] = offset
            self._consumer.seek(TopicPartition(t, p, self._fetch_from[(t, p)]))
            self.at_end.discard((t, p))  # read again from its checkpoint: not at the end until seen there

    def _relay_letters(self) -> None:
        """A relay round for the assigned partitions that have dead letters to relay, if one is
        due; a failed round is tried again later (backoff up to `max_db_backoff_s`)."""
        due = sorted(self._relay_due & self.assigned)
        self._relay_due &= self.assigned
        if not due or time.monotonic() < self._relay_at:
            return
        done = self._relay.relay(due)
        self.stats.dead_letters_relayed += done.relayed
        if done.failed is None:
            self._relay_due.difference_update(due)
            self._relay_delay = 0.0
        else:
            self._relay_delay = min(max(self._relay_delay * 2, 0.5), self.config.max_db_backoff_s)
            self._relay_at = time.monotonic() + self._relay_delay

    def lag(self, *, fresh: bool = False) -> int | None:
        """Records behind the high watermarks of the assigned partitions: the watermarks last
        fetched, or (`fresh`) asked of the broker. None when not known: nothing assigned, or a
        watermark the broker did not give."""
        if not self.assigned:
            return None
        total = 0
        for tp in sorted(self.assigned):
            try:
                if fresh:
                    _low, high = self._consumer.get_watermark_offsets(TopicPartition(*tp), timeout=2, cached=False)
                else:
                    _low, high = self._consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
            except KafkaException:
                return None
            if high < 0:
                return None
            nxt = self.positions.get(tp)
            total += max(high - (self._fetch_from.get(tp, 0) if nxt is None else nxt), 0)
        return total

    def close(self) -> None:
        """Settle the batch in flight (commit it, or abandon it if fenced), then let go of
        everything; offsets committed are mirrored synchronously."""
        try:
            self._settle(reload=False)
        finally:
            close = getattr(self.projection, "close", None)  # optional: work the projection runs beside
            if close is not None:
                close()
            self.db.drop()
            self._relay.close()
            if self.assigned:
                self._mirror(self.assigned, asynchronous=False)
            self._consumer.close()
            self._kafka_log.flush()
