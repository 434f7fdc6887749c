"""Webhook endpoints, deliveries and the event log queries behind them.

Deliveries are an outbox of their own: the dispatch step turns each new event into one
`webhook_delivery` row per subscribed endpoint (unique per endpoint and event), and workers
lease due rows the way renewals lease subscriptions (`FOR UPDATE SKIP LOCKED` on PostgreSQL, a
conditional UPDATE on SQLite). A delivery of a subscription's event waits while an earlier one
(lower `sequence`) to the same endpoint is still pending, so each endpoint sees a subscription's
events in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased
from sqlmodel import col
from sqlmodel import select as select_models

from billing.store.bulk import is_postgres
from billing.store.engine import Session
from billing.store.ids import new_id
from billing.store.models import Event, WebhookDelivery, WebhookEndpoint

_EVENT = Event.metadata.tables["event"]
_ENDPOINT = WebhookEndpoint.metadata.tables["webhook_endpoint"]
_DELIVERY = WebhookDelivery.metadata.tables["webhook_delivery"]
_CHUNK = 500


# --- endpoints ---------------------------------------------------------------------------------


async def count_endpoints(session: Session, client_id: str) -> int:
    conn = await session.connection()
    found = await conn.execute(select(func.count()).where(_ENDPOINT.c.client_id == client_id))
    return int(found.scalar_one())


async def add_endpoint(session: Session, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    session.add(endpoint)
    await session.flush()
    return endpoint


async def get_endpoint(session: Session, client_id: str, endpoint_id: str) -> WebhookEndpoint | None:
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.client_id != client_id:
        return None
    return endpoint


async def list_endpoints(session: Session, client_id: str) -> list[WebhookEndpoint]:
    found = await session.exec(
        select_models(WebhookEndpoint)
        .where(col(WebhookEndpoint.client_id) == client_id)
        .order_by(col(WebhookEndpoint.id))
    )
    return list(found.all())


async def delete_endpoint(session: Session, endpoint: WebhookEndpoint) -> None:
    """Remove an endpoint and its delivery log."""
    conn = await session.connection()
    await conn.execute(delete(_DELIVERY).where(_DELIVERY.c.endpoint_id == endpoint.id))
    await session.delete(endpoint)
    await session.flush()


# --- dispatch: events become deliveries ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventRef:
    id: str
    client_id: str
    type: str
    subscription_id: str | None
    sequence: int | None
    created_at: datetime


async def claim_undispatched_events(session: Session, limit: int) -> list[EventRef]:
    """The oldest events without deliveries yet, locked for this transaction on PostgreSQL."""
    query = (
        select(
            _EVENT.c.id,
            _EVENT.c.client_id,
            _EVENT.c.type,
            _EVENT.c.subscription_id,
            _EVENT.c.sequence,
            _EVENT.c.created_at,
        )
        .where(_EVENT.c.dispatched_at.is_(None))
        .order_by(_EVENT.c.id)
        .limit(limit)
    )
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    conn = await session.connection()
    return [EventRef(*row) for row in (await conn.execute(query)).all()]


@dataclass(frozen=True, slots=True)
class EndpointRef:
    id: str
    client_id: str
    event_types: list[str]


async def enabled_endpoints(session: Session, client_ids: Sequence[str]) -> list[EndpointRef]:
    if not client_ids:
        return []
    conn = await session.connection()
    rows = await conn.execute(
        select(_ENDPOINT.c.id, _ENDPOINT.c.client_id, _ENDPOINT.c.event_types).where(
            _ENDPOINT.c.client_id.in_(sorted(set(client_ids))), _ENDPOINT.c.status == "enabled"
        )
    )
    return [EndpointRef(row[0], row[1], list(row[2] or [])) for row in rows.all()]


def _insert(session: Session) -> Any:
    return postgresql.insert(_DELIVERY) if is_postgres(session) else sqlite.insert(_DELIVERY)


def delivery_row(endpoint: EndpointRef, event: EventRef, *, now: datetime) -> dict[str, Any]:
    return {
        "id": new_id("webhook_delivery"),
        "client_id": event.client_id,
        "endpoint_id": endpoint.id,
        "event_id": event.id,
        "event_type": event.type,
        "subscription_id": event.subscription_id,
        "sequence": event.sequence,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "queued_at": now,
    }


async def insert_deliveries(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert delivery rows; one that exists already (same endpoint and event) is left as it is.

    One statement executed for many rows: compiled once, batched by the driver.
    """
    if not rows:
        return
    conn = await session.connection()
    statement = _insert(session).on_conflict_do_nothing(
        index_elements=["client_id", "endpoint_id", "event_id"]
    )
    for start in range(0, len(rows), _CHUNK):
        await conn.execute(statement, list(rows[start : start + _CHUNK]))


