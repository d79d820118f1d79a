"""`backbone audit verify`: recompute each partition's hash chain from the archive and compare
it with the log, record by record (docs/audit.md#verify).

Per (topic, partition), offset by offset from `from_offset` to the archive's last offset:

- the archive alone: a row at every offset not recorded as a gap (`audit_gaps`), whose stored
  hash equals `link_hash(previous row's hash, its own fields)`: a row deleted, altered (bytes,
  timestamp, key or hash) or moved to another offset breaks it at that offset;
- against the log: each archived row's timestamp, key and value equal the record's at that
  offset in Kafka, which catches an archive rewritten with its chain recomputed; an archived
  record the log no longer holds is reported (for `trading.marketdata`, whose marks expire by
  design, it is counted as verified from the archive alone instead).

The first divergence of each partition is reported with its side: `archive` (the archive
disagrees with itself or with the log) or `log` (the log lacks a record the archive holds).
Starting at `from_offset` > 0 trusts the stored hash of the archived row just below it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from backbone.errors import coordinates
from backbone.kafka.reader import LogReader, ReadRange, Record
from backbone.settings import Settings
from projections.audit import archive_head, as_bytes
from projections.audit_chain import GENESIS, link_hash

TP = tuple[str, int]
#: (timestamp ms, key, value) of a record
Fields = tuple[int, bytes | None, bytes | None]
_FIELD_NAMES = ("timestamp", "key", "value")


@dataclass(frozen=True, slots=True)
class Divergence:
    topic: str
    partition: int
    offset: int
    side: str  # "archive" | "log"
    what: str

    def __str__(self) -> str:
        return f"{coordinates(self.topic, self.partition, self.offset)}: {self.side}: {self.what}"


@dataclass(frozen=True, slots=True)
class Row:
    """An archived row as the chain sees it."""

    offset: int
    fields: Fields
    hash: bytes


@dataclass
class PartitionReport:
    topic: str
    partition: int
    from_offset: int
    head_offset: int | None = None  # the last archived row's offset and chain hash (None: nothing archived)
    head_hash: bytes | None = None
    checked: int = 0  # rows whose chain link was recomputed
    log_start: int = 0
    log_end: int = 0
    archive_only: int = 0  # marks the log no longer holds, verified from the archive alone
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (first, last) deleted before archived
    divergence: Divergence | None = None

    def as_json(self) -> dict[str, Any]:
        d = self.divergence
        return {"topic": self.topic, "partition": self.partition, "from_offset": self.from_offset,
                "head_offset": self.head_offset, "head_hash": None if self.head_hash is None else self.head_hash.hex(),
                "checked": self.checked, "log_start": self.log_start, "log_end": self.log_end,
                "archive_only": self.archive_only,
                "gaps": [{"first_offset": a, "last_offset": b} for a, b in self.gaps],
                "ok": d is None,
                "divergence": None if d is None else {"offset": d.offset, "side": d.side, "what": d.what}}


class ChainWalk:
    """One partition's walk, offset by offset (pure): `step` returns the first divergence."""

    def __init__(self, report: PartitionReport, previous: bytes, expiring: bool) -> None:
        self.report, self.previous, self.expiring = report, previous, expiring
        self.next = report.from_offset

    def _diverged(self, side: str, what: str) -> Divergence:
        r = self.report
        r.divergence = Divergence(r.topic, r.partition, self.next, side, what)
        return r.divergence

    def step(self, row: Row | None, record: Fields | None, *, in_gap: bool = False) -> Divergence | None:
        """The archive's row and the log's record at offset `self.next` (None: there is none)."""
        r = self.report
        if in_gap:
            if record is not None:
                return self._diverged("archive", "recorded in audit_gaps as deleted before it was archived, yet "
                                                 "the log holds the record")
            if row is not None:
                return self._diverged("archive", "archived and recorded in audit_gaps at once")
            self.next += 1
            return None
        if row is None:
            held = "; the log holds the record" if record is not None else ""
            return self._diverged("archive", f"no archived row at this offset (deleted from the archive){held}")
        expected = link_hash(self.previous, r.topic, r.partition, self.next, *row.fields)
        differ = [] if record is None else [n for n, a, b in zip(_FIELD_NAMES, row.fields, record, strict=True)
                                            if a != b]
        if expected != row.hash:
            if differ:
                what = (f"the row's {', '.join(differ)} differ from the log's and its hash does not match its fields "
                        "(row altered or moved from another offset)")
            elif record is not None:
                what = "the row's hash does not match its fields, which equal the log's (hash altered)"
            else:
                what = "the row's hash does not match its fields (row altered; the log no longer holds the record)"
            return self._diverged("archive", what)
        if differ:
            return self._diverged("archive", f"the row's {', '.join(differ)} differ from the log's though the chain "
                                             "links them: the archive was rewritten and its chain recomputed")
        if record is None:
            if not self.expiring:
                return self._diverged("log", f"the record is missing from the log (it holds offsets "
                                             f"{r.log_start}..{r.log_end - 1}): deleted after it was archived")
            r.archive_only += 1
        self.previous = row.hash
        r.checked += 1
        self.next += 1
        return None


