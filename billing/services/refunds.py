"""Refunds and voids of succeeded charges, with the charge machinery's discipline.

1. **Reserve, then pending, then commit, then call.** The refund's amount is reserved on the
   charge by a conditional UPDATE (never beyond the captured amount, also under concurrent
   requests) and the `pending` row with its processor idempotency key is written in the same
   transaction, committed before the processor hears of it.
2. **Void or refund.** Before settlement, a refund of the whole amount asks the processor to
   void the charge; a processor that cannot void captured charges answers None and the same key
   is sent as a refund. After settlement, or for part of the amount, it is always a refund.
3. **Lost answers.** No answer is `unknown`. The reconciliation pass (and a retry of the
   merchant's request with the same Idempotency-Key) looks the key up first and only when the
   processor never saw it sends the very same request again under it: never a second refund.
4. **Outcome and event together.** `succeeded` writes `charge.refunded`, `failed` writes
   `charge.refund_failed` and gives the amount back to the charge, in the transaction that
   records the outcome. The subscription is left as it is: refunding is not cancelling.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Final

from billing.domain.clock import Clock
from billing.domain.errors import BillingError
from billing.domain.events import ChargeRefunded, ChargeRefundFailed, RefundSnapshot
from billing.domain.money import from_minor, to_minor
from billing.processors.base import Outcome, PaymentProcessor
from billing.services.client_clock import merchant_clock
from billing.services.runtime import Runtime
from billing.store import events
from billing.store import refunds as store
from billing.store.claims import clients_with_clock_offset
from billing.store.engine import Session, transaction
from billing.store.ids import new_id
from billing.store.models import Charge, Refund
from billing.store.owned import owned_row

log = logging.getLogger("billing.refunds")

STALE_AFTER: Final = timedelta(minutes=1)
"""How old an open refund must be before the reconciliation pass takes it over from its request."""

_KEY_REUSED = BillingError("IDEMPOTENCY_KEY_REUSED").spec.code
# Refund columns that `charge.refunded` / `charge.refund_failed` carry as they are.
_EVENT_FIELDS = set(RefundSnapshot.model_fields) & set(Refund.model_fields)


@dataclass(frozen=True, slots=True)
class ChargeView:
    """A charge with its refunds, oldest first."""

    charge: Charge
    refunds: list[Refund] = field(default_factory=list)

    @property
    def refunded_minor(self) -> int:
        """What succeeded refunds gave back."""
        return sum(r.amount_minor for r in self.refunds if r.state == "succeeded")

    @property
    def refundable_minor(self) -> int:
        """What may still be refunded: the amount less every refund not failed."""
        if self.charge.state not in store.REFUNDABLE_CHARGE_STATES:
            return 0
        return self.charge.amount_minor - self.charge.refund_reserved_minor


@dataclass(frozen=True, slots=True)
class RefundResult:
    """The refund a request made (or resumed) and its charge as it is now."""

    refund: Refund
    view: ChargeView


async def charge_detail(session: Session, *, client_id: str, charge_id: str) -> ChargeView:
    """One charge of the client with its refunds; 7044 for an unknown id or another client's."""
    charge = await owned_row(session, Charge, client_id, charge_id)
    if charge is None:
        raise BillingError("CHARGE_NOT_FOUND", field="chargeId")
    found = await store.refunds_of_charges(session, [charge.id])
    return ChargeView(charge, found[charge.id])


async def refunds_by_charge(session: Session, charges: Sequence[Charge]) -> dict[str, list[Refund]]:
    """The refunds of each of `charges` (payment history)."""
    return await store.refunds_of_charges(session, [c.id for c in charges])


def _refund_method(charge: Charge, amount_minor: int) -> str:
    """Void a charge not settled yet when the whole of it goes back; otherwise refund."""
    whole = amount_minor == charge.amount_minor and charge.refund_reserved_minor == 0
    return "void" if whole and charge.state == "succeeded" and charge.settled_at is None else "refund"


