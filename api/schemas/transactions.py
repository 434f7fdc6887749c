"""Wire shapes of `POST /transactions` (Payment Link style: `{uid, reference, URL}`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from api.schemas.wire import Amount, Currency, CurrencyOut, Line, Money, OutModel, Text, WireModel
from billing.domain.money import from_minor
from billing.store.models import Transaction


class TransactionIn(WireModel):
    """The transaction an enrolment will be verified against (its amount is pre-authorized)."""

    amount: Money
    currency: Currency
    user_id: Line = Field(
        max_length=200, description="The cardholder in your system.", examples=["cardholder-42"]
    )
    external_id: Text | None = Field(
        None, max_length=200, description="Your reference; unique per client (7006)."
    )
    channel: Text | None = Field(None, max_length=32)
    client_id: Text | None = Field(None, description="Your client id; must match the token when sent.")
    client: Text | None = Field(None, description="Alias of clientId.")


class TransactionOut(OutModel):
    uid: str
    reference: str
    URL: str | None = Field(
        alias="URL", description="Hosted enrolment page; null (this engine has none: call verify-card)."
    )
    amount: Amount
    currency: CurrencyOut
    user_id: str
    external_id: str | None
    status: Literal["created", "enrolling", "used"]
    created_at: datetime


def transaction_out(trx: Transaction) -> TransactionOut:
    return TransactionOut(
        uid=trx.id,
        reference=trx.reference,
        URL=None,
        amount=from_minor(trx.amount_minor, trx.currency),
        currency=trx.currency,
        user_id=trx.user_id,
        external_id=trx.external_id,
        status=trx.status,
        created_at=trx.created_at,
    )
