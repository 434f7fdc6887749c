"""Wire shapes of the payment-method routes (Migo's `tokenizeData`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from api.schemas.cards import CardInfoIn
from api.schemas.wire import Flag, Line, OutModel, Text, WireModel
from billing.services.payment_methods import NewPaymentMethod
from billing.store.models import PaymentMethod


class TokenizeDataIn(WireModel):
    """A card for a cardholder: a processor token as `cardId`, or raw card data as `cardInfo`."""

    user_id: Line = Field(max_length=200)
    client_id: Text | None = Field(None, description="Your client id; must match the token when sent.")
    processor_id: Text = Field(description="An installed processor slug: sandbox, stripe.")
    card_id: Text | None = Field(
        None,
        max_length=255,
        description="A token the processor issued (sandbox: tok_sbx_...; stripe: cus_...:pm_...). Never a card number.",
    )
    card_info: CardInfoIn | None = Field(
        None, description="Raw card data instead of cardId; tokenized, never stored."
    )
    alias: Text | None = Field(None, max_length=100)
    fallback_for: list[Text] | None = Field(
        None,
        max_length=100,
        description="Active subscriptions of this cardholder the new card backs, as their last fallback. "
        "Without it the card backs no subscription until it is set as a default.",
    )

    def request(self) -> NewPaymentMethod:
        return NewPaymentMethod(
            user_id=self.user_id,
            processor=self.processor_id,
            card_id=self.card_id,
            card=self.card_info.card() if self.card_info is not None else None,
            alias=self.alias,
            fallback_for=tuple(self.fallback_for or ()),
        )


class AddPaymentMethodIn(WireModel):
    """`POST /v1/subscriptions/payment-methods`."""

    tokenize_data: TokenizeDataIn


class RemovePaymentMethodIn(WireModel):
    """`DELETE /v1/subscriptions/payment-methods`."""

    payment_method_id: Text
    user_id: Line | None = Field(None, description="When sent, the card must belong to this cardholder.")
    client_id: Text | None = Field(None, description="Your client id; must match the token when sent.")


class SetDefaultIn(WireModel):
    """`PUT /v1/subscriptions/payment-methods/set-default`."""

    subscription_id: Text
    payment_method_id: Text
    keep_as_fallback: Flag = Field(
        False,
        description="Keep the card being replaced as the subscription's first fallback. "
        "By default it stops backing the subscription and is never charged for it again.",
    )
    client_id: Text | None = Field(None, description="Your client id; must match the token when sent.")


class PaymentMethodOut(OutModel):
    """A saved card: the processor keeps the card, the engine keeps its token (not shown)."""

    id: str
    client_id: str
    user_id: str
    processor: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    alias: str | None
    status: Literal["active", "removed"]
    created_at: datetime


def payment_method_out(method: PaymentMethod) -> PaymentMethodOut:
    return PaymentMethodOut(
        id=method.id,
        client_id=method.client_id,
        user_id=method.user_id,
        processor=method.processor,
        brand=method.brand,
        last4=method.last4,
        exp_month=method.exp_month,
        exp_year=method.exp_year,
        alias=method.alias,
        status=method.status,
        created_at=method.created_at,
    )