async def _open_refund(
    runtime: Runtime,
    session: Session,
    *,
    client_id: str,
    charge_id: str,
    amount: Decimal | None,
    reason: str | None,
    request_key: str | None,
    now: datetime,
) -> tuple[Refund, bool]:
    """The refund row to work on and whether it is new (False: a retry resumes its request's refund).

    A new row is `pending` with its amount reserved on the charge; the caller commits.
    """
    charge = await owned_row(session, Charge, client_id, charge_id)
    if charge is None:
        raise BillingError("CHARGE_NOT_FOUND", field="chargeId")
    if request_key is not None:
        earlier = await store.by_request_key(session, client_id, request_key)
        if earlier is not None:
            if earlier.charge_id != charge.id:
                raise BillingError("IDEMPOTENCY_KEY_REUSED", field="Idempotency-Key")
            return earlier, False
    _require_refundable(charge)
    if charge.processor not in runtime.processors:
        raise BillingError("PROCESSOR_NOT_FOUND", message="The charge's processor is not configured here.")
    remaining = charge.amount_minor - charge.refund_reserved_minor
    amount_minor = remaining if amount is None else to_minor(amount, charge.currency, field="amount")
    if amount_minor <= 0 or amount_minor > remaining:
        raise _exceeds(charge, remaining)
    method = _refund_method(charge, amount_minor)
    if not await store.reserve(session, charge, amount_minor, at=now):
        # Another refund took the room first, or the charge left its state (it was refreshed).
        _require_refundable(charge)
        raise _exceeds(charge, max(0, charge.amount_minor - charge.refund_reserved_minor))
    refund_id = new_id("refund")
    refund = Refund(
        id=refund_id,
        client_id=client_id,
        charge_id=charge.id,
        subscription_id=charge.subscription_id,
        amount_minor=amount_minor,
        currency=charge.currency,
        method=method,
        reason=reason[:500] if reason else None,
        processor=charge.processor,
        idempotency_key=f"refund:{refund_id}",
        request_key=request_key,
        created_at=now,
        updated_at=now,
    )
    if not await store.add_pending(session, refund):
        # The same Idempotency-Key is being used by a request running right now.
        raise BillingError("IDEMPOTENCY_IN_PROGRESS", field="Idempotency-Key")
    return refund, True


def _require_refundable(charge: Charge) -> None:
    if charge.state not in store.REFUNDABLE_CHARGE_STATES or not charge.processor_reference:
        raise BillingError(
            "CHARGE_NOT_REFUNDABLE",
            message=f"The charge is {charge.state}; only succeeded or settled charges can be refunded.",
            field="chargeId",
        )


def _exceeds(charge: Charge, remaining: int) -> BillingError:
    left = from_minor(remaining, charge.currency)
    return BillingError(
        "REFUND_EXCEEDS_REMAINING",
        message=f"At most {left} {charge.currency} of this charge can still be refunded.",
        field="amount",
    )


async def ask_processor(
    processor: PaymentProcessor, refund: Refund, reference: str, *, look_up_first: bool
) -> tuple[Outcome, str]:
    """The processor's answer about `refund` and the method that produced it.

    With `look_up_first` the key is looked up and only a key the processor never saw is sent
    again (the same request: processors dedupe on the key). Any error is `unknown`, and so is
    "key reused with other parameters": the key may have moved money.
    """
    method = refund.method
    try:
        if look_up_first:
            found = await processor.lookup_refund(reference, refund.idempotency_key)
            if found is not None:
                return _never_key_reused(found), method
        outcome = None
        if method == "void":
            outcome = await processor.void_charge(
                reference, refund.amount_minor, refund.currency, idempotency_key=refund.idempotency_key
            )
        if outcome is None:
            method = "refund"
            outcome = await processor.refund(
                reference,
                refund.amount_minor,
                refund.currency,
                idempotency_key=refund.idempotency_key,
                reason=refund.reason or "",
            )
    except Exception:
        log.exception(
            "refund call failed",
            extra={"refund_id": refund.id, "charge_id": refund.charge_id, "processor": refund.processor},
        )
        return Outcome.unknown(), method
    return _never_key_reused(outcome), method


def _never_key_reused(outcome: Outcome) -> Outcome:
    if outcome.status == "failed" and outcome.decline_code == _KEY_REUSED:
        return Outcome.unknown()
    return outcome


async def record_outcome(
    session: Session, refund: Refund, outcome: Outcome, method: str, *, now: datetime
) -> bool:
    """Write `outcome` on a still open `refund`, with its event when final; False if already final."""
    values: dict[str, object] = {"state": outcome.status, "method": method}
    if outcome.reference is not None:
        values["processor_reference"] = outcome.reference
    if outcome.status == "failed":
        values["failure_code"] = outcome.decline_code
        values["failure_message"] = (outcome.decline_message or "")[:500] or None
    if not await store.finish(session, refund, at=now, **values):
        return False
    if outcome.status == "unknown":
        return True
    charge = await session.get(Charge, refund.charge_id, populate_existing=True)
    assert charge is not None  # a foreign key holds it
    view = ChargeView(charge, (await store.refunds_of_charges(session, [charge.id]))[charge.id])
    model: type[RefundSnapshot] = ChargeRefunded if outcome.status == "succeeded" else ChargeRefundFailed
    await events.record_event(
        session,
        client_id=refund.client_id,
        payload=refund_event(model, refund, view),
        now=now,
        subscription_id=refund.subscription_id,
    )
    return True


