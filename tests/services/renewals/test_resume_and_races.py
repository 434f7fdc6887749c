"""Resuming charges from the stored rows, "key reused" answers, cancels racing a renewal,
and a subscription made due before its next period starts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from billing.domain.errors import BillingError
from billing.processors.base import Outcome
from billing.processors.sandbox import SandboxProcessor
from billing.services.charging import ChargeRun, execute_charges
from billing.services.payment_methods import remove_payment_method, set_default_payment_method
from billing.services.renewals import RenewalPass, run_reconciliation
from billing.services.runtime import Runtime, build_runtime
from billing.services.subscriptions import cancel_subscription
from billing.store.engine import transaction
from billing.store.models import Client, Plan, Subscription
from tests.services.renewals import factory
from tests.services.renewals.test_charging import Recorder, _client_and_methods, _request, _rows
from tests.services.renewals.test_crashes_and_races import (
    ENROLLED,
    _enrolled,
    _event_types,
    _get,
    _pending_row_of_a_crashed_worker,
    _renewals,
    _token,
)

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


class Die(BaseException):
    """The worker process dies (not an Exception: nothing in the pass swallows it)."""


def _charged(sandbox: SandboxProcessor) -> list[str]:
    return [
        e.idempotency_key
        for e in sandbox.ledger.entries.values()
        if e.operation == "charge" and e.outcome.status == "succeeded"
    ]


# 1. Resume from the stored rows, not from today's methods.


async def test_fallback_in_flight_then_card_removed_is_resumed_not_charged_again(
    spied: Any, clock: Any, sandbox: SandboxProcessor
) -> None:
    runtime, spy = spied
    sub = await _enrolled(runtime, card="4000000000000341")  # the default card declines renewals
    async with transaction(runtime.sessions) as session:
        client = await session.get(Client, sub.client_id)
        fallback = await factory.make_method(session, client, "u-1", now=ENROLLED, priority=1)
        await factory.attach(session, sub, fallback)
    clock.set(sub.next_attempt_at)

    async def die_on_fallback(key: str) -> None:
        if key.endswith(":m1"):
            raise Die()  # the processor charged the fallback; the worker dies before recording it

    spy.during_charge = die_on_fallback
    died: BaseException | None = None
    try:
        await RenewalPass(runtime, "w1").run()
    except BaseException as exc:  # the pass's task group wraps it in a group
        died = exc
    assert isinstance(died, Die | BaseExceptionGroup)
    spy.during_charge = None
    async with transaction(runtime.sessions) as session:
        await remove_payment_method(session, runtime.clock, client_id=sub.client_id, method_id=fallback.id)

    clock.advance(timedelta(minutes=5))  # the dead worker's lease runs out
    await RenewalPass(runtime, "w2").run()
    after = await _get(runtime, sub.id)
    assert after.renewal_status == "current"
    assert after.period_index == 1
    assert [(c.method_index, c.state) for c in await _renewals(runtime, sub.id)] == [
        (0, "failed"),
        (1, "succeeded"),
    ]
    assert "charge.succeeded" in await _event_types(runtime, sub.id)

    # A new default card later does not charge the paid period again.
    async with transaction(runtime.sessions) as session:
        client = await session.get(Client, sub.client_id)
        fresh = await factory.make_method(session, client, "u-1", now=clock.now(), priority=2)
    async with transaction(runtime.sessions) as session:
        await set_default_payment_method(
            session, runtime.clock, client_id=sub.client_id, subscription_id=sub.id, method_id=fresh.id
        )
    await RenewalPass(runtime, "w2").run()
    assert len(_charged(sandbox)) == 1


async def test_no_usable_method_now_still_resumes_the_stored_charge(
    spied: Any, clock: Any, sandbox: SandboxProcessor
) -> None:
    """A crashed worker's charge went through; before the resume the plan stopped allowing the
    card's processor, so today's method list is empty."""
    runtime, spy = spied
    sub = await _enrolled(runtime)
    token = await _token(runtime, sub)
    key = await _pending_row_of_a_crashed_worker(runtime, sub, token)
    await sandbox.charge(token, 1000, "USD", idempotency_key=key)  # the processor charged it
    async with transaction(runtime.sessions) as session:
        await session.exec(update(Plan).where(Plan.id == sub.plan_id).values(methods=["stripe"]))  # type: ignore[call-overload]
    clock.set(sub.next_attempt_at + timedelta(minutes=5))
    await RenewalPass(runtime, "w2").run()
    assert [c.state for c in await _renewals(runtime, sub.id)] == ["succeeded"]
    assert spy.calls["lookup"] == 1
    assert spy.calls["charge"] == 0
    assert (await _get(runtime, sub.id)).renewal_status == "current"


async def test_a_request_without_methods_and_without_rows_fails_7200(engine_runtime: Runtime) -> None:
    client_id, _ = await _client_and_methods(engine_runtime)
    [result] = await execute_charges(
        engine_runtime.sessions,
        engine_runtime.processors,
        [_request(client_id, [])],
        now=NOW,
        apply=Recorder(),
    )
    assert (result.state, result.decline_code, result.charge) == ("failed", "7200", None)


# 2. "Idempotency key reused with different parameters" is never a decline.


class KeyReused:
    """A processor that has seen the key with other parameters and cannot find it by search."""

    slug = "sandbox"

    def __init__(self, as_outcome: bool) -> None:
        self.as_outcome = as_outcome
        self.charges: list[str] = []

    async def charge(self, *args: Any, idempotency_key: str, **kwargs: Any) -> Outcome:
        self.charges.append(idempotency_key)
        if self.as_outcome:
            return Outcome.declined("IDEMPOTENCY_KEY_REUSED")
        raise BillingError("IDEMPOTENCY_KEY_REUSED", field="idempotency_key")

    async def lookup(self, key: str) -> Outcome | None:
        return None


@pytest.mark.parametrize("as_outcome", [False, True])
async def test_key_reused_is_unknown_and_no_fallback_is_charged(
    engine_runtime: Runtime, as_outcome: bool
) -> None:
    client_id, methods = await _client_and_methods(engine_runtime, "4242424242424242", "4242424242424242")
    processor = KeyReused(as_outcome)
    [result] = await execute_charges(
        engine_runtime.sessions, {"sandbox": processor}, [_request(client_id, methods)], now=NOW,
        apply=Recorder(), reconcile_rounds=1,
    )  # fmt: skip
    assert result.state == "unknown"
    assert [(r.method_index, r.state) for r in await _rows(engine_runtime)] == [(0, "unknown")]
    assert not any(key.endswith(":m1") for key in processor.charges)


class Describing:
    """The sandbox behind a wrapper that loses the first answer and remembers descriptions."""

    slug = "sandbox"

    def __init__(self, inner: SandboxProcessor) -> None:
        self.inner = inner
        self.descriptions: list[str] = []
        self.lose_answers = True

    async def charge(
        self, token: str, amount: int, currency: str, *, idempotency_key: str, description: str = ""
    ) -> Outcome:
        self.descriptions.append(description)
        if self.lose_answers:
            return Outcome.unknown()  # the request never reached the processor
        return await self.inner.charge(
            token, amount, currency, idempotency_key=idempotency_key, description=description
        )

    async def lookup(self, key: str) -> Outcome | None:
        return await self.inner.lookup(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_the_renewal_description_survives_a_plan_rename(
    settings: Any, clock: Any, sandbox: SandboxProcessor
) -> None:
    processor = Describing(sandbox)
    runtime = build_runtime(settings, clock, processors={"sandbox": processor})
    try:
        sub = await _enrolled(runtime)
        clock.set(sub.next_attempt_at)
        await RenewalPass(runtime, "w1").run()
        assert [c.state for c in await _renewals(runtime, sub.id)] == ["unknown"]
        async with transaction(runtime.sessions) as session:
            await session.exec(update(Plan).where(Plan.id == sub.plan_id).values(name="Renamed"))  # type: ignore[call-overload]
        processor.lose_answers = False
        clock.advance(timedelta(hours=1))
        await RenewalPass(runtime, "w1").run()
        assert [c.state for c in await _renewals(runtime, sub.id)] == ["succeeded"]
        assert len(set(processor.descriptions)) == 1
        assert "Renamed" not in processor.descriptions[0]
    finally:
        await runtime.aclose()


# 3. Cancels racing a renewal.


async def _cancel(runtime: Any, sub: Any) -> None:
    async with transaction(runtime.sessions) as session:
        await cancel_subscription(session, runtime.clock, client_id=sub.client_id, subscription_id=sub.id)


async def test_a_cancel_during_the_charge_keeps_the_charge_event(spied: Any, clock: Any) -> None:
    runtime, spy = spied
    sub = await _enrolled(runtime)
    clock.set(sub.next_attempt_at)

    async def cancel(_key: str) -> None:
        await _cancel(runtime, sub)

    spy.during_charge = cancel
    summary = await RenewalPass(runtime, "w1").run()
    assert summary.lost_leases == 0
    assert [c.state for c in await _renewals(runtime, sub.id)] == ["succeeded"]
    assert await _event_types(runtime, sub.id) == ["subscription.cancelled", "charge.succeeded"]
    after = await _get(runtime, sub.id)
    assert (after.status, after.lease_owner) == ("cancelled", None)


async def test_an_unknown_charge_of_a_cancelled_subscription_is_reconciled(spied: Any, clock: Any) -> None:
    runtime, spy = spied
    sub = await _enrolled(runtime)
    clock.set(sub.next_attempt_at)
    spy.answer = Outcome.unknown()  # the charge happens at the processor, its answer is lost
    spy.lookup_fails = True
    await RenewalPass(runtime, "w1").run()
    assert [c.state for c in await _renewals(runtime, sub.id)] == ["unknown"]
    await _cancel(runtime, sub)
    spy.answer, spy.lookup_fails = None, False
    # Too recent: a live worker may still be on it.
    assert (await run_reconciliation(runtime, "w2")).claimed == 0
    clock.advance(timedelta(hours=1))
    summary = await run_reconciliation(runtime, "w2")
    assert summary.as_dict() == {"claimed": 1, "succeeded": 1, "failed": 0, "unknown": 0}
    assert [c.state for c in await _renewals(runtime, sub.id)] == ["succeeded"]
    assert await _event_types(runtime, sub.id) == ["subscription.cancelled", "charge.succeeded"]
    assert spy.calls["charge"] == 1  # looked up, never charged again
    after = await _get(runtime, sub.id)
    assert (after.status, after.lease_owner) == ("cancelled", None)
    assert (await run_reconciliation(runtime, "w2")).claimed == 0


async def test_no_charge_is_sent_after_the_cancel_committed(
    spied: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancel commits after the pending row was written, before the processor call."""
    runtime, spy = spied
    sub = await _enrolled(runtime)
    clock.set(sub.next_attempt_at)
    settle = ChargeRun.settle

    async def cancel_then_settle(self: ChargeRun, *args: Any, **kwargs: Any) -> Any:
        await _cancel(runtime, sub)
        return await settle(self, *args, **kwargs)

    monkeypatch.setattr(ChargeRun, "settle", cancel_then_settle)
    await RenewalPass(runtime, "w1").run()
    rows = await _renewals(runtime, sub.id)
    assert [(c.state, c.decline_code) for c in rows] == [("failed", "7050")]
    assert spy.calls["charge"] == 0
    assert await _event_types(runtime, sub.id) == ["subscription.cancelled", "charge.failed"]


