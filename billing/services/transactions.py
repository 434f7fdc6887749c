"""Originating transactions: what a merchant creates before sending the cardholder to verify a card.

Each one is also a payment link, `{server.public_url}/pay/{reference}` (docs/payment-links.md):
with `planUid` the link enrols the cardholder in that plan, without it the link verifies and saves
the card; `returnUrl` is where the cardholder goes after enrolling.

Status: `created` (usable), `enrolling` (an enrolment charge is in flight), `used` (consumed by
a successful verify-card). A declined enrolment returns it to `created`, so the cardholder can
try another card against the same transaction.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from billing.domain.errors import BillingError
from billing.domain.money import normalize_currency, to_minor
from billing.domain.payment_links import return_url_problem
from billing.services.client_clock import load_client
from billing.services.plans import get_plan
from billing.store import payment_links as link_store
from billing.store import transactions as store
from billing.store.engine import Session
from billing.store.ids import new_id
from billing.store.models import Transaction

_REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True)
class TransactionRequest:
    """What a merchant sends to create a transaction."""

    amount: Decimal | int
    currency: str
    user_id: str
    external_id: str | None = None
    channel: str | None = None
    plan_id: str | None = None
    return_url: str | None = None


def _reference() -> str:
    """A short reference a cardholder can read out on the phone (`TRX-7KQ2-M9XD`)."""
    chars = "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(8))
    return f"TRX-{chars[:4]}-{chars[4:]}"


async def create_transaction(
    session: Session,
    *,
    client_id: str,
    request: TransactionRequest,
    now: datetime,
    link_lifetime: timedelta = timedelta(days=7),
    real_now: datetime | None = None,
) -> Transaction:
    """Validate and store a transaction; its payment link works for `link_lifetime`.

    Errors: 7006 (409) a repeated `externalId`; 7040 an unknown `planUid` (another client's too);
    7000 a plan in another currency; 7800 a `returnUrl` that is not absolute https (http is
    accepted for sandbox clients).
    """
    currency = normalize_currency(request.currency, field="currency")
    amount_minor = to_minor(request.amount, currency, field="amount")
    user_id = request.user_id.strip()
    if not user_id:
        raise BillingError("CHECK_PARAMETERS", message="userId must not be empty.", field="userId")
    if request.plan_id is not None:
        plan = await get_plan(session, client_id=client_id, plan_id=request.plan_id, field="planUid")
        if plan.currency != currency:
            raise BillingError(
                "CHECK_PARAMETERS",
                message=f"The transaction is in {currency} but the plan charges {plan.currency}.",
                field="planUid",
            )
    if request.return_url is not None:
        client = await load_client(session, client_id)
        problem = return_url_problem(request.return_url, production=client.environment == "production")
        if problem is not None:
            raise BillingError("INVALID_RETURN_URL", message=problem, field="returnUrl")
    external_id = request.external_id
    if external_id is not None and await store.external_id_taken(session, client_id, external_id):
        raise BillingError("EXTERNAL_ID_ALREADY_EXISTS", field="externalId")
    reference = _reference()
    while await link_store.reference_taken(session, reference):  # 40 random bits: rarely twice
        reference = _reference()
    trx = Transaction(
        id=new_id("transaction"),
        client_id=client_id,
        amount_minor=amount_minor,
        currency=currency,
        user_id=user_id,
        external_id=external_id,
        reference=reference,
        channel=request.channel,
        status="created",
        created_at=now,
        plan_id=request.plan_id,
        return_url=request.return_url,
        # The cardholder opens the link in real time: its expiry is on the engine's clock, even
        # for a sandbox client whose clock runs ahead (`now`, the client's, dates the transaction).
        link_expires_at=(real_now or now) + link_lifetime,
    )
    # The unique key still decides when two requests with one externalId race past the check.
    return await store.add_transaction(session, trx)


async def get_transaction(session: Session, *, client_id: str, trx_id: str) -> Transaction:
    """The client's transaction, or 7042 TRANSACTION_NOT_FOUND (also for another client's)."""
    trx = await store.get_transaction(session, client_id, trx_id)
    if trx is None:
        raise BillingError("TRANSACTION_NOT_FOUND", field="uid")
    return trx
