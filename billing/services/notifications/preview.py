"""`billing notifications preview`: what a notification would look like for one subscription, unsent.

The context is the one the event would freeze, filled from the subscription as it is now (dates
the subscription has none of yet, such as a next retry outside grace, are shown one day ahead).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from billing.domain.errors import BillingError
from billing.domain.notifications import TEMPLATES
from billing.services.notifications.sending import Sender
from billing.services.notifications.templates import MailRenderer, RenderedMail
from billing.services.runtime import Runtime
from billing.store import notifications as store


@dataclass(frozen=True, slots=True)
class Preview:
    to: str | None
    sender: Sender
    mail: RenderedMail


def _iso(value: datetime | None, fallback: datetime) -> str:
    return (value or fallback).isoformat()


async def preview(runtime: Runtime, template: str, subscription_id: str) -> Preview:
    """Render `template` for the subscription. Errors: 7000 unknown template, 7041 unknown subscription."""
    if template not in TEMPLATES:
        raise BillingError(
            "CHECK_PARAMETERS",
            message=f"{template!r} is not a notification. Known: {', '.join(TEMPLATES)}.",
            field="template",
        )
    async with runtime.sessions() as session:
        sub = await store.subscription_for_preview(session, subscription_id)
        if sub is None:
            raise BillingError("SUBSCRIPTION_NOT_FOUND", field="subscriptionId")
        choices = await store.client_settings(session, sub["client_id"])
    now = runtime.clock.now() + timedelta(seconds=sub["clock_offset_seconds"])
    context = {
        "eventType": template,
        "occurredAt": now.isoformat(),
        "subscriptionId": sub["id"],
        "userId": sub["user_id"],
        "planId": sub["plan_id"],
        "planName": sub["plan_name"],
        "amountMinor": sub["amount_minor"],
        "currency": sub["currency"],
        "brand": sub["brand"],
        "last4": sub["last4"],
        "nextRetryAt": _iso(sub["grace_retry_at"], now + timedelta(days=1)),
        "graceEndsAt": _iso(sub["grace_deadline"], now + timedelta(days=7)),
        "nextRenewalDate": _iso(sub["current_period_end"], now),
        "endedAt": _iso(sub["ended_at"], now),
        "expMonth": sub["exp_month"],
        "expYear": sub["exp_year"],
    }
    settings = runtime.settings
    mail = MailRenderer(settings.notifications.templates_dir).render(
        template, context, locale=choices.locale, timezone=sub["timezone"], client_name=sub["client_name"]
    )
    sender = Sender(
        address=settings.smtp.sender,
        name=choices.sender_name or settings.smtp.sender_name or sub["client_name"],
        reply_to=choices.reply_to,
    )
    return Preview(to=sub["notification_email"], sender=sender, mail=mail)
