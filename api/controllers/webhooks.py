"""Webhook endpoints, their delivery logs, retries and replays; the event log."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from api.schemas.webhooks import (
    DeliveryOut,
    DeliveryPage,
    EndpointIn,
    EndpointOut,
    EndpointUpdateIn,
    EventOut,
    EventPage,
    ReplayIn,
    ReplayOut,
    delivery_out,
    endpoint_out,
    event_out,
    parse_instant,
)
from api.schemas.wire import render, responses
from billing.domain.errors import BillingError
from billing.domain.webhooks import EVENT_TYPES
from billing.services.auth import AuthenticatedClient
from billing.services.runtime import Runtime
from billing.services.webhooks import endpoints, history
from billing.services.webhooks.endpoints import EndpointChanges

StartingAfter = Annotated[
    str | None,
    QueryParameter(
        name="startingAfter", max_length=40, description="Cursor: the last id of the previous page."
    ),
]
PageSize = Annotated[
    int, QueryParameter(name="limit", ge=1, le=history.MAX_PAGE, description="Items per page.")
]


def _instant(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    parsed = parse_instant(value)
    if parsed is None:
        raise BillingError(
            "CHECK_PARAMETERS",
            message=f"{field} must be an ISO 8601 instant with a zone, e.g. 2026-12-01T00:00:00Z.",
            field=field,
        )
    return parsed


class WebhookEndpointsController(Controller):
    path = "/v1/webhooks"
    tags = ["webhooks"]

    @post(
        "/endpoints",
        operation_id="CreateWebhookEndpoint",
        status_code=201,
        responses=responses(201, EndpointOut, "Endpoint created", 409),
    )
    async def create_endpoint(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        data: JSONBody[EndpointIn],
    ) -> dict[str, Any]:
        """Register a receiver. The answer carries the signing secret in full, this once.

        Errors: 7000 (url not http(s), http or a private address for a production client, unknown
        event type; the field is named), 7054 the client has `webhooks.max_endpoints` endpoints.
        """
        async with runtime.sessions() as session, session.begin():
            endpoint = await endpoints.create_endpoint(
                session,
                client_id=merchant.id,
                production=not merchant.is_sandbox,
                url=data.url,
                event_types=data.event_types,
                description=data.description,
                settings=runtime.settings.webhooks,
                now=runtime.clock.now(),
            )
        return render(endpoint_out(endpoint, reveal=True), "Endpoint created")

    @get(
        "/endpoints",
        operation_id="ListWebhookEndpoints",
        responses=responses(200, list[EndpointOut], "Endpoints"),
    )
    async def list_endpoints(
        self, runtime: NamedDependency[Runtime], merchant: NamedDependency[AuthenticatedClient]
    ) -> dict[str, Any]:
        """The client's endpoints, oldest first, secrets masked."""
        async with runtime.sessions() as session:
            found = await endpoints.list_endpoints(session, client_id=merchant.id)
        return render([endpoint_out(e) for e in found], "Endpoints")

    @get(
        "/endpoints/{endpoint_id:str}",
        operation_id="GetWebhookEndpoint",
        responses=responses(200, EndpointOut, "Endpoint found", 404),
    )
    async def get_endpoint(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        endpoint_id: FromPath[str],
    ) -> dict[str, Any]:
        """One endpoint, secret masked. Errors: 7045 unknown endpoint (or another client's)."""
        async with runtime.sessions() as session:
            endpoint = await endpoints.get_endpoint(session, client_id=merchant.id, endpoint_id=endpoint_id)
        return render(endpoint_out(endpoint), "Endpoint found")

    @put(
        "/endpoints/{endpoint_id:str}",
        operation_id="UpdateWebhookEndpoint",
        responses=responses(200, EndpointOut, "Endpoint updated", 404),
    )
    async def update_endpoint(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        endpoint_id: FromPath[str],
        data: JSONBody[EndpointUpdateIn],
    ) -> dict[str, Any]:
        """Change url, eventTypes or description; `enabled: true` re-enables a disabled endpoint
        (its abandoned deliveries stay abandoned: replay them), `enabled: false` disables it.
        Errors as for create, plus 7045."""
        async with runtime.sessions() as session, session.begin():
            endpoint = await endpoints.update_endpoint(
                session,
                client_id=merchant.id,
                endpoint_id=endpoint_id,
                production=not merchant.is_sandbox,
                changes=EndpointChanges(
                    url=data.url,
                    event_types=data.event_types,
                    description=data.description,
                    enabled=data.enabled,
                ),
                now=runtime.clock.now(),
            )
        return render(endpoint_out(endpoint), "Endpoint updated")

    @delete(
        "/endpoints/{endpoint_id:str}",
        operation_id="DeleteWebhookEndpoint",
        status_code=200,
        responses=responses(200, EndpointOut, "Endpoint deleted", 404),
    )
    async def delete_endpoint(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        endpoint_id: FromPath[str],
    ) -> dict[str, Any]:
        """Delete an endpoint and its delivery log. Errors: 7045."""
        async with runtime.sessions() as session, session.begin():
            endpoint = await endpoints.delete_endpoint(
                session, client_id=merchant.id, endpoint_id=endpoint_id
            )
        return render(endpoint_out(endpoint), "Endpoint deleted")

    @post(
        "/endpoints/{endpoint_id:str}/rotate-secret",
        operation_id="RotateWebhookSecret",
        status_code=200,
        responses=responses(200, EndpointOut, "Secret rotated", 404),
    )
    async def rotate_secret(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        endpoint_id: FromPath[str],
    ) -> dict[str, Any]:
        """A new signing secret, shown in full this once. The old one keeps signing alongside it
        (two signatures in `webhook-signature`) for `webhooks.rotation_overlap_hours` (24 h). Errors: 7045."""
        overlap = timedelta(hours=runtime.settings.webhooks.rotation_overlap_hours)
        async with runtime.sessions() as session, session.begin():
            endpoint = await endpoints.rotate_secret(
                session,
                client_id=merchant.id,
                endpoint_id=endpoint_id,
                overlap=overlap,
                now=runtime.clock.now(),
            )
        return render(endpoint_out(endpoint, reveal=True), "Secret rotated")

    @get(
        "/endpoints/{endpoint_id:str}/deliveries",
        operation_id="ListWebhookDeliveries",
        responses=responses(200, DeliveryPage, "Deliveries", 404),
    )
    async def list_deliveries(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        endpoint_id: FromPath[str],
        starting_after: StartingAfter = None,
        limit: PageSize = 50,
    ) -> dict[str, Any]:
        """The endpoint's deliveries, newest first: attempts, last status code, latency, error and
        the first 1 KB of the receiver's answer. Errors: 7045."""
        async with runtime.sessions() as session:
            found = await history.list_deliveries(
                session,
                client_id=merchant.id,
                endpoint_id=endpoint_id,
                starting_after=starting_after,
                limit=limit,
            )
        page = DeliveryPage(
            items=[delivery_out(d) for d in found.items],
            has_more=found.has_more,
            next_starting_after=found.next_starting_after,
        )
        return render(page, "Deliveries")

    @post(
        "/deliveries/{delivery_id:str}/retry",
        operation_id="RetryWebhookDelivery",
        status_code=200,
        responses=responses(200, DeliveryOut, "Delivery queued", 404, 409),
    )
    async def retry_delivery(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        delivery_id: FromPath[str],
    ) -> dict[str, Any]:
        """Send a delivery again, whatever its state, as soon as a worker gets to it.
        Errors: 7048 unknown delivery, 7050 its endpoint is disabled."""
        async with runtime.sessions() as session, session.begin():
            delivery = await history.retry_delivery(
                session, client_id=merchant.id, delivery_id=delivery_id, now=runtime.clock.now()
            )
        return render(delivery_out(delivery), "Delivery queued")

    @post(
        "/endpoints/{endpoint_id:str}/replay",
        operation_id="ReplayWebhookEvents",
        status_code=200,
        responses=responses(200, ReplayOut, "Events queued", 404, 409),
    )
    async def replay(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        endpoint_id: FromPath[str],
        data: JSONBody[ReplayIn],
    ) -> dict[str, Any]:
        """Send every event created since `since` (of the endpoint's types) to the endpoint again,
        delivered ones included. Errors: 7000 `since` in the future, 7045, 7050 endpoint disabled."""
        async with runtime.sessions() as session, session.begin():
            queued = await history.replay(
                session,
                client_id=merchant.id,
                endpoint_id=endpoint_id,
                since=data.since,
                now=runtime.clock.now(),
            )
        return render(ReplayOut(queued=queued), "Events queued")


