"""A sandbox client whose clock runs ahead sees its own time on everything its requests write,
and the passes that take over open charges and refunds judge their age on that same clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from billing.domain.errors import BillingError
from billing.processors.base import Outcome
from billing.processors.sandbox import SandboxProcessor
from billing.services.enrolment import run_recovery, verify_card
from billing.services.refunds import refund_charge, run_refund_reconciliation
from billing.services.runtime import Runtime
from billing.store.models import Charge, Client, Refund, Subscription
from tests.api.conftest import card, create_plan, data_of, enrol
from tests.clock import FixedClock
from tests.services.enrolment.test_enrolment_service import _plan, _request, _trx

pytestmark = pytest.mark.anyio

AHEAD = 30 * 86_400  # the sandbox clock moved a month ahead


def _stamps(value: Any, path: str = "") -> list[tuple[str, datetime]]:
    """Every createdAt / updatedAt in an answer, with where it was found."""
    found: list[tuple[str, datetime]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("createdAt", "updatedAt") and isinstance(item, str):
                found.append((f"{path}.{key}", datetime.fromisoformat(item)))
            else:
                found.extend(_stamps(item, f"{path}.{key}"))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_stamps(item, f"{path}[{index}]"))
    return found


async def test_every_timestamp_a_request_writes_is_on_the_clients_clock(
    merchant: Any, clock: FixedClock
) -> None:
    moved = data_of(await merchant.post("/v1/sandbox/clock", json={"advanceSeconds": AHEAD}))
    client_now = datetime.fromisoformat(moved["now"])
    assert client_now - clock.now() >= timedelta(seconds=AHEAD)

    answers: list[tuple[str, Any]] = []
    plan = await create_plan(merchant, type="anniversary", frequency={"frequency": 1}, amount=20)
    answers.append(("plan", plan))
    answers.append(("plan update", data_of(await merchant.put("/v1/plans", json={**_plan_update(plan)}))))
    enrolled = await enrol(merchant, plan["id"])
    answers.append(("enrolment", enrolled))
    sub_id = enrolled["subscription"]["id"]
    added = data_of(
        await merchant.post(
            "/v1/subscriptions/payment-methods",
            json={
                "tokenizeData": {
                    "userId": "user-1",
                    "processorId": "sandbox",
                    "cardInfo": card("5555555555554444"),
                }
            },
        ),
        201,
    )
    answers.append(("card", added))
    answers.append(
        (
            "set default",
            data_of(
                await merchant.put(
                    "/v1/subscriptions/payment-methods/set-default",
                    json={"subscriptionId": sub_id, "paymentMethodId": added["id"]},
                )
            ),
        )
    )
    refund = data_of(
        await merchant.post(f"/v1/charges/{enrolled['charge']['id']}/refund", json={"amount": "5"}), 201
    )
    answers.append(("refund", refund))
    batch = data_of(
        await merchant.post(
            "/v1/subscriptions/charges",
            json={"client": merchant.id, "data": [{"subscriptionId": sub_id, "amount": "3.00"}]},
        ),
        202,
    )
    answers.append(
        ("batch", data_of(await merchant.get(f"/v1/subscriptions/charges/batches/{batch['batchId']}")))
    )
    answers.append(("cancel", data_of(await merchant.delete(f"/v1/subscriptions/{sub_id}"))))

    stamps = [(f"{name}{where}", at) for name, answer in answers for where, at in _stamps(answer)]
    assert {name for name, _ in answers} <= {name.split(".")[0].split("[")[0] for name, _ in stamps}
    real_time = [name for name, at in stamps if at < client_now - timedelta(minutes=1)]
    assert real_time == []

    events = data_of(await merchant.get("/v1/events", params={"subscriptionId": sub_id}))["items"]
    assert events
    assert all(datetime.fromisoformat(e["createdAt"]) >= client_now for e in events)


def _plan_update(plan: dict[str, Any]) -> dict[str, Any]:
    return {"planUid": plan["id"], "plan": {"name": "Renamed"}}


async def _move_clock(runtime: Runtime, client_id: str, seconds: int) -> None:
    async with runtime.sessions() as session, session.begin():
        row = await session.get(Client, client_id)
        assert row is not None
        row.clock_offset_seconds = seconds


async def _ahead_with_a_plan(runtime: Runtime, shop: str) -> tuple[SandboxProcessor, str, str]:
    """The shop's clock a month ahead, its sandbox, a plan and a fresh transaction."""
    await _move_clock(runtime, shop, AHEAD)
    sandbox = runtime.processors["sandbox"]
    assert isinstance(sandbox, SandboxProcessor)
    return sandbox, await _plan(runtime, shop), await _trx(runtime, shop)


async def test_a_lost_enrolment_answer_is_recovered_a_minute_later_on_a_clock_ahead(
    service_runtime: Runtime, shop: str, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, plan_id, trx_id = await _ahead_with_a_plan(service_runtime, shop)

    async def lost(token: str, amount: int, currency: str, **kwargs: Any) -> Outcome:
        return Outcome.unknown()

    monkeypatch.setattr(sandbox, "charge", lost)
    with pytest.raises(BillingError):
        await verify_card(service_runtime, client_id=shop, request=_request(trx_id, plan_id))
    monkeypatch.undo()
    async with service_runtime.sessions() as session:
        [charge] = (await session.exec(select(Charge))).all()
    assert charge.created_at >= clock.now() + timedelta(seconds=AHEAD)

    # Not yet a minute old for the client: the request may still be on its way.
    clock.advance(timedelta(seconds=30))
    assert (await run_recovery(service_runtime, "w1"))["succeeded"] == 0
    clock.advance(timedelta(seconds=60))
    assert (await run_recovery(service_runtime, "w1"))["succeeded"] == 1
    async with service_runtime.sessions() as session:
        [subscription] = (await session.exec(select(Subscription))).all()
    assert subscription.created_at >= clock.now() + timedelta(seconds=AHEAD)


async def test_a_lost_refund_answer_is_reconciled_a_minute_later_on_a_clock_ahead(
    service_runtime: Runtime, shop: str, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox, plan_id, trx_id = await _ahead_with_a_plan(service_runtime, shop)
    enrolment = await verify_card(service_runtime, client_id=shop, request=_request(trx_id, plan_id))
    assert enrolment.charge is not None

    async def lost(*args: Any, **kwargs: Any) -> Outcome:
        return Outcome.unknown()

    monkeypatch.setattr(sandbox, "refund", lost)
    monkeypatch.setattr(sandbox, "void_charge", lost)
    client_clock = FixedClock(clock.now() + timedelta(seconds=AHEAD))
    result = await refund_charge(
        service_runtime, client_id=shop, charge_id=enrolment.charge.id, clock=client_clock
    )
    assert result.refund.state == "unknown"
    monkeypatch.undo()

    clock.advance(timedelta(seconds=30))
    assert await run_refund_reconciliation(service_runtime, "w1") == {
        "succeeded": 0,
        "failed": 0,
        "unresolved": 0,
    }
    clock.advance(timedelta(seconds=60))
    assert (await run_refund_reconciliation(service_runtime, "w1"))["succeeded"] == 1
    async with service_runtime.sessions() as session:
        [refund] = (await session.exec(select(Refund))).all()
    assert refund.updated_at >= clock.now() + timedelta(seconds=AHEAD)
