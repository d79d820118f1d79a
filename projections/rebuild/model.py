"""What a rebuild is asked (`RebuildOptions`), what it reports (`RebuildResult`), its errors."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import make_url

from backbone.errors import BackboneError
from backbone.settings import Settings
from projections import ddl
from projections.trading import NAME as TRADING

TP = tuple[str, int]
PROJECTIONS = (TRADING,)
TABLES = ddl.TABLES  # orders, executions, positions, marks
APPLICATION_NAME = "backbone rebuild"
SHADOW_PATTERN = re.compile(r"^rebuild_\d{14}$")
NO_PROGRESS_S = 60.0
LETTER_COLS = "source_topic, source_partition, source_offset, reason, detail, record_key, payload"


class RebuildError(BackboneError):
    """The rebuild could not finish; nothing was swapped unless the message says otherwise."""


class Interrupted(RebuildError):
    """Stop requested (SIGTERM/SIGINT) before the swap."""


class Retry(Exception):
    """A swap attempt lost a lock race; it rolled back completely and may be tried again."""


@dataclass(frozen=True)
class RebuildOptions:
    batch_size: int = 5000
    keep_old: bool = False
    checksum: bool = True
    lock_timeout_s: float = 0.2  # per attempt to lock out readers (capped at deadlock_timeout / 2)
    freeze_timeout_s: float = 5.0  # per attempt to pause the live projector's writes
    swap_timeout_s: float = 120.0  # all attempts at the swap together
    reader_wait_s: float = 60.0  # how long to wait for transactions older than the shadow
    max_passes: int = 50
    from_snapshot: bool = False  # seed the shadow with the live projection's newest snapshots


@dataclass(frozen=True)
class TableChecksum:
    rows: int
    checksum: str


@dataclass(frozen=True)
class TableComparison:
    table: str
    old: TableChecksum
    new: TableChecksum

    @property
    def match(self) -> bool:
        return self.old == self.new


@dataclass
class RebuildResult:
    projection: str
    shadow_schema: str
    old_schema: str
    old_schema_kept: bool = False
    events: int = 0
    dead_letters: int = 0
    passes: int = 0
    swap_attempts: int = 0
    reader_lock_attempts: int = 0  # tries at locking out readers, all swap attempts together
    old_offsets: dict[TP, int] = field(default_factory=dict)  # the live checkpoints when frozen
    compared_offsets: dict[TP, int | None] = field(default_factory=dict)  # the shadow's at the comparison
    new_offsets: dict[TP, int] = field(default_factory=dict)  # the checkpoints swapped in
    comparison: list[TableComparison] | None = None
    differing_partitions: list[TP] = field(default_factory=list)
    generation: int | None = None  # of the checkpoints swapped in (fences running projectors)
    newly_refused: int = 0
    no_longer_refused: int = 0
    older_transactions_ignored: list[int] = field(default_factory=list)
    seeded_offsets: dict[TP, int] = field(default_factory=dict)  # --from-snapshot: where the shadow started
    warnings: list[str] = field(default_factory=list)
    seconds_total: float = 0.0
    seconds_live_paused: float = 0.0
    seconds_readers_blocked: float = 0.0

    @property
    def comparable(self) -> bool:
        """Old and new were checksummed at the same offsets in every partition."""
        return self.comparison is not None and all(
            self.compared_offsets.get(tp) == self.old_offsets.get(tp)
            for tp in set(self.compared_offsets) | set(self.old_offsets))

    @property
    def identical(self) -> bool | None:
        if self.comparison is None or not self.comparable:
            return None
        return all(c.match for c in self.comparison)

    def as_json(self) -> dict[str, Any]:
        def tp_name(tp: TP) -> str:
            return f"{tp[0]}[{tp[1]}]"

        return {
            "projection": self.projection,
            "shadow_schema": self.shadow_schema,
            "old_schema": self.old_schema,
            "old_schema_kept": self.old_schema_kept,
            "events": self.events,
            "dead_letters": self.dead_letters,
            "passes": self.passes,
            "swap_attempts": self.swap_attempts,
            "reader_lock_attempts": self.reader_lock_attempts,
            "seeded_from_snapshots": {tp_name(tp): o for tp, o in sorted(self.seeded_offsets.items())},
            "old_offsets": {tp_name(tp): o for tp, o in sorted(self.old_offsets.items())},
            "new_offsets": {tp_name(tp): o for tp, o in sorted(self.new_offsets.items())},
            "compared_at_same_offsets": self.comparable,
            "identical": self.identical,
            "tables": None if self.comparison is None else [
                {"table": c.table, "old": {"rows": c.old.rows, "checksum": c.old.checksum},
                 "new": {"rows": c.new.rows, "checksum": c.new.checksum}, "match": c.match}
                for c in self.comparison],
            "differing_partitions": [tp_name(tp) for tp in self.differing_partitions],
            "generation": self.generation,
            "dead_letters_newly_refused": self.newly_refused,
            "dead_letters_no_longer_refused": self.no_longer_refused,
            "older_transactions_ignored": self.older_transactions_ignored,
            "warnings": self.warnings,
            "seconds": {"total": round(self.seconds_total, 3), "live_paused": round(self.seconds_live_paused, 3),
                        "readers_blocked": round(self.seconds_readers_blocked, 3)},
        }


Event = Callable[[str, dict[str, Any]], None]



def psycopg_url(settings: Settings) -> str:
    return make_url(settings.database_url_value).set(drivername="postgresql").render_as_string(hide_password=False)


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def tp_names(tps: Iterable[TP]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in tps)
