"""What `subscription.*` and `charge.*` events carry: JSON-ready snapshots with Migo's field names.

Amounts are decimal strings with the currency's precision ("29.90") plus `amountMinor`, because
event payloads are stored as JSON, where a float would lose the exact amount.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing.domain.money import from_minor
from billing.store.models import Charge, Subscription


def _iso(instant: datetime | None) -> str | None:
    return None if instant is None else instant.isoformat()


def subscription_payload(subscription: Subscription) -> dict[str, Any]:
    """A snapshot of a subscription for the event log and webhooks."""
    return {
        "subscriptionId": subscription.id,
        "clientId": subscription.client_id,
        "userId": subscription.user_id,
        "planUid": subscription.plan_id,
        "trxUid": subscription.trx_id,
        "currency": subscription.currency,
        "status": subscription.status,
        "renewalStatus": subscription.renewal_status,
        "currentPeriodStart": _iso(subscription.current_period_start),
        "currentPeriodEnd": _iso(subscription.current_period_end),
        "trialEndsAt": _iso(subscription.trial_ends_at),
        "cyclesPaid": subscription.cycles_paid,
        "defaultPaymentMethodId": subscription.default_payment_method_id,
        "cancelledAt": _iso(subscription.cancelled_at),
    }


def charge_payload(charge: Charge, **extra: Any) -> dict[str, Any]:
    """A snapshot of a charge for the event log and webhooks; `extra` adds context fields."""
    return {
        "chargeId": charge.id,
        "subscriptionId": charge.subscription_id,
        "kind": charge.kind,
        "state": charge.state,
        "amount": str(from_minor(charge.amount_minor, charge.currency)),
        "amountMinor": charge.amount_minor,
        "currency": charge.currency,
        "paymentMethodId": charge.payment_method_id,
        "processor": charge.processor,
        "attempt": charge.attempt,
        "periodStart": _iso(charge.period_start),
        "declineCode": charge.decline_code,
        "declineMessage": charge.decline_message,
        "processorReference": charge.processor_reference,
        **extra,
    }
