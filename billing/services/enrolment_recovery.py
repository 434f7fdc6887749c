"""The recovery pass for enrolment charges whose outcome never arrived.

verify-card answers 502 when the first charge's outcome stays unknown, and a process can die
between committing the `pending` charge and hearing back. Either way the charge is left open.
This pass looks such charges up by their idempotency key once they are a minute old, and
settles them exactly once: a success creates the subscription as the request would have, a
refusal fails the charge and frees the transaction. A charge the processor never saw failed;
a processor that still does not know is asked again a minute later.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final

from billing.domain.errors import BillingError
from billing.processors.base import Outcome
from billing.services.enrolment_settlement import settle_enrolment
from billing.services.runtime import Runtime
from billing.store import charges as store
from billing.store.engine import transaction
from billing.store.models import Charge

log = logging.getLogger("billing.enrolment")

STALE_AFTER: Final = timedelta(minutes=1)
"""How old an open enrolment charge must be before the pass takes it over from its request."""

NEVER_SEEN: Final = Outcome.declined(
    "PROCESSOR_ERROR", message="The charge never reached the processor; nothing was charged."
)


async def _outcome_of(runtime: Runtime, charge: Charge) -> Outcome | None:
    """The definite outcome of `charge`, or None when the processor cannot tell yet."""
    processor = runtime.processors.get(charge.processor)
    if processor is None:
        log.error("enrolment charge names a processor that is not installed", extra={"charge": charge.id})
        return None
    try:
        found: Outcome | None = await processor.lookup(charge.idempotency_key)
    except BillingError:
        return None
    if found is None:
        return NEVER_SEEN
    return None if found.status == "unknown" else found


async def run(runtime: Runtime, identity: str) -> dict[str, int]:
    """One pass: settle every enrolment charge left open for over a minute. Returns counts."""
    summary = {"succeeded": 0, "failed": 0, "unresolved": 0}
    async with runtime.sessions() as session:
        stale = await store.stale_enrolment_charges(
            session, before=runtime.clock.now() - STALE_AFTER, limit=runtime.settings.worker.batch_size
        )
    for charge in stale:
        outcome = await _outcome_of(runtime, charge)
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
                    updated_at=runtime.clock.now(),
                )
                summary["unresolved"] += 1
                continue
            settled = await settle_enrolment(session, current, outcome, now=runtime.clock.now())
        if settled is not None:
            summary[outcome.status] += 1
            log.info(
                "enrolment charge recovered",
                extra={"charge": charge.id, "state": outcome.status, "worker": identity},
            )
    return summary
