"""The event outbox: events are written in the same transaction as the change they report.

Events about a subscription carry a per-subscription `sequence` taken from
`Subscription.event_seq`. The counter is bumped with an UPDATE inside the caller's
transaction, so the row lock (PostgreSQL) or the write lock (SQLite) orders concurrent
writers and the unique key (subscription_id, sequence) makes a gap-free order checkable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, insert, update

from billing.domain.events import EventPayload
from billing.store.bulk import Column, insert_rows, is_postgres, json_text
from billing.store.engine import Session
from billing.store.ids import new_id
from billing.store.models import Event, Subscription
from billing.store.notifications import queue_for_events

_EVENT = Event.metadata.tables["event"]
_SUBSCRIPTION = Subscription.metadata.tables["subscription"]
_CHUNK = 500
_EVENT_COLUMNS: tuple[Column, ...] = (
    ("id", "text"),
    ("client_id", "text"),
    ("type", "text"),
    ("subscription_id", "text"),
    ("sequence", "integer"),
    ("payload", "text"),
    ("created_at", "timestamptz"),
)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to insert: its payload model names its type. `sequence` is set for subscription
    events (see `reserve_sequences`)."""

    client_id: str
    payload: EventPayload
    created_at: datetime
    subscription_id: str | None = None
    sequence: int | None = None
    id: str = ""

    def row(self) -> dict[str, Any]:
        """The column values of this event (a fresh id unless one was given)."""
        return {
            "id": self.id or new_id("event"),
            "client_id": self.client_id,
            "type": self.payload.type,
            "subscription_id": self.subscription_id,
            "sequence": self.sequence,
            "payload": self.payload.to_json(),
            "created_at": self.created_at,
        }


async def reserve_sequences(session: Session, counts: Mapping[str, int]) -> dict[str, int]:
    """Reserve `counts[sub_id]` consecutive sequence numbers per subscription; returns the first of each.

    Subscriptions that do not exist are missing from the answer.
    """
    first: dict[str, int] = {}
    wanted = {sub_id: n for sub_id, n in counts.items() if n > 0}
    ids = list(wanted)
    conn = await session.connection()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        bump = case({sub_id: wanted[sub_id] for sub_id in chunk}, value=_SUBSCRIPTION.c.id, else_=0)
        result = await conn.execute(
            update(_SUBSCRIPTION)
            .where(_SUBSCRIPTION.c.id.in_(chunk))
            .values(event_seq=_SUBSCRIPTION.c.event_seq + bump)
            .returning(_SUBSCRIPTION.c.id, _SUBSCRIPTION.c.event_seq)
        )
        for sub_id, last in result.all():
            first[sub_id] = last - wanted[sub_id] + 1
    return first


async def insert_events(session: Session, events: Sequence[NewEvent]) -> list[str]:
    """Insert events as given (sequences already assigned); returns their ids in order.

    The e-mails they call for are queued in the same transaction (`store.notifications`).
    """
    if not events:
        return []
    rows = [event.row() for event in events]
    if is_postgres(session):
        await insert_rows(
            session,
            "event",
            _EVENT_COLUMNS,
            [
                (
                    r["id"],
                    r["client_id"],
                    r["type"],
                    r["subscription_id"],
                    r["sequence"],
                    json_text(r["payload"]),
                    r["created_at"],
                )
                for r in rows
            ],
            select_list=[
                name if name != "payload" else "CAST(payload AS jsonb)" for name, _ in _EVENT_COLUMNS
            ],
        )
    else:
        conn = await session.connection()
        await conn.execute(insert(_EVENT), rows)
    await queue_for_events(session, rows)
    return [row["id"] for row in rows]


async def record_event(
    session: Session,
    *,
    client_id: str,
    payload: EventPayload,
    now: datetime,
    subscription_id: str | None = None,
) -> str:
    """Write one event in the caller's transaction and return its id.

    With `subscription_id` the event gets that subscription's next sequence number.
    """
    sequence = None
    if subscription_id is not None:
        sequence = (await reserve_sequences(session, {subscription_id: 1})).get(subscription_id)
    event = NewEvent(
        client_id=client_id,
        payload=payload,
        created_at=now,
        subscription_id=subscription_id,
        sequence=sequence,
    )
    return (await insert_events(session, [event]))[0]
