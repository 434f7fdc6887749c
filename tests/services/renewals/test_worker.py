"""The worker wiring: the renewal pass is registered, and shutdown lets an in-flight pass finish."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlmodel import select

from billing.processors.base import Outcome
from billing.processors.sandbox import SandboxProcessor
from billing.services.runtime import build_runtime
from billing.store.engine import transaction
from billing.store.models import Charge, Subscription
from billing.worker import registered_passes, run_pass_once, scheduler_running
from tests.services.renewals import factory

pytestmark = pytest.mark.anyio

ENROLLED = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


class SlowSandbox:
    """The sandbox, but every charge waits until the test lets it through."""

    slug = "sandbox"

    def __init__(self) -> None:
        self.inner = SandboxProcessor()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def charge(self, *args: Any, **kwargs: Any) -> Outcome:
        self.entered.set()
        await self.release.wait()
        return await self.inner.charge(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def _due_subscription(runtime: Any) -> Subscription:
    async with transaction(runtime.sessions) as session:
        client = await factory.make_client(session, now=ENROLLED)
        plan = await factory.make_plan(session, client, now=ENROLLED)
        method = await factory.make_method(session, client, "u", now=ENROLLED)
        return await factory.enrol(session, client, plan, method, enrolled_at=ENROLLED)


def test_renewals_is_the_first_registered_pass() -> None:
    assert registered_passes()[0][0] == "renewals"


async def test_one_tick_runs_the_renewal_pass(settings: Any, clock: Any) -> None:
    runtime = build_runtime(settings, clock, processors={"sandbox": SandboxProcessor()})
    try:
        sub = await _due_subscription(runtime)
        assert sub.next_attempt_at is not None
        clock.set(sub.next_attempt_at)
        results = await run_pass_once(runtime, "tick")
        assert results["renewals"].renewed == 1
    finally:
        await runtime.aclose()


async def test_shutdown_waits_for_the_pass_in_flight(settings: Any, clock: Any) -> None:
    slow = SlowSandbox()
    runtime = build_runtime(settings, clock, processors={"sandbox": slow})
    try:
        sub = await _due_subscription(runtime)
        assert sub.next_attempt_at is not None
        clock.set(sub.next_attempt_at)
        async with scheduler_running(runtime, "w-shutdown"):
            await asyncio.wait_for(slow.entered.wait(), timeout=10)
            # Shutdown begins with the charge in flight; the processor answers a moment later.
            asyncio.get_running_loop().call_later(0.3, slow.release.set)
        async with runtime.sessions() as session:
            after = await session.get(Subscription, sub.id)
            charges = (await session.exec(select(Charge).where(Charge.kind == "renewal"))).all()
        assert after is not None
        assert (after.period_index, after.lease_owner) == (1, None)
        assert [c.state for c in charges] == ["succeeded"]
    finally:
        await runtime.aclose()
