"""The worker charges queued items through the shared charge machinery, each at most once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlmodel import col, select

from billing.processors.sandbox import SandboxScenario
from billing.services import charging
from billing.services.ondemand import OnDemandPass
from billing.store.models import Charge, Event, PaymentMethod, Subscription
from billing.worker import registered_passes
from tests.api.conftest import card

pytestmark = pytest.mark.anyio

CHARGES = "/v1/subscriptions/charges"


async def drain(runtime: Any, identity: str = "test-worker") -> Any:
    return await OnDemandPass(runtime, identity).run()


async def send(merchant: Any, post_batch: Any, items: list[dict[str, Any]]) -> str:
    response = await post_batch(merchant, {"client": merchant.id, "data": items})
    assert response.status_code == 202, response.text
    batch_id: str = response.json()["data"]["batchId"]
    return batch_id


async def charges_of(runtime: Any, batch_id: str) -> list[Charge]:
    async with runtime.sessions() as session:
        query = (
            select(Charge)
            .where(Charge.batch_id == batch_id)
            .order_by(col(Charge.batch_index), col(Charge.method_index))
        )
        return list((await session.exec(query)).all())


async def events_of(runtime: Any, client_id: str, event_type: str) -> list[Event]:
    async with runtime.sessions() as session:
        query = select(Event).where(Event.client_id == client_id, Event.type == event_type)
        return list((await session.exec(query)).all())


def ledger_of(runtime: Any) -> Any:
    return runtime.processors["sandbox"].ledger.entries


def test_the_pass_is_registered_with_the_worker() -> None:
    assert "ondemand" in [name for name, _ in registered_passes()]


async def test_items_are_charged_and_the_batch_completes(
    merchant: Any, subscriptions: Any, runtime: Any, post_batch: Any
) -> None:
    approve = await subscriptions.one(merchant.id)
    poor = await subscriptions.one(merchant.id, cards=[SandboxScenario.INSUFFICIENT_FUNDS])
    declines = await subscriptions.one(merchant.id, cards=[SandboxScenario.CHARGES_DECLINE])
    batch_id = await send(
        merchant,
        post_batch,
        [
            {"subscriptionId": approve.id, "amount": Decimal("15.00"), "metadata": {"note": "usage"}},
            {"subscriptionId": poor.id, "amount": Decimal("5.00")},
            {"subscriptionId": declines.id, "amount": Decimal("5.00")},
            {"subscriptionId": approve.id, "amount": Decimal("0.99")},
            {"subscriptionId": "sub_unknown", "amount": Decimal("1.00")},
        ],
    )
    summary = await drain(runtime)
    assert (summary.succeeded, summary.failed, summary.batches_completed) == (2, 2, 1)

    data = (await merchant.get(f"{CHARGES}/batches/{batch_id}")).json()["data"]
    assert data["status"] == "completed"
    assert data["completedAt"] is not None
    assert data["totals"] == {
        "received": 5,
        "accepted": 4,
        "rejected": 1,
        "succeeded": 2,
        "failed": 2,
        "inProgress": 0,
    }
    items = {item["index"]: item for item in data["items"]}
    assert [items[i]["state"] for i in range(5)] == ["succeeded", "failed", "failed", "succeeded", "rejected"]
    assert items[1]["code"] == "7303"
    assert items[2]["code"] == "7201"
    for index in range(4):
        assert items[index]["chargeId"].startswith("chg_")
        assert items[index]["chargeState"] == items[index]["state"]

    charges = await charges_of(runtime, batch_id)
    assert [c.idempotency_key for c in charges] == [f"{batch_id}:{i}" for i in range(4)]
    assert {c.kind for c in charges} == {"on_demand"}
    assert [c.amount_minor for c in charges] == [1500, 500, 500, 99]
    assert charges[0].charge_metadata == {"note": "usage"}
    assert charges[0].subscription_id == approve.id
    assert charges[0].period_start is None
    assert charges[0].expected_settlement_date is not None
    assert [c.state for c in charges] == ["succeeded", "failed", "failed", "succeeded"]
    assert {key for key in ledger_of(runtime)} == {f"{batch_id}:{i}" for i in range(4)}

    completed = await events_of(runtime, merchant.id, "batch.completed")
    assert len(completed) == 1
    assert completed[0].payload["batchId"] == batch_id
    assert completed[0].payload["totals"]["succeeded"] == 2
    assert len(await events_of(runtime, merchant.id, "charge.succeeded")) == 2
    failed_events = await events_of(runtime, merchant.id, "charge.failed")
    assert {e.payload["declineCode"] for e in failed_events} == {"7303", "7201"}
    assert {e.payload["kind"] for e in failed_events} == {"on_demand"}

    # Draining again finds nothing to do and writes nothing more.
    again = await drain(runtime)
    assert again.claimed == 0
    assert len(await events_of(runtime, merchant.id, "batch.completed")) == 1


async def test_on_demand_charges_never_move_the_schedule(
    merchant: Any, subscriptions: Any, runtime: Any, post_batch: Any
) -> None:
    sub = await subscriptions.one(merchant.id)
    schedule_columns = (
        "status",
        "renewal_status",
        "period_index",
        "cycles_paid",
        "current_period_start",
        "current_period_end",
        "next_attempt_at",
        "anchor_date",
        "grace_started_at",
        "grace_attempts",
        "lease_owner",
        "updated_at",
    )

    async def schedule() -> dict[str, Any]:
        async with runtime.sessions() as session:
            row = await session.get(Subscription, sub.id)
            assert row is not None
            return {name: getattr(row, name) for name in schedule_columns}

    before = await schedule()
    await send(merchant, post_batch, [{"subscriptionId": sub.id, "amount": Decimal("3.00")}] * 3)
    await drain(runtime)
    assert await schedule() == before


async def test_a_fallback_method_pays_when_the_default_declines(
    merchant: Any, subscriptions: Any, runtime: Any, post_batch: Any
) -> None:
    sub = await subscriptions.one(merchant.id, cards=[SandboxScenario.DECLINE, SandboxScenario.APPROVE])
    batch_id = await send(merchant, post_batch, [{"subscriptionId": sub.id, "amount": Decimal("8.00")}])
    await drain(runtime)
    charges = await charges_of(runtime, batch_id)
    assert [(c.idempotency_key, c.method_index, c.state) for c in charges] == [
        (f"{batch_id}:0", 0, "failed"),
        (f"{batch_id}:0:m1", 1, "succeeded"),
    ]
    assert charges[1].payment_method_id == sub.payment_method_ids[1]
    item = (await merchant.get(f"{CHARGES}/batches/{batch_id}")).json()["data"]["items"][0]
    assert item["state"] == "succeeded"
    assert item["chargeId"] == charges[1].id


async def test_only_the_cards_behind_the_subscription_are_charged(
    merchant: Any, subscriptions: Any, runtime: Any, post_batch: Any
) -> None:
    """Another card of the cardholder is not a fallback until the merchant names the subscription."""
    sub = await subscriptions.one(merchant.id, cards=[SandboxScenario.DECLINE])

    async def add_card(**extra: Any) -> str:
        tokenize = {"userId": sub.user_id, "processorId": "sandbox", "cardInfo": card(), **extra}
        response = await merchant.post("/v1/subscriptions/payment-methods", json={"tokenizeData": tokenize})
        assert response.status_code == 201, response.text
        method_id: str = response.json()["data"]["id"]
        return method_id

    await add_card()  # approves, but backs no subscription
    first = await send(merchant, post_batch, [{"subscriptionId": sub.id, "amount": Decimal("8.00")}])
    await drain(runtime)
    assert [(c.method_index, c.state) for c in await charges_of(runtime, first)] == [(0, "failed")]

    backup = await add_card(fallbackFor=[sub.id])
    second = await send(merchant, post_batch, [{"subscriptionId": sub.id, "amount": Decimal("8.00")}])
    await drain(runtime)
    charges = await charges_of(runtime, second)
    assert [(c.method_index, c.state, c.payment_method_id) for c in charges] == [
        (0, "failed", sub.payment_method_ids[0]),
        (1, "succeeded", backup),
    ]


async def test_an_unknown_answer_is_reconciled_not_charged_again(
    merchant: Any, subscriptions: Any, runtime: Any, post_batch: Any
) -> None:
    """The processing-error card loses the first answer; lookup finds the charge that happened."""
    sub = await subscriptions.one(merchant.id, cards=[SandboxScenario.PROCESSING_ERROR])
    batch_id = await send(merchant, post_batch, [{"subscriptionId": sub.id, "amount": Decimal("4.00")}])
    await drain(runtime)
    charges = await charges_of(runtime, batch_id)
    assert [(c.idempotency_key, c.state) for c in charges] == [(f"{batch_id}:0", "succeeded")]
    assert list(ledger_of(runtime)) == [f"{batch_id}:0"]


async def test_an_item_whose_subscription_was_cancelled_meanwhile_fails_uncharged(
    merchant: Any, subscriptions: Any, runtime: Any, post_batch: Any
) -> None:
    sub = await subscriptions.one(merchant.id)
    batch_id = await send(merchant, post_batch, [{"subscriptionId": sub.id, "amount": Decimal("4.00")}])
    async with runtime.sessions() as session, session.begin():
        row = await session.get(Subscription, sub.id)
        assert row is not None
        row.status = "cancelled"
    await drain(runtime)
    data = (await merchant.get(f"{CHARGES}/batches/{batch_id}")).json()["data"]
    assert data["status"] == "completed"
    assert data["items"][0]["state"] == "failed"
    assert data["items"][0]["code"] == "7050"
    assert data["items"][0]["chargeId"] is None
    assert await charges_of(runtime, batch_id) == []
    assert len(ledger_of(runtime)) == 0


async def test_an_item_without_a_usable_card_fails_with_7200(
    merchant: Any, subscriptions: Any, runtime: Any, post_batch: Any
) -> None:
    sub = await subscriptions.one(merchant.id)
    batch_id = await send(merchant, post_batch, [{"subscriptionId": sub.id, "amount": Decimal("4.00")}])
    async with runtime.sessions() as session, session.begin():
        method = await session.get(PaymentMethod, sub.payment_method_ids[0])
        assert method is not None
        method.status = "removed"
    await drain(runtime)
    item = (await merchant.get(f"{CHARGES}/batches/{batch_id}")).json()["data"]["items"][0]
    assert (item["state"], item["code"]) == ("failed", "7200")
    assert len(ledger_of(runtime)) == 0


async def test_items_show_in_payment_history_as_on_demand(
    merchant: Any, subscriptions: Any, runtime: Any, post_batch: Any
) -> None:
    sub = await subscriptions.one(merchant.id)
    await send(merchant, post_batch, [{"subscriptionId": sub.id, "amount": Decimal("6.50")}])
    await drain(runtime)
    response = await merchant.get("/v1/subscriptions/payment-history", params={"subscriptionId": sub.id})
    assert response.status_code == 200, response.text
    history = response.json()["data"]
    assert len(history) == 1
    entry = history[0]
    assert entry["kind"] == "on_demand"
    assert Decimal(str(entry["amount"])) == Decimal("6.50")


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs, not even `except Exception`."""