async def mark_dispatched(session: Session, event_ids: Sequence[str], *, now: datetime) -> None:
    conn = await session.connection()
    for start in range(0, len(event_ids), _CHUNK):
        chunk = list(event_ids[start : start + _CHUNK])
        await conn.execute(update(_EVENT).where(_EVENT.c.id.in_(chunk)).values(dispatched_at=now))


# --- delivery: lease, send, record ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A leased delivery with everything needed to send it."""

    id: str
    client_id: str
    endpoint_id: str
    event_id: str
    event_type: str
    attempts: int
    queued_at: datetime
    url: str
    secret: str
    previous_secret: str | None
    previous_secret_until: datetime | None
    payload: dict[str, Any]
    event_created_at: datetime


def _sendable(now: datetime) -> list[Any]:
    earlier = aliased(_DELIVERY)
    return [
        _DELIVERY.c.status == "pending",
        _DELIVERY.c.next_attempt_at <= now,
        or_(_DELIVERY.c.lease_until.is_(None), _DELIVERY.c.lease_until < now),
        _ENDPOINT.c.status == "enabled",
        or_(_ENDPOINT.c.circuit_open_until.is_(None), _ENDPOINT.c.circuit_open_until <= now),
        ~exists().where(
            earlier.c.endpoint_id == _DELIVERY.c.endpoint_id,
            earlier.c.subscription_id == _DELIVERY.c.subscription_id,
            earlier.c.sequence < _DELIVERY.c.sequence,
            earlier.c.status == "pending",
        ),
    ]


async def refresh_delivery_statistics(session: Session) -> None:
    """ANALYZE the delivery table (PostgreSQL): after a large backlog was queued at once, the planner's
    row estimates (taken when few deliveries were pending) would make the claim sort every pending
    row (130 ms a claim at 70,000 pending, against 3 ms once analyzed). SQLite plans by its indexes."""
    if is_postgres(session):
        conn = await session.connection()
        await conn.exec_driver_sql("ANALYZE webhook_delivery")


def due_deliveries_query(now: datetime, limit: int) -> Any:
    """The claim's candidates: sendable pending deliveries, oldest due first (served by the
    partial index `ix_webhook_delivery_due` on pending rows, without a sort)."""
    return (
        select(_DELIVERY.c.id, _DELIVERY.c.endpoint_id)
        .select_from(_DELIVERY.join(_ENDPOINT, _ENDPOINT.c.id == _DELIVERY.c.endpoint_id))
        .where(*_sendable(now))
        .order_by(_DELIVERY.c.next_attempt_at, _DELIVERY.c.id)
        .limit(limit)
    )


async def claim_due_deliveries(
    session: Session,
    *,
    owner: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    room: dict[str, int] | None,
    per_endpoint: int,
) -> list[DueDelivery]:
    """Lease up to `limit` due deliveries, at most `room[endpoint]` (else `per_endpoint`) per endpoint.

    `room` tells how many more deliveries each endpoint may have in flight in this process.
    """
    query = due_deliveries_query(now, limit * 4)
    if is_postgres(session):
        query = query.with_for_update(of=_DELIVERY, skip_locked=True)
    conn = await session.connection()
    chosen: list[str] = []
    taken: dict[str, int] = {}
    for delivery_id, endpoint_id in (await conn.execute(query)).all():
        allowed = per_endpoint if room is None else room.get(endpoint_id, per_endpoint)
        if taken.get(endpoint_id, 0) >= allowed:
            continue
        taken[endpoint_id] = taken.get(endpoint_id, 0) + 1
        chosen.append(delivery_id)
        if len(chosen) >= limit:
            break
    if not chosen:
        return []
    won = await conn.execute(
        update(_DELIVERY)
        .where(
            _DELIVERY.c.id.in_(chosen),
            _DELIVERY.c.status == "pending",
            or_(_DELIVERY.c.lease_until.is_(None), _DELIVERY.c.lease_until < now),
        )
        # The next attempt is due when the lease runs out (if no outcome is written before): the
        # row leaves the front of the due index, so the next claims do not step over every
        # delivery in flight, and a dead worker's deliveries come back in order when it expires.
        .values(lease_owner=owner, lease_until=lease_until, next_attempt_at=lease_until)
        .returning(_DELIVERY.c.id)
    )
    ids = [row[0] for row in won.all()]
    if not ids:
        return []
    rows = await conn.execute(
        select(
            _DELIVERY.c.id,
            _DELIVERY.c.client_id,
            _DELIVERY.c.endpoint_id,
            _DELIVERY.c.event_id,
            _DELIVERY.c.event_type,
            _DELIVERY.c.attempts,
            _DELIVERY.c.queued_at,
            _ENDPOINT.c.url,
            _ENDPOINT.c.secret,
            _ENDPOINT.c.previous_secret,
            _ENDPOINT.c.previous_secret_until,
            _EVENT.c.payload,
            _EVENT.c.created_at.label("event_created_at"),
        )
        .select_from(
            _DELIVERY.join(_ENDPOINT, _ENDPOINT.c.id == _DELIVERY.c.endpoint_id).join(
                _EVENT, _EVENT.c.id == _DELIVERY.c.event_id
            )
        )
        .where(_DELIVERY.c.id.in_(ids))
        .order_by(_DELIVERY.c.next_attempt_at, _DELIVERY.c.id)
    )
    return [DueDelivery(**row._asdict()) for row in rows.all()]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """What one send attempt gave, and what the delivery becomes."""

    status: str  # pending | delivered | abandoned
    attempted_at: datetime
    next_attempt_at: datetime | None
    status_code: int | None
    latency_ms: int
    error: str | None
    response: str | None


