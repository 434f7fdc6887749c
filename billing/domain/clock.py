"""The clock protocol: every rule that needs "now" is handed one."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current aware-UTC time."""

    def now(self) -> datetime: ...


class FixedClock:
    """A clock that only moves when told to (tests, the sandbox clock, simulations)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, instant: datetime) -> None:
        self._now = instant