async def test_a_crash_after_the_pending_commit_charges_each_item_once(
    merchant: Any,
    subscriptions: Any,
    runtime: Any,
    clock: Any,
    post_batch: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dying between the pending commit and the processor call: the next worker resumes the keys."""
    subs = await subscriptions.make(merchant.id, count=10)
    batch_id = await send(
        merchant, post_batch, [{"subscriptionId": s.id, "amount": Decimal("2.00")} for s in subs]
    )

    async def crash(*_: Any, **__: Any) -> Any:
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(charging.ChargeRun, "settle", crash)
        with pytest.raises(Crash):
            await OnDemandPass(runtime, "doomed-worker", lanes=1).run()
    pending = await charges_of(runtime, batch_id)
    assert len(pending) == 10
    assert {c.state for c in pending} == {"pending"}
    assert len(ledger_of(runtime)) == 0

    # The dead worker's leases hold until they run out; then another worker takes over.
    assert (await drain(runtime, "successor")).claimed == 0
    clock.advance(runtime_lease(runtime))
    summary = await drain(runtime, "successor")
    assert summary.succeeded == 10
    charges = await charges_of(runtime, batch_id)
    assert [c.idempotency_key for c in charges] == [f"{batch_id}:{i}" for i in range(10)]
    assert {c.state for c in charges} == {"succeeded"}
    assert sorted(ledger_of(runtime)) == sorted(f"{batch_id}:{i}" for i in range(10))


async def test_a_crash_after_the_processor_charged_is_reconciled(
    merchant: Any,
    subscriptions: Any,
    runtime: Any,
    clock: Any,
    post_batch: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dying after the money moved but before the outcome was written: lookup, not a second charge."""
    subs = await subscriptions.make(merchant.id, count=5)
    batch_id = await send(
        merchant, post_batch, [{"subscriptionId": s.id, "amount": Decimal("2.00")} for s in subs]
    )
    sandbox = runtime.processors["sandbox"]
    real_charge = sandbox.charge
    calls: list[str] = []

    async def charge_then_die(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["idempotency_key"])
        await real_charge(*args, **kwargs)
        raise Crash

    with monkeypatch.context() as patch:
        patch.setattr(sandbox, "charge", charge_then_die)
        with pytest.raises(Crash):
            await OnDemandPass(runtime, "doomed-worker", lanes=1).run()
    charged_before = set(ledger_of(runtime))
    assert charged_before  # money moved for at least one item before the "crash"

    clock.advance(runtime_lease(runtime))
    calls.clear()
    spy_calls: list[str] = []

    async def spy(*args: Any, **kwargs: Any) -> Any:
        spy_calls.append(kwargs["idempotency_key"])
        return await real_charge(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(sandbox, "charge", spy)
        await drain(runtime, "successor")
    # Items the processor had already charged were looked up, never sent again.
    assert not charged_before & set(spy_calls)
    charges = await charges_of(runtime, batch_id)
    assert {c.state for c in charges} == {"succeeded"}
    assert len(charges) == 5
    assert sorted(ledger_of(runtime)) == sorted(f"{batch_id}:{i}" for i in range(5))


def runtime_lease(runtime: Any) -> Any:
    from datetime import timedelta

    return timedelta(seconds=runtime.settings.worker.lease_seconds + 1)
