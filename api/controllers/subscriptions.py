"""Subscriptions: verify-card (the only way to create one), list, detail, e-mail, cancel, history."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from api.auth import clock_of, ensure_same_client
from api.schemas.subscriptions import (
    ChargeOut,
    EnrolmentOut,
    SubscriptionOut,
    UpdateSubscriptionIn,
    VerifyCardIn,
    charge_out,
    enrolment_out,
    subscription_out,
)
from api.schemas.wire import render, responses
from billing.domain.errors import BillingError
from billing.services import enrolment, subscriptions
from billing.services import refunds as billing_refunds
from billing.services.auth import AuthenticatedClient
from billing.services.runtime import Runtime


def RequiredText(*, name: str, description: str) -> Any:
    """A required query parameter with at least one non-space character."""
    return QueryParameter(name=name, description=description, min_length=1, schema_extra={"pattern": r"\S"})


def _required(value: str | None, name: str) -> str:
    if value is None or not value.strip():
        raise BillingError("CHECK_PARAMETERS", message=f"{name} is required.", field=name)
    return value.strip()


class SubscriptionsController(Controller):
    path = "/v1/subscriptions"
    tags = ["subscriptions"]

    @post(
        "/verify-card",
        operation_id="VerifyCard",
        status_code=200,
        responses=responses(200, EnrolmentOut, "Card verified", 402, 403, 404, 409, 502),
    )
    async def verify_card(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        data: JSONBody[VerifyCardIn],
    ) -> dict[str, Any]:
        """Verify a card against a transaction and, with `shouldCreateSubscription`, enrol the cardholder.

        The card is tokenized by `processor`, the transaction amount is pre-authorized and
        released, and the card is saved. With `planUid` the subscription is created in the same
        call: its first period is charged now (a decline creates no subscription and answers the
        decline, e.g. 7303 with HTTP 402), or, when the plan has `trialDays`, at trial end.
        Errors: 7000, 7042 unknown transaction, 7052 transaction already used, 7050 an enrolment
        on the transaction is still in progress, 7005 unknown processor, 7040 unknown plan, 7053
        processor not allowed by the plan, 7204/7202 bad or expired card, declines (7201, 7203,
        7303), 7205 (502) the processor did not answer the first charge (it is settled later).
        """
        ensure_same_client(merchant, data.client_id, field="clientId")
        ensure_same_client(merchant, data.client, field="client")
        result = await enrolment.verify_card(runtime, client_id=merchant.id, request=data.request())
        view = None
        if result.subscription is not None:
            async with runtime.sessions() as session:
                view = await subscriptions.subscription_detail(
                    session, client_id=merchant.id, subscription_id=result.subscription.id
                )
        message = "Card verified and subscription created" if view is not None else "Card verified"
        return render(enrolment_out(result, view), message)

    @get(
        "/",
        operation_id="ListSubscriptions",
        responses=responses(200, list[SubscriptionOut], "Subscriptions found", 403),
    )
    async def list_subscriptions(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        user_id: Annotated[str, RequiredText(name="userId", description="The cardholder.")],
        client_id: Annotated[str, RequiredText(name="clientId", description="Your client id.")],
    ) -> dict[str, Any]:
        """A cardholder's subscriptions (all statuses), newest first.

        Errors: 7000 naming `userId` or `clientId` when missing, 7605 `clientId` is another client.
        """
        user = _required(user_id, "userId")
        ensure_same_client(merchant, _required(client_id, "clientId"), field="clientId")
        async with runtime.sessions() as session:
            views = await subscriptions.list_subscriptions(session, client_id=merchant.id, user_id=user)
        return render([subscription_out(v) for v in views], "Subscriptions found")

    @get(
        "/detail/{sub_uid:str}",
        operation_id="GetSubscription",
        responses=responses(200, SubscriptionOut, "Subscription found", 404),
    )
    async def get_subscription(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        sub_uid: FromPath[str],
    ) -> dict[str, Any]:
        """One subscription. Errors: 7041 unknown subscription (or another client's)."""
        async with runtime.sessions() as session:
            view = await subscriptions.subscription_detail(
                session, client_id=merchant.id, subscription_id=sub_uid
            )
        return render(subscription_out(view), "Subscription found")

    @put(
        "/",
        operation_id="UpdateSubscription",
        responses=responses(200, SubscriptionOut, "Subscription updated", 403, 404),
    )
    async def update_subscription(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        data: JSONBody[UpdateSubscriptionIn],
    ) -> dict[str, Any]:
        """Change the notification e-mail, the only editable field (`null` stops e-mails).

        Errors: 7000 missing field or not an e-mail address, 7041 unknown subscription, 7605.
        """
        ensure_same_client(merchant, data.client_id, field="clientId")
        async with runtime.sessions() as session, session.begin():
            view = await subscriptions.update_notification_email(
                session,
                clock_of(runtime, merchant),
                client_id=merchant.id,
                subscription_id=data.subscription_id,
                email=data.notification_email,
            )
        return render(subscription_out(view), "Subscription updated")

    @delete(
        "/{sub_uid:str}",
        operation_id="CancelSubscription",
        status_code=200,
        responses=responses(200, SubscriptionOut, "Subscription cancelled", 404, 409),
    )
    async def cancel_subscription(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        sub_uid: FromPath[str],
    ) -> dict[str, Any]:
        """Cancel now: `cancelled`, no further renewals, grace retries stop at once.

        Errors: 7041 unknown subscription, 7050 it is not active (already cancelled, inactive, expired).
        """
        async with runtime.sessions() as session, session.begin():
            view = await subscriptions.cancel_subscription(
                session, runtime.clock, client_id=merchant.id, subscription_id=sub_uid
            )
        return render(subscription_out(view), "Subscription cancelled")

    @get(
        "/payment-history",
        operation_id="GetPaymentHistory",
        responses=responses(200, list[ChargeOut], "Payment history found", 404),
    )
    async def payment_history(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        subscription_id: Annotated[str, RequiredText(name="subscriptionId", description="The subscription.")],
    ) -> dict[str, Any]:
        """The subscription's charges as a flat array, newest first (no paging, as Migo), each with
        its refunds and `refundedAmount`.

        Errors: 7000 (HTTP 400) without `subscriptionId`, 7041 unknown subscription.
        """
        wanted = _required(subscription_id, "subscriptionId")
        async with runtime.sessions() as session:
            charges = await subscriptions.payment_history(
                session, client_id=merchant.id, subscription_id=wanted
            )
            refunds = await billing_refunds.refunds_by_charge(session, charges)
        return render([charge_out(c, refunds[c.id]) for c in charges], "Payment history found")
