"""When a captured charge settles (SPEC §7, Migo's FAQ "When do I receive funds?").

A charge captured before 23:30 UTC settles on the next business day; one captured at 23:30 UTC or
later settles on the business day after that. Business days skip Saturdays, Sundays and the public
holidays of one country's calendar (the `holidays` package; setting `settlement.country`, default
`GT`). The rule is a pure function of the capture instant and the country.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache

import holidays

CUTOFF = time(23, 30)
"""Captures at or after this UTC time of day count as captured the next day."""

DEFAULT_COUNTRY = "GT"


def known_country(country: str) -> bool:
    """Whether the holidays calendar has `country` (ISO 3166 alpha-2)."""
    return country in holidays.list_supported_countries()


@lru_cache(maxsize=8)
def _calendar(country: str) -> holidays.HolidayBase:
    return holidays.country_holidays(country)


def is_business_day(day: date, country: str = DEFAULT_COUNTRY) -> bool:
    """Monday to Friday and not a public holiday of `country`."""
    return day.weekday() < 5 and day not in _calendar(country)


def next_business_day(day: date, country: str = DEFAULT_COUNTRY) -> date:
    """The first business day strictly after `day`."""
    day += timedelta(days=1)
    while not is_business_day(day, country):
        day += timedelta(days=1)
    return day


def expected_settlement_date(captured_at: datetime, country: str = DEFAULT_COUNTRY) -> date:
    """The business day a charge captured at `captured_at` (aware) settles on."""
    utc = captured_at.astimezone(UTC)
    return _settlement_day(utc.date(), utc.time() >= CUTOFF, country)


@lru_cache(maxsize=256)
def _settlement_day(captured_on: date, after_cutoff: bool, country: str) -> date:
    day = next_business_day(captured_on, country)
    return next_business_day(day, country) if after_cutoff else day
