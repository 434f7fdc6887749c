"""Wire shapes of `POST /transactions` (Payment Link style: `{uid, reference, URL}`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from api.schemas.wire import Amount, Currency, CurrencyOut, Line, Money, OutModel, Text, WireModel
from billing.domain.money import from_minor
from billing.services.payment_links import link_url
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
    plan_uid: Text | None = Field(
        None,
        max_length=40,
        description=(
            "The plan the payment link (`URL`) enrols the cardholder in; in the transaction's currency "
            "(7000 otherwise, 7040 unknown). Without it the link verifies and saves the card only."
        ),
        examples=["pln_01JH7Y0E3K2M4N5P6Q7R8S9T0V"],
    )
    return_url: Line | None = Field(
        None,
        max_length=2000,
        description=(
            "Where the payment link sends the cardholder after enrolling, with `uid`, `reference`, "
            "`status=approved` and `subscriptionId` added to its query. Absolute https "
            "(sandbox clients may use http); 7800 otherwise."
        ),
        examples=["https://shop.example.com/subscribed"],
    )


class TransactionOut(OutModel):
    uid: str
    reference: str
    URL: str | None = Field(
        alias="URL",
        description=(
            "The payment link: the engine's hosted enrolment page for this transaction "
            "(`{public_url}/pay/{reference}`), to send to the cardholder."
        ),
    )
    amount: Amount
    currency: CurrencyOut
    user_id: str
    external_id: str | None
    plan_uid: str | None = Field(description="The plan the link enrols in; null: it saves the card only.")
    return_url: str | None
    expires_at: datetime | None = Field(description="When the payment link stops working.")
    status: Literal["created", "enrolling", "used"]
    created_at: datetime


def transaction_out(trx: Transaction, public_url: str) -> TransactionOut:
    return TransactionOut(
        uid=trx.id,
        reference=trx.reference,
        URL=link_url(public_url, trx.reference) if trx.link_expires_at is not None else None,
        amount=from_minor(trx.amount_minor, trx.currency),
        currency=trx.currency,
        user_id=trx.user_id,
        external_id=trx.external_id,
        plan_uid=trx.plan_id,
        return_url=trx.return_url,
        expires_at=trx.link_expires_at,
        status=trx.status,
        created_at=trx.created_at,
    )
