"""The session date of `backbone simulate` without --start and of the demo: today when the whole
session fits before now, else yesterday; always young enough for the market-data retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from backbone.settings import Settings
from cli.produce import simulation_start
from producers.simulator import SimulationConfig, session_start

DEFAULT_RETENTION = timedelta(milliseconds=Settings.model_fields["marketdata_retention_ms"].default)


def test_the_session_is_today_when_it_ends_well_before_now() -> None:
    assert session_start(datetime(2026, 12, 1, 8, 0, tzinfo=UTC), 100_000) == datetime(2026, 12, 1, tzinfo=UTC)


def test_the_session_moves_to_yesterday_when_it_would_not_have_ended() -> None:
    # 100k events at 2 ms apart last 200 s; at 00:30 that plus the hour of margin is not over.
    assert session_start(datetime(2026, 12, 1, 0, 30, tzinfo=UTC), 100_000) == datetime(2026, 11, 30, tzinfo=UTC)
    # 10M events last about 5.6 hours
    assert session_start(datetime(2026, 12, 1, 6, 0, tzinfo=UTC), 10_000_000) == datetime(2026, 11, 30, tzinfo=UTC)
    assert session_start(datetime(2026, 12, 1, 7, 0, tzinfo=UTC), 10_000_000) == datetime(2026, 12, 1, tzinfo=UTC)


@given(now=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)),
       events=st.integers(1, 100_000_000))
def test_the_default_start_is_inside_the_default_retention_and_the_session_over(now: datetime, events: int) -> None:
    start = simulation_start(None, events, now)
    assert start == session_start(now, events)
    assert now - start < DEFAULT_RETENTION  # the broker keeps the first mark
    assert start + timedelta(microseconds=events * SimulationConfig.mean_gap_us) <= now - timedelta(hours=1)


def test_an_explicit_start_is_kept() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert simulation_start("2026-11-20T09:30:00.5-05:00", 10, now) == datetime(2026, 11, 20, 14, 30, 0, 500000,
                                                                                  tzinfo=UTC)
    assert simulation_start("2026-11-20T00:00Z", 10, now) == datetime(2026, 11, 20, tzinfo=UTC)
