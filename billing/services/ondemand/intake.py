"""On-demand charges: batch intake (JSON list or CSV rows, `csv.py` parses the file).

A batch is accepted at once (202): every item is validated on its own, bad items are stored as
``rejected`` with a catalog code (never silently dropped), good ones as ``queued`` for the worker
(`billing/services/ondemand/drain.py`), which charges them through the shared charge machinery.
Validation is set-based: one query finds every subscription the batch names, and the items go
in with one bulk insert, so 5,000 items are accepted in well under a second.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import anyio

from billing.domain.clock import Clock
from billing.domain.errors import BillingError
from billing.domain.events import BatchCompleted
from billing.domain.money import to_minor
from billing.store import batches as store
from billing.store import events
from billing.store.batches import CompletedBatch
from billing.store.engine import Session
from billing.store.ids import new_id
from billing.store.models import Batch

MAX_BATCH_ITEMS = 5000
ERRORS_SAMPLE_SIZE = 20
METADATA_MAX_BYTES = 4096
# Longer than any id we issue: such a value cannot name a subscription, so it is not looked up.
_MAX_ID_LENGTH = 64
_VALIDATE_IN_THREAD_FROM = 1000  # items; smaller batches are validated on the event loop


@dataclass(frozen=True, slots=True)
class ItemInput:
    """One item as received: a JSON list entry (index = position) or a CSV row (index = line)."""

    index: int
    subscription_id: object
    amount: object
    metadata: object = None
    raw: dict[str, Any] = field(default_factory=dict)  # JSON-safe copy of the input, for reports
    problem: BillingError | None = None  # set by a parser that already knows the row is unusable


@dataclass(frozen=True, slots=True)
class ItemRejection:
    """Why one item will not be charged."""

    index: int
    subscription_id: str | None
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class BatchReceipt:
    """What intake answers: the stored batch and the first few rejections."""

    batch: Batch
    errors_sample: list[ItemRejection]


def totals_of(batch: Batch | CompletedBatch) -> dict[str, int]:
    """Counts a merchant reads: received = accepted + rejected; inProgress = accepted not yet final.

    The worker adds each item to ``succeeded`` or ``failed`` in the transaction that makes it
    final, so these are exact at every moment.
    """
    return {
        "received": batch.total,
        "accepted": batch.accepted,
        "rejected": batch.rejected,
        "succeeded": batch.succeeded,
        "failed": batch.failed,
        "inProgress": max(batch.accepted - batch.succeeded - batch.failed, 0),
    }


def json_safe(value: Any) -> Any:
    """A copy of decoded JSON that the JSON columns can store (decimals become numbers).

    Callers bound the nesting first (request bodies at the edge, CSV metadata on parsing).
    A decimal beyond float range is kept as its text: JSON columns cannot hold infinity.
    """
    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        number = float(value)
        return number if math.isfinite(number) else str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def items_from_json(data: Sequence[Any]) -> list[ItemInput]:
    """Items of a JSON batch; entries that are not objects are kept and rejected later."""
    items: list[ItemInput] = []
    for index, entry in enumerate(data):
        if not isinstance(entry, Mapping):
            not_object = BillingError("CHECK_PARAMETERS", message="Each item must be a JSON object.")
            items.append(ItemInput(index, None, None, raw={"item": json_safe(entry)}, problem=not_object))
            continue
        # A JSON number (an exact decimal) or a decimal string ("15.00"), as everywhere else.
        amount = entry.get("amount")
        raw = {
            "subscriptionId": json_safe(entry.get("subscriptionId")),
            "amount": str(amount) if isinstance(amount, Decimal | int) else json_safe(amount),
        }
        if entry.get("metadata") is not None:
            raw["metadata"] = json_safe(entry.get("metadata"))
        items.append(ItemInput(index, entry.get("subscriptionId"), amount, entry.get("metadata"), raw=raw))
    return items


def check_batch_size(count: int) -> None:
    """1..5000 items, or a 7000 that says so."""
    if count < 1 or count > MAX_BATCH_ITEMS:
        raise BillingError(
            "CHECK_PARAMETERS",
            message=f"data must contain between 1 and {MAX_BATCH_ITEMS} items (got {count}).",
            field="data",
        )


def _subscription_id(item: ItemInput) -> str:
    value = item.subscription_id
    if not isinstance(value, str) or not value.strip():
        raise BillingError(
            "CHECK_PARAMETERS", message="subscriptionId is required (a string).", field="subscriptionId"
        )
    return value.strip()


def _metadata(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BillingError("CHECK_PARAMETERS", message="metadata must be a JSON object.", field="metadata")
    safe = json_safe(value)
    if len(json.dumps(safe, separators=(",", ":")).encode()) > METADATA_MAX_BYTES:
        raise BillingError(
            "CHECK_PARAMETERS",
            message=f"metadata must not exceed {METADATA_MAX_BYTES} bytes as JSON.",
            field="metadata",
        )
    return dict(safe)


def _checked(
    item: ItemInput, subscriptions: Mapping[str, store.ChargeableSubscription]
) -> tuple[int, str, dict[str, Any] | None]:
    """(amount in minor units, currency, metadata) of a chargeable item, or the BillingError why not.

    Checks that need no database come first (missing id, malformed metadata, amount of the
    wrong type), then the subscription (7041, 7050), then the amount in its currency (7001, 7002).
    """
    if item.problem is not None:
        raise item.problem
    sub_id = _subscription_id(item)
    metadata = _metadata(item.metadata)
    amount = item.amount
    if amount is None or amount == "":
        raise BillingError("CHECK_PARAMETERS", message="amount is required.", field="amount")
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int | str):
        raise BillingError("INVALID_FORMAT_AMOUNT", message="amount must be a number.", field="amount")
    subscription = subscriptions.get(sub_id)
    if subscription is None:
        raise BillingError(
            "SUBSCRIPTION_NOT_FOUND", message=f"Subscription {sub_id} not found.", field="subscriptionId"
        )
    if subscription.status != "active":
        raise BillingError(
            "STATE_CONFLICT",
            message=f"Subscription {sub_id} is {subscription.status}; only active subscriptions can be charged.",
            field="subscriptionId",
        )
    return to_minor(amount, subscription.currency, field="amount"), subscription.currency, metadata


def _item_rows(
    batch_id: str, items: Sequence[ItemInput], subscriptions: Mapping[str, store.ChargeableSubscription]
) -> tuple[list[dict[str, Any]], list[ItemRejection]]:
    """The batch_item rows of ``items`` (queued or rejected with the reason); no I/O."""
    rows: list[dict[str, Any]] = []
    rejections: list[ItemRejection] = []
    for item in items:
        row: dict[str, Any] = {
            "batch_id": batch_id,
            "item_index": item.index,
            "subscription_id": None,
            "amount_minor": None,
            "currency": None,
            "item_metadata": None,
            "raw": item.raw or None,
            "state": "queued",
            "error_code": None,
            "error_message": None,
        }
        if isinstance(item.subscription_id, str):
            row["subscription_id"] = item.subscription_id.strip()[:200] or None
        try:
            row["amount_minor"], row["currency"], row["item_metadata"] = _checked(item, subscriptions)
        except BillingError as exc:
            row.update(state="rejected", error_code=exc.code, error_message=exc.detail[:500])
            rejections.append(ItemRejection(item.index, row["subscription_id"], exc.code, exc.detail))
        rows.append(row)
    return rows, rejections


async def receive_items(
    session: Session,
    clock: Clock,
    *,
    client_id: str,
    items: Sequence[ItemInput],
    source: str,
    tracking_id: str | None = None,
    filename: str | None = None,
) -> BatchReceipt:
    """Validate every item, store the batch with all its items, and answer at once.

    Rejections: unknown or other client's subscription → 7041; not ``active`` → 7050; amount
    missing/not a number → 7000/7002, not positive → 7001, more decimals than the
    subscription's currency allows → 7002; metadata not an object → 7000.
    """
    now = clock.now()
    candidates = {
        item.subscription_id.strip()
        for item in items
        if isinstance(item.subscription_id, str) and 0 < len(item.subscription_id.strip()) <= _MAX_ID_LENGTH
    }
    subscriptions = await store.subscriptions_of_client(session, client_id, candidates)
    batch = Batch(
        id=new_id("batch"),
        client_id=client_id,
        source=source,
        tracking_id=tracking_id,
        filename=filename,
        status="queued",
        total=len(items),
        created_at=now,
    )
    if len(items) > _VALIDATE_IN_THREAD_FROM:
        # A large upload is validated in a worker thread: the event loop keeps serving requests.
        rows, rejections = await anyio.to_thread.run_sync(_item_rows, batch.id, items, subscriptions)
    else:
        rows, rejections = _item_rows(batch.id, items, subscriptions)
    batch.rejected = len(rejections)
    batch.accepted = batch.total - batch.rejected
    if batch.accepted == 0:
        batch.status = "completed"
        batch.completed_at = now
    await store.add_batch(session, batch)
    await store.insert_items(session, rows)
    if batch.status == "completed":
        await record_completion(session, batch, now)
    return BatchReceipt(batch=batch, errors_sample=rejections[:ERRORS_SAMPLE_SIZE])


async def receive_json_batch(
    session: Session, clock: Clock, *, client_id: str, data: Sequence[Any]
) -> BatchReceipt:
    """Intake of ``POST /v1/subscriptions/charges``: 1..5000 items, validated one by one."""
    check_batch_size(len(data))
    return await receive_items(
        session, clock, client_id=client_id, items=items_from_json(data), source="json"
    )


async def record_completion(session: Session, batch: Batch | CompletedBatch, now: datetime) -> None:
    """Write the ``batch.completed`` outbox event (once: callers hold the completion transition)."""
    await events.record_event(
        session,
        client_id=batch.client_id,
        payload=BatchCompleted(
            batch_id=batch.id,
            tracking_id=batch.tracking_id,
            source=batch.source,
            totals=totals_of(batch),
            completed_at=now,
        ),
        now=now,
    )
