"""The e-mail outbox: rows written with the events that cause them, leased and sent by the notification pass.

`queue_for_events` runs inside `insert_events`, so an e-mail exists exactly when its event does
(same transaction). Claims work like webhook deliveries: a conditional UPDATE that only takes rows
whose lease is free, after `FOR UPDATE SKIP LOCKED` on PostgreSQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlmodel import col
from sqlmodel import select as select_rows

from billing.domain.notifications import EVENT_TEMPLATES, RETRY_FAILED, template_of
from billing.store.bulk import is_postgres
from billing.store.engine import Session
from billing.store.ids import new_id
from billing.store.models import Client, Notification, NotificationSetting, PaymentMethod, Plan, Subscription

_NOTE = Notification.metadata.tables["notification"]
_SETTING = NotificationSetting.metadata.tables["notification_setting"]
_SUB = Subscription.metadata.tables["subscription"]
_PLAN = Plan.metadata.tables["plan"]
_PM = PaymentMethod.metadata.tables["payment_method"]
_CLIENT = Client.metadata.tables["client"]
_TRIGGERS = frozenset({*EVENT_TEMPLATES, RETRY_FAILED})


@dataclass(frozen=True, slots=True)
class ClientNotificationSettings:
    """A client's choices (defaults when it never set any)."""

    client_id: str
    disabled: tuple[str, ...] = ()
    locale: str = "es"
    each_attempt: bool = False
    sender_name: str | None = None
    reply_to: str | None = None
    updated_at: datetime | None = None


async def client_settings(session: Session, client_id: str) -> ClientNotificationSettings:
    conn = await session.connection()
    row = (await conn.execute(select(_SETTING).where(_SETTING.c.client_id == client_id))).first()
    if row is None:
        return ClientNotificationSettings(client_id=client_id)
    return _settings_of(row._mapping)


def _settings_of(row: Any) -> ClientNotificationSettings:
    return ClientNotificationSettings(
        client_id=row["client_id"],
        disabled=tuple(row["disabled"] or ()),
        locale=row["locale"],
        each_attempt=row["each_attempt"],
        sender_name=row["sender_name"],
        reply_to=row["reply_to"],
        updated_at=row["updated_at"],
    )


async def save_client_settings(session: Session, settings: ClientNotificationSettings, now: datetime) -> None:
    values = {
        "disabled": list(settings.disabled),
        "locale": settings.locale,
        "each_attempt": settings.each_attempt,
        "sender_name": settings.sender_name,
        "reply_to": settings.reply_to,
        "updated_at": now,
    }
    conn = await session.connection()
    changed = await conn.execute(
        update(_SETTING).where(_SETTING.c.client_id == settings.client_id).values(**values)
    )
    if changed.rowcount == 0:
        await conn.execute(insert(_SETTING).values(client_id=settings.client_id, **values))