async def record_attempts(session: Session, attempts: Sequence[tuple[str, AttemptRecord]]) -> None:
    """Write attempts' outcomes (one statement, many rows) where the delivery is still pending; frees the leases."""
    if not attempts:
        return
    conn = await session.connection()
    statement = (
        update(_DELIVERY)
        .where(_DELIVERY.c.id == bindparam("b_id"), _DELIVERY.c.status == "pending")
        .values(
            status=bindparam("b_status"),
            attempts=_DELIVERY.c.attempts + 1,
            next_attempt_at=bindparam("b_next"),
            last_attempt_at=bindparam("b_at"),
            last_status_code=bindparam("b_code"),
            last_latency_ms=bindparam("b_latency"),
            last_error=bindparam("b_error"),
            last_response=bindparam("b_response"),
            lease_owner=None,
            lease_until=None,
            delivered_at=bindparam("b_delivered"),
        )
    )
    await conn.execute(
        statement,
        [
            {
                "b_id": delivery_id,
                "b_status": record.status,
                "b_next": record.next_attempt_at,
                "b_at": record.attempted_at,
                "b_code": record.status_code,
                "b_latency": record.latency_ms,
                "b_error": record.error,
                "b_response": record.response,
                "b_delivered": record.attempted_at if record.status == "delivered" else None,
            }
            for delivery_id, record in attempts
        ],
    )


async def endpoints_recovered(session: Session, endpoint_ids: Sequence[str]) -> None:
    """Endpoints whose latest attempt succeeded: no failure streak, circuit closed."""
    if not endpoint_ids:
        return
    conn = await session.connection()
    await conn.execute(
        update(_ENDPOINT)
        .where(_ENDPOINT.c.id.in_(sorted(endpoint_ids)), _ENDPOINT.c.consecutive_failures > 0)
        .values(consecutive_failures=0, circuit_open_until=None)
    )


async def endpoint_failed(session: Session, endpoint_id: str, *, failures: int, reset: bool) -> int:
    """Count `failures` more consecutive failures (after a success in the same batch when `reset`)."""
    conn = await session.connection()
    count = failures if reset else _ENDPOINT.c.consecutive_failures + failures
    result = await conn.execute(
        update(_ENDPOINT)
        .where(_ENDPOINT.c.id == endpoint_id)
        .values(consecutive_failures=count)
        .returning(_ENDPOINT.c.consecutive_failures)
    )
    row = result.first()
    return 0 if row is None else int(row[0])


async def open_circuit(session: Session, endpoint_id: str, until: datetime) -> None:
    conn = await session.connection()
    await conn.execute(
        update(_ENDPOINT).where(_ENDPOINT.c.id == endpoint_id).values(circuit_open_until=until)
    )


async def disable_endpoint(session: Session, endpoint_id: str, *, reason: str, now: datetime) -> None:
    """Disable an endpoint and stop its pending deliveries (abandoned, with the reason)."""
    conn = await session.connection()
    await conn.execute(
        update(_ENDPOINT)
        .where(_ENDPOINT.c.id == endpoint_id)
        .values(status="disabled", disabled_reason=reason, disabled_at=now, updated_at=now)
    )
    await conn.execute(
        update(_DELIVERY)
        .where(_DELIVERY.c.endpoint_id == endpoint_id, _DELIVERY.c.status == "pending")
        .values(
            status="abandoned", last_error=reason, next_attempt_at=None, lease_owner=None, lease_until=None
        )
    )


