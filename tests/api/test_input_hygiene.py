"""Control characters and card numbers are refused at the edge, on every string of every write body.

The sweep takes one representative body per write route and, for each string in it, sends the
body again with that one string made bad. NUL used to reach PostgreSQL (which cannot store it)
and answer 500; a card number typed into a user id, an alias or metadata used to be stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.anyio

CARD = "4242 4242 4242 4242"


def bodies(client_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, body) for every JSON write route."""
    card = {"number": "4242424242424242", "expMonth": 12, "expYear": 2030, "cvv": "123", "holderName": "Ana"}
    return [
        (
            "POST",
            "/v1/plans",
            {
                "client": client_id,
                "plan": {
                    "name": "Pro",
                    "amount": 9.9,
                    "currency": "USD",
                    "type": "interval",
                    "frequency": {"frequency": 30, "shortDescription": "s", "longDescription": "l"},
                    "gracePolicy": "patient",
                },
            },
        ),
        ("PUT", "/v1/plans", {"planId": "pln_x", "client": client_id, "plan": {"name": "Pro 2"}}),
        ("POST", "/transactions", {"amount": 1, "currency": "USD", "userId": "u-1", "externalId": "order-1"}),
        (
            "POST",
            "/v1/subscriptions/verify-card",
            {
                "uid": "trx_x",
                "processor": "sandbox",
                "cardInfo": card,
                "shouldCreateSubscription": True,
                "planUid": "pln_x",
                "userId": "u-1",
                "notificationEmail": "ana@example.com",
                "alias": "work card",
                "clientId": client_id,
            },
        ),
        ("PUT", "/v1/subscriptions", {"subscriptionId": "sub_x", "notificationEmail": "ana@example.com"}),
        (
            "POST",
            "/v1/subscriptions/payment-methods",
            {
                "tokenizeData": {
                    "userId": "u-1",
                    "clientId": client_id,
                    "processorId": "sandbox",
                    "cardId": "tok_sbx_x",
                    "alias": "home",
                }
            },
        ),
        (
            "POST",
            "/v1/subscriptions/charges",
            {
                "client": client_id,
                "data": [
                    {"subscriptionId": "sub_x", "amount": 1.5, "metadata": {"note": "n", "tags": ["a"]}}
                ],
            },
        ),
    ]


def string_paths(value: Any, path: str = "") -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(field name as the API reports it, key path) of every string leaf."""
    if isinstance(value, str):
        yield path, ()
    elif isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else key
            for field, keys in string_paths(item, name):
                yield field, (key, *keys)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for field, keys in string_paths(item, f"{path}[{index}]"):
                yield field, (index, *keys)


def replaced(body: Any, keys: tuple[Any, ...], new: str) -> Any:
    copy = json.loads(json.dumps(body))
    target = copy
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = new
    return copy


def error_of(response: Any) -> tuple[int, str, str | None]:
    error = response.json()["errors"][0]
    return response.status_code, error["code"], error.get("field")


async def test_a_control_character_in_any_body_string_is_7000_naming_the_field(merchant: Any) -> None:
    failures = []
    checked = 0
    for method, path, body in bodies(merchant.id):
        for field, keys in string_paths(body):
            for bad in ("a\x00b", "a\x1bb", "\x7f"):
                response = await merchant.request(method, path, json=replaced(body, keys, bad))
                checked += 1
                if error_of(response) != (400, "7000", field):
                    failures.append(
                        f"{method} {path} {field} {bad!r}: {response.status_code} {response.text[:200]}"
                    )
    assert not failures, "\n".join(failures)
    assert checked >= 28 * 3


async def test_a_card_number_outside_card_info_is_7204_naming_the_field(merchant: Any) -> None:
    failures = []
    checked = 0
    for method, path, body in bodies(merchant.id):
        for field, keys in string_paths(body):
            if field.startswith("cardInfo."):
                continue
            for bad in (CARD, f"ref {CARD.replace(' ', '-')} end", "4000000000009995"):
                response = await merchant.request(method, path, json=replaced(body, keys, bad))
                checked += 1
                if error_of(response) != (400, "7204", field):
                    failures.append(
                        f"{method} {path} {field} {bad!r}: {response.status_code} {response.text[:200]}"
                    )
    assert not failures, "\n".join(failures)
    assert checked >= 25 * 3


async def test_a_card_number_in_a_metadata_key_is_refused(merchant: Any) -> None:
    body = {
        "client": merchant.id,
        "data": [{"subscriptionId": "sub_x", "amount": 1, "metadata": {CARD: "x"}}],
    }
    response = await merchant.post("/v1/subscriptions/charges", json=body)
    assert error_of(response) == (400, "7204", "data[0].metadata")
    assert "4242" not in response.text


async def test_ordinary_text_passes_the_edge(merchant: Any) -> None:
    """Long numbers that are not card numbers, tabs and line breaks in free text are fine."""
    response = await merchant.post(
        "/transactions",
        json={
            "amount": 1,
            "currency": "USD",
            "userId": "phone +502 5555 1234",
            "externalId": "order 12345678901234",
        },
    )
    assert response.status_code == 201, response.text
    plan = {
        "client": merchant.id,
        "plan": {
            "name": "Pro\tplan",
            "amount": 9.9,
            "currency": "USD",
            "type": "interval",
            "frequency": {"frequency": 30, "longDescription": "line one\nline two"},
        },
    }
    assert (await merchant.post("/v1/plans", json=plan)).status_code in (200, 201)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/subscriptions/detail/sub_%00x", None, "path"),
        ("/v1/plans/pln_x%01/client/c/detail", None, "path"),
        ("/v1/subscriptions", {"userId": "a\x00b", "clientId": "c"}, "userId"),
        ("/v1/subscriptions", {"userId": "u", "clientId": "c\x1f"}, "clientId"),
        ("/v1/subscriptions/payment-history", {"subscriptionId": "sub_\x00"}, "subscriptionId"),
    ],
)
async def test_control_characters_in_the_path_or_query_are_7000(
    merchant: Any, path: str, params: dict[str, str] | None, field: str
) -> None:
    response = await merchant.get(path, params=params)
    assert error_of(response) == (400, "7000", field)


async def test_a_card_number_in_a_query_value_is_7204(merchant: Any) -> None:
    response = await merchant.get("/v1/subscriptions", params={"userId": CARD, "clientId": merchant.id})
    assert error_of(response) == (400, "7204", "userId")


async def test_unauthenticated_routes_are_checked_too(client: Any) -> None:
    response = await client.post(
        "/v1/auth/login", json={"clientId": "cli_\x00", "timestamp": "1", "signature": "x"}
    )
    assert error_of(response) == (400, "7000", "clientId")
    response = await client.post("/v1/auth/refresh", json={"refreshToken": "rt_\x00"})
    assert error_of(response) == (400, "7000", "refreshToken")