async def queue_for_events(session: Session, events: Sequence[Mapping[str, Any]]) -> int:
    """Write the e-mails the given event rows call for (in the caller's transaction); returns how many.

    Nothing is read unless one of the events can queue an e-mail, so most writes cost nothing extra.
    """
    relevant = [e for e in events if e["type"] in _TRIGGERS and e["subscription_id"] is not None]
    if not relevant:
        return 0
    types_by_sub: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event["subscription_id"] is not None:
            types_by_sub[event["subscription_id"]].add(event["type"])
    conn = await session.connection()
    subs = {
        row.id: row
        for row in await conn.execute(
            select(
                _SUB.c.id,
                _SUB.c.client_id,
                _SUB.c.user_id,
                _SUB.c.notification_email,
                _SUB.c.plan_id,
                _SUB.c.current_period_end,
                _SUB.c.grace_retry_at,
                _SUB.c.grace_deadline,
                _PLAN.c.name.label("plan_name"),
                _PLAN.c.amount_minor,
                _PLAN.c.currency,
                _PM.c.brand,
                _PM.c.last4,
                _SETTING.c.disabled,
                _SETTING.c.each_attempt,
            )
            .select_from(
                _SUB.join(_PLAN, _PLAN.c.id == _SUB.c.plan_id)
                .outerjoin(_PM, _PM.c.id == _SUB.c.default_payment_method_id)
                .outerjoin(_SETTING, _SETTING.c.client_id == _SUB.c.client_id)
            )
            .where(_SUB.c.id.in_({e["subscription_id"] for e in relevant}))
        )
    }
    rows: list[dict[str, Any]] = []
    retry_mails: set[tuple[str, Any]] = set()
    for event in relevant:
        sub = subs.get(event["subscription_id"])
        if sub is None or not sub.notification_email or sub.client_id != event["client_id"]:
            continue
        payload = event["payload"]
        others = frozenset(types_by_sub[sub.id] - {event["type"]})
        template = template_of(event["type"], payload, each_attempt=bool(sub.each_attempt), same_write=others)
        if template is None or template in (sub.disabled or ()):
            continue
        if event["type"] == RETRY_FAILED:
            # One e-mail per failed retry, however many fallback cards that retry tried.
            if (sub.id, payload.get("attempt")) in retry_mails:
                continue
            retry_mails.add((sub.id, payload.get("attempt")))
        rows.append(
            {
                "id": new_id("notification"),
                "client_id": sub.client_id,
                "event_id": event["id"],
                "subscription_id": sub.id,
                "template": template,
                "to_address": sub.notification_email,
                "context": _context(event, sub),
                "status": "pending",
                "attempts": 0,
                "occurred_at": event["created_at"],
            }
        )
    if rows:
        await conn.execute(insert(_NOTE), rows)
    return len(rows)


def _context(event: Mapping[str, Any], sub: Any) -> dict[str, Any]:
    """What the templates may use, frozen when the event happened."""
    payload = event["payload"]
    grace = payload.get("grace") or {}
    context: dict[str, Any] = {
        "eventType": event["type"],
        "occurredAt": event["created_at"].isoformat(),
        "subscriptionId": sub.id,
        "userId": sub.user_id,
        "planId": sub.plan_id,
        "planName": sub.plan_name,
        "amountMinor": sub.amount_minor,
        "currency": sub.currency,
        "brand": payload.get("brand", sub.brand),
        "last4": payload.get("last4", sub.last4),
        "attempt": payload.get("attempt"),
        "declineCode": payload.get("declineCode"),
        # A failed retry's charge.failed carries no episode: the subscription row, already written
        # in this transaction, does.
        "nextRetryAt": grace.get("nextRetryAt") or _iso_or_none(sub.grace_retry_at),
        "graceEndsAt": grace.get("windowEndsAt") or _iso_or_none(sub.grace_deadline),
        "nextRenewalDate": payload.get("currentPeriodEnd")
        or (sub.current_period_end.isoformat() if sub.current_period_end else None),
        "endedAt": payload.get("endedAt"),
    }
    if event["type"] == "charge.failed":
        context["amountMinor"] = payload.get("amountMinor", sub.amount_minor)
    for key in ("expMonth", "expYear", "expiresAt"):
        if key in payload:
            context[key] = payload[key]
    return context


def _iso_or_none(instant: datetime | None) -> str | None:
    return instant.isoformat() if instant is not None else None


@dataclass(frozen=True, slots=True)
class DueNotification:
    """A leased e-mail with what rendering it needs."""

    id: str
    client_id: str
    template: str
    to_address: str
    context: dict[str, Any]
    attempts: int
    first_attempt_at: datetime | None
    client_name: str
    timezone: str


def _sendable(now: datetime) -> tuple[Any, ...]:
    return (
        _NOTE.c.status == "pending",
        or_(_NOTE.c.next_attempt_at.is_(None), _NOTE.c.next_attempt_at <= now),
        or_(_NOTE.c.lease_until.is_(None), _NOTE.c.lease_until < now),
    )