async def release_deliveries(session: Session, ids: Sequence[str], owner: str) -> None:
    """Give back leases of deliveries this owner did not attempt (shutdown)."""
    if not ids:
        return
    conn = await session.connection()
    await conn.execute(
        update(_DELIVERY)
        .where(_DELIVERY.c.id.in_(list(ids)), _DELIVERY.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )


# --- the merchant's view: delivery log, retry, replay --------------------------------------------


async def list_deliveries(
    session: Session, *, client_id: str, endpoint_id: str, starting_after: str | None, limit: int
) -> list[WebhookDelivery]:
    """An endpoint's deliveries, newest first; `starting_after` continues after that delivery id."""
    query = select_models(WebhookDelivery).where(
        col(WebhookDelivery.client_id) == client_id, col(WebhookDelivery.endpoint_id) == endpoint_id
    )
    if starting_after is not None:
        query = query.where(col(WebhookDelivery.id) < starting_after)
    found = await session.exec(query.order_by(col(WebhookDelivery.id).desc()).limit(limit))
    return list(found.all())


async def get_delivery(session: Session, client_id: str, delivery_id: str) -> WebhookDelivery | None:
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.client_id != client_id:
        return None
    return delivery


async def requeue(session: Session, delivery: WebhookDelivery, *, now: datetime) -> None:
    """Send a delivery again as soon as possible, whatever its state."""
    delivery.status = "pending"
    delivery.attempts = 0
    delivery.queued_at = now
    delivery.next_attempt_at = now
    delivery.lease_owner = None
    delivery.lease_until = None
    await session.flush()


async def replay_since(session: Session, endpoint: WebhookEndpoint, *, since: datetime, now: datetime) -> int:
    """Queue every event of the endpoint's client since `since` (of the types it takes) again."""
    conn = await session.connection()
    query = select(
        _EVENT.c.id,
        _EVENT.c.client_id,
        _EVENT.c.type,
        _EVENT.c.subscription_id,
        _EVENT.c.sequence,
        _EVENT.c.created_at,
    ).where(_EVENT.c.client_id == endpoint.client_id, _EVENT.c.created_at >= since)
    if endpoint.event_types:
        query = query.where(_EVENT.c.type.in_(list(endpoint.event_types)))
    events = [EventRef(*row) for row in (await conn.execute(query.order_by(_EVENT.c.id))).all()]
    target = EndpointRef(endpoint.id, endpoint.client_id, list(endpoint.event_types))
    for start in range(0, len(events), _CHUNK):
        rows = [delivery_row(target, event, now=now) for event in events[start : start + _CHUNK]]
        statement = _insert(session).values(rows)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["client_id", "endpoint_id", "event_id"],
                set_={
                    "status": "pending",
                    "attempts": 0,
                    "queued_at": now,
                    "next_attempt_at": now,
                    "lease_owner": None,
                    "lease_until": None,
                },
            )
        )
    return len(events)


# --- the event log -------------------------------------------------------------------------------


async def list_events(
    session: Session,
    *,
    client_id: str,
    starting_after: str | None,
    limit: int,
    type: str | None = None,
    subscription_id: str | None = None,
    created_gte: datetime | None = None,
    created_lt: datetime | None = None,
) -> list[Event]:
    """A client's events, oldest first; `starting_after` continues after that event id."""
    conditions: list[Any] = [col(Event.client_id) == client_id]
    if starting_after is not None:
        conditions.append(col(Event.id) > starting_after)
    if type is not None:
        conditions.append(col(Event.type) == type)
    if subscription_id is not None:
        conditions.append(col(Event.subscription_id) == subscription_id)
    if created_gte is not None:
        conditions.append(col(Event.created_at) >= created_gte)
    if created_lt is not None:
        conditions.append(col(Event.created_at) < created_lt)
    found = await session.exec(
        select_models(Event).where(and_(*conditions)).order_by(col(Event.id)).limit(limit)
    )
    return list(found.all())


async def get_event(session: Session, client_id: str, event_id: str) -> Event | None:
    event = await session.get(Event, event_id)
    if event is None or event.client_id != client_id:
        return None
    return event


async def purge_events(session: Session, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` dispatched events older than `before` whose deliveries are all final."""
    pending = exists().where(_DELIVERY.c.event_id == _EVENT.c.id, _DELIVERY.c.status == "pending")
    conn = await session.connection()
    ids = [
        row[0]
        for row in (
            await conn.execute(
                select(_EVENT.c.id)
                .where(_EVENT.c.created_at < before, _EVENT.c.dispatched_at.is_not(None), ~pending)
                .order_by(_EVENT.c.id)
                .limit(limit)
            )
        ).all()
    ]
    if not ids:
        return 0
    await conn.execute(delete(_DELIVERY).where(_DELIVERY.c.event_id.in_(ids)))
    await conn.execute(delete(_EVENT).where(_EVENT.c.id.in_(ids)))
    return len(ids)
