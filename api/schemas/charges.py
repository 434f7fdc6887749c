"""Wire shapes of the on-demand charge routes (Migo's names: clientId, batchId, trackingId, errorsSample)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.wire import MONEY_PRECISION, Amount, CurrencyOut
from billing.services.ondemand import (
    MAX_BATCH_ITEMS,
    BatchReceipt,
    BatchReport,
    ItemOutcome,
    ItemRejection,
    totals_of,
)

BatchState = Literal["queued", "processing", "completed"]
ItemState = Literal["queued", "rejected", "pending", "succeeded", "failed", "unknown"]
ChargeState = Literal["pending", "succeeded", "failed", "unknown", "settled"]

# Each item of `data` is checked on its own by the service, so that one bad item is rejected
# alone (in the 202 answer) and the others are charged: any JSON value is accepted as an item.
CHARGE_ITEM_DESCRIPTION = (
    "An item {subscriptionId, amount, metadata?}: subscriptionId an active subscription of yours; amount "
    'a decimal string ("15.00") or a JSON number in the subscription\'s currency; metadata an optional '
    "JSON object of at most 4 KB. Items are checked one by one: a bad item is rejected in the answer "
    "(totals.rejected, errorsSample) and the others are charged. " + MONEY_PRECISION
)


class ChargeBatchIn(BaseModel):
    """``POST /v1/subscriptions/charges``: ``data`` holds 1..5000 items ``{subscriptionId, amount, metadata?}``."""

    client: str = Field(min_length=1, max_length=64, description="Your client id (must match the token).")
    data: list[Any] = Field(
        description=f"1..{MAX_BATCH_ITEMS} items.",
        json_schema_extra={
            "minItems": 1,
            "maxItems": MAX_BATCH_ITEMS,
            "items": {
                "description": CHARGE_ITEM_DESCRIPTION,
                "examples": [{"subscriptionId": "sub_01JH3Q9ZC0W5M1V7X8Y2K4N6P8", "amount": "15.00"}],
            },
        },
    )


class _Out(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class BatchTotals(_Out):
    """received = accepted + rejected; inProgress = accepted items not yet succeeded or failed."""

    received: int
    accepted: int
    rejected: int
    succeeded: int
    failed: int
    inProgress: int


class RejectedItem(_Out):
    """A rejected item: its position (JSON) or line number (CSV), and why."""

    index: int = Field(description="Position in `data` (0-based), or the CSV line number.")
    line: int | None = Field(None, description="CSV line number (CSV uploads only).")
    subscriptionId: str | None
    code: str = Field(description="Catalog code, e.g. 7041")
    message: str


class BatchReceived(_Out):
    clientId: str
    batchId: str
    trackingId: str | None = None
    status: BatchState
    totals: BatchTotals
    errorsSample: list[RejectedItem] = Field(description="The first rejected items (at most 20).")


class CsvReceived(_Out):
    """Migo's CSV answer keeps ``trackingId`` at the top level; ``data`` adds the batch summary."""

    success: Literal[True] = True
    message: str = "File received"
    trackingId: str
    data: BatchReceived


class BatchItemOut(_Out):
    index: int = Field(description="Position in `data` (0-based), or the CSV line number.")
    line: int | None = Field(None, description="CSV line number (CSV uploads only).")
    subscriptionId: str | None
    amount: Amount | None = Field(description="Accepted amount in the subscription's currency.")
    currency: CurrencyOut | None
    metadata: dict[str, Any] | None
    state: ItemState
    chargeId: str | None
    chargeState: ChargeState | None = Field(
        description="The charge's current state (e.g. settled), if charged."
    )
    code: str | None = Field(description="Catalog code of a rejection or decline.")
    message: str | None
    input: dict[str, Any] | None = Field(None, description="The item as received (rejected items only).")


class BatchStatus(_Out):
    clientId: str
    batchId: str
    trackingId: str | None
    source: Literal["json", "csv"]
    filename: str | None
    status: BatchState
    createdAt: datetime
    completedAt: datetime | None
    totals: BatchTotals
    items: list[BatchItemOut]
    nextAfter: int | None = Field(description="Pass as `after` to read the next page; null on the last page.")


def _rejected(rejection: ItemRejection, is_csv: bool) -> RejectedItem:
    return RejectedItem(
        index=rejection.index,
        line=rejection.index if is_csv else None,
        subscriptionId=rejection.subscription_id,
        code=rejection.code,
        message=rejection.message,
    )


def batch_received(receipt: BatchReceipt) -> BatchReceived:
    """The intake answer of a JSON batch or a CSV upload."""
    batch = receipt.batch
    is_csv = batch.source == "csv"
    return BatchReceived(
        clientId=batch.client_id,
        batchId=batch.id,
        trackingId=batch.tracking_id,
        status=batch.status,
        totals=BatchTotals(**totals_of(batch)),
        errorsSample=[_rejected(r, is_csv) for r in receipt.errors_sample],
    )


def _item(outcome: ItemOutcome, is_csv: bool) -> BatchItemOut:
    return BatchItemOut(
        index=outcome.index,
        line=outcome.index if is_csv else None,
        subscriptionId=outcome.subscription_id,
        amount=outcome.amount,
        currency=outcome.currency,
        metadata=outcome.metadata,
        state=outcome.state,
        chargeId=outcome.charge_id,
        chargeState=outcome.charge_state,
        code=outcome.code,
        message=outcome.message,
        input=outcome.raw if outcome.state == "rejected" else None,
    )


def batch_status(report: BatchReport) -> BatchStatus:
    """A batch report on the wire."""
    batch = report.batch
    is_csv = batch.source == "csv"
    return BatchStatus(
        clientId=batch.client_id,
        batchId=batch.id,
        trackingId=batch.tracking_id,
        source=batch.source,
        filename=batch.filename,
        status=batch.status,
        createdAt=batch.created_at,
        completedAt=batch.completed_at,
        totals=BatchTotals(**report.totals),
        items=[_item(item, is_csv) for item in report.items],
        nextAfter=report.next_after,
    )