async def claim_due(
    session: Session, *, owner: str, now: datetime, lease_until: datetime, limit: int
) -> list[DueNotification]:
    """Lease up to `limit` e-mails that are due (never sent, or their retry time came)."""
    query = select(_NOTE.c.id).where(*_sendable(now)).order_by(_NOTE.c.occurred_at, _NOTE.c.id)
    query = query.limit(limit)
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    conn = await session.connection()
    chosen = [row[0] for row in (await conn.execute(query)).all()]
    if not chosen:
        return []
    won = await conn.execute(
        update(_NOTE)
        .where(_NOTE.c.id.in_(chosen), *_sendable(now))
        .values(lease_owner=owner, lease_until=lease_until)
        .returning(_NOTE.c.id)
    )
    ids = [row[0] for row in won.all()]
    if not ids:
        return []
    rows = await conn.execute(
        select(
            _NOTE.c.id,
            _NOTE.c.client_id,
            _NOTE.c.template,
            _NOTE.c.to_address,
            _NOTE.c.context,
            _NOTE.c.attempts,
            _NOTE.c.first_attempt_at,
            _CLIENT.c.name.label("client_name"),
            _CLIENT.c.timezone,
        )
        .select_from(_NOTE.join(_CLIENT, _CLIENT.c.id == _NOTE.c.client_id))
        .where(_NOTE.c.id.in_(ids))
        .order_by(_NOTE.c.occurred_at, _NOTE.c.id)
    )
    return [DueNotification(**row._mapping) for row in rows]


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """The result of one attempt: `status` pending (retry at `next_attempt_at`), sent or abandoned."""

    id: str
    status: str
    attempted_at: datetime
    first_attempt_at: datetime
    next_attempt_at: datetime | None
    error: str | None


async def record_outcomes(session: Session, owner: str, outcomes: Sequence[SendOutcome]) -> None:
    """Write attempts' outcomes and release their leases (only rows this owner still holds)."""
    conn = await session.connection()
    for outcome in outcomes:
        await conn.execute(
            update(_NOTE)
            .where(_NOTE.c.id == outcome.id, _NOTE.c.lease_owner == owner, _NOTE.c.status == "pending")
            .values(
                status=outcome.status,
                attempts=_NOTE.c.attempts + 1,
                last_attempt_at=outcome.attempted_at,
                first_attempt_at=outcome.first_attempt_at,
                next_attempt_at=outcome.next_attempt_at,
                last_error=(outcome.error or None) and outcome.error[:500],
                sent_at=outcome.attempted_at if outcome.status == "sent" else None,
                lease_owner=None,
                lease_until=None,
            )
        )


async def notifications_of_subscription(
    session: Session, client_id: str, subscription_id: str, *, limit: int = 200
) -> list[Notification]:
    """The e-mails of one subscription, oldest first."""
    query = (
        select_rows(Notification)
        .where(col(Notification.client_id) == client_id, col(Notification.subscription_id) == subscription_id)
        .order_by(col(Notification.occurred_at), col(Notification.id))
        .limit(limit)
    )
    return list((await session.exec(query)).all())


def _subscription_plan_card_client() -> Any:
    """A subscription with its plan, client and default card (none: NULL card columns)."""
    return (
        _SUB.join(_PLAN, _PLAN.c.id == _SUB.c.plan_id)
        .join(_CLIENT, _CLIENT.c.id == _SUB.c.client_id)
        .outerjoin(_PM, _PM.c.id == _SUB.c.default_payment_method_id)
    )


@dataclass(frozen=True, slots=True)
class CardOnFile:
    """A default card of an active subscription whose plan asks for expiry notices."""

    payment_method_id: str
    client_id: str
    subscription_id: str
    user_id: str
    brand: str | None
    last4: str | None
    exp_month: int
    exp_year: int
    notify_days: int
    timezone: str
    clock_offset_seconds: int


