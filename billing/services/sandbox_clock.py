"""The sandbox clock: a sandbox client moves its own "now" forward to test its integration.

Advancing the clock from A to B runs, in order, everything that falls due for that client
between A and B — renewals, grace retries, grace deadlines, fixed-term expiries — each at the
instant it was due, exactly as a punctual worker would have in real time. Other clients
are not touched. The clock never moves back, and production clients cannot use it (7020).

Each step takes the earliest instant at which one of the client's subscriptions is due
(never earlier than the previous step, since handling one step can make more work due at
once, e.g. the catch-up renewal after a late recovery), runs the renewal pass for that
client with "now" set to that instant, and repeats until nothing is due by B. Only then is
the client's offset moved, so a worker running meanwhile keeps seeing the old now. The move
is a compare-and-set on the stored offset, so concurrent moves add up instead of overwriting
each other.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from billing.domain.errors import BillingError
from billing.services.notifications.expiring_cards import run_expiring_cards
from billing.services.renewals import RenewalPass, RenewalSummary
from billing.services.runtime import Runtime
from billing.store import claims
from billing.store.engine import transaction
from billing.store.sandbox_clock import ClientClock, client_clock, replace_offset

MAX_JUMP = timedelta(days=3660)
# A step whose every charge stayed `unknown` is retried after RECONCILE_AFTER; a processor that
# keeps not answering would make the jump loop forever, so it gives up after this many.
MAX_STEPS_WITHOUT_PROGRESS = 5
# How many times one move starts again because another move of the same clock came first.
MAX_CONCURRENT_RESTARTS = 50
_LEASED_POLL_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class SandboxClock:
    """A client's clock: its now and how far ahead of real time it runs."""

    now: datetime
    offset_seconds: int
    ran: RenewalSummary | None = None


async def _sandbox_client(runtime: Runtime, client_id: str) -> ClientClock:
    async with runtime.sessions() as session:
        found = await client_clock(session, client_id)
    if found is None:
        raise BillingError("CLIENT_NOT_FOUND")
    if found.environment != "sandbox":
        raise BillingError("SANDBOX_ONLY")
    return found


async def read_clock(runtime: Runtime, client_id: str) -> SandboxClock:
    """The sandbox client's now (7020 SANDBOX_ONLY for production clients)."""
    found = await _sandbox_client(runtime, client_id)
    now = runtime.clock.now() + timedelta(seconds=found.offset_seconds)
    return SandboxClock(now=now, offset_seconds=found.offset_seconds)


async def advance_clock(
    runtime: Runtime,
    client_id: str,
    *,
    to: datetime | None = None,
    advance_seconds: float | None = None,
    identity: str = "sandbox-clock",
) -> SandboxClock:
    """Move a sandbox client's clock to `to` (or by `advanceSeconds`), running what falls due on the way.

    Concurrent moves of one client's clock all count: the new offset is written only if the
    offset is still the one this move started from (one statement); when another move came
    first, this one starts again from the moved clock, so three concurrent `advanceSeconds: N`
    move the clock 3N, and what falls due is run at its own instant whichever move reaches it.

    Errors: 7020 production client, 7000 naming `to`/`advanceSeconds` (both or neither given,
    a naive or past instant, a negative or too long jump), 7019 when the processor keeps
    not answering (the steps already done stay done; the clock does not move) or when other
    moves of the same clock keep coming first.
    """
    found = await _sandbox_client(runtime, client_id)
    current = runtime.clock.now() + timedelta(seconds=found.offset_seconds)
    target = _target(current, to, advance_seconds)
    step = RenewalPass(runtime, f"{identity}:{client_id}")
    ran = RenewalSummary()
    for _ in range(MAX_CONCURRENT_RESTARTS):
        await _run_due(runtime, step, ran, client_id, start=current, target=target)
        # Card-expiry notices the client would have had by the target (at most one per card).
        await run_expiring_cards(runtime, identity, client_id=client_id, now_of=_always_at(target))
        if advance_seconds is not None:
            offset = found.offset_seconds + math.ceil(advance_seconds)
        else:
            offset = math.ceil((target - runtime.clock.now()).total_seconds())
        if offset <= found.offset_seconds:
            break  # real time already carried the clock past `to`
        async with transaction(runtime.sessions) as session:
            moved = await replace_offset(
                session, client_id, expected=found.offset_seconds, offset_seconds=offset
            )
        if moved:
            break
        found = await _sandbox_client(runtime, client_id)
        current = runtime.clock.now() + timedelta(seconds=found.offset_seconds)
        if advance_seconds is not None:
            target = _target(current, None, advance_seconds)
        elif current >= target:
            break  # another move took the clock past `to`
    else:
        raise BillingError(
            "SERVICE_UNAVAILABLE",
            message="Other moves of this sandbox clock keep coming first; the clock did not move. Retry.",
        )
    clock = await read_clock(runtime, client_id)
    return SandboxClock(now=clock.now, offset_seconds=clock.offset_seconds, ran=ran)


async def _run_due(
    runtime: Runtime,
    step: RenewalPass,
    ran: RenewalSummary,
    client_id: str,
    *,
    start: datetime,
    target: datetime,
) -> None:
    """Run, each at its own instant, what falls due for the client up to `target`."""
    previous = start
    stalled = 0
    while True:
        async with transaction(runtime.sessions) as session:
            due, leased = await claims.earliest_due(
                session, client_id=client_id, until=target, real_now=runtime.clock.now()
            )
        if due is None:
            return
        if leased:
            # A worker (or another move of this clock) is on it right now; its lease ends soon, either way.
            await asyncio.sleep(_LEASED_POLL_SECONDS)
            continue
        at = max(due, previous)
        step.summary = RenewalSummary()
        await step.drain(client_id=client_id, now=_always(at))
        ran.add(step.summary)
        previous = at
        settled = step.summary.claimed - step.summary.unknown - step.summary.lost_leases
        stalled = stalled + 1 if settled <= 0 else 0
        if stalled >= MAX_STEPS_WITHOUT_PROGRESS:
            raise BillingError(
                "SERVICE_UNAVAILABLE",
                message="The processor is not answering; the clock stopped where it was. Retry later.",
            )


def _always_at(instant: datetime) -> Callable[[object], datetime]:
    return lambda _: instant


def _always(instant: datetime) -> Callable[[], datetime]:
    return lambda: instant


def _target(current: datetime, to: datetime | None, advance_seconds: float | None) -> datetime:
    if (to is None) == (advance_seconds is None):
        raise BillingError(
            "CHECK_PARAMETERS", message="Send exactly one of `to` and `advanceSeconds`.", field="to"
        )
    if to is not None:
        if to.tzinfo is None or to.utcoffset() is None:
            raise BillingError(
                "CHECK_PARAMETERS", message="`to` must include a time zone offset (e.g. Z).", field="to"
            )
        if to < current:
            raise BillingError(
                "CHECK_PARAMETERS",
                message=f"The sandbox clock only moves forward; it is {current.isoformat()} now.",
                field="to",
            )
        target = to
        field = "to"
    else:
        assert advance_seconds is not None
        if not math.isfinite(advance_seconds) or advance_seconds < 0:
            raise BillingError(
                "CHECK_PARAMETERS", message="advanceSeconds must be a number >= 0.", field="advanceSeconds"
            )
        target = current + timedelta(seconds=advance_seconds)
        field = "advanceSeconds"
    if target - current > MAX_JUMP:
        raise BillingError(
            "CHECK_PARAMETERS", message="The sandbox clock moves at most 3660 days at a time.", field=field
        )
    return target