class EventsController(Controller):
    path = "/v1/events"
    tags = ["events"]

    @get("/", operation_id="ListEvents", responses=responses(200, EventPage, "Events", 404))
    async def list_events(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        starting_after: StartingAfter = None,
        limit: PageSize = 50,
        type: Annotated[
            str | None,
            QueryParameter(
                name="type",
                max_length=64,
                description="Only this type.",
                schema_extra={"enum": list(EVENT_TYPES)},
            ),
        ] = None,
        subscription_id: Annotated[
            str | None,
            QueryParameter(name="subscriptionId", max_length=40, description="Only this subscription's."),
        ] = None,
        created_gte: Annotated[
            str | None,
            QueryParameter(
                name="createdGte",
                max_length=40,
                description="Created at or after (ISO 8601 with a zone).",
                schema_extra={"format": "date-time"},
            ),
        ] = None,
        created_lt: Annotated[
            str | None,
            QueryParameter(
                name="createdLt",
                max_length=40,
                description="Created before (ISO 8601 with a zone).",
                schema_extra={"format": "date-time"},
            ),
        ] = None,
    ) -> dict[str, Any]:
        """The client's events, oldest first: walk forward with `startingAfter` to catch up on missed
        events. Kept at least `webhooks.event_retention_days` (30). Errors: 7000 bad filter, 7041
        `subscriptionId` is not one of your subscriptions."""
        gte = _instant(created_gte, "createdGte")
        lt = _instant(created_lt, "createdLt")
        async with runtime.sessions() as session:
            found = await history.list_events(
                session,
                client_id=merchant.id,
                starting_after=starting_after,
                limit=limit,
                type=type,
                subscription_id=subscription_id,
                created_gte=gte,
                created_lt=lt,
            )
        page = EventPage(
            items=[event_out(e) for e in found.items],
            has_more=found.has_more,
            next_starting_after=found.next_starting_after,
        )
        return render(page, "Events")

    @get("/{event_id:str}", operation_id="GetEvent", responses=responses(200, EventOut, "Event found", 404))
    async def get_event(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        event_id: FromPath[str],
    ) -> dict[str, Any]:
        """One event. Errors: 7047 unknown event (or another client's)."""
        async with runtime.sessions() as session:
            event = await history.get_event(session, client_id=merchant.id, event_id=event_id)
        return render(event_out(event), "Event found")
