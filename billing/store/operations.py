"""What the operator watches: backlog counts, worker heartbeats, the schema revision.

Every backlog figure is one cheap COUNT on an indexed column (state or status first), read when
/metrics is scraped or `billing status` runs, so any process answers with the database's truth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, inspect, select, text
from sqlmodel.ext.asyncio.session import AsyncSession as Session

from billing.store.bulk import dialect_insert
from billing.store.models import (
    BatchItem,
    Charge,
    Event,
    InboundNotification,
    Notification,
    Refund,
    Subscription,
    WebhookDelivery,
    WorkerHeartbeat,
)

_SUB = Subscription.__table__  # type: ignore[attr-defined]
_CHARGE = Charge.__table__  # type: ignore[attr-defined]
_REFUND = Refund.__table__  # type: ignore[attr-defined]
_DELIVERY = WebhookDelivery.__table__  # type: ignore[attr-defined]
_MAIL = Notification.__table__  # type: ignore[attr-defined]
_EVENT = Event.__table__  # type: ignore[attr-defined]
_ITEM = BatchItem.__table__  # type: ignore[attr-defined]
_NOTICE = InboundNotification.__table__  # type: ignore[attr-defined]
_BEAT = WorkerHeartbeat.__table__  # type: ignore[attr-defined]


async def _count(session: Session, table: Any, *conditions: Any) -> int:
    conn = await session.connection()
    return int((await conn.execute(select(func.count()).select_from(table).where(*conditions))).scalar_one())


async def overdue_subscriptions(session: Session, *, before: datetime) -> int:
    """Active subscriptions whose next attempt was due before `before` (real time)."""
    return await _count(session, _SUB, _SUB.c.status == "active", _SUB.c.next_attempt_at < before)


async def open_by_age(
    session: Session, table: Any, states: Sequence[str], *, now: datetime, ages: Mapping[str, timedelta]
) -> dict[str, dict[str, int]]:
    """Rows of `table` in each of `states` created at least each age ago: state -> age label -> count.

    Cumulative (like a histogram's `le`): the "0s" age counts every open row of the state.
    """
    columns = [
        func.coalesce(func.sum(case((table.c.created_at <= now - age, 1), else_=0)), 0).label(f"a{i}")
        for i, age in enumerate(ages.values())
    ]
    conn = await session.connection()
    rows = (
        await conn.execute(
            select(table.c.state, *columns).where(table.c.state.in_(list(states))).group_by(table.c.state)
        )
    ).all()
    found = {row[0]: [int(value) for value in row[1:]] for row in rows}
    return {state: dict(zip(ages, found.get(state, [0] * len(ages)), strict=True)) for state in states}


async def open_charges_by_age(
    session: Session, *, now: datetime, ages: Mapping[str, timedelta]
) -> dict[str, dict[str, int]]:
    """Charges still `pending` or `unknown`, by how long ago they were created."""
    return await open_by_age(session, _CHARGE, ("pending", "unknown"), now=now, ages=ages)


async def open_refunds_by_age(
    session: Session, *, now: datetime, ages: Mapping[str, timedelta]
) -> dict[str, dict[str, int]]:
    """Refunds still `pending` or `unknown`, by how long ago they were created."""
    return await open_by_age(session, _REFUND, ("pending", "unknown"), now=now, ages=ages)


async def outbox_backlog(session: Session, *, now: datetime) -> dict[str, int]:
    """What the outboxes hold: webhook deliveries and e-mails pending (and due now), events not yet
    dispatched, on-demand items queued, processor notifications deferred."""
    return {
        "webhook_pending": await _count(session, _DELIVERY, _DELIVERY.c.status == "pending"),
        "webhook_due": await _count(
            session, _DELIVERY, _DELIVERY.c.status == "pending", _DELIVERY.c.next_attempt_at <= now
        ),
        "email_pending": await _count(session, _MAIL, _MAIL.c.status == "pending"),
        "email_due": await _count(
            session, _MAIL, _MAIL.c.status == "pending", _MAIL.c.next_attempt_at <= now
        ),
        "events_undispatched": await _count(session, _EVENT, _EVENT.c.dispatched_at.is_(None)),
        "ondemand_queued": await _count(session, _ITEM, _ITEM.c.state == "queued"),
        "inbound_deferred": await _count(session, _NOTICE, _NOTICE.c.resolution == "deferred"),
    }


@dataclass(frozen=True)
class Heartbeat:
    id: str
    host: str
    pid: int
    version: str
    started_at: datetime
    seen_at: datetime
    last_pass: dict[str, Any] | None
    last_pass_at: datetime | None
    counters: dict[str, Any] | None


async def beat(
    session: Session,
    *,
    identity: str,
    host: str,
    pid: int,
    version: str,
    now: datetime,
    started_at: datetime,
    last_pass: dict[str, Any] | None = None,
    counters: dict[str, Any] | None = None,
) -> None:
    """Insert or refresh a worker's row; with `last_pass`, record its last tick too."""
    values: dict[str, Any] = {
        "host": host,
        "pid": pid,
        "version": version,
        "started_at": started_at,
        "seen_at": now,
        "counters": counters,
    }
    if last_pass is not None:
        values |= {"last_pass": last_pass, "last_pass_at": now}
    statement = dialect_insert(session, _BEAT).values(id=identity, **values)
    statement = statement.on_conflict_do_update(index_elements=[_BEAT.c.id], set_=values)
    conn = await session.connection()
    await conn.execute(statement)


async def forget_workers(session: Session, *, seen_before: datetime) -> int:
    """Drop the rows of workers not seen since `seen_before` (stopped long ago)."""
    conn = await session.connection()
    result = await conn.execute(delete(_BEAT).where(_BEAT.c.seen_at < seen_before))
    return int(getattr(result, "rowcount", 0) or 0)


async def workers_seen_since(session: Session, since: datetime) -> list[Heartbeat]:
    """Workers whose last heartbeat is at or after `since`, most recent first."""
    conn = await session.connection()
    rows = (
        await conn.execute(
            select(_BEAT).where(_BEAT.c.seen_at >= since).order_by(_BEAT.c.seen_at.desc(), _BEAT.c.id)
        )
    ).all()
    return [Heartbeat(**row._mapping) for row in rows]


async def schema_revision(session: Session) -> str | None:
    """The Alembic revision the database is at, or None when it was never migrated."""
    conn = await session.connection()
    if not await conn.run_sync(lambda sync: inspect(sync).has_table("alembic_version")):
        return None
    row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
    return None if row is None else str(row[0])
