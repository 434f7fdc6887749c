"""Originating transactions: what a merchant creates before sending the cardholder to verify a card.

Status: `created` (usable), `enrolling` (an enrolment charge is in flight), `used` (consumed by
a successful verify-card). A declined enrolment returns it to `created`, so the cardholder can
try another card against the same transaction.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing.domain.errors import BillingError
from billing.domain.money import normalize_currency, to_minor
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


def _reference() -> str:
    """A short reference a cardholder can read out on the phone (`TRX-7KQ2-M9XD`)."""
    chars = "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(8))
    return f"TRX-{chars[:4]}-{chars[4:]}"


async def create_transaction(
    session: Session, *, client_id: str, request: TransactionRequest, now: datetime
) -> Transaction:
    """Validate and store a transaction; a repeated `externalId` is 7006 (409)."""
    currency = normalize_currency(request.currency, field="currency")
    amount_minor = to_minor(request.amount, currency, field="amount")
    user_id = request.user_id.strip()
    if not user_id:
        raise BillingError("CHECK_PARAMETERS", message="userId must not be empty.", field="userId")
    external_id = request.external_id
    if external_id is not None and await store.external_id_taken(session, client_id, external_id):
        raise BillingError("EXTERNAL_ID_ALREADY_EXISTS", field="externalId")
    trx = Transaction(
        id=new_id("transaction"),
        client_id=client_id,
        amount_minor=amount_minor,
        currency=currency,
        user_id=user_id,
        external_id=external_id,
        reference=_reference(),
        channel=request.channel,
        status="created",
        created_at=now,
    )
    # The unique key still decides when two requests with one externalId race past the check.
    return await store.add_transaction(session, trx)


async def get_transaction(session: Session, *, client_id: str, trx_id: str) -> Transaction:
    """The client's transaction, or 7042 TRANSACTION_NOT_FOUND (also for another client's)."""
    trx = await store.get_transaction(session, client_id, trx_id)
    if trx is None:
        raise BillingError("TRANSACTION_NOT_FOUND", field="uid")
    return trx
