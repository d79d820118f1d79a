"""The demo's session date: today when the whole session fits before now, else yesterday."""

from __future__ import annotations

from datetime import UTC, datetime

from cli.demo import demo_start


def test_the_session_is_today_when_it_ends_well_before_now() -> None:
    assert demo_start(datetime(2026, 12, 1, 8, 0, tzinfo=UTC), 100_000) == datetime(2026, 12, 1, tzinfo=UTC)


def test_the_session_moves_to_yesterday_when_it_would_not_have_ended() -> None:
    # 100k events at 2 ms apart last 200 s; at 00:30 that plus the hour of margin is not over.
    assert demo_start(datetime(2026, 12, 1, 0, 30, tzinfo=UTC), 100_000) == datetime(2026, 11, 30, tzinfo=UTC)
    # 10M events last about 5.6 hours
    assert demo_start(datetime(2026, 12, 1, 6, 0, tzinfo=UTC), 10_000_000) == datetime(2026, 11, 30, tzinfo=UTC)
    assert demo_start(datetime(2026, 12, 1, 7, 0, tzinfo=UTC), 10_000_000) == datetime(2026, 12, 1, tzinfo=UTC)
