"""`backbone audit export`: the evidence pack of one order, or of one account over a time window,
read from the audit archive (docs/audit.md#export).

In one snapshot of the archive (the caller's REPEATABLE READ transaction):

1. the records asked for: every archived record of the order (refused ones included), or every
   record of the account whose event time lies in [from, to], to the microsecond; then the marks
   of the symbols involved over the time covered, with the last mark before it;
2. the partitions searched (every orders partition, the marketdata partitions the marks come
   from) verified like `backbone audit verify` (archive chain and log): a divergence refuses
   the export, so a pack is only ever written against chain heads that held;
3. the pack, written to a fresh directory that appears whole or not at all:
   `events.jsonl` (one object per record: coordinates, chain link, verdict, bytes, and the
   decoded record in the canonical JSON form), `events.csv` (the same, one column per field),
   `report.html` (`projections.audit_report`) and `manifest.json` (the query, the chain heads,
   each file's SHA-256, versions, when).
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psycopg

from backbone.codec import json_form
from backbone.codec.avro import AvroCodec
from backbone.codec.schemas import default_schemas_dir, read_schemas_dir
from backbone.csv_cells import cell
from backbone.domain.events import MarketMark, OrderEvent
from backbone.errors import BackboneError, DecodeError, UsageError
from backbone.settings import Settings
from projections.audit import as_bytes
from projections.audit_report import Entry, Head, render
from projections.audit_verify import PartitionReport, verify

FORMAT = "backbone-audit-export/1"
FILES = ("events.jsonl", "events.csv", "report.html")
CHECK = ("backbone audit verify of each partition searched, from offset 0 to its head: every row's chain link "
         "recomputed from the archive, and its timestamp, key and value compared with the log")
_COLS = ("topic, kafka_partition, kafka_offset, kafka_timestamp_ms, record_key, record_value, chain_hash, "
         "status_after, dead_letter_reason, dead_letter_detail")
_COORDINATES = ("topic", "partition", "offset", "timestamp_ms", "chain_hash", "status_after", "dead_letter_reason",
                "dead_letter_detail")
#: the CSV's record columns: every field of both record types, in declaration order, once
_FIELDS = tuple(dict.fromkeys(f.name for cls in (OrderEvent, MarketMark) for f in dataclasses.fields(cls)))


class ExportRefused(BackboneError):
    """No pack: the order is unknown, or the archive does not verify."""


@dataclass(frozen=True, slots=True)
class ExportQuery:
    """One order by id, or one account over [from_time, to_time] by event time."""

    order_id: str | None = None
    account: str | None = None
    from_time: datetime | None = None
    to_time: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        if self.order_id is not None:
            return {"order_id": self.order_id}
        assert self.from_time is not None and self.to_time is not None
        return {"account": self.account, "from": json_form.format_datetime(self.from_time),
                "to": json_form.format_datetime(self.to_time)}

    def title(self) -> str:
        if self.order_id is not None:
            return f"Order {self.order_id}"
        return f"Account {self.account}"


@dataclass(frozen=True, slots=True)
class Evidence:
    query: ExportQuery
    entries: list[Entry]
    reports: list[PartitionReport]
    created_at: datetime


def _entry(codec: AvroCodec, row: tuple[Any, ...]) -> Entry:
    topic, partition, offset, ts, key, value, chain, status, reason, detail = row
    value = as_bytes(value)
    record: OrderEvent | MarketMark | None = None
    error = None
    if value is None:
        error = "no value (a tombstone)"
    else:
        try:
            decoded = codec.decode(value)
            if isinstance(decoded, (OrderEvent, MarketMark)):
                record = decoded
            else:
                error = f"a {type(decoded).__name__}, not an order event or a mark"
        except DecodeError as e:
            error = str(e)
    return Entry(topic, partition, offset, ts, as_bytes(key), value, bytes(chain), status, reason, detail,
                 record, error)


def _select(conn: psycopg.Connection, where: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(f"select {_COLS} from audit_records where {where}", params).fetchall()


def _records(conn: psycopg.Connection, settings: Settings, query: ExportQuery) -> list[tuple[Any, ...]]:
    if query.order_id is not None:
        return _select(conn, "topic = %s and order_id = %s order by kafka_partition, kafka_offset",
                       (settings.topic_orders, query.order_id))
    return _select(conn, "topic = %s and account = %s and event_time between %s and %s "
                         "order by event_time, kafka_partition, kafka_offset",
                   (settings.topic_orders, query.account, query.from_time, query.to_time))


def _marks(conn: psycopg.Connection, settings: Settings, symbols: Iterable[str], start: datetime,
           end: datetime) -> list[tuple[Any, ...]]:
    """Each symbol's marks over [start, end], and its last mark before start (the market the
    first event met)."""
    out: list[tuple[Any, ...]] = []
    for symbol in sorted(symbols):
        out += _select(conn, "topic = %s and symbol = %s and event_time < %s "
                             "order by event_time desc, kafka_offset desc limit 1",
                       (settings.topic_marketdata, symbol, start))
        out += _select(conn, "topic = %s and symbol = %s and event_time between %s and %s "
                             "order by event_time, kafka_partition, kafka_offset",
                       (settings.topic_marketdata, symbol, start, end))
    return out


def collect(settings: Settings, conn: psycopg.Connection, query: ExportQuery, now: datetime,
            codec: AvroCodec | None = None) -> Evidence:
    """The records of `query` and the verified heads of the partitions searched (see the module
    docstring, steps 1 and 2). `conn` holds one REPEATABLE READ transaction."""
    codec = codec or AvroCodec()
    events = [_entry(codec, row) for row in _records(conn, settings, query)]
    if query.order_id is not None and not events:
        raise ExportRefused(f"no archived record has order id {query.order_id!r}")
    symbols = {e.record.symbol for e in events if e.record is not None}
    if query.order_id is not None:
        start, end = min(e.when for e in events), max(e.when for e in events)
    else:
        assert query.from_time is not None and query.to_time is not None
        start, end = query.from_time, query.to_time
    marks = [_entry(codec, row) for row in _marks(conn, settings, symbols, start, end)] if symbols else []
    searched = {(m.topic, m.partition) for m in marks}
    reports = verify(settings, conn, select=lambda tp: tp[0] == settings.topic_orders or tp in searched)
    diverged = [r.divergence for r in reports if r.divergence is not None]
    if diverged:
        raise ExportRefused(f"the archive does not verify, nothing exported: {diverged[0]}"
                            + (f" (and {len(diverged) - 1} more partitions)" if len(diverged) > 1 else "")
                            + "; run `backbone audit verify`")
    return Evidence(query, sorted(events + marks, key=Entry.sort_key), reports, now)


# == the files =====================================================================================

def _coordinates(e: Entry) -> dict[str, Any]:
    return {"topic": e.topic, "partition": e.partition, "offset": e.offset, "timestamp_ms": e.timestamp_ms,
            "chain_hash": e.chain_hash.hex(), "status_after": e.status_after,
            "dead_letter_reason": e.dead_letter_reason, "dead_letter_detail": e.dead_letter_detail}


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def jsonl_line(e: Entry) -> str:
    """One record: coordinates, chain link, verdict, its bytes (base64), and `record`, the
    canonical JSON form's own text (`json_form.dumps`) or null with `decode_error`."""
    head = {**_coordinates(e), "key_base64": _b64(e.key), "value_base64": _b64(e.value),
            "decode_error": e.decode_error}
    # ASCII escapes keep a detail's line breaks from splitting the line; `record` is embedded as
    # json_form writes it, so it compares as text with any other canonical output
    text = json.dumps(head, ensure_ascii=True, separators=(",", ":"))
    record = "null" if e.record is None else json_form.dumps(e.record)
    return f'{text[:-1]},"record":{record}}}'


