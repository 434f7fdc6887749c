"""On-demand batch reports: one batch with a page of its items, and every item for the results CSV.

An item's outcome is its own state plus, once charged, its charge's state and decline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from billing.domain.errors import BillingError
from billing.domain.money import from_minor
from billing.services.ondemand.intake import MAX_BATCH_ITEMS, totals_of
from billing.store import batches as store
from billing.store.engine import Session
from billing.store.models import Batch, BatchItem, Charge


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """One item of a batch report."""

    index: int
    subscription_id: str | None
    amount: Decimal | None
    currency: str | None
    metadata: dict[str, Any] | None
    state: str
    charge_id: str | None
    charge_state: str | None
    code: str | None
    message: str | None
    raw: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class BatchReport:
    """A batch with one page of its items."""

    batch: Batch
    totals: dict[str, int]
    items: list[ItemOutcome]
    next_after: int | None


async def find_batch(session: Session, client_id: str, batch_id: str) -> Batch:
    """The client's batch, or 7043 BATCH_NOT_FOUND (also for another client's batch)."""
    batch = await store.batch_of_client(session, client_id, batch_id)
    if batch is None:
        raise BillingError("BATCH_NOT_FOUND", field="batchId")
    return batch


async def find_upload(session: Session, client_id: str, tracking_id: str) -> Batch:
    """The client's CSV batch by tracking id, or 7043 BATCH_NOT_FOUND."""
    batch = await store.batch_by_tracking_id(session, client_id, tracking_id)
    if batch is None:
        raise BillingError("BATCH_NOT_FOUND", message="No upload has this trackingId.", field="trackingId")
    return batch


def _outcome(item: BatchItem, charge: Charge | None) -> ItemOutcome:
    amount = (
        from_minor(item.amount_minor, item.currency)
        if item.amount_minor is not None and item.currency is not None
        else None
    )
    code, message = item.error_code, item.error_message
    if charge is not None and charge.decline_code and code is None:
        code, message = charge.decline_code, charge.decline_message
    return ItemOutcome(
        index=item.item_index,
        subscription_id=item.subscription_id,
        amount=amount,
        currency=item.currency,
        metadata=item.item_metadata,
        state=item.state,
        charge_id=item.charge_id,
        charge_state=charge.state if charge is not None else None,
        code=code,
        message=message,
        raw=item.raw,
    )


async def batch_report(
    session: Session,
    batch: Batch,
    *,
    after: int | None = None,
    limit: int = MAX_BATCH_ITEMS,
    state: str | None = None,
) -> BatchReport:
    """The batch with up to ``limit`` items after index ``after`` (and in ``state``, if given)."""
    if state is not None and state not in ("queued", "rejected", "pending", "succeeded", "failed", "unknown"):
        raise BillingError(
            "CHECK_PARAMETERS",
            message="state must be one of queued, rejected, pending, succeeded, failed, unknown.",
            field="state",
        )
    if limit < 1 or limit > MAX_BATCH_ITEMS:
        raise BillingError(
            "CHECK_PARAMETERS", message=f"limit must be between 1 and {MAX_BATCH_ITEMS}.", field="limit"
        )
    rows = await store.items_page(session, batch.id, after=after, limit=limit + 1, state=state)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [_outcome(item, charge) for item, charge in rows]
    return BatchReport(
        batch=batch,
        totals=totals_of(batch),
        items=items,
        next_after=items[-1].index if more and items else None,
    )


async def outcome_pages(
    session: Session, batch: Batch, *, page_size: int = MAX_BATCH_ITEMS
) -> AsyncIterator[list[ItemOutcome]]:
    """Every item of the batch in index order, a page at a time (for the results CSV)."""
    after: int | None = None
    while True:
        rows = await store.items_page(session, batch.id, after=after, limit=page_size)
        if not rows:
            return
        yield [_outcome(item, charge) for item, charge in rows]
        if len(rows) < page_size:
            return
        after = rows[-1][0].item_index
