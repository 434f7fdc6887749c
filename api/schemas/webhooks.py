"""Wire shapes of webhook endpoints, deliveries and the event log."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AwareDatetime,
    BeforeValidator,
    Field,
    RootModel,
    StringConstraints,
    WithJsonSchema,
    create_model,
)
from pydantic_core import PydanticCustomError

from api.schemas.wire import Flag, OutModel, Text, WireModel
from billing.domain.events import EVENT_MODELS, EventPayload
from billing.domain.webhooks import EVENT_TYPES
from billing.services.webhooks.endpoints import URL_PATTERN, masked
from billing.store.models import Event, WebhookDelivery, WebhookEndpoint


def _event_type_text(value: Any) -> Any:
    if not isinstance(value, str):
        raise PydanticCustomError("wrong_type", "must be a string")
    return value.strip()


EventTypeName = Annotated[
    str,
    BeforeValidator(_event_type_text),
    WithJsonSchema({"type": "string", "enum": list(EVENT_TYPES)}),
]
"""An event type; checked by the service so that an unknown one is named in the error."""


def _url_text(value: Any) -> Any:
    if not isinstance(value, str):
        raise PydanticCustomError("wrong_type", "must be a string")
    return value


ReceiverUrl = Annotated[
    str,
    BeforeValidator(_url_text),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000, pattern=URL_PATTERN),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 2000, "pattern": URL_PATTERN}),
]
"""A receiver URL (the pattern is the service's own rule, published)."""

_TYPES_TEXT = "Event types to receive; empty or absent: every type. An unknown type answers 7000 naming it."


class EndpointIn(WireModel):
    """A receiver: an http(s) URL (https for production clients) and the event types it takes."""

    url: ReceiverUrl = Field(
        examples=["https://example.com/billing/webhooks"],
        description="http or https (production: https on a public host); no credentials, no #fragment.",
    )
    event_types: list[EventTypeName] | None = Field(
        None, max_length=len(EVENT_TYPES), description=_TYPES_TEXT
    )
    description: Text | None = Field(None, max_length=500)


class EndpointUpdateIn(WireModel):
    """Only the fields sent change; `enabled: true` turns a disabled endpoint back on."""

    url: ReceiverUrl | None = None
    event_types: list[EventTypeName] | None = Field(
        None, max_length=len(EVENT_TYPES), description=_TYPES_TEXT
    )
    description: Text | None = Field(None, max_length=500)
    enabled: Flag | None = None


_ISO_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}:?\d{2})")


def parse_instant(value: str) -> datetime | None:
    """An ISO 8601 instant with a zone (2026-12-01T00:00:00Z), or None for anything else."""
    text = value.strip()
    if not _ISO_INSTANT.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return None


def _instant_text(value: Any) -> Any:
    parsed = parse_instant(value) if isinstance(value, str) else None
    if parsed is None:
        raise PydanticCustomError(
            "instant", "must be an ISO 8601 instant with a zone, e.g. 2026-12-01T00:00:00Z"
        )
    return parsed


Instant = Annotated[AwareDatetime, BeforeValidator(_instant_text)]


class ReplayIn(WireModel):
    since: Instant = Field(description="Send again every event created at or after this instant (ISO 8601).")


class EndpointOut(OutModel):
    id: str
    client_id: str
    url: str
    description: str | None
    event_types: list[str] = Field(description="Empty: every event type.")
    status: Literal["enabled", "disabled"]
    disabled_reason: str | None
    secret: str = Field(
        description="The signing secret: in full only when the endpoint is created or its secret rotated; "
        "masked (whsec_...abcd) elsewhere."
    )
    previous_secret_until: datetime | None = Field(
        description="After a rotation, the old secret signs alongside the new one until then."
    )
    consecutive_failures: int
    circuit_open_until: datetime | None = Field(
        description="After repeated failures, deliveries to this endpoint wait until then."
    )
    created_at: datetime
    updated_at: datetime | None
    disabled_at: datetime | None


def endpoint_out(endpoint: WebhookEndpoint, *, reveal: bool = False) -> EndpointOut:
    return EndpointOut(
        id=endpoint.id,
        client_id=endpoint.client_id,
        url=endpoint.url,
        description=endpoint.description,
        event_types=list(endpoint.event_types or []),
        status="enabled" if endpoint.status == "enabled" else "disabled",
        disabled_reason=endpoint.disabled_reason,
        secret=endpoint.secret if reveal else masked(endpoint.secret),
        previous_secret_until=endpoint.previous_secret_until,
        consecutive_failures=endpoint.consecutive_failures,
        circuit_open_until=endpoint.circuit_open_until,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
        disabled_at=endpoint.disabled_at,
    )


class DeliveryOut(OutModel):
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    status: Literal["pending", "delivered", "abandoned"]
    attempts: int = Field(description="Attempts since the delivery was last queued.")
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None = Field(description="The receiver's HTTP status; null for no answer.")
    last_latency_ms: int | None
    last_error: str | None
    last_response: str | None = Field(description="The first 1 KB of the receiver's answer.")
    created_at: datetime
    delivered_at: datetime | None


def delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        status=delivery.status,
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        last_attempt_at=delivery.last_attempt_at,
        last_status_code=delivery.last_status_code,
        last_latency_ms=delivery.last_latency_ms,
        last_error=delivery.last_error,
        last_response=delivery.last_response,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
    )


class EventOut(OutModel):
    id: str
    type: str
    client_id: str
    subscription_id: str | None
    sequence: int | None = Field(description="Order of the subscription's events (1, 2, ...).")
    created_at: datetime
    data: dict[str, Any]


def _typed_event(payload: type[EventPayload]) -> type[OutModel]:
    """The published shape of one event type: `type` fixed, `data` its payload model."""
    fixed: Any = Literal[payload.type]
    model: type[OutModel] = create_model(
        f"{payload.__name__}Event",
        __base__=OutModel,
        __doc__=f"A `{payload.type}` event; `data` is its payload (docs/events.md).",
        id=(str, ...),
        type=(fixed, ...),
        client_id=(str, ...),
        subscription_id=(str | None, ...),
        sequence=(int | None, Field(description="Order of the subscription's events (1, 2, ...).")),
        created_at=(datetime, ...),
        data=(payload, ...),
    )
    return model


TYPED_EVENTS: tuple[type[OutModel], ...] = tuple(_typed_event(payload) for payload in EVENT_MODELS)


class PublishedEvent(RootModel[Annotated[Union[TYPED_EVENTS], Field(discriminator="type")]]):  # type: ignore[valid-type]  # noqa: UP007
    """An event as the OpenAPI document publishes it: one shape per `type`, whose `data` is that
    type's payload model (billing/domain/events.py). The API renders `EventOut`; the contract tests
    check every answer against this published union, so payloads and document cannot drift."""


def event_out(event: Event) -> EventOut:
    return EventOut(
        id=event.id,
        type=event.type,
        client_id=event.client_id,
        subscription_id=event.subscription_id,
        sequence=event.sequence,
        created_at=event.created_at,
        data=dict(event.payload or {}),
    )


class EventPage(OutModel):
    items: list[EventOut]
    has_more: bool
    next_starting_after: str | None = Field(description="Pass as startingAfter for the next page.")


class DeliveryPage(OutModel):
    items: list[DeliveryOut]
    has_more: bool
    next_starting_after: str | None = Field(description="Pass as startingAfter for the next page.")


class ReplayOut(OutModel):
    queued: int = Field(description="Events queued for delivery again.")
