"""Helpers for the inbound notification tests: signed requests, a sandbox whose look-ups can be
blinded or held, and the readers the tests share."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from sqlmodel import select

from billing.domain.errors import BillingError
from billing.processors.base import Outcome
from billing.processors.sandbox import SandboxProcessor
from billing.services.inbound.signatures import sign
from billing.store.models import Charge, PaymentMethod

VOLCAN_SECRET = "volcan-test-secret-0123456789"
SETTLEMENTS_SECRET = "settlements-test-secret-0123456789"
STRIPE_SECRET = "whsec_test_0123456789abcdef"


class HeldSandbox(SandboxProcessor):
    """The sandbox, with look-ups that fail (`blind`) or wait for `gate` (a worker mid look-up)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.blind = False
        self.gate: asyncio.Event | None = None
        self.waiting = asyncio.Event()
        self.lookups = 0

    async def lookup(self, idempotency_key: str) -> Outcome | None:
        self.lookups += 1
        if self.gate is not None:
            self.waiting.set()
            await self.gate.wait()
        if self.blind:
            raise BillingError("PROCESSOR_ERROR")
        return await super().lookup(idempotency_key)


def inbound_settings(**sections: Any) -> dict[str, Any]:
    return {
        "inbound": {
            "volcan_secret": VOLCAN_SECRET,
            "settlements_secret": SETTLEMENTS_SECRET,
            "stripe_endpoint_secret": STRIPE_SECRET,
        },
        **sections,
    }


def signed_headers(body: bytes, *, secret: str, at: datetime) -> dict[str, str]:
    timestamp = int(at.timestamp())
    return {
        "Content-Type": "application/json",
        "X-Notification-Timestamp": str(timestamp),
        "X-Notification-Signature": "v1=" + sign(secret, timestamp, body),
    }


def stripe_headers(body: bytes, *, secret: str, at: datetime) -> dict[str, str]:
    timestamp = int(at.timestamp())
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Stripe-Signature": f"t={timestamp},v1={digest}"}


async def post_signed(http: Any, path: str, payload: dict[str, Any], *, secret: str, at: datetime) -> Any:
    body = json.dumps(payload).encode()
    return await http.post(path, content=body, headers=signed_headers(body, secret=secret, at=at))


def volcan(event_id: str, charge: Charge, kind: str = "charge.succeeded", **fields: Any) -> dict[str, Any]:
    """A volcan notification about `charge` (by idempotency key), amount as a decimal string."""
    payload: dict[str, Any] = {
        "eventId": event_id,
        "type": kind,
        "idempotencyKey": charge.idempotency_key,
        "amount": str(charge.amount_minor / 100),
        "currency": charge.currency,
        "occurredAt": "2026-01-15T12:00:00+00:00",
    }
    payload.update(fields)
    return payload


async def charges_of(runtime: Any, subscription_id: str | None = None) -> list[Charge]:
    async with runtime.sessions() as session:
        query = select(Charge)
        if subscription_id is not None:
            query = query.where(Charge.subscription_id == subscription_id)
        return list((await session.exec(query.order_by(Charge.created_at, Charge.id))).all())


async def token_of(runtime: Any, payment_method_id: str) -> str:
    async with runtime.sessions() as session:
        method = await session.get(PaymentMethod, payment_method_id)
        assert method is not None
        return method.token


async def all_events(merchant: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"limit": 100}
        if cursor:
            query["startingAfter"] = cursor
        response = await merchant.get("/v1/events", params=query)
        assert response.status_code == 200, response.text
        page = response.json()["data"]
        items += page["items"]
        if not page["hasMore"]:
            return items
        cursor = page["nextStartingAfter"]


def events_about(events: list[dict[str, Any]], event_type: str, charge_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == event_type and e["data"].get("chargeId") == charge_id]
