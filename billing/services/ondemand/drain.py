"""The on-demand pass: charge queued batch items through the shared charge machinery.

Each chunk goes through the same three steps as a renewal batch, reusing
`billing.services.charging` (pending rows committed before any processor call, default
method then fallbacks, `unknown` reconciled by idempotency key, never a blind second charge):

1. **Claim** a chunk of items with a lease (`billing.store.batches.claim_items`) and, in the
   same transaction, write their `pending` charges under the key ``{batch}:{index}``. Queued
   items that cannot be charged fail there, uncharged and counted (`refusal_of`): subscription
   no longer ``active`` since intake 7050, no subscription row 7041, no amount 7000. Commit.
2. **Charge**: processor calls overlap, bounded by the worker's concurrency.
3. **Record** each final outcome in the transaction that records the charge: the item's state,
   the batch totals, ``charge.*`` events, and ``batch.completed`` when the last item is final.

A worker that dies anywhere in between leaves items leased; once the lease runs out another
worker claims them and `open_charges` resumes the stored charge rows under the same keys, so
an item is charged at most once. On-demand charges never touch a subscription's schedule:
only its event counter moves (for the events' per-subscription order).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from billing.domain.errors import spec as error_spec
from billing.services.charging import (
    ChargeRequest,
    ChargeResult,
    methods_in_order,
    open_charges,
)
from billing.services.ondemand.intake import record_completion
from billing.services.pass_control import LanePass, PassSummary, Progress
from billing.services.runtime import Runtime
from billing.store import batches as store
from billing.store import claims
from billing.store.batches import ClaimedItem, CompletedBatch, ItemResult, ItemSubscription
from billing.store.engine import Session, transaction
from billing.store.events import NewEvent, insert_events, reserve_sequences
from billing.store.payment_methods import methods_of_subscriptions
from billing.store.plans import plans_by_id

log = logging.getLogger("billing.ondemand")


@dataclass
class OnDemandSummary(PassSummary):
    """What an on-demand pass did: items claimed and how they ended in this pass."""

    succeeded: int = 0
    failed: int = 0
    not_chargeable: int = 0  # subscription no longer active when the worker got to the item
    batches_completed: int = 0
    chunks: int = 0


def item_key(batch_id: str, index: int) -> str:
    """The idempotency key of an on-demand item's charge (fallback methods add ``:m{i}``)."""
    return f"{batch_id}:{index}"


def refusal_of(item: ClaimedItem, sub: ItemSubscription | None) -> ItemResult | None:
    """Why a queued item (never charged) cannot be charged now, as its final ``failed`` result.

    Final, so the item is not claimed again every lease period, and counted in the batch's
    ``failed`` total: no subscription row → 7041; no amount or currency → 7000; subscription no
    longer ``active`` (cancelled, inactive or expired since intake) → 7050. Items with a pending
    charge are never refused: they are resumed whatever the status now.
    """

    def failed(name: str, message: str) -> ItemResult:
        code = error_spec(name).code
        return ItemResult(id=item.id, state="failed", charge_id=None, error_code=code, error_message=message)

    if sub is None:
        return failed("SUBSCRIPTION_NOT_FOUND", f"Subscription {item.subscription_id} not found.")
    if item.amount_minor is None or item.currency is None:
        return failed("CHECK_PARAMETERS", "The item has no amount to charge.")
    if sub.status != "active":
        return failed(
            "STATE_CONFLICT",
            f"Subscription {item.subscription_id} is {sub.status}; only active subscriptions can be charged.",
        )
    return None