# 4. Never charge a period before it starts.


async def test_a_renewed_subscription_made_due_early_is_not_charged(
    spied: Any, clock: Any, sandbox: SandboxProcessor
) -> None:
    runtime, _ = spied
    sub = await _enrolled(runtime)
    clock.set(sub.next_attempt_at)
    await RenewalPass(runtime, "w1").run()
    renewed = await _get(runtime, sub.id)
    assert renewed.period_index == 1
    # Something (a stale write) makes the row due now, a month before period 2 starts.
    async with transaction(runtime.sessions) as session:
        await session.exec(
            update(Subscription).where(Subscription.id == sub.id).values(next_attempt_at=clock.now())
        )  # type: ignore[call-overload]
    await RenewalPass(runtime, "w1").run()
    after = await _get(runtime, sub.id)
    assert after.period_index == 1
    assert len(await _renewals(runtime, sub.id)) == 1
    assert after.next_attempt_at == renewed.current_period_end  # looked at again when period 2 starts


# 5. Leases are renewed during a long charge run.


async def test_the_lease_is_extended_between_settle_rounds(
    spied: Any, clock: Any, sandbox: SandboxProcessor
) -> None:
    runtime, spy = spied
    sub = await _enrolled(runtime, card="4000000000000341")  # the default card declines
    async with transaction(runtime.sessions) as session:
        client = await session.get(Client, sub.client_id)
        fallback = await factory.make_method(session, client, "u-1", now=ENROLLED, priority=1)
        await factory.attach(session, sub, fallback)
    clock.set(sub.next_attempt_at)
    lease = timedelta(seconds=runtime.settings.worker.lease_seconds)
    seen: list[datetime | None] = []

    async def slow(key: str) -> None:
        if not key.endswith(":m1"):
            clock.advance(lease * 0.9)  # the first round takes most of the lease
        else:
            seen.append((await _get(runtime, sub.id)).lease_until)

    spy.during_charge = slow
    await RenewalPass(runtime, "w1").run()
    assert len(seen) == 1
    assert seen[0] is not None
    assert seen[0] > clock.now() + lease / 2  # pushed out before the fallback was sent
    assert (await _get(runtime, sub.id)).renewal_status == "current"


def test_the_worker_runs_the_reconciliation_pass() -> None:
    from billing.worker import registered_passes

    passes = dict(registered_passes())
    assert passes["charge-reconciliation"] is run_reconciliation