def refund_event(model: type[RefundSnapshot], refund: Refund, view: ChargeView) -> RefundSnapshot:
    """A `charge.refunded` / `charge.refund_failed` payload."""
    return model(
        **refund.model_dump(include=_EVENT_FIELDS),
        refund_id=refund.id,
        amount=str(from_minor(refund.amount_minor, refund.currency)),
        charge_amount_minor=view.charge.amount_minor,
        refunded_amount_minor=view.refunded_minor,
    )


async def _settle(runtime: Runtime, clock: Clock, refund: Refund, *, look_up_first: bool) -> Refund:
    """Ask the processor about an open refund and record the answer; returns the row as stored."""
    async with runtime.sessions() as session:
        charge = await session.get(Charge, refund.charge_id)
    processor = runtime.processors.get(refund.processor)
    if charge is None or processor is None or not charge.processor_reference:
        log.error(
            "refund cannot be sent from this process",
            extra={"refund_id": refund.id, "charge_id": refund.charge_id},
        )
        return refund
    outcome, method = await ask_processor(
        processor, refund, charge.processor_reference, look_up_first=look_up_first
    )
    async with transaction(runtime.sessions) as session:
        current = await store.get_refund(session, refund.client_id, refund.id)
        if current is None:
            return refund
        await record_outcome(session, current, outcome, method, now=clock.now())
        return current


async def refund_charge(
    runtime: Runtime,
    *,
    client_id: str,
    charge_id: str,
    amount: Decimal | None = None,
    reason: str | None = None,
    request_key: str | None = None,
    clock: Clock | None = None,
) -> RefundResult:
    """Refund `amount` (None: all that remains) of a client's charge; see the module docstring.

    Raises 7044 unknown charge (or another client's), 7060 charge not succeeded/settled,
    7061 more than remains refundable, 7001/7002 bad amount for the currency, 7005 processor
    not configured, 7700 the Idempotency-Key named another charge's refund. `clock` is the
    client's (its timestamps; default the engine's).
    """
    clock = clock or runtime.clock
    async with transaction(runtime.sessions) as session:
        refund, new = await _open_refund(
            runtime,
            session,
            client_id=client_id,
            charge_id=charge_id,
            amount=amount,
            reason=reason,
            request_key=request_key,
            now=clock.now(),
        )
    if refund.state in store.OPEN_STATES:
        refund = await _settle(runtime, clock, refund, look_up_first=not new)
    async with runtime.sessions() as session:
        view = await charge_detail(session, client_id=client_id, charge_id=charge_id)
    return RefundResult(refund, view)


async def run_refund_reconciliation(runtime: Runtime, identity: str) -> dict[str, int]:
    """Worker pass: settle refunds left `pending`/`unknown` for over a minute, by their key."""
    summary = {"succeeded": 0, "failed": 0, "unresolved": 0}
    async with runtime.sessions() as session:
        # Refunds carry their client's time: a sandbox clock ahead makes them stale sooner.
        offsets = await clients_with_clock_offset(session)
        stale = await store.stale_open_refunds(
            session,
            before=runtime.clock.now() - STALE_AFTER,
            limit=runtime.settings.worker.batch_size,
            offsets=offsets,
        )
    for refund in stale:
        clock = merchant_clock(runtime.clock, offsets.get(refund.client_id, 0))
        async with transaction(runtime.sessions) as session:
            claimed = await store.claim_open_refund(session, refund, now=clock.now())
        if not claimed:
            continue  # another worker took it (several workers run this pass)
        settled = await _settle(runtime, clock, refund, look_up_first=True)
        state = settled.state if settled.state in ("succeeded", "failed") else "unresolved"
        summary[state] += 1
        if state != "unresolved":
            log.info(
                "refund reconciled",
                extra={
                    "refund_id": refund.id,
                    "charge_id": refund.charge_id,
                    "state": state,
                    "worker": identity,
                },
            )
    return summary
