"""Request and response bodies of e-mail notifications: a client's settings, a subscription's e-mails."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from api.schemas.wire import Email, Flag, OutModel, Text, WireModel
from billing.store.models import Notification
from billing.store.notifications import ClientNotificationSettings

TemplateName = Literal[
    "subPayProblem", "subscriptionSuspended", "paymentRecovered", "subscriptionExpired", "cardExpiring"
]


class NotificationSettingsIn(WireModel):
    """`PUT /v1/notifications/settings`: only the fields sent change (`null` clears senderName/replyTo)."""

    disabled: list[TemplateName] | None = Field(
        None, max_length=5, description="Notifications not to e-mail (the merchant sends its own)."
    )
    locale: Literal["es", "en"] | None = Field(None, description="Language of the e-mails (default es).")
    each_attempt: Flag | None = Field(
        None, description="subPayProblem after every failed retry, not only the first failure."
    )
    sender_name: Text | None = Field(None, max_length=100, description="Display name of the From header.")
    reply_to: Email | None = Field(None, description="Where cardholders' replies go.")


class NotificationSettingsOut(OutModel):
    disabled: list[str]
    locale: str
    each_attempt: bool
    sender_name: str | None
    reply_to: str | None
    updated_at: datetime | None


def settings_out(settings: ClientNotificationSettings) -> NotificationSettingsOut:
    return NotificationSettingsOut(
        disabled=list(settings.disabled),
        locale=settings.locale,
        each_attempt=settings.each_attempt,
        sender_name=settings.sender_name,
        reply_to=settings.reply_to,
        updated_at=settings.updated_at,
    )


class NotificationOut(OutModel):
    id: str
    template: str
    to: str
    status: Literal["pending", "sent", "abandoned"]
    attempts: int
    event_id: str
    occurred_at: datetime = Field(description="When the event happened (the client's clock).")
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    sent_at: datetime | None
    last_error: str | None


def notification_out(row: Notification) -> NotificationOut:
    return NotificationOut(
        id=row.id,
        template=row.template,
        to=row.to_address,
        status=row.status,
        attempts=row.attempts,
        event_id=row.event_id,
        occurred_at=row.occurred_at,
        last_attempt_at=row.last_attempt_at,
        next_attempt_at=row.next_attempt_at,
        sent_at=row.sent_at,
        last_error=row.last_error,
    )
