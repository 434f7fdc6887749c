"""Plans, cards and subscriptions for renewal tests, written straight into the store.

Subscriptions follow the schedule semantics shared with enrolment (docs/renewals.md):
without a trial the enrolment charge paid period 0 and boundary 1 is due next; with a trial
nothing was charged and boundary 0 (the trial end) is due next.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert

from billing.domain.calendar import Schedule, anchor_date, due_at, local_date
from billing.store.engine import Session
from billing.store.ids import new_id
from billing.store.models import Charge, Client, PaymentMethod, Plan, Subscription, SubscriptionPaymentMethod

CARDS = {
    "4242424242424242": "approve",
    "4000000000000002": "decline",
    "4000000000009995": "insufficient_funds",
    "4000000000000069": "expired_card",
    "4000000000000341": "charges_decline",
    "4000000000000119": "processing_error",
    "4100000000000019": "stolen",
}


async def make_client(
    session: Session,
    *,
    now: datetime,
    timezone: str = "America/Guatemala",
    environment: str = "sandbox",
    name: str = "Acme",
) -> Client:
    client = Client(
        id=new_id("client"), name=name, timezone=timezone, environment=environment, created_at=now
    )
    session.add(client)
    await session.flush()
    return client


async def make_plan(
    session: Session,
    client: Client,
    *,
    now: datetime,
    type: str = "anniversary",
    frequency: int | None = 1,
    day: int | None = None,
    amount_minor: int = 1000,
    currency: str = "USD",
    cycles: int | None = None,
    auto_renewal: bool = True,
    trial_days: int = 0,
    daily_attempts: int | None = None,
    interval_attempt_hours: float | None = None,
    grace_days: int | None = None,
    grace_policy: str | None = None,
    methods: list[str] | None = None,
) -> Plan:
    plan = Plan(
        id=new_id("plan"),
        client_id=client.id,
        name="Pro",
        amount_minor=amount_minor,
        currency=currency,
        type=type,
        frequency=frequency,
        frequency_day=day,
        methods=methods if methods is not None else ["sandbox"],
        auto_renewal=auto_renewal,
        cycles=cycles,
        trial_days=trial_days,
        daily_attempts=daily_attempts,
        interval_attempt_hours=interval_attempt_hours,
        grace_days=grace_days,
        grace_policy=grace_policy,
        created_at=now,
        updated_at=now,
    )
    session.add(plan)
    await session.flush()
    return plan


def sandbox_token(card: str = "4242424242424242") -> str:
    """A sandbox token for a test card (the scenario travels in the token)."""
    return f"tok_sbx_{CARDS[card]}_{secrets.token_hex(8)}"


async def make_method(
    session: Session,
    client: Client,
    user_id: str,
    *,
    now: datetime,
    card: str = "4242424242424242",
    priority: int = 0,
) -> PaymentMethod:
    method = PaymentMethod(
        id=new_id("payment_method"),
        client_id=client.id,
        user_id=user_id,
        processor="sandbox",
        token=sandbox_token(card),
        brand="visa",
        last4=card[-4:],
        exp_month=12,
        exp_year=2035,
        priority=priority,
        created_at=now,
    )
    session.add(method)
    await session.flush()
    return method


def schedule_of(plan: Plan, anchor: Any, tz: str) -> Schedule:
    if plan.type == "fixedDay":
        return Schedule("fixedDay", 1, anchor, tz, day=plan.frequency_day)
    if plan.type == "interval":
        assert plan.frequency is not None
        return Schedule("interval", plan.frequency, anchor, tz)
    return Schedule("anniversary", plan.frequency or 1, anchor, tz)


def subscription_row(
    client: Client, plan: Plan, method: PaymentMethod, *, enrolled_at: datetime, user_id: str | None = None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Column values of a freshly enrolled subscription and of its enrolment charge (None with a trial)."""
    tz = client.timezone
    anchor = anchor_date(local_date(enrolled_at, tz), plan.trial_days)
    schedule = schedule_of(plan, anchor, tz)
    sub_id = new_id("subscription")
    row: dict[str, Any] = {
        "id": sub_id,
        "client_id": client.id,
        "user_id": user_id or method.user_id,
        "plan_id": plan.id,
        "currency": plan.currency,
        "default_payment_method_id": method.id,
        "status": "active",
        "renewal_status": "current",
        "timezone": tz,
        "anchor_date": anchor,
        "grace_attempts": 0,
        "event_seq": 0,
        "created_at": enrolled_at,
        "updated_at": enrolled_at,
    }
    if plan.trial_days:
        trial_end = due_at(schedule, 0)
        row.update(
            period_index=-1,
            cycles_paid=0,
            trial_ends_at=trial_end,
            current_period_start=enrolled_at,
            current_period_end=trial_end,
            next_attempt_at=trial_end,
        )
        return row, None
    first_due = due_at(schedule, 1)
    row.update(
        period_index=0,
        cycles_paid=1,
        current_period_start=enrolled_at,
        current_period_end=first_due,
        next_attempt_at=first_due,
    )
    charge = {
        "id": new_id("charge"),
        "client_id": client.id,
        "subscription_id": sub_id,
        "kind": "enrolment",
        "amount_minor": plan.amount_minor,
        "currency": plan.currency,
        "payment_method_id": method.id,
        "processor": "sandbox",
        "period_start": due_at(schedule, 0),
        "period_index": 0,
        "attempt": 1,
        "method_index": 0,
        "state": "succeeded",
        "hard_decline": False,
        "idempotency_key": f"enrol:{secrets.token_hex(8)}:1",
        "created_at": enrolled_at,
        "updated_at": enrolled_at,
    }
    return row, charge


