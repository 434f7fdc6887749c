"""JSON batch intake through HTTP: answered at once, every bad item rejected on its own."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from billing.store.models import BatchItem

pytestmark = pytest.mark.anyio

CHARGES = "/v1/subscriptions/charges"


async def test_a_good_batch_is_received_and_queued(
    post_batch: Any, merchant: Any, subscriptions: Any
) -> None:
    """Migo's answer: 202, "Batch received", clientId/batchId/totals/errorsSample in data."""
    sub_a, sub_b = await subscriptions.make(merchant.id, count=2)
    response = await post_batch(
        merchant,
        {
            "client": merchant.id,
            "data": [
                {
                    "subscriptionId": sub_a.id,
                    "amount": Decimal("15.00"),
                    "metadata": {"note": "Metered usage"},
                },
                {"subscriptionId": sub_b.id, "amount": Decimal("49.99")},
            ],
        },
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["success"] is True
    assert body["message"] == "Batch received"
    data = body["data"]
    assert data["clientId"] == merchant.id
    assert data["batchId"].startswith("bat_")
    assert data["errorsSample"] == []
    assert data["totals"] == {
        "received": 2,
        "accepted": 2,
        "rejected": 0,
        "succeeded": 0,
        "failed": 0,
        "inProgress": 2,
    }
    assert data["status"] == "queued"


async def test_each_bad_item_is_rejected_with_its_own_code(
    post_batch: Any, merchant: Any, merchant_factory: Any, subscriptions: Any
) -> None:
    """Unknown, foreign and inactive subscriptions, bad amounts and bad metadata never stop the good items."""
    other = await merchant_factory(name="Other")
    good = await subscriptions.one(merchant.id)
    yen = await subscriptions.one(merchant.id, currency="JPY")
    dinar = await subscriptions.one(merchant.id, currency="KWD")
    cancelled = await subscriptions.one(merchant.id, status="cancelled")
    foreign = await subscriptions.one(other.id)
    items: list[Any] = [
        {"subscriptionId": good.id, "amount": Decimal("10.00")},  # 0 ok
        {"subscriptionId": "sub_doesnotexist", "amount": Decimal("1.00")},  # 1 7041
        {"subscriptionId": foreign.id, "amount": Decimal("1.00")},  # 2 7041 (not 403)
        {"subscriptionId": cancelled.id, "amount": Decimal("1.00")},  # 3 7050
        {"subscriptionId": good.id, "amount": 0},  # 4 7001
        {"subscriptionId": good.id, "amount": Decimal("-5.00")},  # 5 7001
        {"subscriptionId": good.id, "amount": Decimal("10.001")},  # 6 7002 (USD has 2 decimals)
        {"subscriptionId": yen.id, "amount": Decimal("10.5")},  # 7 7002 (JPY has none)
        {"subscriptionId": yen.id, "amount": 500},  # 8 ok
        {"subscriptionId": dinar.id, "amount": Decimal("1.234")},  # 9 ok (KWD has 3)
        {"subscriptionId": good.id, "amount": Decimal("1.00"), "metadata": "not an object"},  # 10 7000
        {"subscriptionId": good.id, "amount": Decimal("1.00"), "metadata": [1, 2]},  # 11 7000
        {"amount": Decimal("1.00")},  # 12 7000 (no subscriptionId)
        {"subscriptionId": good.id},  # 13 7000 (no amount)
        {"subscriptionId": good.id, "amount": "12.00 USD"},  # 14 7002 (not a decimal)
        "not an object",  # 15 7000
        {"subscriptionId": good.id, "amount": True},  # 16 7002
    ]
    response = await post_batch(merchant, {"client": merchant.id, "data": items})
    assert response.status_code == 202, response.text
    data = response.json()["data"]
    assert data["totals"]["received"] == len(items)
    assert data["totals"]["accepted"] == 3
    assert data["totals"]["rejected"] == len(items) - 3
    codes = {entry["index"]: entry["code"] for entry in data["errorsSample"]}
    assert codes == {
        1: "7041",
        2: "7041",
        3: "7050",
        4: "7001",
        5: "7001",
        6: "7002",
        7: "7002",
        10: "7000",
        11: "7000",
        12: "7000",
        13: "7000",
        14: "7002",
        15: "7000",
        16: "7002",
    }
    messages = {entry["index"]: entry["message"] for entry in data["errorsSample"]}
    assert "active" in messages[3]
    assert "metadata" in messages[10]
    assert "subscriptionId" in messages[12]


async def test_errors_sample_is_capped_but_totals_count_everything(post_batch: Any, merchant: Any) -> None:
    items = [{"subscriptionId": f"sub_missing_{i}", "amount": 1} for i in range(50)]
    response = await post_batch(merchant, {"client": merchant.id, "data": items})
    assert response.status_code == 202
    data = response.json()["data"]
    assert data["totals"]["rejected"] == 50
    assert len(data["errorsSample"]) == 20
    assert [e["index"] for e in data["errorsSample"]] == list(range(20))
    # Nothing left to charge: the batch is complete at once.
    assert data["status"] == "completed"


@pytest.mark.parametrize("count", [0, 5001])
async def test_empty_or_oversized_batch_is_refused_whole(post_batch: Any, merchant: Any, count: int) -> None:
    items = [{"subscriptionId": "sub_x", "amount": 1}] * count
    response = await post_batch(merchant, {"client": merchant.id, "data": items})
    assert response.status_code == 400
    body = response.json()
    assert body["errors"][0]["code"] == "7000"
    assert "between 1 and 5000" in body["message"]
    assert f"got {count}" in body["message"]


async def test_another_client_in_the_body_is_forbidden(
    post_batch: Any, merchant: Any, merchant_factory: Any
) -> None:
    other = await merchant_factory(name="Other")
    response = await post_batch(
        merchant, {"client": other.id, "data": [{"subscriptionId": "sub_x", "amount": 1}]}
    )
    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == "7605"


@pytest.mark.parametrize(
    "body",
    [
        {"data": [{"subscriptionId": "sub_x", "amount": 1}]},
        {"client": "x", "data": {"subscriptionId": "sub_x"}},
        {"client": "x"},
    ],
    ids=["no-client", "data-not-a-list", "no-data"],
)
async def test_malformed_request_is_a_clear_400(post_batch: Any, merchant: Any, body: dict[str, Any]) -> None:
    body = {**body, "client": body["client"]} if "client" in body else body
    if body.get("client") == "x":
        body["client"] = merchant.id
    response = await post_batch(merchant, body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "7000"


async def test_a_full_batch_of_5000_is_accepted(
    post_batch: Any, merchant: Any, subscriptions: Any, runtime: Any
) -> None:
    """The limit itself is allowed, and every item is stored (one row each) for the worker."""
    subs = await subscriptions.make(merchant.id, count=500)
    items = [{"subscriptionId": subs[i % 500].id, "amount": Decimal("1.25")} for i in range(5000)]
    response = await post_batch(merchant, {"client": merchant.id, "data": items})
    assert response.status_code == 202, response.text
    data = response.json()["data"]
    assert data["totals"]["accepted"] == 5000
    from sqlmodel import func, select

    async with runtime.sessions() as session:
        stored = (
            await session.exec(
                select(func.count()).select_from(BatchItem).where(BatchItem.batch_id == data["batchId"])
            )
        ).one()
    assert stored == 5000


async def test_batch_status_shows_every_item(post_batch: Any, merchant: Any, subscriptions: Any) -> None:
    sub = await subscriptions.one(merchant.id)
    response = await post_batch(
        merchant,
        {
            "client": merchant.id,
            "data": [
                {"subscriptionId": sub.id, "amount": Decimal("2.50"), "metadata": {"sku": "A-1"}},
                {"subscriptionId": "sub_nope", "amount": Decimal("1.00")},
            ],
        },
    )
    batch_id = response.json()["data"]["batchId"]
    status = await merchant.get(f"{CHARGES}/batches/{batch_id}")
    assert status.status_code == 200, status.text
    data = status.json()["data"]
    assert data["batchId"] == batch_id
    assert data["source"] == "json"
    assert data["status"] == "queued"
    assert data["nextAfter"] is None
    first, second = data["items"]
    assert first["index"] == 0
    assert first["subscriptionId"] == sub.id
    assert Decimal(str(first["amount"])) == Decimal("2.50")
    assert first["currency"] == "USD"
    assert first["metadata"] == {"sku": "A-1"}
    assert first["state"] == "queued"
    assert first["chargeId"] is None
    assert second["state"] == "rejected"
    assert second["code"] == "7041"
    assert second["input"] == {"subscriptionId": "sub_nope", "amount": "1.00"}


async def test_batch_status_pages_and_filters(post_batch: Any, merchant: Any, subscriptions: Any) -> None:
    sub = await subscriptions.one(merchant.id)
    items = [{"subscriptionId": sub.id if i % 2 else "sub_nope", "amount": 1} for i in range(7)]
    batch_id = (await post_batch(merchant, {"client": merchant.id, "data": items})).json()["data"]["batchId"]
    page1 = (await merchant.get(f"{CHARGES}/batches/{batch_id}", params={"limit": 3})).json()["data"]
    assert [i["index"] for i in page1["items"]] == [0, 1, 2]
    assert page1["nextAfter"] == 2
    page2 = (
        await merchant.get(f"{CHARGES}/batches/{batch_id}", params={"limit": 3, "after": page1["nextAfter"]})
    ).json()["data"]
    assert [i["index"] for i in page2["items"]] == [3, 4, 5]
    rejected = (await merchant.get(f"{CHARGES}/batches/{batch_id}", params={"state": "rejected"})).json()[
        "data"
    ]
    assert [i["index"] for i in rejected["items"]] == [0, 2, 4, 6]
    bad = await merchant.get(f"{CHARGES}/batches/{batch_id}", params={"state": "weird"})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["code"] == "7000"
    too_many = await merchant.get(f"{CHARGES}/batches/{batch_id}", params={"limit": 5001})
    assert too_many.status_code == 400


async def test_another_clients_batch_is_not_found(
    post_batch: Any, merchant: Any, merchant_factory: Any, subscriptions: Any
) -> None:
    sub = await subscriptions.one(merchant.id)
    batch_id = (
        await post_batch(merchant, {"client": merchant.id, "data": [{"subscriptionId": sub.id, "amount": 1}]})
    ).json()["data"]["batchId"]
    other = await merchant_factory(name="Other")
    for who, path in ((other, f"{CHARGES}/batches/{batch_id}"), (merchant, f"{CHARGES}/batches/bat_unknown")):
        response = await who.get(path)
        assert response.status_code == 404
        assert response.json()["errors"][0]["code"] == "7043"
