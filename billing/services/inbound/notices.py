"""Processor notifications as the engine reads them, whatever their wire format.

`/webhooks/volcan` (the sandbox processor's format, docs/processors.md) and `/webhooks/stripe`
(Stripe's events) both become a `ProcessorNotice`: which charge (idempotency key, else the
processor's reference), what happened, for how much.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from billing.domain.errors import CATALOG, spec
from billing.processors.base import Outcome
from billing.processors.stripe_outcomes import declined_outcome

NoticeType = Literal["charge.succeeded", "charge.failed", "charge.refunded"]


@dataclass(frozen=True, slots=True)
class ProcessorNotice:
    """One processor notification, parsed.

    `outcome` is the charge's final outcome (`succeeded` or `failed`) for the first two types,
    None for `charge.refunded` (recorded, not applied: refunds are their own resource).
    """

    source: str  # volcan | stripe
    processor: str  # the processor slug of the charges it concerns
    event_id: str
    type: NoticeType
    idempotency_key: str | None
    reference: str | None
    amount_minor: int | None
    currency: str | None
    occurred_at: datetime | None
    outcome: Outcome | None
    raw: dict[str, Any] = field(default_factory=dict)

    def detail(self) -> dict[str, Any]:
        """What is stored with the notification (enough to apply it again later)."""
        out: dict[str, Any] = {
            "type": self.type,
            "idempotencyKey": self.idempotency_key,
            "processorReference": self.reference,
            "amountMinor": self.amount_minor,
            "currency": self.currency,
            "occurredAt": self.occurred_at.isoformat() if self.occurred_at else None,
        }
        if self.outcome is not None:
            out["outcome"] = outcome_to_json(self.outcome)
        return out


def outcome_to_json(outcome: Outcome) -> dict[str, Any]:
    return {
        "status": outcome.status,
        "reference": outcome.reference,
        "declineCode": outcome.decline_code,
        "declineMessage": outcome.decline_message,
        "hardDecline": outcome.hard_decline,
    }


def outcome_from_json(data: Mapping[str, Any]) -> Outcome:
    return Outcome(
        status=data["status"],
        reference=data.get("reference"),
        decline_code=data.get("declineCode"),
        decline_message=data.get("declineMessage"),
        hard_decline=bool(data.get("hardDecline")),
    )


def volcan_outcome(type: NoticeType, reference: str | None, decline_code: str | None) -> Outcome | None:
    """The outcome a volcan notification states. A decline code outside the catalog is 7201."""
    if type == "charge.succeeded":
        return Outcome(status="succeeded", reference=reference)
    if type == "charge.failed":
        row = CATALOG.get(decline_code or "") or spec("CARD_DECLINED")
        hard = row.name in ("CARD_REPORTED_LOST_OR_STOLEN",)
        return Outcome(
            status="failed",
            reference=reference,
            decline_code=row.code,
            decline_message=row.message,
            hard_decline=hard,
        )
    return None


STRIPE_TYPES: dict[str, NoticeType] = {
    "payment_intent.succeeded": "charge.succeeded",
    "payment_intent.payment_failed": "charge.failed",
    "charge.refunded": "charge.refunded",
}


def stripe_notice(event: Mapping[str, Any], occurred_at: datetime | None) -> ProcessorNotice | None:
    """The notice a Stripe event carries; None for a type the engine does not act on.

    Charges are found by the engine's key (sent as `metadata[idempotency_key]` with every
    PaymentIntent, and as the request's Idempotency-Key), else by the PaymentIntent id, which is
    the reference the engine stores.
    """
    kind = STRIPE_TYPES.get(str(event.get("type")))
    if kind is None:
        return None
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        raise ValueError("data.object")
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    request = event.get("request") if isinstance(event.get("request"), Mapping) else {}
    key = (metadata or {}).get("idempotency_key") or (request or {}).get("idempotency_key")
    if kind == "charge.refunded":
        intent = obj.get("payment_intent")
        reference = intent if isinstance(intent, str) else None
        amount = obj.get("amount_refunded", obj.get("amount"))
        outcome = None
    else:
        reference = str(obj.get("id")) if obj.get("id") else None
        amount = obj.get("amount")
        error = obj.get("last_payment_error")
        outcome = (
            Outcome.succeeded(reference or "")
            if kind == "charge.succeeded"
            else declined_outcome(error if isinstance(error, Mapping) else {}, reference)
        )
    currency = obj.get("currency")
    return ProcessorNotice(
        source="stripe",
        processor="stripe",
        event_id=str(event["id"]),
        type=kind,
        idempotency_key=str(key) if key else None,
        reference=reference,
        amount_minor=amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
        currency=currency.upper() if isinstance(currency, str) else None,
        occurred_at=occurred_at,
        outcome=outcome,
    )
