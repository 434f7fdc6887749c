"""Payment methods: add a card, remove one, choose a subscription's default."""

from __future__ import annotations

from typing import Any

from litestar import Controller, delete, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody

from api.auth import clock_of, ensure_same_client
from api.schemas.payment_methods import (
    AddPaymentMethodIn,
    PaymentMethodOut,
    RemovePaymentMethodIn,
    SetDefaultIn,
    payment_method_out,
)
from api.schemas.subscriptions import SubscriptionOut, subscription_out
from api.schemas.wire import render, responses
from billing.services import payment_methods
from billing.services.auth import AuthenticatedClient
from billing.services.runtime import Runtime


class PaymentMethodsController(Controller):
    path = "/v1/subscriptions/payment-methods"
    tags = ["payment methods"]

    @post(
        "/",
        operation_id="AddPaymentMethod",
        status_code=201,
        responses=responses(201, PaymentMethodOut, "Payment method added", 402, 403, 404),
    )
    async def add_payment_method(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        data: JSONBody[AddPaymentMethodIn],
    ) -> dict[str, Any]:
        """Save a card for a cardholder (`tokenizeData`).

        The card backs no subscription until it is set as a default, unless `tokenizeData.fallbackFor` lists
        subscriptions of this cardholder: it becomes the last fallback of each (7041 unknown,
        7000 another cardholder's, 7050 not active).

        `cardId` is a token the processor issued (sandbox `tok_sbx_...`, stripe `cus_...:pm_...`);
        raw card data goes in `cardInfo` instead and is tokenized (not pre-authorized: use
        verify-card to verify a card). Errors: 7000 (neither or both of cardId and cardInfo),
        7005 unknown processorId, 7204 a card number sent as cardId or bad card data, 7202
        expired card, declines at tokenization, 7605 clientId is another client.
        """
        ensure_same_client(merchant, data.tokenize_data.client_id, field="tokenizeData.clientId")
        method = await payment_methods.add_payment_method(
            runtime.sessions,
            clock_of(runtime, merchant),
            runtime.processors,
            client_id=merchant.id,
            request=data.tokenize_data.request(),
        )
        return render(payment_method_out(method), "Payment method added")

    @delete(
        "/",
        operation_id="RemovePaymentMethod",
        status_code=200,
        responses=responses(200, PaymentMethodOut, "Payment method removed", 403, 404, 409),
    )
    async def remove_payment_method(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        data: JSONBody[RemovePaymentMethodIn],
    ) -> dict[str, Any]:
        """Remove a card (`{paymentMethodId, userId?, clientId?}` in the body).

        The card leaves every subscription; one that defaulted to it moves to its own first
        fallback. Errors: 7200 unknown or already removed card, 7051 it is the only card behind
        an active subscription.
        """
        ensure_same_client(merchant, data.client_id, field="clientId")
        async with runtime.sessions() as session, session.begin():
            method = await payment_methods.remove_payment_method(
                session,
                clock_of(runtime, merchant),
                client_id=merchant.id,
                method_id=data.payment_method_id,
                user_id=data.user_id,
            )
        return render(payment_method_out(method), "Payment method removed")

    @put(
        "/set-default",
        operation_id="SetDefaultPaymentMethod",
        responses=responses(200, SubscriptionOut, "Default payment method set", 403, 404, 409),
    )
    async def set_default(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        data: JSONBody[SetDefaultIn],
    ) -> dict[str, Any]:
        """Make a card the subscription's default (`{subscriptionId, paymentMethodId, keepAsFallback?}`).

        The card it replaces stops backing the subscription (it is never charged for it again),
        unless `keepAsFallback` is true: then it is the first fallback, ahead of the others. On a
        subscription in grace the worker retries at once with the new card while
        the grace policy allows. Errors: 7041, 7200 (unknown card or another cardholder's), 7050
        the subscription is not active.
        """
        ensure_same_client(merchant, data.client_id, field="clientId")
        async with runtime.sessions() as session, session.begin():
            view = await payment_methods.set_default_payment_method(
                session,
                runtime.clock,
                client_id=merchant.id,
                subscription_id=data.subscription_id,
                method_id=data.payment_method_id,
                keep_as_fallback=data.keep_as_fallback,
            )
        return render(subscription_out(view), "Default payment method set")
