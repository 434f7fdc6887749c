"""The event log and the delivery log: read them, send a delivery again, replay a period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from billing.domain.errors import BillingError
from billing.domain.webhooks import EVENT_TYPES
from billing.services.webhooks.endpoints import get_endpoint
from billing.store import subscriptions
from billing.store import webhooks as store
from billing.store.engine import Session
from billing.store.models import Event, WebhookDelivery

MAX_PAGE = 100
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a cursor-paginated list."""

    items: list[T]
    has_more: bool

    @property
    def next_starting_after(self) -> str | None:
        last = self.items[-1] if self.items and self.has_more else None
        return None if last is None else str(getattr(last, "id"))  # noqa: B009


def _page(found: list[T], limit: int) -> Page[T]:
    return Page(items=found[:limit], has_more=len(found) > limit)


def _page_size(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise BillingError("CHECK_PARAMETERS", message=f"limit must be 1 to {MAX_PAGE}.", field="limit")
    return limit


async def list_events(
    session: Session,
    *,
    client_id: str,
    starting_after: str | None = None,
    limit: int = 50,
    type: str | None = None,
    subscription_id: str | None = None,
    created_gte: datetime | None = None,
    created_lt: datetime | None = None,
) -> Page[Event]:
    """The client's events, oldest first, after the `starting_after` cursor."""
    if type is not None and type not in EVENT_TYPES:
        raise BillingError("CHECK_PARAMETERS", message=f"type: '{type}' is not an event type.", field="type")
    if (
        subscription_id is not None
        and await subscriptions.get_subscription(session, client_id, subscription_id) is None
    ):
        raise BillingError("SUBSCRIPTION_NOT_FOUND")
    found = await store.list_events(
        session,
        client_id=client_id,
        starting_after=starting_after,
        limit=_page_size(limit) + 1,
        type=type,
        subscription_id=subscription_id,
        created_gte=created_gte,
        created_lt=created_lt,
    )
    return _page(found, limit)


async def get_event(session: Session, *, client_id: str, event_id: str) -> Event:
    event = await store.get_event(session, client_id, event_id)
    if event is None:
        raise BillingError("EVENT_NOT_FOUND")
    return event


async def list_deliveries(
    session: Session, *, client_id: str, endpoint_id: str, starting_after: str | None = None, limit: int = 50
) -> Page[WebhookDelivery]:
    """An endpoint's deliveries, newest first."""
    await get_endpoint(session, client_id=client_id, endpoint_id=endpoint_id)
    found = await store.list_deliveries(
        session,
        client_id=client_id,
        endpoint_id=endpoint_id,
        starting_after=starting_after,
        limit=_page_size(limit) + 1,
    )
    return _page(found, limit)


async def retry_delivery(
    session: Session, *, client_id: str, delivery_id: str, now: datetime
) -> WebhookDelivery:
    """Send one delivery again as soon as a worker gets to it (its endpoint must be enabled)."""
    delivery = await store.get_delivery(session, client_id, delivery_id)
    if delivery is None:
        raise BillingError("WEBHOOK_DELIVERY_NOT_FOUND")
    endpoint = await get_endpoint(session, client_id=client_id, endpoint_id=delivery.endpoint_id)
    if endpoint.status != "enabled":
        raise BillingError(
            "STATE_CONFLICT",
            message="The endpoint is disabled; enable it (PUT) before retrying its deliveries.",
        )
    await store.requeue(session, delivery, now=now)
    return delivery


async def replay(
    session: Session, *, client_id: str, endpoint_id: str, since: datetime, now: datetime
) -> int:
    """Queue every event since `since` for the endpoint again; returns how many were queued."""
    endpoint = await get_endpoint(session, client_id=client_id, endpoint_id=endpoint_id)
    if endpoint.status != "enabled":
        raise BillingError(
            "STATE_CONFLICT",
            message="The endpoint is disabled; enable it (PUT) before replaying events to it.",
        )
    return await store.replay_since(session, endpoint, since=since, now=now)
