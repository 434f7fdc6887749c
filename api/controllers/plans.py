"""Plans: create, update, list, detail."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from api.auth import clock_of, ensure_same_client
from api.schemas.plans import CreatePlanIn, PlanOut, UpdatePlanIn, plan_changes, plan_out, plan_terms
from api.schemas.wire import render, responses
from billing.domain.errors import BillingError
from billing.services import plans
from billing.services.auth import AuthenticatedClient
from billing.services.runtime import Runtime


def _rules(runtime: Runtime) -> plans.PlanRules:
    return plans.PlanRules.of(runtime.processors, runtime.settings.grace)


class PlansController(Controller):
    path = "/v1/plans"
    tags = ["plans"]

    @post(
        "/",
        operation_id="CreatePlan",
        status_code=201,
        responses=responses(201, PlanOut, "Plan created", 403, 404),
    )
    async def create_plan(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        data: JSONBody[CreatePlanIn],
    ) -> dict[str, Any]:
        """Create a plan.

        Errors: 7000 (missing field, wrong type, bad frequency for the type, `automatic` type,
        retry field out of range, unknown `gracePolicy`; the field is named), 7001 amount not
        above zero, 7002 more decimals than the currency has, 7016 unknown currency, 7005 a
        `methods` entry that is not an installed processor, 7605 `client` is another client.
        """
        ensure_same_client(merchant, data.client, field="client")
        async with runtime.sessions() as session, session.begin():
            plan = await plans.create_plan(
                session,
                client_id=merchant.id,
                terms=plan_terms(data.plan),
                rules=_rules(runtime),
                now=clock_of(runtime, merchant).now(),
            )
        return render(plan_out(plan), "Plan created")

    @put("/", operation_id="UpdatePlan", responses=responses(200, PlanOut, "Plan updated", 403, 404))
    async def update_plan(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        data: JSONBody[UpdatePlanIn],
    ) -> dict[str, Any]:
        """Update a plan: `{planId, plan: {fields to change}, client}`.

        Only the fields sent change; the result is validated like a new plan. The new amount
        applies to new subscriptions and to the next renewals of existing ones. `currency`,
        `type` and the schedule (`frequency.frequency`, `frequency.day`) cannot change (7000):
        running subscriptions' dates depend on them. Errors as for create, plus 7040 unknown plan.
        """
        ensure_same_client(merchant, data.client, field="client")
        plan_id = data.plan_id or data.plan_uid
        if plan_id is None:
            raise BillingError("CHECK_PARAMETERS", message="planId is required.", field="planId")
        async with runtime.sessions() as session, session.begin():
            plan = await plans.update_plan(
                session,
                client_id=merchant.id,
                plan_id=plan_id,
                changes=plan_changes(data.plan),
                rules=_rules(runtime),
                now=clock_of(runtime, merchant).now(),
            )
        return render(plan_out(plan), "Plan updated")

    @get("/list", operation_id="ListPlans", responses=responses(200, list[PlanOut], "Plans found", 403))
    async def list_plans(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        client: Annotated[
            str | None, QueryParameter(name="client", description="Optional; your client id.")
        ] = None,
        client_id: Annotated[
            str | None, QueryParameter(name="clientId", description="Alias of client.")
        ] = None,
    ) -> dict[str, Any]:
        """The client's plans, newest first. Errors: 7605 `client`/`clientId` is another client."""
        ensure_same_client(merchant, client, field="client")
        ensure_same_client(merchant, client_id, field="clientId")
        async with runtime.sessions() as session:
            found = await plans.list_plans(session, client_id=merchant.id)
        return render([plan_out(p) for p in found], "Plans found")

    @get(
        "/{plan_id:str}/client/{client:str}/detail",
        operation_id="GetPlan",
        responses=responses(200, PlanOut, "Plan found", 403, 404),
    )
    async def get_plan(
        self,
        runtime: NamedDependency[Runtime],
        merchant: NamedDependency[AuthenticatedClient],
        plan_id: FromPath[str],
        client: FromPath[str],
    ) -> dict[str, Any]:
        """One plan. Errors: 7040 unknown plan (or another client's), 7605 `client` is not you."""
        ensure_same_client(merchant, client, field="client")
        async with runtime.sessions() as session:
            plan = await plans.get_plan(session, client_id=merchant.id, plan_id=plan_id)
        return render(plan_out(plan), "Plan found")
