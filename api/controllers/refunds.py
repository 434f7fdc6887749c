"""One charge with its refunds, and refunding it (in full or in part, any number of times)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from pydantic import Field

from api.auth import clock_of
from api.idempotency import HEADER, claim_of_request
from api.schemas.refunds import RefundIn, RefundOut, refund_out
from api.schemas.subscriptions import ChargeOut, charge_out
from api.schemas.wire import OutModel, render, responses
from billing.services import refunds
from billing.services.auth import AuthenticatedClient
from billing.services.runtime import Runtime


class RefundResultOut(OutModel):
    """The refund a request made (or, retried with its Idempotency-Key, resumed) and its charge now."""

    refund: RefundOut
    charge: ChargeOut = Field(description="The charge with `refundedAmount` and every refund.")


class ChargeRefundsController(Controller):
    path = "/v1/charges"
    tags = ["charges"]

    @get(
        "/{charge_id:str}",
        operation_id="GetCharge",
        responses=responses(200, ChargeOut, "Charge found", 404),
    )
    async def get_charge(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        charge_id: FromPath[str],
    ) -> dict[str, Any]:
        """One charge with its refunds. Errors: 7044 unknown charge (or another client's)."""
        async with runtime.sessions() as session:
            view = await refunds.charge_detail(session, client_id=merchant.id, charge_id=charge_id)
        return render(charge_out(view.charge, view.refunds), "Charge found")

    @post(
        "/{charge_id:str}/refund",
        operation_id="RefundCharge",
        status_code=201,
        responses=responses(201, RefundResultOut, "Refund made", 404, 409, 502),
    )
    async def refund_charge(
        self,
        request: Request[Any, Any, Any],
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        charge_id: FromPath[str],
        data: JSONBody[RefundIn],
    ) -> dict[str, Any]:
        """Give back `amount` of a succeeded or settled charge (all that remains when omitted).

        Any number of partial refunds, never more than the charge in total. Before settlement a
        refund of the whole charge is a void where the processor can; otherwise a refund. The
        answer's refund is `succeeded`, `failed` (the amount is refundable again) or `unknown`
        (the processor's answer was lost: it is reconciled by the worker, never sent twice); the
        subscription is not changed. Send an `Idempotency-Key` to retry safely.
        Errors: 7044 unknown charge (or another client's), 7060 the charge did not succeed,
        7061 more than remains refundable, 7001/7002 bad amount for the currency.
        """
        request_key = request.headers.get(HEADER) if claim_of_request(request) is not None else None
        result = await refunds.refund_charge(
            runtime,
            client_id=merchant.id,
            charge_id=charge_id,
            amount=data.amount,
            reason=data.reason,
            request_key=request_key,
            clock=clock_of(runtime, merchant),
        )
        body = RefundResultOut(
            refund=refund_out(result.refund),
            charge=charge_out(result.view.charge, result.view.refunds),
        )
        return render(body, "Refund made")
