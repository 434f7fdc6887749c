"""`POST /transactions`: the originating transaction of an enrolment.

The path sits outside /v1 (Migo's Payment Link surface) but is a merchant write like the others:
the app-wide guard asks for the Bearer token and the request signature (api/auth.py).
"""

from __future__ import annotations

from typing import Any

from litestar import post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from api.auth import clock_of, ensure_same_client
from api.schemas.transactions import TransactionIn, TransactionOut, transaction_out
from api.schemas.wire import render, responses
from billing.services import transactions
from billing.services.auth import AuthenticatedClient
from billing.services.runtime import Runtime
from billing.services.transactions import TransactionRequest


@post(
    "/transactions",
    operation_id="CreateTransaction",
    tags=["transactions"],
    status_code=201,
    responses=responses(201, TransactionOut, "Transaction created", 403, 409),
)
async def create_transaction(
    runtime: NamedDependency[Runtime],
    merchant: NamedDependency[AuthenticatedClient],
    data: JSONBody[TransactionIn],
) -> dict[str, Any]:
    """Create the transaction a card is verified against: `{uid, reference, URL}` and its details.

    The amount is what verify-card pre-authorizes (and releases). `URL` is null: this engine has
    no hosted page; enrol with `POST /v1/subscriptions/verify-card`.
    Errors: 7000 missing/bad field, 7001, 7002, 7016, 7006 `externalId` already used, 7605.
    """
    ensure_same_client(merchant, data.client_id, field="clientId")
    ensure_same_client(merchant, data.client, field="client")
    request = TransactionRequest(
        amount=data.amount,
        currency=data.currency,
        user_id=data.user_id,
        external_id=data.external_id,
        channel=data.channel,
    )
    async with runtime.sessions() as session, session.begin():
        trx = await transactions.create_transaction(
            session, client_id=merchant.id, request=request, now=clock_of(runtime, merchant).now()
        )
    return render(transaction_out(trx), "Transaction created")
