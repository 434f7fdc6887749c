"""The clock: every rule that needs "now" is handed one; only entry points build the system clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current aware-UTC time."""

    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time, aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetClock:
    """Another clock running a fixed number of seconds ahead: a sandbox client's clock.

    Every timestamp a merchant's request writes is read from the client's clock, so a sandbox
    client that moved its clock forward sees its own time in `createdAt`, `updatedAt` and events.
    """

    __slots__ = ("_base", "_offset")

    def __init__(self, base: Clock, offset_seconds: int) -> None:
        self._base = base
        self._offset = timedelta(seconds=offset_seconds)

    def now(self) -> datetime:
        return self._base.now() + self._offset