async def cards_not_yet_notified(
    session: Session, *, latest_month: int, client_id: str | None = None, limit: int = 5000
) -> list[CardOnFile]:
    """Default cards of active subscriptions expiring by `latest_month` (year * 12 + month), never noticed."""
    query = (
        select(
            _PM.c.id.label("payment_method_id"),
            _SUB.c.client_id,
            _SUB.c.id.label("subscription_id"),
            _SUB.c.user_id,
            _PM.c.brand,
            _PM.c.last4,
            _PM.c.exp_month,
            _PM.c.exp_year,
            _PLAN.c.days_notify_expiring_card.label("notify_days"),
            _CLIENT.c.timezone,
            _CLIENT.c.clock_offset_seconds,
        )
        .select_from(_subscription_plan_card_client())
        .where(
            _SUB.c.status == "active",
            _PM.c.status == "active",
            _PM.c.expiry_notified_at.is_(None),
            _PM.c.exp_month.is_not(None),
            _PM.c.exp_year.is_not(None),
            _PLAN.c.days_notify_expiring_card > 0,
            _PM.c.exp_year * 12 + _PM.c.exp_month <= latest_month,
        )
        .order_by(_PM.c.id, _SUB.c.id)
        .limit(limit)
    )
    if client_id is not None:
        query = query.where(_SUB.c.client_id == client_id)
    conn = await session.connection()
    return [CardOnFile(**row._mapping) for row in await conn.execute(query)]


async def mark_expiry_notified(
    session: Session, payment_method_ids: Sequence[str], now: datetime
) -> set[str]:
    """Mark cards as noticed; returns those this call marked (another worker may have won the rest)."""
    if not payment_method_ids:
        return set()
    conn = await session.connection()
    won = await conn.execute(
        update(_PM)
        .where(_PM.c.id.in_(list(payment_method_ids)), _PM.c.expiry_notified_at.is_(None))
        .values(expiry_notified_at=now)
        .returning(_PM.c.id)
    )
    return {row[0] for row in won.all()}


async def largest_clock_offset(session: Session, client_id: str | None) -> int:
    """The furthest-ahead sandbox clock (of one client, or of all): the bound of a coarse filter."""
    query = select(func.max(_CLIENT.c.clock_offset_seconds))
    if client_id is not None:
        query = query.where(_CLIENT.c.id == client_id)
    conn = await session.connection()
    return int((await conn.execute(query)).scalar() or 0)


async def subscription_for_preview(session: Session, subscription_id: str) -> dict[str, Any] | None:
    """A subscription with its plan, default card and client, as the preview renders it."""
    conn = await session.connection()
    row = (
        await conn.execute(
            select(
                _SUB.c.id,
                _SUB.c.client_id,
                _SUB.c.user_id,
                _SUB.c.notification_email,
                _SUB.c.plan_id,
                _SUB.c.current_period_end,
                _SUB.c.grace_retry_at,
                _SUB.c.grace_deadline,
                _SUB.c.ended_at,
                _PLAN.c.name.label("plan_name"),
                _PLAN.c.amount_minor,
                _PLAN.c.currency,
                _PM.c.brand,
                _PM.c.last4,
                _PM.c.exp_month,
                _PM.c.exp_year,
                _CLIENT.c.name.label("client_name"),
                _CLIENT.c.timezone,
                _CLIENT.c.clock_offset_seconds,
            )
            .select_from(_subscription_plan_card_client())
            .where(_SUB.c.id == subscription_id)
        )
    ).first()
    return dict(row._mapping) if row is not None else None


async def purge_finished(session: Session, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` sent or abandoned e-mails whose event happened before `before`."""
    conn = await session.connection()
    ids = select(_NOTE.c.id).where(_NOTE.c.status != "pending", _NOTE.c.occurred_at < before).limit(limit)
    done = await conn.execute(delete(_NOTE).where(_NOTE.c.id.in_(ids.scalar_subquery())))
    return int(done.rowcount or 0)
