"""The reconciliation pass: settle open renewal charges that no other pass will pick up.

The renewal pass resumes a `pending`/`unknown` charge when it claims the subscription
again, but it only claims `active` subscriptions. A charge left open on a subscription
that was cancelled (or ended) meanwhile would stay open forever, although the money may
have moved. This pass finds such charges once they are older than a lease plus the retry
delay (so a live worker is never overtaken), leases their subscriptions, and resolves them
through the shared charge machinery (`processor.lookup`, then a resend under the same key,
never a new key and never a fallback), writing the `charge.*` events. The subscription
itself is left as the merchant left it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from billing.services.charging import ChargeRequest, ChargeResult, execute_charges
from billing.services.pass_control import RECONCILE_AFTER, PassSummary
from billing.services.runtime import Runtime
from billing.store import claims
from billing.store.engine import Session, transaction
from billing.store.events import NewEvent, insert_events
from billing.store.renewals import OrphanedCharge, claim_orphaned_renewal_charges, lock_for_outcome

log = logging.getLogger("billing.reconciliation")

BATCH = 200
ANY_AGE = timedelta(days=3650)


@dataclass
class ReconciliationSummary(PassSummary):
    """What one reconciliation pass did."""

    succeeded: int = 0
    failed: int = 0


def base_key(charge: OrphanedCharge) -> str:
    """The request key of a charge row (fallback rows carry a `:m{i}` suffix)."""
    suffix = f":m{charge.method_index}"
    if charge.method_index > 0 and charge.idempotency_key.endswith(suffix):
        return charge.idempotency_key[: -len(suffix)]
    return charge.idempotency_key


async def run_reconciliation(
    runtime: Runtime, identity: str, *, charge_id: str | None = None
) -> ReconciliationSummary:
    """The worker's reconciliation pass (`registered_passes`); with `charge_id`, that charge only,
    whatever its age (its outcome became known: a processor notification)."""
    summary = ReconciliationSummary()
    lease_seconds = runtime.settings.worker.lease_seconds
    real_now = runtime.clock.now()
    older_than = real_now - RECONCILE_AFTER - timedelta(seconds=lease_seconds)
    async with transaction(runtime.sessions) as session:
        # Renewal charges carry their client's time: a sandbox clock ahead makes them age sooner.
        offsets = await claims.clients_with_clock_offset(session)
        orphans = await claim_orphaned_renewal_charges(
            session,
            owner=identity,
            real_now=real_now,
            lease_seconds=lease_seconds,
            older_than=older_than if charge_id is None else real_now + ANY_AGE,
            limit=BATCH,
            charge_id=charge_id,
            offsets=offsets,
        )
    if not orphans:
        return summary
    requests: dict[str, ChargeRequest] = {}
    for charge in orphans:
        key = base_key(charge)
        # No methods: the request only resumes what is stored under its keys.
        requests.setdefault(
            key,
            ChargeRequest(
                key=key,
                client_id=charge.client_id,
                kind="renewal",
                amount_minor=charge.amount_minor,
                currency=charge.currency,
                methods=(),
                subscription_id=charge.subscription_id,
                period_start=charge.period_start,
                period_index=charge.period_index,
                attempt=charge.attempt,
                at=real_now + timedelta(seconds=offsets.get(charge.client_id, 0)),
            ),
        )
    summary.claimed = len(requests)

    async def apply(session: Session, results: Sequence[ChargeResult]) -> None:
        counts: dict[str, int] = {}
        for result in results:
            sub_id = result.request.subscription_id
            assert sub_id is not None
            events = 0 if result.state == "unknown" else len(result.records)
            counts[sub_id] = counts.get(sub_id, 0) + events
        locked = await lock_for_outcome(session, identity, counts, counts)
        next_sequence = {sub_id: row.first_sequence for sub_id, row in locked.items()}
        new_events: list[NewEvent] = []
        for result in results:
            sub_id = result.request.subscription_id
            assert sub_id is not None
            if sub_id not in next_sequence:
                continue  # our lease ran out; the next pass looks again
            setattr(summary, result.state, getattr(summary, result.state) + 1)
            if result.state == "unknown":
                continue
            for record in result.records:
                new_events.append(
                    NewEvent(
                        client_id=result.request.client_id,
                        payload=record.event(result.request),
                        created_at=result.request.at or real_now,
                        subscription_id=sub_id,
                        sequence=next_sequence[sub_id],
                    )
                )
                next_sequence[sub_id] += 1
        await insert_events(session, new_events)

    try:
        await execute_charges(
            runtime.sessions,
            runtime.processors,
            list(requests.values()),
            now=real_now,
            apply=apply,
            settlement_country=runtime.settings.settlement.country,
        )
    finally:
        async with transaction(runtime.sessions) as session:
            await claims.release_leases(session, sorted({c.subscription_id for c in orphans}), identity)
    if summary.claimed:
        log.info("charge reconciliation pass", extra=summary.as_dict())
    return summary
