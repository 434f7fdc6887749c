"""Request and response bodies of the sandbox clock."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from api.schemas.wire import Number, OutModel, Text, WireModel
from billing.domain.errors import BillingError
from billing.services.sandbox_clock import MAX_JUMP, SandboxClock

MAX_ADVANCE_SECONDS = int(MAX_JUMP.total_seconds())


class AdvanceClockIn(WireModel):
    """Exactly one of `to` (an ISO-8601 instant with an offset) and `advanceSeconds` (7000 otherwise)."""

    to: Text | None = Field(
        None,
        description="An ISO-8601 instant with an offset, later than the client's now.",
        examples=["2026-03-01T00:00:00Z"],
        json_schema_extra={"format": "date-time"},
    )
    advance_seconds: Number | None = Field(
        None,
        gt=0,
        le=MAX_ADVANCE_SECONDS,
        description="Seconds to move forward: more than 0, at most 3660 days.",
        examples=[86400],
    )

    def target(self) -> datetime | None:
        """`to` as an aware datetime (7000 naming `to` when it is not ISO-8601)."""
        if self.to is None:
            return None
        try:
            return datetime.fromisoformat(self.to)
        except ValueError as exc:
            raise BillingError(
                "CHECK_PARAMETERS", message="`to` must be an ISO-8601 date-time with an offset.", field="to"
            ) from exc

    def seconds(self) -> float | None:
        return None if self.advance_seconds is None else float(self.advance_seconds)


class RanOut(OutModel):
    """What the jump ran for this client."""

    renewed: int
    payment_failed: int
    retries_failed: int
    recovered: int
    inactive: int
    expired: int
    unknown: int


class ClockOut(OutModel):
    """The client's sandbox clock."""

    now: datetime
    offset_seconds: int
    ran: RanOut | None = None


def clock_out(clock: SandboxClock) -> ClockOut:
    ran = None
    if clock.ran is not None:
        s = clock.ran
        ran = RanOut(
            renewed=s.renewed,
            payment_failed=s.payment_failed,
            retries_failed=s.retries_failed,
            recovered=s.recovered,
            inactive=s.inactive,
            expired=s.expired,
            unknown=s.unknown,
        )
    return ClockOut(now=clock.now, offset_seconds=clock.offset_seconds, ran=ran)