class OnDemandPass(LanePass[OnDemandSummary]):
    """One worker's on-demand pass; `run()` drains every queued item (or stops when asked).

    Items whose charge is `unknown` wait `reconcile_after` before they are claimed again, so a
    pass can end with a batch still in progress; a later pass finishes it.
    """

    summary_type = OnDemandSummary

    def __init__(
        self,
        runtime: Runtime,
        identity: str,
        *,
        batch_id: str | None = None,
        item_index: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(runtime, identity, **options)
        self.batch_id = batch_id  # only this batch's items (None: every batch)
        self.item_index = item_index  # only this item of the batch (a notified outcome)

    async def run(self) -> OnDemandSummary:
        """Claim and charge chunks until none is left (or the process is stopping)."""
        await self.in_lanes(self.process_one_chunk)
        return self.summary

    async def process_one_chunk(self) -> int:
        """Claim one chunk of items and take it to the end; returns how many were claimed."""
        runtime = self.runtime
        now = runtime.clock.now()
        async with transaction(runtime.sessions) as session:
            claimed = await store.claim_items(
                session,
                owner=self.identity,
                real_now=now,
                lease_seconds=self.lease_seconds,
                limit=self.batch_size,
                batch_id=self.batch_id,
                item_index=self.item_index,
            )
            if not claimed:
                return 0
            requests, refused = await self._prepare(session, claimed, now)
            run = await open_charges(
                session, requests, now=now, settlement_country=runtime.settings.settlement.country
            )
            await store.mark_pending(session, [request.ref for request in requests])
            await self._finish(session, refused, [], now)
        self.summary.claimed += len(claimed)
        self.summary.not_chargeable += len(refused)
        self.summary.chunks += 1
        if requests:

            async def apply(session: Session, results: Sequence[ChargeResult]) -> None:
                await self._apply_results(session, results)

            await run.settle(runtime.sessions, runtime.processors, apply=apply, semaphore=self.semaphore)
        if self.progress is not None:
            self.progress(len(claimed))
        return len(claimed)

    async def _prepare(
        self, session: Session, claimed: Sequence[ClaimedItem], now: datetime
    ) -> tuple[list[ChargeRequest], list[ItemResult]]:
        """Charge requests for the claimed items, and the items that can no longer be charged."""
        subs = await store.subscriptions_for_items(
            session, [item.subscription_id for item in claimed if item.subscription_id]
        )
        plans = await plans_by_id(session, [sub.plan_id for sub in subs.values()])
        backing = await methods_of_subscriptions(session, [(s.client_id, s.id) for s in subs.values()])
        offsets = await claims.clients_with_clock_offset(session)
        requests: list[ChargeRequest] = []
        refused: list[ItemResult] = []
        for item in claimed:
            sub = subs.get(item.subscription_id or "")
            if item.state == "queued":
                refusal = refusal_of(item, sub)
                if refusal is not None:
                    refused.append(refusal)
                    continue
            if sub is None or item.amount_minor is None or item.currency is None:
                # Only a pending or unknown item gets here. Its charge was opened from this
                # subscription and this amount (subscriptions are never deleted, and a charge row's
                # foreign key keeps them), so only a hand-edited database does this. Failing the
                # item could hide money that moved, so it stays open and is logged until someone
                # reconciles its charge.
                log.error(
                    "on-demand item with a charge but without its subscription or amount",
                    extra={
                        "item": item.id,
                        "batch_id": item.batch_id,
                        "subscription_id": item.subscription_id,
                    },
                )
                continue
            requests.append(
                ChargeRequest(
                    key=item_key(item.batch_id, item.item_index),
                    client_id=sub.client_id,
                    kind="on_demand",
                    amount_minor=item.amount_minor,
                    currency=item.currency,
                    methods=methods_in_order(
                        sub.default_payment_method_id,
                        plan.methods if (plan := plans.get(sub.plan_id)) is not None else (),
                        backing.get(sub.id, []),
                        self.runtime.processors,
                    ),
                    subscription_id=sub.id,
                    batch_id=item.batch_id,
                    batch_index=item.item_index,
                    metadata=item.item_metadata,
                    description=f"On-demand charge {item.batch_id}:{item.item_index}",
                    # Business time is the client's now (the sandbox clock may run ahead).
                    at=now + timedelta(seconds=offsets.get(sub.client_id, 0)),
                    ref=item.id,
                )
            )
        return requests, refused

    async def _apply_results(self, session: Session, results: Sequence[ChargeResult]) -> None:
        """Write what final charge results mean for their items and batches (charging's `apply`)."""
        now = self.runtime.clock.now()
        item_results: list[ItemResult] = []
        for result in results:
            charge_id = result.charge.charge_id if result.charge is not None else None
            if result.state == "unknown":
                self.summary.unknown += 1
                item_results.append(
                    ItemResult(
                        result.request.ref, "unknown", charge_id, None, None, now + self.reconcile_after
                    )
                )
                continue
            if result.state == "succeeded":
                self.summary.succeeded += 1
            else:
                self.summary.failed += 1
            item_results.append(
                ItemResult(
                    result.request.ref, result.state, charge_id, result.decline_code, result.decline_message
                )
            )
        await self._finish(session, item_results, results, now)

    async def _finish(
        self,
        session: Session,
        item_results: Sequence[ItemResult],
        charge_results: Sequence[ChargeResult],
        now: datetime,
    ) -> None:
        """Store item outcomes, then the events of the items this transaction really moved."""
        moved, completed = await store.finish_items(session, item_results, now=now)
        await self._charge_events(session, [r for r in charge_results if r.request.ref in moved])
        await self._completions(session, completed, now)

    async def _charge_events(self, session: Session, results: Sequence[ChargeResult]) -> None:
        """``charge.succeeded`` / ``charge.failed`` for every charge row that became final."""
        per_sub: dict[str, list[tuple[ChargeResult, Any]]] = {}
        for result in results:
            if result.state == "unknown" or result.request.subscription_id is None:
                continue
            for record in result.records:
                per_sub.setdefault(result.request.subscription_id, []).append((result, record))
        if not per_sub:
            return
        # Sorted, so concurrent writers lock subscription rows in one order.
        first = await reserve_sequences(session, {sub_id: len(per_sub[sub_id]) for sub_id in sorted(per_sub)})
        new_events: list[NewEvent] = []
        for sub_id, pairs in per_sub.items():
            sequence = first.get(sub_id)
            for offset, (result, record) in enumerate(pairs):
                new_events.append(
                    NewEvent(
                        client_id=result.request.client_id,
                        payload=record.event(result.request),
                        created_at=result.request.at or self.runtime.clock.now(),
                        subscription_id=sub_id,
                        sequence=None if sequence is None else sequence + offset,
                    )
                )
        await insert_events(session, new_events)

    async def _completions(
        self, session: Session, completed: Sequence[CompletedBatch], now: datetime
    ) -> None:
        for batch in completed:
            self.summary.batches_completed += 1
            await record_completion(session, batch, now)


async def run_ondemand(
    runtime: Runtime, identity: str, *, progress: Progress | None = None
) -> OnDemandSummary:
    """The worker's on-demand pass (`registered_passes`): charge every queued batch item."""
    summary = await OnDemandPass(runtime, identity, progress=progress).run()
    if summary.claimed:
        log.info("on-demand pass", extra=summary.as_dict())
    return summary
