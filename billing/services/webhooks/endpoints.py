"""Webhook endpoints: register, read, change, delete, rotate the signing secret."""

from __future__ import annotations

import base64
import ipaddress
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from billing.domain.errors import BillingError
from billing.domain.webhooks import EVENT_TYPES, unknown_event_types
from billing.settings import WebhookSettings
from billing.store import webhooks as store
from billing.store.engine import Session
from billing.store.ids import new_id
from billing.store.models import WebhookEndpoint

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
MAX_URL_LENGTH = 2000
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
URL_PATTERN = rf"^https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:{_PORT})?([/?][!-\"$-~]*)?$"
"""What a receiver URL looks like: http(s), a host name or IPv4 address, an optional port, a path
and query of printable ASCII without a #fragment. Checked here and published in the contract."""
_URL = re.compile(URL_PATTERN)


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def masked(secret: str) -> str:
    """A secret as lists show it: the prefix and its last four characters."""
    return f"{SECRET_PREFIX}...{secret[-4:]}"


def _loopback_or_private(host: str) -> bool:
    if host in {"localhost", "localhost.localdomain"} or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified


def check_url(url: str, *, production: bool) -> str:
    """A receiver URL as stored, or 7000 naming `url` with what is wrong."""
    text = url.strip()
    if not text or len(text) > MAX_URL_LENGTH:
        raise BillingError(
            "CHECK_PARAMETERS", message=f"url must be 1 to {MAX_URL_LENGTH} characters.", field="url"
        )
    authority = text.split("://", 1)[-1].split("/", 1)[0].split("?", 1)[0]
    if "@" in authority:
        raise BillingError(
            "CHECK_PARAMETERS",
            message="url must not carry credentials; authenticate deliveries by their signature.",
            field="url",
        )
    if not _URL.fullmatch(text):
        raise BillingError(
            "CHECK_PARAMETERS",
            message="url must be an http or https URL: a host name or IPv4 address, an optional port "
            "(1-65535), then a path of printable ASCII without a #fragment.",
            field="url",
        )
    parts = urlsplit(text)
    assert parts.hostname is not None
    if production and parts.scheme != "https":
        raise BillingError("CHECK_PARAMETERS", message="Production endpoints must use https.", field="url")
    if production and _loopback_or_private(parts.hostname):
        raise BillingError(
            "CHECK_PARAMETERS",
            message="Production endpoints must be reachable on the internet, not a loopback or private address.",
            field="url",
        )
    return text


def check_event_types(types: list[str] | None) -> list[str]:
    """The subscribed types, deduplicated in order (empty = every type), or 7000 naming the unknown one."""
    if not types:
        return []
    unknown = unknown_event_types(types)
    if unknown:
        raise BillingError(
            "CHECK_PARAMETERS",
            message=f"eventTypes: '{unknown[0]}' is not an event type. Known types: {', '.join(EVENT_TYPES)}.",
            field="eventTypes",
        )
    return list(dict.fromkeys(types))


@dataclass(frozen=True, slots=True)
class EndpointChanges:
    url: str | None = None
    event_types: list[str] | None = None
    description: str | None = None
    enabled: bool | None = None


async def create_endpoint(
    session: Session,
    *,
    client_id: str,
    production: bool,
    url: str,
    event_types: list[str] | None,
    description: str | None,
    settings: WebhookSettings,
    now: datetime,
) -> WebhookEndpoint:
    checked_url = check_url(url, production=production)
    types = check_event_types(event_types)
    if await store.count_endpoints(session, client_id) >= settings.max_endpoints:
        raise BillingError(
            "WEBHOOK_ENDPOINT_LIMIT",
            message=f"A client may have {settings.max_endpoints} webhook endpoints; delete one before adding another.",
        )
    endpoint = WebhookEndpoint(
        id=new_id("webhook_endpoint"),
        client_id=client_id,
        url=checked_url,
        description=description,
        secret=new_secret(),
        event_types=types,
        status="enabled",
        created_at=now,
        updated_at=now,
    )
    return await store.add_endpoint(session, endpoint)


async def get_endpoint(session: Session, *, client_id: str, endpoint_id: str) -> WebhookEndpoint:
    endpoint = await store.get_endpoint(session, client_id, endpoint_id)
    if endpoint is None:
        raise BillingError("WEBHOOK_ENDPOINT_NOT_FOUND")
    return endpoint


async def list_endpoints(session: Session, *, client_id: str) -> list[WebhookEndpoint]:
    return await store.list_endpoints(session, client_id)


async def update_endpoint(
    session: Session,
    *,
    client_id: str,
    endpoint_id: str,
    production: bool,
    changes: EndpointChanges,
    now: datetime,
) -> WebhookEndpoint:
    """Change url, event types or description; `enabled` true turns a disabled endpoint back on."""
    endpoint = await get_endpoint(session, client_id=client_id, endpoint_id=endpoint_id)
    if changes.url is not None:
        endpoint.url = check_url(changes.url, production=production)
    if changes.event_types is not None:
        endpoint.event_types = check_event_types(changes.event_types)
    if changes.description is not None:
        endpoint.description = changes.description
    if changes.enabled is True and endpoint.status != "enabled":
        endpoint.status = "enabled"
        endpoint.disabled_at = None
        endpoint.disabled_reason = None
        endpoint.consecutive_failures = 0
        endpoint.circuit_open_until = None
    elif changes.enabled is False and endpoint.status == "enabled":
        await store.disable_endpoint(session, endpoint.id, reason="disabled by the merchant", now=now)
        await session.refresh(endpoint)
    endpoint.updated_at = now
    await session.flush()
    return endpoint


async def delete_endpoint(session: Session, *, client_id: str, endpoint_id: str) -> WebhookEndpoint:
    endpoint = await get_endpoint(session, client_id=client_id, endpoint_id=endpoint_id)
    await store.delete_endpoint(session, endpoint)
    return endpoint


async def rotate_secret(
    session: Session, *, client_id: str, endpoint_id: str, overlap: timedelta, now: datetime
) -> WebhookEndpoint:
    """A new secret signs from now on; the old one signs alongside it for `overlap`."""
    endpoint = await get_endpoint(session, client_id=client_id, endpoint_id=endpoint_id)
    endpoint.previous_secret = endpoint.secret if overlap > timedelta(0) else None
    endpoint.previous_secret_until = now + overlap if overlap > timedelta(0) else None
    endpoint.secret = new_secret()
    endpoint.updated_at = now
    await session.flush()
    return endpoint


def signing_secrets(
    secret: str, previous: str | None, previous_until: datetime | None, *, now: datetime
) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one during its overlap."""
    active = [secret]
    if previous and previous_until is not None and now < previous_until:
        active.append(previous)
    return active
