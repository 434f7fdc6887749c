"""Inbound notifications (processor notices, settlement reports) and the charge reads and writes
they need.

A notification is written first, under its unique (source, event id): a redelivery finds the key
taken and changes nothing. Charges are found by idempotency key or processor reference; settling
is a conditional UPDATE from `succeeded`, so a report applied twice (or two reports naming one
charge) settles it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col
from sqlmodel import select as orm_select

from billing.store.bulk import dialect_insert
from billing.store.engine import Session
from billing.store.models import Charge, InboundNotification

_NOTICE = InboundNotification.metadata.tables["inbound_notification"]
_CHARGE = Charge.metadata.tables["charge"]
_CHUNK = 1000


async def record_notification(
    session: Session,
    *,
    source: str,
    event_id: str,
    type: str,
    received_at: datetime,
    detail: dict[str, Any] | None,
) -> int | None:
    """Store a notification; its id, or None when (source, event id) was already received."""
    statement = (
        dialect_insert(session, _NOTICE)
        .values(source=source, event_id=event_id, type=type, received_at=received_at, detail=detail)
        .on_conflict_do_nothing()
        .returning(_NOTICE.c.id)
    )
    conn = await session.connection()
    inserted = (await conn.execute(statement)).scalar_one_or_none()
    return None if inserted is None else int(inserted)


async def resolve_notification(
    session: Session,
    notification_id: int,
    *,
    resolution: str,
    charge_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record what the engine did with a notification (and, when given, its detail)."""
    values: dict[str, Any] = {"resolution": resolution, "charge_id": charge_id}
    if detail is not None:
        values["detail"] = detail
    conn = await session.connection()
    await conn.execute(update(_NOTICE).where(_NOTICE.c.id == notification_id).values(**values))


async def get_notification(session: Session, notification_id: int) -> InboundNotification | None:
    return await session.get(InboundNotification, notification_id)


async def notifications(
    session: Session, *, resolution: str, source: str | None = None, limit: int = 100
) -> Sequence[InboundNotification]:
    """Notifications left with `resolution` (oldest first), e.g. deferred ones, or settlement
    reports with rows that were not applied."""
    query = orm_select(InboundNotification).where(InboundNotification.resolution == resolution)
    if source is not None:
        query = query.where(InboundNotification.source == source)
    query = query.order_by(col(InboundNotification.received_at), col(InboundNotification.id)).limit(limit)
    return list((await session.exec(query)).all())


async def charges_named(
    session: Session, *, processor: str | None, idempotency_key: str | None, reference: str | None
) -> list[Charge]:
    """The charges a processor notice names, by idempotency key, else by processor reference."""
    query = orm_select(Charge)
    if idempotency_key is not None:
        query = query.where(Charge.idempotency_key == idempotency_key)
    elif reference is not None:
        query = query.where(Charge.processor_reference == reference)
    else:
        return []
    if processor is not None:
        query = query.where(Charge.processor == processor)
    return list((await session.exec(query.order_by(col(Charge.id)).limit(2))).all())


@dataclass(frozen=True, slots=True)
class SettleableCharge:
    """What a settlement row is checked against."""

    id: str
    client_id: str
    subscription_id: str | None
    state: str
    amount_minor: int
    currency: str
    processor_reference: str | None


_SETTLEABLE_COLUMNS = (
    _CHARGE.c.id,
    _CHARGE.c.client_id,
    _CHARGE.c.subscription_id,
    _CHARGE.c.state,
    _CHARGE.c.amount_minor,
    _CHARGE.c.currency,
    _CHARGE.c.processor_reference,
)


async def charges_for_settlement(
    session: Session, *, ids: Sequence[str], references: Sequence[str]
) -> tuple[dict[str, SettleableCharge], dict[str, list[SettleableCharge]]]:
    """The charges a settlement report names: by id, and by processor reference (a reference
    shared by several charges is ambiguous and left to the caller)."""
    conn = await session.connection()
    by_id: dict[str, SettleableCharge] = {}
    by_reference: dict[str, list[SettleableCharge]] = {}
    wanted_ids = sorted(set(ids))
    for start in range(0, len(wanted_ids), _CHUNK):
        rows = await conn.execute(
            select(*_SETTLEABLE_COLUMNS).where(_CHARGE.c.id.in_(wanted_ids[start : start + _CHUNK]))
        )
        for row in rows.all():
            by_id[row.id] = SettleableCharge(**row._asdict())
    wanted_refs = sorted(set(references))
    for start in range(0, len(wanted_refs), _CHUNK):
        rows = await conn.execute(
            select(*_SETTLEABLE_COLUMNS).where(
                _CHARGE.c.processor_reference.in_(wanted_refs[start : start + _CHUNK])
            )
        )
        for row in rows.all():
            charge = SettleableCharge(**row._asdict())
            by_reference.setdefault(charge.processor_reference or "", []).append(charge)
    return by_id, by_reference


async def settle_charges(session: Session, charge_ids: Sequence[str], *, at: datetime) -> set[str]:
    """Move `succeeded` charges among `charge_ids` to `settled`; returns the ids moved."""
    conn = await session.connection()
    moved: set[str] = set()
    ids = sorted(set(charge_ids))
    for start in range(0, len(ids), _CHUNK):
        result = await conn.execute(
            update(_CHARGE)
            .where(_CHARGE.c.id.in_(ids[start : start + _CHUNK]), _CHARGE.c.state == "succeeded")
            .values(state="settled", settled_at=at, updated_at=at)
            .returning(_CHARGE.c.id)
        )
        moved.update(result.scalars().all())
    return moved


async def charges_by_id(session: Session, charge_ids: Sequence[str]) -> list[Charge]:
    """Charge rows by id (for event payloads)."""
    found: list[Charge] = []
    ids = sorted(set(charge_ids))
    for start in range(0, len(ids), _CHUNK):
        query = orm_select(Charge).where(col(Charge.id).in_(ids[start : start + _CHUNK]))
        found += (await session.exec(query)).all()
    return found
