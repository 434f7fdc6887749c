"""Wire shapes of the on-demand charge routes (Migo's names: clientId, batchId, trackingId, errorsSample)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from billing.services.ondemand import BatchReceipt, BatchReport, ItemOutcome, ItemRejection, totals_of

# The items of `data`, for the OpenAPI document: they are validated one by one by the service
# (so that one bad item is rejected alone), not by this schema.
CHARGE_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["subscriptionId", "amount"],
    "properties": {
        "subscriptionId": {"type": "string", "description": "An active subscription of the same client."},
        "amount": {
            "type": "number",
            "description": "In the subscription's currency, with at most its decimals (15.00 USD, 500 JPY).",
        },
        "metadata": {"type": "object", "description": "Optional free-form JSON object (at most 4 KB)."},
    },
}


class ChargeBatchIn(BaseModel):
    """``POST /v1/subscriptions/charges``: ``data`` holds 1..5000 items ``{subscriptionId, amount, metadata?}``."""

    client: str = Field(min_length=1, max_length=64, description="Your client id (must match the token).")
    data: list[Any] = Field(
        description="1..5000 items: {subscriptionId, amount, metadata?}.",
        json_schema_extra={"items": CHARGE_ITEM_SCHEMA},
    )


class BatchTotals(BaseModel):
    """received = accepted + rejected; inProgress = accepted items not yet succeeded or failed."""

    received: int
    accepted: int
    rejected: int
    succeeded: int
    failed: int
    inProgress: int


class RejectedItem(BaseModel):
    """A rejected item: its position (JSON) or line number (CSV), and why."""

    index: int = Field(description="Position in `data` (0-based), or the CSV line number.")
    line: int | None = Field(None, description="CSV line number (CSV uploads only).")
    subscriptionId: str | None
    code: str = Field(description="Catalog code, e.g. 7041")
    message: str


class BatchReceived(BaseModel):
    clientId: str
    batchId: str
    trackingId: str | None = None
    status: str = Field(description="queued | processing | completed")
    totals: BatchTotals
    errorsSample: list[RejectedItem] = Field(description="The first rejected items (at most 20).")


class CsvReceived(BaseModel):
    """Migo's CSV answer keeps ``trackingId`` at the top level; ``data`` adds the batch summary."""

    success: bool = True
    message: str = "File received"
    trackingId: str
    data: BatchReceived


class BatchItemOut(BaseModel):
    index: int = Field(description="Position in `data` (0-based), or the CSV line number.")
    line: int | None = Field(None, description="CSV line number (CSV uploads only).")
    subscriptionId: str | None
    amount: Decimal | None = Field(description="Accepted amount in the subscription's currency.")
    currency: str | None
    metadata: dict[str, Any] | None
    state: str = Field(description="queued | rejected | pending | succeeded | failed | unknown")
    chargeId: str | None
    chargeState: str | None = Field(description="The charge's current state (e.g. settled), if charged.")
    code: str | None = Field(description="Catalog code of a rejection or decline.")
    message: str | None
    input: dict[str, Any] | None = Field(None, description="The item as received (rejected items only).")


class BatchStatus(BaseModel):
    clientId: str
    batchId: str
    trackingId: str | None
    source: str = Field(description="json | csv")
    filename: str | None
    status: str = Field(description="queued | processing | completed")
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
