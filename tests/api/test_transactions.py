"""`POST /transactions`: the originating transaction, authenticated like every merchant write."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from tests.api.conftest import data_of, error_of, raw

pytestmark = pytest.mark.anyio


async def test_create_answers_uid_reference_and_url(merchant: Any) -> None:
    response = await merchant.post(
        "/transactions", json={"amount": 15, "currency": "GTQ", "userId": "user-7", "externalId": "order-1"}
    )

    trx = data_of(response, 201)
    assert trx["uid"].startswith("trx_")
    assert trx["reference"].startswith("TRX-")
    assert trx["URL"] == f"http://127.0.0.1:8000/pay/{trx['reference']}"  # server.public_url's default
    assert (trx["planUid"], trx["returnUrl"]) == (None, None)
    assert '"amount":15.00' in response.text
    assert (trx["currency"], trx["userId"], trx["externalId"], trx["status"]) == (
        "GTQ",
        "user-7",
        "order-1",
        "created",
    )


async def test_external_id_is_unique_per_client(merchant: Any, merchant_factory: Any) -> None:
    body = {"amount": 1, "currency": "USD", "userId": "u", "externalId": "order-9"}
    data_of(await merchant.post("/transactions", json=body), 201)

    error_of(await merchant.post("/transactions", json=body), 409, "7006", "externalId")
    other = await merchant_factory(name="Other")
    data_of(await other.post("/transactions", json=body), 201)  # another client's namespace


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"currency": "USD", "userId": "u"}, 400, "7000", "amount"),
        ({"amount": 1, "userId": "u"}, 400, "7000", "currency"),
        ({"amount": 1, "currency": "USD"}, 400, "7000", "userId"),
        ({"amount": "one dollar", "currency": "USD", "userId": "u"}, 400, "7000", "amount"),
        ({"amount": "1.005", "currency": "USD", "userId": "u"}, 400, "7002", "amount"),
        ({"amount": 1, "currency": "USD", "userId": 42}, 400, "7000", "userId"),
        ({"amount": 0, "currency": "USD", "userId": "u"}, 400, "7001", "amount"),
        ({"amount": Decimal("1.005"), "currency": "USD", "userId": "u"}, 400, "7002", "amount"),
        ({"amount": Decimal("100.5"), "currency": "CLP", "userId": "u"}, 400, "7002", "amount"),
        ({"amount": 1, "currency": "ZZZ", "userId": "u"}, 400, "7016", "currency"),
        ({"amount": 1, "currency": "USD", "userId": "u", "clientId": "cli_other"}, 403, "7605", "clientId"),
    ],
)
async def test_bad_transactions(
    merchant: Any, body: dict[str, Any], status: int, code: str, field: str
) -> None:
    error_of(await merchant.post("/transactions", content=raw(body)), status, code, field)


async def test_transactions_need_a_token_and_a_signature(merchant: Any, client: Any) -> None:
    body = {"amount": 1, "currency": "USD", "userId": "u"}

    error_of(await client.post("/transactions", json=body), 401, "7600")
    error_of(await merchant.post("/transactions", json=body, sign=False), 401, "7604")
    tampered = await merchant.post(
        "/transactions",
        content=b'{"amount": 2, "currency": "USD", "userId": "u"}',
        headers=merchant.signed_headers(
            b'{"amount": 1, "currency": "USD", "userId": "u"}', target="/transactions"
        ),
    )
    error_of(tampered, 401, "7604")


async def test_racing_requests_with_one_external_id_create_one_transaction(merchant: Any) -> None:
    body = {"amount": 1, "currency": "USD", "userId": "u", "externalId": "order-race"}

    responses = await asyncio.gather(*(merchant.post("/transactions", json=body) for _ in range(5)))

    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409]
    assert {r.json()["errors"][0]["code"] for r in responses if r.status_code == 409} == {"7006"}
