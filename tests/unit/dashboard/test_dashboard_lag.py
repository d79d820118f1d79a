"""The page's lag table, on hand-made verdicts: `backbone lag`'s per-group figures (worst
partition), written as its table writes them, and the partitions that lag."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from backbone.errors import ConfigError
from backbone.settings import Settings
from dashboard import lag, page
from monitoring.model import GroupVerdict, Status, Verdict

T = datetime(2024, 1, 2, 9, 0, tzinfo=UTC)


def verdict(partition: int, lag_records: int | None, lag_seconds: str | None, status: Status = Status.OK,
            reason: str = "") -> Verdict:
    return Verdict(group="backbone-trading-o+m", source="postgres", topic="orders", partition=partition,
                   status=status, reason=reason, lag_records=lag_records,
                   lag_seconds=None if lag_seconds is None else Decimal(lag_seconds), rate=None)


def reading(*groups: GroupVerdict, problems: tuple[str, ...] = ()) -> lag.LagReading:
    return lag.LagReading(at=T, groups=groups, problems=problems, took_s=0.01)


def cells(html: str, column: str) -> list[str]:
    return re.findall(rf'data-column="{column}">([^<]*)</td>', html)


def test_each_group_shows_its_worst_partition_in_records_and_seconds() -> None:
    parts = (verdict(0, 0, "0"), verdict(1, 12345, "1234.5678915", Status.STALL, "offset unchanged"),
             verdict(2, 7, "3.25", Status.WARN, "lag grew"))
    worst = GroupVerdict(group="backbone-trading-o+m", source="postgres", topic="orders", status=Status.STALL,
                         lag_records=12345, lag_seconds=Decimal("1234.5678915"), partitions=parts)
    mirror = GroupVerdict(group="dash", source="kafka", topic="orders", status=Status.OK, lag_records=0,
                          lag_seconds=Decimal(0), partitions=(verdict(0, 0, "0"),))
    html = page.table(lag.rows(reading(worst, mirror)), page.LAG, name="lag")
    assert cells(html, "group") == ["backbone-trading-o+m", "dash"]
    assert cells(html, "source") == ["postgres (authoritative)", "kafka"]
    assert cells(html, "lag_records") == ["12,345", "0"]
    assert cells(html, "lag_seconds") == ["1,234.568", "0.000"]  # to the millisecond, as `backbone lag` writes
    assert cells(html, "lagging") == ["2", "0"]
    assert cells(html, "status") == ["STALL", "OK"]
    assert cells(html, "reason") == ["offset unchanged", ""]
    assert '<td class="num" data-column="lag_records">12,345</td>' in html  # numbers right-aligned


def test_a_partition_that_cannot_be_judged_leaves_its_lag_blank() -> None:
    gone = GroupVerdict(group="g", source="kafka", topic="orders", status=Status.ERR, lag_records=None,
                        lag_seconds=None, partitions=(verdict(0, None, None, Status.ERR, "Kafka: all brokers down"),))
    html = page.table(lag.rows(reading(gone, problems=("Kafka: all brokers down",))), page.LAG, name="lag")
    assert cells(html, "lag_records") == [""] and cells(html, "lag_seconds") == [""]
    assert cells(html, "reason") == ["Kafka: all brokers down"]


def test_no_group_no_rows() -> None:
    assert lag.rows(reading()) == []
    assert "none</td>" in page.table([], page.LAG, name="lag")


def test_the_board_refuses_to_sample_without_the_reader_login() -> None:
    # an empty reader URL would leave the sampler on the application's login, which may write
    with pytest.raises(ConfigError, match="read-only role only"):
        lag.LagBoard(Settings().with_overrides(reader_database_url=""), 1.0)
