"""Subscriptions for on-demand tests, written straight into the database.

The enrolment route belongs to another feature; these tests only need subscriptions in a
known state. They follow the shared schedule semantics: enrolled "now" without a trial, period
0 paid, ``next_attempt_at`` = ``current_period_end`` = the due instant of boundary 1.
Cards are sandbox tokens whose behaviour is encoded in the token (see billing/processors/sandbox.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa

from billing.domain.calendar import Schedule, due_at, local_date
from billing.processors.sandbox import TOKEN_PREFIX, SandboxScenario
from billing.store.ids import new_id
from billing.store.models import PaymentMethod, Plan, Subscription, SubscriptionPaymentMethod


def sandbox_token(scenario: SandboxScenario | str = SandboxScenario.APPROVE) -> str:
    return f"{TOKEN_PREFIX}{SandboxScenario(scenario).value}_{secrets.token_hex(8)}"


@dataclass(frozen=True)
class Enrolled:
    """A subscription made by the factory and its cards (default first)."""

    id: str
    client_id: str
    currency: str
    user_id: str
    payment_method_ids: tuple[str, ...]
    tokens: tuple[str, ...]


class SubscriptionFactory:
    """``await subscriptions.make(client_id, cards=("approve",), currency="USD", count=1, status="active")``."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self._plans: dict[tuple[str, str], str] = {}

    async def _plan(self, session: Any, client_id: str, currency: str, now: datetime) -> str:
        key = (client_id, currency)
        if key not in self._plans:
            plan = Plan(
                id=new_id("plan"),
                client_id=client_id,
                name=f"Test {currency}",
                amount_minor=1000,
                currency=currency,
                type="interval",
                frequency=30,
                methods=["sandbox"],
                created_at=now,
                updated_at=now,
            )
            session.add(plan)
            await session.flush()
            self._plans[key] = plan.id
        return self._plans[key]

    async def make(
        self,
        client_id: str,
        *,
        cards: Sequence[SandboxScenario | str] = (SandboxScenario.APPROVE,),
        currency: str = "USD",
        status: str = "active",
        count: int = 1,
        timezone: str = "America/Guatemala",
    ) -> list[Enrolled]:
        now = self.runtime.clock.now()
        schedule = Schedule(kind="interval", every=30, anchor=local_date(now, timezone), tz=timezone)
        period_end = due_at(schedule, 1)
        made: list[Enrolled] = []
        pm_rows: list[dict[str, Any]] = []
        sub_rows: list[dict[str, Any]] = []
        attached_rows: list[dict[str, Any]] = []
        async with self.runtime.sessions() as session, session.begin():
            plan_id = await self._plan(session, client_id, currency, now)
            for _ in range(count):
                user_id = f"user_{secrets.token_hex(6)}"
                tokens = tuple(sandbox_token(card) for card in cards)
                pm_ids = tuple(new_id("payment_method") for _ in tokens)
                for priority, (pm_id, token) in enumerate(zip(pm_ids, tokens, strict=True)):
                    pm_rows.append(
                        {
                            "id": pm_id,
                            "client_id": client_id,
                            "user_id": user_id,
                            "processor": "sandbox",
                            "token": token,
                            "brand": "visa",
                            "last4": "4242",
                            "exp_month": 12,
                            "exp_year": 2030,
                            "priority": priority,
                            "status": "active",
                            "created_at": now,
                        }
                    )
                sub_id = new_id("subscription")
                sub_rows.append(
                    {
                        "id": sub_id,
                        "client_id": client_id,
                        "user_id": user_id,
                        "plan_id": plan_id,
                        "currency": currency,
                        "default_payment_method_id": pm_ids[0] if pm_ids else None,
                        "status": status,
                        "renewal_status": "current",
                        "timezone": timezone,
                        "anchor_date": schedule.anchor,
                        "period_index": 0,
                        "current_period_start": now,
                        "current_period_end": period_end,
                        "cycles_paid": 1,
                        "next_attempt_at": period_end if status == "active" else None,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                # Every card backs the subscription: the first is its default, the others its fallbacks.
                attached_rows += [
                    {
                        "client_id": client_id,
                        "subscription_id": sub_id,
                        "payment_method_id": pm_id,
                        "position": n,
                    }
                    for n, pm_id in enumerate(pm_ids)
                ]
                made.append(Enrolled(sub_id, client_id, currency, user_id, pm_ids, tokens))
            conn = await session.connection()
            for start in range(0, len(pm_rows), 5000):
                await conn.execute(sa.insert(PaymentMethod.__table__), pm_rows[start : start + 5000])
            for start in range(0, len(sub_rows), 5000):
                await conn.execute(sa.insert(Subscription.__table__), sub_rows[start : start + 5000])
            for start in range(0, len(attached_rows), 5000):
                await conn.execute(
                    sa.insert(SubscriptionPaymentMethod.__table__), attached_rows[start : start + 5000]
                )
        return made

    async def one(self, client_id: str, **kwargs: Any) -> Enrolled:
        return (await self.make(client_id, count=1, **kwargs))[0]


@pytest.fixture
def subscriptions(runtime: Any) -> SubscriptionFactory:
    return SubscriptionFactory(runtime)


_EXACT_JSON = msgspec.json.Encoder(decimal_format="number")


@pytest.fixture
def post_batch() -> Any:
    """``await post_batch(merchant, body)``: POST a JSON batch with decimals as JSON numbers (15.00, not "15.00")."""

    async def post(merchant: Any, body: Any) -> Any:
        return await merchant.post(
            "/v1/subscriptions/charges",
            content=_EXACT_JSON.encode(body),
            headers={"Content-Type": "application/json"},
        )

    return post
