"""Processor notifications resolve open charges through the worker's own code.

A notification states a charge's outcome. The engine applies it exactly as it would have applied
the processor's answer to a look-up: the owning pass runs for that one charge (the renewal pass
for the subscription, the reconciliation pass when the subscription is no longer active, the
on-demand pass for the batch item, `settle_enrolment` for a first charge) with a processor whose
look-up of that idempotency key answers the notified outcome. So the charge row, the
subscription, batch or enrolment waiting on it and the `charge.*` events move together, once, in
the transaction the pass always uses, and whoever learns the outcome first wins:

- the targeted pass takes the same lease as the worker, so a worker busy with the same charge
  makes the notification wait (`deferred`); the deferred-notification pass tries again later,
  and finds the charge already final when the worker got there first;
- a notification for a charge already final is compared with it: the same outcome is
  `confirmed` (nothing changes); a contradiction (succeeded against failed) is `disputed`:
  logged at error level and announced as `charge.disputed_outcome`, never applied.

`charge.refunded` is stored and logged (`recorded`); it changes no charge.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from billing.domain.events import ChargeDisputedOutcome
from billing.processors.base import Outcome
from billing.services.enrolment.settlement import settle_enrolment
from billing.services.inbound.notices import ProcessorNotice, outcome_from_json
from billing.services.ondemand.drain import OnDemandPass
from billing.services.renewals.reconciliation import run_reconciliation
from billing.services.renewals.renewal_pass import RenewalPass
from billing.services.runtime import Runtime
from billing.store import charges as charge_store
from billing.store import claims, inbound
from billing.store.clients import get_client
from billing.store.engine import transaction
from billing.store.events import record_event
from billing.store.models import Charge, Subscription

log = logging.getLogger("billing.inbound")

FINAL_STATES = ("succeeded", "failed", "settled")
_AS_OUTCOME = {"succeeded": "succeeded", "settled": "succeeded", "failed": "failed"}


@dataclass(frozen=True, slots=True)
class NoticeReceipt:
    """What the engine did with a notification (the answer's `data`)."""

    event_id: str
    duplicate: bool
    resolution: str | None
    charge_id: str | None = None
    charge_state: str | None = None


class NotifiedProcessor:
    """A processor whose look-up of one idempotency key answers a notified outcome.

    Everything else goes to the processor it wraps (None when this process does not run it).
    """

    def __init__(self, inner: Any, key: str, outcome: Outcome) -> None:
        self._inner = inner
        self._key = key
        self._outcome = outcome

    async def lookup(self, idempotency_key: str) -> Outcome | None:
        if idempotency_key == self._key:
            return self._outcome
        if self._inner is None:
            return None
        found: Outcome | None = await self._inner.lookup(idempotency_key)
        return found

    async def charge(self, token: str, amount_minor: int, currency: str, **kwargs: Any) -> Outcome:
        if kwargs.get("idempotency_key") == self._key:
            return self._outcome  # the processor already said what this key produced
        if self._inner is None:
            return Outcome.unknown()
        result: Outcome = await self._inner.charge(token, amount_minor, currency, **kwargs)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _with_notice(runtime: Runtime, charge: Charge, outcome: Outcome) -> Runtime:
    processors: dict[str, Any] = dict(runtime.processors)
    processors[charge.processor] = NotifiedProcessor(
        runtime.processors.get(charge.processor), charge.idempotency_key, outcome
    )
    return dataclasses.replace(runtime, processors=processors)


async def resolve_open_charge(runtime: Runtime, charge: Charge, outcome: Outcome, identity: str) -> None:
    """Run the pass that owns `charge` for it alone, with `outcome` as the processor's answer."""
    notified = _with_notice(runtime, charge, outcome)
    if charge.kind == "enrolment":
        async with transaction(runtime.sessions) as session:
            current = await session.get(Charge, charge.id)
            if current is not None and current.state in charge_store.OPEN_STATES:
                await settle_enrolment(
                    session,
                    current,
                    outcome,
                    now=runtime.clock.now(),
                    settlement_country=runtime.settings.settlement.country,
                )
        return
    if charge.kind == "on_demand":
        if charge.batch_id is not None and charge.batch_index is not None:
            await OnDemandPass(
                notified, identity, batch_id=charge.batch_id, item_index=charge.batch_index, lanes=1
            ).process_one_chunk()
        return
    if charge.subscription_id is None:
        return
    real_now = runtime.clock.now()
    async with transaction(runtime.sessions) as session:
        subscription = await session.get(Subscription, charge.subscription_id)
        client = await get_client(session, charge.client_id)
        if subscription is None or client is None:
            return
        active = subscription.status == "active"
        client_now = real_now + timedelta(seconds=client.clock_offset_seconds)
        if active:
            await claims.make_due(session, subscription.id, now=client_now, real_now=real_now)
    if active:
        await RenewalPass(notified, identity, lanes=1).process_one_batch(
            client_id=charge.client_id, now=client_now, offsets={}, subscription_id=charge.subscription_id
        )
    else:
        await run_reconciliation(notified, identity, charge_id=charge.id)


def _amounts_agree(notice: ProcessorNotice, charge: Charge) -> bool:
    if notice.amount_minor is not None and notice.amount_minor != charge.amount_minor:
        return False
    return notice.currency is None or notice.currency.upper() == charge.currency


async def receive_processor_notice(runtime: Runtime, notice: ProcessorNotice, identity: str) -> NoticeReceipt:
    """Store a processor notification (once per source and event id) and apply it."""
    now = runtime.clock.now()
    async with transaction(runtime.sessions) as session:
        notice_id = await inbound.record_notification(
            session,
            source=notice.source,
            event_id=notice.event_id,
            type=notice.type,
            received_at=now,
            detail=notice.detail(),
        )
        if notice_id is None:
            return NoticeReceipt(notice.event_id, duplicate=True, resolution=None)
        found = await inbound.charges_named(
            session,
            processor=notice.processor,
            idempotency_key=notice.idempotency_key,
            reference=notice.reference,
        )
        if len(found) != 1:
            # Nothing to apply it to: kept for the operator, as is.
            log.warning(
                "notification names no single charge",
                extra={"source": notice.source, "event_id": notice.event_id, "matches": len(found)},
            )
            await inbound.resolve_notification(session, notice_id, resolution="unmatched")
            return NoticeReceipt(notice.event_id, duplicate=False, resolution="unmatched")
        charge = found[0]
        if not _amounts_agree(notice, charge):
            log.error(
                "notification amount differs from the charge's; not applied",
                extra={"source": notice.source, "event_id": notice.event_id, "charge_id": charge.id},
            )
            await inbound.resolve_notification(session, notice_id, resolution="mismatch", charge_id=charge.id)
            return NoticeReceipt(notice.event_id, False, "mismatch", charge.id, charge.state)
        if notice.outcome is None:
            log.info(
                "refund notification recorded",
                extra={"source": notice.source, "event_id": notice.event_id, "charge_id": charge.id},
            )
            await inbound.resolve_notification(session, notice_id, resolution="recorded", charge_id=charge.id)
            return NoticeReceipt(notice.event_id, False, "recorded", charge.id, charge.state)
        already_final = charge.state in FINAL_STATES
        await inbound.resolve_notification(session, notice_id, resolution="deferred", charge_id=charge.id)
    if not already_final:
        try:
            await resolve_open_charge(runtime, charge, notice.outcome, identity)
        except Exception:
            # Stored as `deferred`: the worker's pass applies it (the sender must not resend it).
            log.warning(
                "notification stored; applying it failed, the worker retries",
                extra={"source": notice.source, "event_id": notice.event_id, "charge_id": charge.id},
                exc_info=True,
            )
            return NoticeReceipt(notice.event_id, False, "deferred", charge.id, charge.state)
    return await conclude(runtime, notice_id, notice.outcome, confirmed=already_final)


async def conclude(runtime: Runtime, notice_id: int, outcome: Outcome, *, confirmed: bool) -> NoticeReceipt:
    """Compare the charge as it now is with the notified outcome and record the resolution:
    `applied` / `confirmed` when they agree, `disputed` (error log, event) when they contradict,
    `deferred` while the charge is still open."""
    async with transaction(runtime.sessions) as session:
        notice = await inbound.get_notification(session, notice_id)
        assert notice is not None
        assert notice.charge_id is not None
        charge = await session.get(Charge, notice.charge_id)
        assert charge is not None
        if charge.state in charge_store.OPEN_STATES:
            resolution = "deferred"
        elif _AS_OUTCOME.get(charge.state) == outcome.status:
            resolution = "confirmed" if confirmed else "applied"
        else:
            resolution = "disputed"
            log.error(
                "notification contradicts the charge's final state; not applied",
                extra={
                    "source": notice.source,
                    "event_id": notice.event_id,
                    "charge_id": charge.id,
                    "state": charge.state,
                    "notified": outcome.status,
                },
            )
            await record_event(
                session,
                client_id=charge.client_id,
                payload=ChargeDisputedOutcome(
                    charge_id=charge.id,
                    subscription_id=charge.subscription_id,
                    state=charge.state,
                    notified_state=outcome.status,
                    source=notice.source,
                    notification_id=notice.event_id,
                    processor_reference=outcome.reference,
                    decline_code=outcome.decline_code,
                ),
                now=runtime.clock.now(),
                subscription_id=charge.subscription_id,
            )
        await inbound.resolve_notification(session, notice_id, resolution=resolution, charge_id=charge.id)
        return NoticeReceipt(notice.event_id, False, resolution, charge.id, charge.state)


async def run_deferred_notifications(runtime: Runtime, identity: str) -> dict[str, int]:
    """The worker's pass over notifications that waited for a busy charge: apply them now."""
    counts: dict[str, int] = {}
    async with runtime.sessions() as session:
        waiting = await inbound.notifications(
            session, resolution="deferred", limit=runtime.settings.worker.batch_size
        )
    for notice in waiting:
        detail: Mapping[str, Any] = notice.detail or {}
        if notice.charge_id is None or "outcome" not in detail:
            continue
        outcome = outcome_from_json(detail["outcome"])
        async with runtime.sessions() as session:
            charge = await session.get(Charge, notice.charge_id)
        if charge is None:
            continue
        if charge.state in charge_store.OPEN_STATES:
            await resolve_open_charge(runtime, charge, outcome, identity)
        receipt = await conclude(runtime, int(notice.id or 0), outcome, confirmed=False)
        counts[receipt.resolution or ""] = counts.get(receipt.resolution or "", 0) + 1
    if counts:
        log.info("deferred notifications", extra=counts)
    return counts


__all__ = [
    "NoticeReceipt",
    "NotifiedProcessor",
    "conclude",
    "receive_processor_notice",
    "resolve_open_charge",
    "run_deferred_notifications",
]
