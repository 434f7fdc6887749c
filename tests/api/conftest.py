"""Fixtures and helpers for the merchant API: plans, transactions, enrolment, subscriptions, cards.

HTTP tests use the `merchant` fixture (logged in, signing every write). Service tests use
`service_runtime` (no HTTP) with a sandbox processor on the test clock and `shop`, a client row.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from billing.processors.sandbox import SandboxProcessor
from billing.services.runtime import Runtime, build_runtime
from billing.store.ids import new_id
from billing.store.models import Client
from tests.clock import FixedClock

GOOD_CARD = "4242424242424242"
INSUFFICIENT_FUNDS = "4000000000009995"
CHARGES_DECLINE = "4000000000000341"
PROCESSING_ERROR = "4000000000000119"


def card(number: str = GOOD_CARD) -> dict[str, Any]:
    """`cardInfo` for the sandbox."""
    return {"number": number, "expMonth": 12, "expYear": 2030, "cvv": "123", "holderName": "Ada Lovelace"}


def plan_body(**fields: Any) -> dict[str, Any]:
    """A valid monthly-ish interval plan, with `fields` replacing or adding plan fields."""
    plan: dict[str, Any] = {
        "name": "Pro",
        "amount": 29.9,
        "currency": "USD",
        "type": "interval",
        "frequency": {"frequency": 30, "shortDescription": "Monthly"},
    }
    plan.update(fields)
    return {"plan": {k: v for k, v in plan.items() if v is not _DROP}}


_DROP = object()
DROP: Any = _DROP
"""Pass as a field value to `plan_body` to leave the field out."""


def raw(body: dict[str, Any]) -> bytes:
    """JSON bytes with Decimals written as numbers (`Decimal("10.001")` -> `10.001`), not floats."""

    def convert(value: Any) -> Any:
        if isinstance(value, Decimal):
            return f"@@{value}@@"
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    return re.sub(r'"@@([^@]+)@@"', r"\1", json.dumps(convert(body))).encode()


def data_of(response: Any, status: int = 200) -> Any:
    """The envelope's `data`, after checking the status and `success`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is True, body
    return body["data"]


def error_of(response: Any, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """The first error entry, after checking status, code and (when given) the field named."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    first: dict[str, Any] = body["errors"][0]
    assert first["code"] == code, body
    if field is not None:
        assert first.get("field") == field, body
    return first


async def create_plan(merchant: Any, **fields: Any) -> dict[str, Any]:
    """Create a plan through HTTP and return its data."""
    result: dict[str, Any] = data_of(await merchant.post("/v1/plans", json=plan_body(**fields)), 201)
    return result


async def create_transaction(
    merchant: Any, *, user: str = "user-1", amount: Any = 1, currency: str = "USD", **extra: Any
) -> dict[str, Any]:
    body = {"amount": amount, "currency": currency, "userId": user, **extra}
    result: dict[str, Any] = data_of(await merchant.post("/transactions", json=body), 201)
    return result


async def verify_card(
    merchant: Any,
    *,
    plan_id: str | None,
    number: str = GOOD_CARD,
    user: str = "user-1",
    currency: str = "USD",
    processor: str = "sandbox",
    **extra: Any,
) -> Any:
    """Create a transaction and verify a card against it (enrolling in `plan_id` when given)."""
    trx = await create_transaction(merchant, user=user, currency=currency)
    body: dict[str, Any] = {"uid": trx["uid"], "processor": processor, "cardInfo": card(number), **extra}
    if plan_id is not None:
        body.update(shouldCreateSubscription=True, planUid=plan_id)
    return await merchant.post("/v1/subscriptions/verify-card", json=body)


async def enrol(merchant: Any, plan_id: str, **kwargs: Any) -> dict[str, Any]:
    """Enrol a cardholder through HTTP; returns verify-card's data (subscription, paymentMethod, charge)."""
    result: dict[str, Any] = data_of(await verify_card(merchant, plan_id=plan_id, **kwargs))
    return result


@pytest.fixture
async def service_runtime(settings: Any, clock: FixedClock) -> AsyncIterator[Runtime]:
    """A runtime without HTTP: the test database, the test clock, a sandbox on that clock."""
    runtime = build_runtime(settings, clock, processors={"sandbox": SandboxProcessor(clock=clock)})
    try:
        yield runtime
    finally:
        await runtime.aclose()


async def add_client(runtime: Runtime, *, timezone: str = "America/Guatemala", name: str = "Shop") -> str:
    """Insert a client row directly (service tests need no keys)."""
    client_id = new_id("client")
    async with runtime.sessions() as session, session.begin():
        session.add(Client(id=client_id, name=name, timezone=timezone, created_at=runtime.clock.now()))
    return client_id


@pytest.fixture
async def shop(service_runtime: Runtime) -> str:
    """A sandbox client in America/Guatemala, for service tests."""
    return await add_client(service_runtime)


def utc(text: str) -> datetime:
    """An aware datetime from ISO text."""
    return datetime.fromisoformat(text)
