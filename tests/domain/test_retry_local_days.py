"""Whole-day retry intervals follow the subscription's local days across DST; others are elapsed hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from billing.domain.grace import GracePolicy, on_renewal_failed, on_retry_failed, retry_after, timeline

ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Pacific/Chatham", "America/Santiago"]
# Instants around every DST change of 2026-2027 in those zones, and plain days between.
instants = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


def _wall(instant: datetime, tz: str) -> datetime:
    return instant.astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def _exists(wall: datetime, tz: str) -> bool:
    zone = ZoneInfo(tz)
    return wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


@given(failed_at=instants, tz=st.sampled_from(ZONES), days=st.integers(1, 3))
def test_whole_days_keep_the_local_time_on_later_local_days(failed_at: datetime, tz: str, days: int) -> None:
    retry = retry_after(failed_at, timedelta(days=days), tz)
    before, after = _wall(failed_at, tz), _wall(retry, tz)
    assert after.date() == before.date() + timedelta(days=days) or not _exists(
        before + timedelta(days=days), tz
    )
    if _exists(before + timedelta(days=days), tz):
        assert after == before + timedelta(days=days)
    else:  # skipped by a DST gap: the first instant after it, never earlier than the wall time
        assert after > before + timedelta(days=days) - timedelta(hours=1)
        assert retry > failed_at


@given(failed_at=instants, tz=st.sampled_from(ZONES), hours=st.sampled_from([0.5, 6, 12, 25, 36]))
def test_other_intervals_are_elapsed_hours(failed_at: datetime, tz: str, hours: float) -> None:
    assert retry_after(failed_at, timedelta(hours=hours), tz) == failed_at + timedelta(hours=hours)


@given(first=instants, tz=st.sampled_from(ZONES), attempts=st.integers(2, 6))
def test_daily_retries_never_fall_twice_on_one_local_date(first: datetime, tz: str, attempts: int) -> None:
    steps = timeline(GracePolicy(attempts=attempts, interval_hours=24), first, tz)
    tries = [step.at for step in steps[:attempts]]
    local_dates = [_wall(at, tz).date() for at in tries]
    assert len(set(local_dates)) == attempts
    assert local_dates == [local_dates[0] + timedelta(days=n) for n in range(attempts)]


def test_the_state_machine_schedules_daily_retries_on_local_days_across_the_november_change() -> None:
    tz = "America/New_York"
    # 09:00 EDT on Saturday Oct 31, 2026; clocks go back at 02:00 on Sunday Nov 1.
    failed = datetime(2026, 10, 31, 13, 0, tzinfo=UTC)
    policy = GracePolicy(attempts=3, interval_hours=24)
    first = on_renewal_failed(failed, policy, hard=False, tz=tz)
    assert first.episode is not None
    assert first.episode.next_attempt_at is not None
    # 09:00 EST on Nov 1 is 14:00 UTC: 25 elapsed hours, one local day.
    assert first.episode.next_attempt_at == datetime(2026, 11, 1, 14, 0, tzinfo=UTC)
    second = on_retry_failed(first.episode, first.episode.next_attempt_at, hard=False, tz=tz)
    assert second.episode is not None
    assert _wall(second.episode.next_attempt_at, tz) == datetime(2026, 11, 2, 9, 0)  # type: ignore[arg-type]


def test_elapsed_24_h_would_retry_twice_on_the_25_hour_day() -> None:
    tz = "America/New_York"
    failed = datetime(2026, 11, 1, 4, 30, tzinfo=UTC)  # 00:30 EDT on Nov 1, a 25-hour day
    assert _wall(failed + timedelta(hours=24), tz) == datetime(2026, 11, 1, 23, 30)  # the same local date
    decision = on_renewal_failed(failed, GracePolicy(attempts=2, interval_hours=24), hard=False, tz=tz)
    assert decision.episode is not None
    assert decision.episode.next_attempt_at is not None
    assert _wall(decision.episode.next_attempt_at, tz) == datetime(2026, 11, 2, 0, 30)
