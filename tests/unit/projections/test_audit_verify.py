"""The chain walk of `backbone audit verify` (projections.audit_verify.ChainWalk), record by
record, without services: which divergence it reports, at which offset, on which side."""

from __future__ import annotations

import pytest

from projections.audit_chain import GENESIS, link_hash
from projections.audit_verify import ChainWalk, Fields, PartitionReport, Row

LOG: list[Fields] = [(1000 + n, b"AAPL", f"value {n}".encode()) for n in range(6)]


def _archive(records: list[Fields]) -> list[Row]:
    rows, previous = [], GENESIS
    for offset, fields in enumerate(records):
        previous = link_hash(previous, "orders", 3, offset, *fields)
        rows.append(Row(offset, fields, previous))
    return rows


def _walk(rows: list[Row | None], log: list[Fields | None], *, expiring: bool = False) -> PartitionReport:
    report = PartitionReport("orders", 3, 0, log_start=0, log_end=len(log))
    walk = ChainWalk(report, GENESIS, expiring)
    for row, record in zip(rows, log, strict=True):
        if walk.step(row, record) is not None:
            break
    return report


def test_an_untouched_archive_verifies() -> None:
    report = _walk(list(_archive(LOG)), list(LOG))
    assert report.divergence is None and report.checked == len(LOG)


@pytest.mark.parametrize(("tamper", "offset", "what"), [
    ("altered", 2, "the row's value differ from the log's"),
    ("deleted", 2, "no archived row"),
    ("reordered", 2, "timestamp, value differ"),
    ("hash", 2, "hash altered"),
])
def test_tampering_is_found_on_the_archive_side_at_its_offset(tamper: str, offset: int, what: str) -> None:
    rows: list[Row | None] = list(_archive(LOG))
    if tamper == "altered":
        row = rows[2]
        assert row is not None
        rows[2] = Row(2, (row.fields[0], row.fields[1], b"forged"), row.hash)
    elif tamper == "deleted":
        rows[2] = None
    elif tamper == "reordered":
        a, b = rows[2], rows[4]
        assert a is not None and b is not None
        rows[2], rows[4] = Row(2, b.fields, b.hash), Row(4, a.fields, a.hash)
    else:
        row = rows[2]
        assert row is not None
        rows[2] = Row(2, row.fields, bytes(32))
    d = _walk(rows, list(LOG)).divergence
    assert d is not None and (d.offset, d.side) == (offset, "archive") and what in d.what, d


def test_a_rewritten_archive_with_a_recomputed_chain_differs_from_the_log() -> None:
    forged = list(LOG)
    forged[3] = (forged[3][0], forged[3][1], b"forged")
    d = _walk(list(_archive(forged)), list(LOG)).divergence
    assert d is not None and (d.offset, d.side) == (3, "archive") and "chain recomputed" in d.what


def test_a_record_missing_from_the_log_is_reported_unless_it_may_expire() -> None:
    log: list[Fields | None] = [None, None, *LOG[2:]]
    d = _walk(list(_archive(LOG)), log).divergence
    assert d is not None and (d.offset, d.side) == (0, "log")
    report = _walk(list(_archive(LOG)), log, expiring=True)
    assert report.divergence is None and report.archive_only == 2


def test_a_gap_holds_no_row_and_no_record() -> None:
    report = PartitionReport("marks", 3, 0)
    walk = ChainWalk(report, GENESIS, True)
    assert walk.step(None, None, in_gap=True) is None and walk.next == 1
    assert walk.step(None, LOG[1], in_gap=True) is not None
    assert report.divergence is not None and "audit_gaps" in report.divergence.what
