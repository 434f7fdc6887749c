"""The recovery pass for enrolment charges whose outcome never arrived.

verify-card answers 502 when the first charge's outcome stays unknown, and a process can die
between committing the `pending` charge and hearing back. Either way the charge is left open.
This pass takes such charges over once they are a minute old and settles them exactly once: a
success creates the subscription as the request would have, a refusal fails the charge and
frees the transaction.

It first looks the charge up by its idempotency key. When the processor has no record of the
key, that proves nothing: the request may still be on its way (a slow network, a paused
process) and a search index may trail writes. So the pass sends the very same charge again,
under the same key with the same token, amount, currency and description, and settles on that
answer: the processor either replays the first request's outcome or makes the charge now,
never both. A processor that still gives no definite answer is asked again a minute later.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final

from billing.processors.base import Outcome
from billing.services.charging import ProcessorCall, call_processor
from billing.services.client_clock import merchant_clock
from billing.services.enrolment.settlement import (
    EnrolmentContext,
    first_charge_description,
    settle_enrolment,
)
from billing.services.runtime import Runtime
from billing.store import charges as store
from billing.store import payment_methods as method_store
from billing.store.claims import clients_with_clock_offset
from billing.store.engine import transaction
from billing.store.models import Charge, Plan

log = logging.getLogger("billing.enrolment")

STALE_AFTER: Final = timedelta(minutes=1)
"""How old an open enrolment charge must be before the pass takes it over from its request."""


async def _resend_call(runtime: Runtime, charge: Charge) -> ProcessorCall | None:
    """The call that sends `charge` again exactly as verify-card sent it; None when the card,
    plan or enrolment context it names is gone (then the key can only be looked up)."""
    if charge.charge_metadata is None:
        log.error("enrolment charge carries no enrolment context", extra={"charge_id": charge.id})
        return None
    context = EnrolmentContext.from_metadata(charge.charge_metadata)
    async with runtime.sessions() as session:
        method = await method_store.get_payment_method(session, charge.client_id, context.payment_method_id)
        plan = await session.get(Plan, context.plan_id)
    if method is None or plan is None:
        log.error("enrolment charge names a card or plan that does not exist", extra={"charge_id": charge.id})
        return None
    # Charges written before the description was recorded were sent with the plan's name then;
    # if the plan was renamed since, the processor answers "key reused" (unknown), never twice.
    description = context.description if context.description is not None else first_charge_description(plan)
    return ProcessorCall.for_row("reconcile", charge, token=method.token, description=description)


async def _outcome_of(runtime: Runtime, charge: Charge) -> Outcome | None:
    """The definite outcome of `charge`, or None when the processor cannot tell yet.

    Looks the key up and, when the processor never saw it, sends the very same charge again
    (`reconcile` in the shared charge machinery).
    """
    processor = runtime.processors.get(charge.processor)
    if processor is None:
        log.error("enrolment charge names a processor that is not installed", extra={"charge_id": charge.id})
        return None
    call = await _resend_call(runtime, charge)
    if call is None:
        call = ProcessorCall.for_row("look_up", charge, token=None, description="")
    try:
        found = await call_processor(processor, call)
    except Exception:
        # Whatever went wrong, the charge stays open and is tried again on a later pass.
        log.exception("enrolment charge resend failed", extra={"charge_id": charge.id})
        return None
    return None if found.status == "unknown" else found


async def run_recovery(runtime: Runtime, identity: str) -> dict[str, int]:
    """One pass: settle every enrolment charge left open for over a minute. Returns counts."""
    summary = {"succeeded": 0, "failed": 0, "unresolved": 0}
    async with runtime.sessions() as session:
        # A charge carries its client's time: a sandbox clock ahead makes it stale sooner.
        offsets = await clients_with_clock_offset(session)
        stale = await store.stale_enrolment_charges(
            session,
            before=runtime.clock.now() - STALE_AFTER,
            limit=runtime.settings.worker.batch_size,
            offsets=offsets,
        )
    for charge in stale:
        outcome = await _outcome_of(runtime, charge)
        clock = merchant_clock(runtime.clock, offsets.get(charge.client_id, 0))
        async with transaction(runtime.sessions) as session:
            current = await session.get(Charge, charge.id)
            if current is None or current.state not in store.OPEN_STATES:
                continue  # settled meanwhile
            if outcome is None:
                # Ask again in a minute rather than on every tick.
                await store.finish_charge(
                    session,
                    current,
                    from_states=(current.state,),
                    state="unknown",
                    updated_at=clock.now(),
                )
                summary["unresolved"] += 1
                continue
            settled = await settle_enrolment(
                session,
                current,
                outcome,
                now=clock.now(),
                settlement_country=runtime.settings.settlement.country,
            )
        if settled is not None:
            summary[outcome.status] += 1
            log.info(
                "enrolment charge recovered",
                extra={"charge_id": charge.id, "state": outcome.status, "worker": identity},
            )
    return summary
