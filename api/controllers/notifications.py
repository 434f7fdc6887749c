"""E-mail notifications: a client's settings, and the e-mails of one subscription (ours, beyond Migo)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from api.schemas.notifications import (
    NotificationOut,
    NotificationSettingsIn,
    NotificationSettingsOut,
    notification_out,
    settings_out,
)
from api.schemas.wire import render, responses
from billing.services.auth import AuthenticatedClient
from billing.services.notifications import client_settings, history
from billing.services.runtime import Runtime


class NotificationSettingsController(Controller):
    path = "/v1/notifications/settings"
    tags = ["notifications"]

    @get(
        "/",
        operation_id="GetNotificationSettings",
        responses=responses(200, NotificationSettingsOut, "Settings"),
    )
    async def read(
        self, runtime: NamedDependency[Runtime], merchant: NamedDependency[AuthenticatedClient]
    ) -> dict[str, Any]:
        """This client's e-mail notification settings (defaults until changed)."""
        return render(settings_out(await client_settings.read_settings(runtime, merchant.id)), "Settings")

    @put(
        "/",
        operation_id="UpdateNotificationSettings",
        responses=responses(200, NotificationSettingsOut, "Settings updated"),
    )
    async def update(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        data: JSONBody[NotificationSettingsIn],
    ) -> dict[str, Any]:
        """Turn notification types off (many merchants send their own), pick the locale (es, en), e-mail
        every failed retry, set the sender name and reply-to. Only the fields sent change.

        Errors: 7000 naming the field (unknown type or locale, a sender name that is not one line,
        a reply-to that is not one e-mail address).
        """
        sent = data.model_fields_set
        changed = await client_settings.update_settings(
            runtime,
            merchant.id,
            disabled=list(data.disabled) if data.disabled is not None else None,
            locale=data.locale,
            each_attempt=data.each_attempt,
            sender_name=data.sender_name if "sender_name" in sent else client_settings.UNSET,
            reply_to=data.reply_to if "reply_to" in sent else client_settings.UNSET,
        )
        return render(settings_out(changed), "Settings updated")


class SubscriptionNotificationsController(Controller):
    path = "/v1/subscriptions/{subscription_id:str}/notifications"
    tags = ["notifications"]

    @get(
        "/",
        operation_id="ListSubscriptionNotifications",
        responses=responses(200, list[NotificationOut], "E-mails of the subscription", 404),
    )
    async def list_notifications(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        subscription_id: FromPath[str],
    ) -> dict[str, Any]:
        """The e-mails sent (or still being tried) for this subscription, oldest first, with their status:
        `pending` (retrying), `sent`, `abandoned`. Errors: 7041 unknown subscription (or another client's)."""
        rows = await history.notifications_of(runtime, merchant.id, subscription_id)
        return render([notification_out(row) for row in rows], "Notifications")
