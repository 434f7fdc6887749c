"""`POST /transactions`: the originating transaction of an enrolment.

The path sits outside /v1 (Migo's Payment Link surface) but is a merchant write like the others:
the app-wide guard asks for the Bearer token and the request signature (api/auth.py).
"""

from __future__ import annotations

from datetime import timedelta
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
    responses=responses(201, TransactionOut, "Transaction created", 403, 404, 409),
)
async def create_transaction(
    runtime: NamedDependency[Runtime],
    merchant: NamedDependency[AuthenticatedClient],
    data: JSONBody[TransactionIn],
) -> dict[str, Any]:
    """Create the transaction a card is verified against: `{uid, reference, URL}` and its details.

    The amount is what verify-card pre-authorizes (and releases). `URL` is the payment link, the
    engine's hosted enrolment page to send to the cardholder: with `planUid` it enrols the
    cardholder in that plan, without it it verifies and saves the card; either way it runs
    verify-card, which you may also call yourself with card data you collected.
    Errors: 7000 missing/bad field, 7001, 7002, 7016, 7006 `externalId` already used, 7040 unknown
    `planUid`, 7800 bad `returnUrl`, 7605.
    """
    ensure_same_client(merchant, data.client_id, field="clientId")
    ensure_same_client(merchant, data.client, field="client")
    request = TransactionRequest(
        amount=data.amount,
        currency=data.currency,
        user_id=data.user_id,
        external_id=data.external_id,
        channel=data.channel,
        plan_id=data.plan_uid,
        return_url=data.return_url,
    )
    settings = runtime.settings
    async with runtime.sessions() as session, session.begin():
        trx = await transactions.create_transaction(
            session,
            client_id=merchant.id,
            request=request,
            now=clock_of(runtime, merchant).now(),
            real_now=runtime.clock.now(),
            link_lifetime=timedelta(hours=settings.payment_links.expires_after_hours),
        )
    return render(transaction_out(trx, settings.public_url), "Transaction created")
