"""`POST /webhooks/volcan`: processor notifications resolve open charges through the worker's code.

A renewal charge whose answer was lost (and whose look-ups fail) stays `unknown`; the processor's
notification resolves it, with the subscription renewed and one `charge.succeeded` event, before
any reconciliation pass runs, which then finds nothing to do.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from billing.processors.sandbox import SandboxScenario
from billing.services.inbound import inbound_identity, run_deferred_notifications
from billing.services.ondemand import run_ondemand
from billing.services.pass_control import RECONCILE_AFTER
from billing.services.renewals import run_reconciliation, run_renewals
from billing.services.renewals.renewal_pass import RenewalPass
from billing.store.models import Charge
from tests.api.conftest import create_plan, data_of, enrol, error_of, verify_card
from tests.api.inbound_helpers import (
    VOLCAN_SECRET,
    HeldSandbox,
    all_events,
    charges_of,
    events_about,
    inbound_settings,
    post_signed,
    signed_headers,
    token_of,
    volcan,
)
from tests.conftest import test_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Any:
    return test_settings(db_url, tmp_path, **inbound_settings())


@pytest.fixture
def sandbox(clock: Any) -> HeldSandbox:
    return HeldSandbox(clock=clock)


@pytest.fixture
async def app(settings: Any, clock: Any, sandbox: HeldSandbox) -> AsyncIterator[Any]:
    from api.app import create_app

    return create_app(settings, clock=clock, processors={"sandbox": sandbox})


async def _unknown_renewal(merchant: Any, runtime: Any, sandbox: HeldSandbox) -> tuple[str, Charge]:
    """A subscription whose first renewal charge went through but stays `unknown` (answer lost,
    look-ups failing)."""
    plan = await create_plan(merchant, frequency={"frequency": 30})
    sub = (await enrol(merchant, plan["id"]))["subscription"]
    token = await token_of(runtime, sub["defaultPaymentMethodId"])
    sandbox.set_scenario(token, SandboxScenario.PROCESSING_ERROR)
    sandbox.blind = True
    data_of(await merchant.post("/v1/sandbox/clock", json={"to": sub["nextRenewalDate"]}))
    renewal = [c for c in await charges_of(runtime, sub["id"]) if c.kind == "renewal"]
    assert [c.state for c in renewal] == ["unknown"]
    return sub["id"], renewal[0]


async def _notified_during_the_workers_lookup(
    client: Any, runtime: Any, sandbox: HeldSandbox, clock: Any, charge: Charge
) -> None:
    """Run the renewal pass until its look-up of `charge` is in flight, post the notification
    (answered `deferred`: the worker holds the lease), then let the look-up finish."""
    sandbox.gate = asyncio.Event()
    clock.advance(RECONCILE_AFTER + timedelta(seconds=1))
    # One lane: the race under test is this lane's look-up against the notification. (The test
    # client serves each request on its own thread and blocks this loop meanwhile, so a second
    # lane caught inside a transaction would hold SQLite's write lock for the whole request.)
    worker = asyncio.create_task(RenewalPass(runtime, "worker-1", lanes=1).run())
    await asyncio.wait_for(sandbox.waiting.wait(), 10)
    data = data_of(
        await post_signed(
            client, "/webhooks/volcan", volcan("evt_race", charge), secret=VOLCAN_SECRET, at=clock.now()
        )
    )
    assert data["resolution"] == "deferred"
    sandbox.gate.set()
    await asyncio.wait_for(worker, 10)


async def _subscription(merchant: Any, sub_id: str) -> dict[str, Any]:
    result: dict[str, Any] = data_of(await merchant.get(f"/v1/subscriptions/detail/{sub_id}"))
    return result


async def test_unknown_renewal_resolved_by_notification_before_reconciliation(
    client: Any, merchant: Any, runtime: Any, sandbox: HeldSandbox, clock: Any
) -> None:
    sub_id, charge = await _unknown_renewal(merchant, runtime, sandbox)
    before = await _subscription(merchant, sub_id)
    assert before["cyclesPaid"] == 1

    answer = await post_signed(
        client, "/webhooks/volcan", volcan("evt_v_1", charge), secret=VOLCAN_SECRET, at=clock.now()
    )
    data = data_of(answer)
    assert (data["resolution"], data["chargeId"], data["chargeState"]) == ("applied", charge.id, "succeeded")

    after = await _subscription(merchant, sub_id)
    assert (after["cyclesPaid"], after["renewalStatus"]) == (2, "current")
    assert after["currentPeriodStart"] == before["currentPeriodEnd"]
    history = data_of(
        await merchant.get("/v1/subscriptions/payment-history", params={"subscriptionId": sub_id})
    )
    renewal = next(c for c in history if c["id"] == charge.id)
    assert renewal["state"] == "succeeded"
    assert renewal["expectedSettlementDate"] is not None
    events = await all_events(merchant)
    assert len(events_about(events, "charge.succeeded", charge.id)) == 1
    assert [e["type"] for e in events if e["subscriptionId"] == sub_id].count("subscription.renewed") == 1

    # The passes that would have resolved it find nothing left to do.
    clock.advance(RECONCILE_AFTER + timedelta(hours=1))
    assert (await run_reconciliation(runtime, "worker-1")).claimed == 0
    assert (await run_renewals(runtime, "worker-1")).claimed == 0
    await merchant.login()
    assert len(events_about(await all_events(merchant), "charge.succeeded", charge.id)) == 1


async def test_the_same_notification_twice_has_one_effect(
    client: Any, merchant: Any, runtime: Any, sandbox: HeldSandbox, clock: Any
) -> None:
    sub_id, charge = await _unknown_renewal(merchant, runtime, sandbox)
    payload = volcan("evt_twice", charge)
    first = data_of(
        await post_signed(client, "/webhooks/volcan", payload, secret=VOLCAN_SECRET, at=clock.now())
    )
    events = await all_events(merchant)
    second = data_of(
        await post_signed(client, "/webhooks/volcan", payload, secret=VOLCAN_SECRET, at=clock.now())
    )
    assert (first["duplicate"], second["duplicate"]) == (False, True)
    assert await all_events(merchant) == events
    assert (await _subscription(merchant, sub_id))["cyclesPaid"] == 2


async def test_a_notification_racing_the_workers_lookup_gives_one_outcome_one_event(
    client: Any, merchant: Any, runtime: Any, sandbox: HeldSandbox, clock: Any
) -> None:
    sub_id, charge = await _unknown_renewal(merchant, runtime, sandbox)
    # The worker takes the row again and asks the processor, which now answers; while its look-up
    # is in flight the notification arrives: the worker holds the lease, so the notification waits.
    sandbox.blind = False
    await _notified_during_the_workers_lookup(client, runtime, sandbox, clock, charge)
    assert [c.state for c in await charges_of(runtime, sub_id) if c.kind == "renewal"] == ["succeeded"]

    # The deferred notification finds the charge final, in agreement: nothing more happens.
    assert await run_deferred_notifications(runtime, inbound_identity()) == {"applied": 1}
    assert await run_deferred_notifications(runtime, inbound_identity()) == {}
    events = await all_events(merchant)
    assert len(events_about(events, "charge.succeeded", charge.id)) == 1
    assert [e["type"] for e in events if e["subscriptionId"] == sub_id].count("subscription.renewed") == 1
    assert (await _subscription(merchant, sub_id))["cyclesPaid"] == 2


async def test_a_failed_notification_starts_grace_like_a_decline(
    client: Any, merchant: Any, runtime: Any, sandbox: HeldSandbox, clock: Any
) -> None:
    sub_id, charge = await _unknown_renewal(merchant, runtime, sandbox)
    payload = volcan("evt_failed", charge, "charge.failed", declineCode="7303")
    data = data_of(
        await post_signed(client, "/webhooks/volcan", payload, secret=VOLCAN_SECRET, at=clock.now())
    )
    assert (data["resolution"], data["chargeState"]) == ("applied", "failed")
    sub = await _subscription(merchant, sub_id)
    assert (sub["status"], sub["renewalStatus"]) == ("active", "in_grace")
    [row] = [c for c in await charges_of(runtime, sub_id) if c.kind == "renewal"]
    assert (row.state, row.decline_code, row.expected_settlement_date) == ("failed", "7303", None)


async def test_a_contradicting_notification_is_kept_and_announced_never_applied(
    client: Any, merchant: Any, runtime: Any, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    plan = await create_plan(merchant)
    enrolment = await enrol(merchant, plan["id"])
    charge_id = enrolment["charge"]["id"]
    [charge] = [c for c in await charges_of(runtime) if c.id == charge_id]
    assert charge.state == "succeeded"

    payload = volcan("evt_contradiction", charge, "charge.failed", declineCode="7201")
    data = data_of(
        await post_signed(client, "/webhooks/volcan", payload, secret=VOLCAN_SECRET, at=clock.now())
    )
    assert (data["resolution"], data["chargeState"]) == ("disputed", "succeeded")
    [after] = [c for c in await charges_of(runtime) if c.id == charge_id]
    assert after.state == "succeeded"
    assert [
        r.getMessage() for r in caplog.records if r.name == "billing.inbound" and r.levelname == "ERROR"
    ] == ["notification contradicts the charge's final state; not applied"]
    [event] = events_about(await all_events(merchant), "charge.disputed_outcome", charge_id)
    assert (event["data"]["state"], event["data"]["notifiedState"]) == ("succeeded", "failed")

    # The same outcome again is a confirmation: stored, nothing changes.
    again = volcan("evt_confirm", charge)
    data = data_of(await post_signed(client, "/webhooks/volcan", again, secret=VOLCAN_SECRET, at=clock.now()))
    assert data["resolution"] == "confirmed"
    refund = volcan("evt_refund", charge, "charge.refunded")
    data = data_of(
        await post_signed(client, "/webhooks/volcan", refund, secret=VOLCAN_SECRET, at=clock.now())
    )
    assert (data["resolution"], data["chargeState"]) == ("recorded", "succeeded")


async def test_an_unknown_enrolment_charge_becomes_the_subscription(
    client: Any, merchant: Any, runtime: Any, sandbox: HeldSandbox, clock: Any
) -> None:
    sandbox.blind = True
    plan = await create_plan(merchant)
    answer = await verify_card(merchant, plan_id=plan["id"], number="4000000000000119")
    assert answer.status_code == 502, answer.text
    [charge] = [c for c in await charges_of(runtime) if c.kind == "enrolment"]
    assert (charge.state, charge.subscription_id) == ("unknown", None)

    data = data_of(
        await post_signed(
            client, "/webhooks/volcan", volcan("evt_enrol", charge), secret=VOLCAN_SECRET, at=clock.now()
        )
    )
    assert (data["resolution"], data["chargeState"]) == ("applied", "succeeded")
    [after] = [c for c in await charges_of(runtime) if c.id == charge.id]
    assert after.subscription_id is not None
    assert after.expected_settlement_date == date(2026, 1, 16)  # Thursday noon -> Friday
    sub = await _subscription(merchant, after.subscription_id)
    assert sub["status"] == "active"


async def test_a_notice_for_no_single_charge_or_another_amount_is_kept_not_applied(
    client: Any, merchant: Any, runtime: Any, sandbox: HeldSandbox, clock: Any
) -> None:
    sub_id, charge = await _unknown_renewal(merchant, runtime, sandbox)
    unmatched = volcan("evt_nobody", charge, idempotencyKey="sub_nobody:2026:1")
    data = data_of(
        await post_signed(client, "/webhooks/volcan", unmatched, secret=VOLCAN_SECRET, at=clock.now())
    )
    assert (data["resolution"], data["chargeId"]) == ("unmatched", None)
    other_amount = volcan("evt_amount", charge, amount="999.99")
    data = data_of(
        await post_signed(client, "/webhooks/volcan", other_amount, secret=VOLCAN_SECRET, at=clock.now())
    )
    assert (data["resolution"], data["chargeState"]) == ("mismatch", "unknown")
    assert (await _subscription(merchant, sub_id))["cyclesPaid"] == 1


@pytest.mark.parametrize(
    "problem", ["bad_signature", "stale", "future", "reserialised", "missing", "wrong_secret"]
)
async def test_every_signature_problem_answers_the_same_401(
    client: Any, merchant: Any, runtime: Any, clock: Any, problem: str
) -> None:
    plan = await create_plan(merchant)
    charge_id = (await enrol(merchant, plan["id"]))["charge"]["id"]
    [charge] = [c for c in await charges_of(runtime) if c.id == charge_id]
    body = json.dumps(volcan("evt_sig", charge, "charge.failed"), indent=2).encode()
    at = clock.now()
    headers = signed_headers(body, secret=VOLCAN_SECRET, at=at)
    if problem == "bad_signature":
        headers["X-Notification-Signature"] = "v1=" + "0" * 64
    elif problem == "stale":
        headers = signed_headers(body, secret=VOLCAN_SECRET, at=at - timedelta(seconds=301))
    elif problem == "future":
        headers = signed_headers(body, secret=VOLCAN_SECRET, at=at + timedelta(seconds=301))
    elif problem == "reserialised":
        body = json.dumps(json.loads(body)).encode()  # same JSON, other bytes
    elif problem == "missing":
        headers = {"Content-Type": "application/json"}
    else:
        headers = signed_headers(body, secret="another-secret", at=at)
    answer = await client.post("/webhooks/volcan", content=body, headers=headers)
    first = error_of(answer, 401, "7070")
    assert first["message"] == "The notification signature did not validate (secret, timestamp or body)."
    # Nothing was stored: the same event id, signed properly, is still new.
    good = await client.post(
        "/webhooks/volcan", content=body, headers=signed_headers(body, secret=VOLCAN_SECRET, at=at)
    )
    assert data_of(good)["duplicate"] is False


async def test_a_signature_just_inside_the_tolerance_is_accepted(
    client: Any, merchant: Any, runtime: Any, clock: Any
) -> None:
    plan = await create_plan(merchant)
    charge_id = (await enrol(merchant, plan["id"]))["charge"]["id"]
    [charge] = [c for c in await charges_of(runtime) if c.id == charge_id]
    answer = await post_signed(
        client,
        "/webhooks/volcan",
        volcan("evt_edge", charge),
        secret=VOLCAN_SECRET,
        at=clock.now() - timedelta(seconds=300),
    )
    assert data_of(answer)["resolution"] == "confirmed"


async def test_size_and_shape_of_the_body(client: Any, clock: Any) -> None:
    big = b'{"eventId": "' + b"x" * (1024 * 1024) + b'"}'
    answer = await client.post(
        "/webhooks/volcan", content=big, headers=signed_headers(big, secret=VOLCAN_SECRET, at=clock.now())
    )
    error_of(answer, 413, "7017")
    cases = [
        ({"type": "charge.succeeded"}, "eventId"),
        ({"eventId": "e1", "type": "charge.lost", "amount": 1, "currency": "USD"}, "type"),
        (
            {
                "eventId": "e1",
                "type": "charge.failed",
                "amount": 1,
                "currency": "USD",
                "occurredAt": "yesterday",
            },
            "occurredAt",
        ),
    ]
    for payload, field in cases:
        answer = await post_signed(client, "/webhooks/volcan", payload, secret=VOLCAN_SECRET, at=clock.now())
        error_of(answer, 400, "7000", field)
    not_json = b"{nope"
    answer = await client.post(
        "/webhooks/volcan",
        content=not_json,
        headers=signed_headers(not_json, secret=VOLCAN_SECRET, at=clock.now()),
    )
    error_of(answer, 400, "7000")
    # No merchant token is needed, and a merchant token does not stand in for the signature.
    answer = await client.post("/webhooks/volcan", json={"eventId": "e2"})
    error_of(answer, 401, "7070")


async def test_an_unknown_on_demand_item_is_finished_by_its_notification(
    client: Any, merchant: Any, runtime: Any, sandbox: HeldSandbox, clock: Any
) -> None:
    plan = await create_plan(merchant)
    sub = (await enrol(merchant, plan["id"]))["subscription"]
    token = await token_of(runtime, sub["defaultPaymentMethodId"])
    sandbox.set_scenario(token, SandboxScenario.PROCESSING_ERROR)
    sandbox.blind = True
    body = {"client": merchant.id, "data": [{"subscriptionId": sub["id"], "amount": 5}]}
    batch = data_of(await merchant.post("/v1/subscriptions/charges", json=body), 202)
    await run_ondemand(runtime, "worker-1")
    [charge] = [c for c in await charges_of(runtime, sub["id"]) if c.kind == "on_demand"]
    assert charge.state == "unknown"

    data = data_of(
        await post_signed(
            client, "/webhooks/volcan", volcan("evt_item", charge), secret=VOLCAN_SECRET, at=clock.now()
        )
    )
    assert (data["resolution"], data["chargeState"]) == ("applied", "succeeded")
    status = data_of(await merchant.get(f"/v1/subscriptions/charges/batches/{batch['batchId']}"))
    assert status["status"] == "completed"
    assert status["totals"]["succeeded"] == 1
    events = await all_events(merchant)
    assert len(events_about(events, "charge.succeeded", charge.id)) == 1
    assert [e["type"] for e in events].count("batch.completed") == 1


async def test_a_deferred_notification_is_applied_when_the_worker_learned_nothing(
    client: Any, merchant: Any, runtime: Any, sandbox: HeldSandbox, clock: Any
) -> None:
    sub_id, charge = await _unknown_renewal(merchant, runtime, sandbox)
    # The worker holds the row while its look-up hangs and then fails: it learns nothing.
    await _notified_during_the_workers_lookup(client, runtime, sandbox, clock, charge)
    assert [c.state for c in await charges_of(runtime, sub_id) if c.kind == "renewal"] == ["unknown"]

    # The worker's deferred-notification pass applies what the processor said.
    assert await run_deferred_notifications(runtime, inbound_identity()) == {"applied": 1}
    assert [c.state for c in await charges_of(runtime, sub_id) if c.kind == "renewal"] == ["succeeded"]
    assert (await _subscription(merchant, sub_id))["cyclesPaid"] == 2
    assert len(events_about(await all_events(merchant), "charge.succeeded", charge.id)) == 1


async def test_an_unknown_charge_of_a_cancelled_subscription_is_settled_before_reconciliation(
    client: Any, merchant: Any, runtime: Any, sandbox: HeldSandbox, clock: Any
) -> None:
    """The reconciliation pass's own case: the subscription was cancelled while its renewal charge
    was open. The notification settles the charge as that pass would; the subscription stays
    cancelled; the pass then finds nothing to do."""
    sub_id, charge = await _unknown_renewal(merchant, runtime, sandbox)
    data_of(await merchant.delete(f"/v1/subscriptions/{sub_id}"))

    data = data_of(
        await post_signed(
            client, "/webhooks/volcan", volcan("evt_cancelled", charge), secret=VOLCAN_SECRET, at=clock.now()
        )
    )
    assert (data["resolution"], data["chargeState"]) == ("applied", "succeeded")
    sub = await _subscription(merchant, sub_id)
    assert (sub["status"], sub["cyclesPaid"]) == ("cancelled", 1)
    assert len(events_about(await all_events(merchant), "charge.succeeded", charge.id)) == 1

    clock.advance(RECONCILE_AFTER + timedelta(hours=1))
    assert (await run_reconciliation(runtime, "worker-1")).claimed == 0
