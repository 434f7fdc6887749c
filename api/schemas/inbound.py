"""Wire models of the inbound notification routes (/webhooks/*): what processors and the
settlement feed send, and the per-row answer of a settlement report."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import AwareDatetime, Field, model_validator

from api.schemas.wire import Currency, Money, OutModel, Text, WireModel


class VolcanNotificationIn(WireModel):
    """A processor notification in the sandbox processor's wire format (docs/processors.md)."""

    event_id: Text = Field(max_length=255)
    type: Literal["charge.succeeded", "charge.failed", "charge.refunded"]
    idempotency_key: Text | None = Field(None, max_length=255)
    processor_reference: Text | None = Field(None, max_length=255)
    amount: Money
    currency: Currency
    occurred_at: AwareDatetime
    decline_code: Text | None = Field(None, max_length=8)

    @model_validator(mode="after")
    def _names_a_charge(self) -> VolcanNotificationIn:
        if self.idempotency_key is None and self.processor_reference is None:
            raise ValueError("idempotencyKey or processorReference is required")
        return self


class SettlementChargeIn(WireModel):
    """One settled charge: the engine's charge id or the processor's reference, and the amount."""

    charge_id: Text | None = Field(None, max_length=40)
    processor_reference: Text | None = Field(None, max_length=255)
    amount: Money
    currency: Currency

    @model_validator(mode="after")
    def _names_a_charge(self) -> SettlementChargeIn:
        if self.charge_id is None and self.processor_reference is None:
            raise ValueError("chargeId or processorReference is required")
        return self


class SettlementReportIn(WireModel):
    """A settlement report: the charges paid out on one settlement date."""

    event_id: Text = Field(max_length=255)
    settlement_date: date
    charges: list[SettlementChargeIn] = Field(min_length=1)


class NoticeOut(OutModel):
    """What the engine did with a processor notification."""

    event_id: str
    duplicate: bool
    resolution: str | None
    charge_id: str | None
    charge_state: str | None


class SettlementRowOut(OutModel):
    index: int
    status: Literal["settled", "refused"]
    charge_id: str | None
    processor_reference: str | None
    code: str | None
    message: str | None


class SettlementOut(OutModel):
    event_id: str
    duplicate: bool
    settled: int
    refused: int
    rows: list[SettlementRowOut]


class StripeEventIn(WireModel):
    """The envelope of a Stripe event; `data.object` is read by type (billing.services.inbound)."""

    id: Text = Field(max_length=255)
    type: Text = Field(max_length=100)
    created: int | None = Field(None, ge=0)
