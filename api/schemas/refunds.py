"""Wire shapes of refunds: the request, one refund, and the answer of a refund request."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from api.schemas.wire import Amount, CurrencyOut, Money, OutModel, Text, WireModel
from billing.domain.money import from_minor
from billing.store.models import Refund


class RefundIn(WireModel):
    """`POST /v1/charges/{chargeId}/refund`: all that remains refundable unless `amount` says less."""

    amount: Money | None = Field(
        None, description="How much to give back, in the charge's currency; omitted: all that remains."
    )
    reason: Text | None = Field(
        None,
        max_length=500,
        description="Your note (kept with the refund and in its events).",
        examples=["duplicate"],
    )


class RefundOut(OutModel):
    """One refund or void of a charge."""

    id: str
    charge_id: str
    state: Literal["pending", "succeeded", "failed", "unknown"]
    method: Literal["refund", "void"]
    amount: Amount
    currency: CurrencyOut
    reason: str | None
    processor: str
    processor_reference: str | None
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    updated_at: datetime


def refund_out(refund: Refund) -> RefundOut:
    return RefundOut.model_validate(
        {**refund.model_dump(), "amount": from_minor(refund.amount_minor, refund.currency)}
    )