def _csv(entries: Sequence[Entry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*_COORDINATES, "decode_error", "type", *_FIELDS])
    for e in entries:
        fields = {} if e.record is None else json_form.to_json_dict(e.record)
        coordinates = _coordinates(e)
        writer.writerow([cell(coordinates[c]) for c in _COORDINATES] + [cell(e.decode_error), cell(fields.get("type"))]
                        + [cell(fields.get(f)) for f in _FIELDS])
    return out.getvalue()


def heads(reports: Iterable[PartitionReport]) -> list[Head]:
    return [Head(r.topic, r.partition, r.head_offset, None if r.head_hash is None else r.head_hash.hex())
            for r in reports]


def _schemas() -> list[dict[str, Any]]:
    found, _problems = read_schemas_dir(default_schemas_dir())
    return [{"record": f.name, "file": f"{d}/v{f.version}.avsc", "fingerprint_crc64_avro": f.fingerprint.hex()}
            for d, files in sorted(found.items()) for f in files]


def _version() -> str:
    try:
        return version("trading-backbone")
    except PackageNotFoundError:
        return "unknown"


def contents(evidence: Evidence, settings: Settings) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Each file's bytes, and the manifest that names them (step 3)."""
    q, entries = evidence.query, evidence.entries
    described = [(k, str(v)) for k, v in q.as_json().items()]
    files = {
        "events.jsonl": "".join(jsonl_line(e) + "\n" for e in entries).encode("utf-8"),
        "events.csv": _csv(entries).encode("utf-8"),
        "report.html": render(q.title(), described, entries, heads(evidence.reports), CHECK,
                              evidence.created_at).encode("utf-8"),
    }
    manifest = {
        "format": FORMAT,
        "created_at": json_form.format_datetime(evidence.created_at),
        "backbone_version": _version(),
        "query": q.as_json(),
        "records": len(entries),
        "empty": not entries,
        "topics": {"orders": settings.topic_orders, "marketdata": settings.topic_marketdata},
        "verification": {"check": CHECK, "ok": True},
        "chain_heads": [{"topic": h.topic, "partition": h.partition, "head_offset": h.offset, "head_hash": h.hash_hex}
                        for h in heads(evidence.reports)],
        "schemas": _schemas(),
        "files": [{"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                  for name, data in files.items()],
    }
    return files, manifest


def check_out_dir(out: Path) -> None:
    """A pack goes to a new or empty directory: evidence is never mixed with or written over."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out}: exists and is not an empty directory")


def write(out: Path, files: dict[str, bytes], manifest: dict[str, Any]) -> None:
    """Every file in a directory beside `out`, then renamed to it: the pack appears whole."""
    check_out_dir(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as e:
        raise ExportRefused(f"cannot write the pack to {out}: {e.strerror or e}") from e
    try:
        for name, data in {**files, "manifest.json": (json.dumps(manifest, indent=2) + "\n").encode()}.items():
            (staging / name).write_bytes(data)
        staging.chmod(0o755)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.rename(staging, out)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, OSError):
            raise ExportRefused(f"cannot write the pack to {out}: {e.strerror or e}") from e
        raise
