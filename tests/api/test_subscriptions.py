"""Subscriptions over HTTP: list, detail, notification e-mail, cancel, payment history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from billing.store.models import Event, Subscription
from tests.api.conftest import create_plan, data_of, enrol, error_of

pytestmark = pytest.mark.anyio


@pytest.fixture
async def enrolled(merchant: Any) -> dict[str, Any]:
    """An active subscription of user-1 on a 30-day plan."""
    plan = await create_plan(merchant)
    subscription: dict[str, Any] = (await enrol(merchant, plan["id"]))["subscription"]
    return subscription


async def _row(runtime: Any, subscription_id: str) -> Subscription:
    async with runtime.sessions() as session:
        row = await session.get(Subscription, subscription_id)
        assert row is not None
        return row


async def test_list_needs_user_id_and_client_id(merchant: Any, enrolled: dict[str, Any]) -> None:
    found = data_of(
        await merchant.get("/v1/subscriptions", params={"userId": "user-1", "clientId": merchant.id})
    )

    assert [s["id"] for s in found] == [enrolled["id"]]
    error_of(await merchant.get("/v1/subscriptions", params={"clientId": merchant.id}), 400, "7000", "userId")
    error_of(await merchant.get("/v1/subscriptions", params={"userId": "user-1"}), 400, "7000", "clientId")
    neither = error_of(await merchant.get("/v1/subscriptions"), 400, "7000", "userId")
    assert neither["message"] == "userId is required."
    both = (await merchant.get("/v1/subscriptions")).json()["errors"]
    assert [e["field"] for e in both] == ["userId", "clientId"]
    response = await merchant.get("/v1/subscriptions", params={"userId": "user-1", "clientId": "cli_other"})
    error_of(response, 403, "7605", "clientId")
    nobody = await merchant.get("/v1/subscriptions", params={"userId": "nobody", "clientId": merchant.id})
    assert data_of(nobody) == []


async def test_clients_never_see_each_others_cardholders(
    merchant: Any, merchant_factory: Any, enrolled: dict[str, Any]
) -> None:
    other = await merchant_factory(name="Other")

    same_user = await other.get("/v1/subscriptions", params={"userId": "user-1", "clientId": other.id})
    assert data_of(same_user) == []
    error_of(await other.get(f"/v1/subscriptions/detail/{enrolled['id']}"), 404, "7041")
    error_of(await other.delete(f"/v1/subscriptions/{enrolled['id']}"), 404, "7041")
    history = await other.get("/v1/subscriptions/payment-history", params={"subscriptionId": enrolled["id"]})
    error_of(history, 404, "7041")
    put = await other.put(
        "/v1/subscriptions", json={"subscriptionId": enrolled["id"], "notificationEmail": "x@y.io"}
    )
    error_of(put, 404, "7041")
    assert (await _row(merchant.runtime, enrolled["id"])).status == "active"


async def test_detail_of_an_unknown_subscription_is_7041(merchant: Any) -> None:
    error_of(await merchant.get("/v1/subscriptions/detail/sub_missing"), 404, "7041")


async def test_the_notification_email_is_the_only_editable_field(
    merchant: Any, enrolled: dict[str, Any]
) -> None:
    response = await merchant.put(
        "/v1/subscriptions",
        json={
            "subscriptionId": enrolled["id"],
            "notificationEmail": " billing@example.com ",
            "status": "cancelled",
        },
    )

    updated = data_of(response)
    assert (updated["notificationEmail"], updated["status"]) == ("billing@example.com", "active")
    cleared = await merchant.put(
        "/v1/subscriptions", json={"subscriptionId": enrolled["id"], "notificationEmail": None}
    )
    assert data_of(cleared)["notificationEmail"] is None


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"notificationEmail": "not-an-email"}, 400, "7000", "notificationEmail"),
        ({"notificationEmail": "a@b"}, 400, "7000", "notificationEmail"),
        ({"notificationEmail": 42}, 400, "7000", "notificationEmail"),
        ({}, 400, "7000", "notificationEmail"),
        ({"subscriptionId": None, "notificationEmail": "a@b.io"}, 400, "7000", "subscriptionId"),
        ({"subscriptionId": "sub_missing", "notificationEmail": "a@b.io"}, 404, "7041", "subscriptionId"),
        ({"notificationEmail": "a@b.io", "clientId": "cli_other"}, 403, "7605", "clientId"),
    ],
)
async def test_bad_updates(
    merchant: Any, enrolled: dict[str, Any], body: dict[str, Any], status: int, code: str, field: str
) -> None:
    body = {"subscriptionId": enrolled["id"], **body}
    if body["subscriptionId"] is None:
        del body["subscriptionId"]

    error_of(await merchant.put("/v1/subscriptions", json=body), status, code, field)


async def test_cancel_is_immediate_and_a_second_cancel_is_a_conflict(
    merchant: Any, enrolled: dict[str, Any], runtime: Any
) -> None:
    cancelled = data_of(await merchant.delete(f"/v1/subscriptions/{enrolled['id']}"))

    assert (cancelled["status"], cancelled["nextRenewalDate"], cancelled["renewalStatus"]) == (
        "cancelled",
        None,
        "ended",
    )
    assert cancelled["cancelledAt"] == "2026-01-15T12:00:00Z"
    row = await _row(runtime, enrolled["id"])
    assert (row.status, row.next_attempt_at) == ("cancelled", None)
    error_of(await merchant.delete(f"/v1/subscriptions/{enrolled['id']}"), 409, "7050")
    error_of(await merchant.delete("/v1/subscriptions/sub_missing"), 404, "7041")
    async with runtime.sessions() as session:
        types = [e.type for e in (await session.exec(select(Event).order_by(Event.sequence))).all()]
    assert types == ["subscription.created", "charge.succeeded", "subscription.cancelled"]


async def test_cancelling_during_grace_stops_the_retries(
    merchant: Any, enrolled: dict[str, Any], runtime: Any
) -> None:
    async with runtime.sessions() as session, session.begin():
        row = await session.get(Subscription, enrolled["id"])
        assert row is not None
        row.renewal_status = "in_grace"
        row.grace_started_at = runtime.clock.now()
        row.grace_attempts = 1
        row.grace_retry_at = row.next_attempt_at = runtime.clock.now() + timedelta(hours=24)

    cancelled = data_of(await merchant.delete(f"/v1/subscriptions/{enrolled['id']}"))

    row = await _row(runtime, enrolled["id"])
    assert (row.status, row.next_attempt_at, row.grace_retry_at) == ("cancelled", None, None)
    # A merchant filtering on renewalStatus or on a coming retry no longer finds it.
    assert cancelled["renewalStatus"] == "ended"
    assert cancelled["grace"]["nextAttemptAt"] is None
    assert cancelled["grace"]["attemptsMade"] == 1
    detail = data_of(await merchant.get(f"/v1/subscriptions/detail/{enrolled['id']}"))
    assert (detail["renewalStatus"], detail["grace"]["nextAttemptAt"]) == ("ended", None)


async def test_payment_history_is_a_flat_array_and_needs_the_subscription_id(
    merchant: Any, enrolled: dict[str, Any]
) -> None:
    response = await merchant.get(
        "/v1/subscriptions/payment-history", params={"subscriptionId": enrolled["id"]}
    )

    body = response.json()
    assert (body["success"], body["message"]) == (True, "Payment history found")
    assert isinstance(body["data"], list)
    assert len(body["data"]) == 1
    error_of(await merchant.get("/v1/subscriptions/payment-history"), 400, "7000", "subscriptionId")
    missing = await merchant.get(
        "/v1/subscriptions/payment-history", params={"subscriptionId": "sub_missing"}
    )
    error_of(missing, 404, "7041")


async def test_subscription_routes_need_a_token(client: Any, enrolled: dict[str, Any]) -> None:
    error_of(await client.get(f"/v1/subscriptions/detail/{enrolled['id']}"), 401, "7600")
    error_of(await client.delete(f"/v1/subscriptions/{enrolled['id']}"), 401, "7600")