class _Found(Exception):
    """Ends a partition's read at its first divergence."""


def verify_partition(conn: psycopg.Connection, reader: LogReader, tp: TP, *, from_offset: int, expiring: bool,
                     bounds: tuple[int, int], progress: Callable[[int], None] = lambda n: None) -> PartitionReport:
    """Walk one partition's archive and log (see the module docstring)."""
    topic, partition = tp
    report = PartitionReport(topic, partition, from_offset, log_start=bounds[0], log_end=bounds[1])
    head = archive_head(conn, tp)
    if head is not None:
        report.head_offset, report.head_hash = head
    report.gaps = [(a, b) for a, b in conn.execute(
        "select first_offset, last_offset from audit_gaps where topic = %s and kafka_partition = %s "
        "order by first_offset", tp)]
    end = max([-1 if head is None else head[0], *(b for _a, b in report.gaps)]) + 1
    below = conn.execute("select chain_hash from audit_records where topic = %s and kafka_partition = %s "
                         "and kafka_offset < %s order by kafka_offset desc limit 1", (*tp, from_offset)).fetchone()
    walk = ChainWalk(report, GENESIS if below is None else bytes(below[0]), expiring)
    gaps = iter(report.gaps)
    gap = next(gaps, None)

    with conn.cursor(name=f"audit_verify_{partition}") as cur:
        cur.itersize = 5000
        cur.execute("select kafka_offset, kafka_timestamp_ms, record_key, record_value, chain_hash from audit_records "
                    "where topic = %s and kafka_partition = %s and kafka_offset >= %s order by kafka_offset",
                    (*tp, from_offset))
        rows: Iterator[Row] = (Row(o, (ts, as_bytes(k), as_bytes(v)), bytes(h)) for o, ts, k, v, h in cur)
        pending = next(rows, None)

        def step(record: Fields | None) -> None:
            nonlocal pending, gap
            at = walk.next
            while gap is not None and gap[1] < at:
                gap = next(gaps, None)
            row = None
            if pending is not None and pending.offset == at:
                row, pending = pending, next(rows, None)
            if walk.step(row, record, in_gap=gap is not None and gap[0] <= at) is not None:
                raise _Found
            if walk.next % 10_000 == 0:
                progress(report.checked)

        def on_record(msg: Record, _tp: TP, offset: int) -> None:
            while walk.next < offset:
                step(None)  # an offset the log skipped: nothing to compare with
            step((msg.timestamp()[1], msg.key(), msg.value()))

        try:
            reader.read({tp: ReadRange(max(from_offset, bounds[0]), min(bounds[1], end))}, on_record,
                        on_gone=lambda _tp, _at, limit: limit)  # deleted while read: missing, as below the start
            while walk.next < end:
                step(None)
        except _Found:
            pass
    progress(report.checked)
    return report


def verify(settings: Settings, conn: psycopg.Connection, *, partition: int | None = None, from_offset: int = 0,
           progress: Callable[[TP, int], None] = lambda tp, n: None,
           select: Callable[[TP], bool] = lambda tp: True) -> list[PartitionReport]:
    """Every partition of both topics (or partition `partition` of each; only those `select`
    keeps), in one snapshot of the archive (the caller's REPEATABLE READ transaction)."""
    conn.execute("select 1")  # the archive's snapshot first: the log's ends, read after it, cover every row
    with LogReader(settings) as reader:
        tps = [(topic, p) for topic in (settings.topic_orders, settings.topic_marketdata)
               for p in reader.partitions(topic) if (partition is None or p == partition) and select((topic, p))]
        bounds = reader.watermarks(tps)
        return [verify_partition(conn, reader, tp, from_offset=from_offset,
                                 expiring=tp[0] == settings.topic_marketdata, bounds=bounds[tp],
                                 progress=functools.partial(progress, tp))
                for tp in tps]

