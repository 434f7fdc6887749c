"""The notification routes, and header injection refused at the edge: a notificationEmail or userId with
CR/LF answers 7000 and never reaches a stored row, let alone a mail header."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import create_plan, create_transaction, data_of, enrol, error_of

pytestmark = pytest.mark.anyio

INJECTIONS = ["ada@example.com\r\nBcc: all@example.com", "ada@example.com\nBcc: all@example.com"]


async def test_settings_default_then_change_only_what_is_sent(merchant: Any) -> None:
    initial = data_of(await merchant.get("/v1/notifications/settings"))
    assert initial == {
        "disabled": [],
        "locale": "es",
        "eachAttempt": False,
        "senderName": None,
        "replyTo": None,
        "updatedAt": None,
    }
    changed = data_of(
        await merchant.put(
            "/v1/notifications/settings",
            json={"disabled": ["cardExpiring"], "senderName": "Acme", "replyTo": "help@acme.example"},
        )
    )
    assert (changed["disabled"], changed["senderName"], changed["replyTo"]) == (
        ["cardExpiring"],
        "Acme",
        "help@acme.example",
    )
    again = data_of(await merchant.put("/v1/notifications/settings", json={"locale": "en", "replyTo": None}))
    assert (again["disabled"], again["locale"], again["senderName"], again["replyTo"]) == (
        ["cardExpiring"],
        "en",
        "Acme",
        None,
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"disabled": ["everything"]}, "disabled"),
        ({"locale": "fr"}, "locale"),
        ({"senderName": "Acme\r\nBcc: all@example.com"}, "senderName"),
        ({"replyTo": "help@acme.example\r\nBcc: all@example.com"}, "replyTo"),
        ({"eachAttempt": "yes"}, "eachAttempt"),
    ],
)
async def test_bad_settings_name_the_field(merchant: Any, body: dict[str, Any], field: str) -> None:
    error = error_of(await merchant.put("/v1/notifications/settings", json=body), 400, "7000")
    assert field in (error.get("field") or "") + error["message"]


@pytest.mark.parametrize("email", INJECTIONS)
async def test_notification_email_with_line_breaks_is_refused(merchant: Any, email: str) -> None:
    plan = await create_plan(merchant)
    trx = await create_transaction(merchant)
    card = {"number": "4242424242424242", "expMonth": 12, "expYear": 2030, "cvv": "123", "holderName": "Ada"}
    body = {
        "uid": trx["uid"],
        "processor": "sandbox",
        "cardInfo": card,
        "shouldCreateSubscription": True,
        "planUid": plan["id"],
        "notificationEmail": email,
    }
    error_of(await merchant.post("/v1/subscriptions/verify-card", json=body), 400, "7000")
    sub = (await enrol(merchant, plan["id"], notificationEmail="ada@example.com"))["subscription"]
    error_of(
        await merchant.put(
            "/v1/subscriptions", json={"subscriptionId": sub["id"], "notificationEmail": email}
        ),
        400,
        "7000",
    )
    detail = data_of(await merchant.get(f"/v1/subscriptions/detail/{sub['id']}"))
    assert detail["notificationEmail"] == "ada@example.com"


@pytest.mark.parametrize("user", ["ada\r\nBcc: all@example.com", "ada\nSubject: free money"])
async def test_user_id_with_line_breaks_is_refused(merchant: Any, user: str) -> None:
    body = {"amount": 1, "currency": "USD", "userId": user}
    error_of(await merchant.post("/transactions", json=body), 400, "7000", "userId")
    tokenize = {"tokenizeData": {"userId": user, "processorId": "sandbox", "cardId": "tok_x"}}
    error_of(await merchant.post("/v1/subscriptions/payment-methods", json=tokenize), 400, "7000")


async def test_subscription_notifications_list_is_empty_then_404_for_unknown(merchant: Any) -> None:
    plan = await create_plan(merchant)
    sub = (await enrol(merchant, plan["id"], notificationEmail="ada@example.com"))["subscription"]
    assert data_of(await merchant.get(f"/v1/subscriptions/{sub['id']}/notifications")) == []
    error_of(await merchant.get("/v1/subscriptions/sub_missing/notifications"), 404, "7041")