def attached_rows(client: Client, sub_id: str, methods: list[PaymentMethod]) -> list[dict[str, Any]]:
    """`subscription_payment_method` rows attaching `methods` to a subscription, in this order."""
    return [
        {"client_id": client.id, "subscription_id": sub_id, "payment_method_id": m.id, "position": n}
        for n, m in enumerate(methods)
    ]


async def enrol(
    session: Session,
    client: Client,
    plan: Plan,
    method: PaymentMethod,
    *,
    enrolled_at: datetime,
    fallbacks: tuple[PaymentMethod, ...] = (),
) -> Subscription:
    """A subscription enrolled at `enrolled_at` (its first charge succeeded unless there is a trial),
    backed by `method` (its default), then `fallbacks` in order."""
    row, charge = subscription_row(client, plan, method, enrolled_at=enrolled_at)
    conn = await session.connection()
    await conn.execute(insert(Subscription.metadata.tables["subscription"]), [row])
    await conn.execute(
        insert(SubscriptionPaymentMethod.metadata.tables["subscription_payment_method"]),
        attached_rows(client, row["id"], [method, *fallbacks]),
    )
    if charge is not None:
        await conn.execute(insert(Charge.metadata.tables["charge"]), [charge])
    found = await session.get(Subscription, row["id"])
    assert found is not None
    return found


async def enrol_many(
    session: Session,
    client: Client,
    plan: Plan,
    *,
    count: int,
    enrolled_at: datetime,
    card: str = "4242424242424242",
) -> list[str]:
    """`count` cardholders, each with one card and one subscription enrolled at `enrolled_at`."""
    methods: list[dict[str, Any]] = []
    subs: list[dict[str, Any]] = []
    attached: list[dict[str, Any]] = []
    charges: list[dict[str, Any]] = []
    for n in range(count):
        user_id = f"user-{n}-{secrets.token_hex(3)}"
        method = PaymentMethod(
            id=new_id("payment_method"),
            client_id=client.id,
            user_id=user_id,
            processor="sandbox",
            token=sandbox_token(card),
            brand="visa",
            last4=card[-4:],
            exp_month=12,
            exp_year=2035,
            priority=0,
            status="active",
            created_at=enrolled_at,
        )
        methods.append(method.model_dump())
        row, charge = subscription_row(client, plan, method, enrolled_at=enrolled_at)
        subs.append(row)
        attached += attached_rows(client, row["id"], [method])
        if charge is not None:
            charges.append(charge)
    conn = await session.connection()
    await conn.execute(insert(PaymentMethod.metadata.tables["payment_method"]), methods)
    await conn.execute(insert(Subscription.metadata.tables["subscription"]), subs)
    await conn.execute(
        insert(SubscriptionPaymentMethod.metadata.tables["subscription_payment_method"]), attached
    )
    if charges:
        await conn.execute(insert(Charge.metadata.tables["charge"]), charges)
    return [row["id"] for row in subs]


async def attach(session: Session, sub: Subscription, method: PaymentMethod) -> None:
    """Make `method` the subscription's last fallback (what `fallbackFor` does)."""
    from billing.store.payment_methods import attach_last

    await attach_last(session, sub.client_id, sub.id, method.id)


def days(n: float) -> timedelta:
    return timedelta(days=n)


def schedule_of_row(sub: Subscription, plan_type: str = "anniversary", every: int = 1) -> Schedule:
    """The schedule of a subscription made by `enrol` on a default (monthly anniversary) plan."""
    return Schedule(plan_type, every, sub.anchor_date, sub.timezone)  # type: ignore[arg-type]
