"""Which grace policy a plan's episodes follow: the plan's own fields, then its named policy
(`[grace.policies.NAME]`), then `[grace.default]` (SPEC §5).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from billing.domain.errors import BillingError
from billing.domain.grace import GracePolicy, PlanGraceFields, resolve_policy
from billing.services.runtime import Runtime
from billing.settings import GracePolicySettings, GraceSettings
from billing.store import sandbox_clock as client_clock_store
from billing.store.plans import PlanTerms, plans_by_id

log = logging.getLogger("billing.grace")


class PlanWithGrace(Protocol):
    """The plan attributes the policy depends on (a `Plan` row or `PlanTerms`)."""

    @property
    def daily_attempts(self) -> int | None: ...
    @property
    def interval_attempt_hours(self) -> float | None: ...
    @property
    def grace_days(self) -> int | None: ...
    @property
    def grace_policy(self) -> str | None: ...


def configured_policy(section: GracePolicySettings) -> GracePolicy:
    """A `[grace.*]` config section as a domain policy."""
    return GracePolicy(
        attempts=section.attempts,
        interval_hours=section.interval_hours,
        grace_days=section.grace_days,
        stop_on_hard_decline=section.stop_on_hard_decline,
    )


@dataclass(frozen=True, slots=True)
class ResolvedPolicy:
    """The policy in force and where each part came from (for `billing policy show`)."""

    policy: GracePolicy
    base: str  # "default" or "policies.NAME"
    plan_overrides: tuple[str, ...]


def resolve_for_plan(grace: GraceSettings, plan: PlanWithGrace) -> ResolvedPolicy:
    """The policy a new episode of `plan` follows, with its provenance.

    A plan naming a policy that is no longer configured falls back to the default (and
    says so in the log) rather than stopping renewals.
    """
    named = None
    base = "default"
    if plan.grace_policy:
        section = grace.policies.get(plan.grace_policy)
        if section is None:
            log.warning("plan names an unknown grace policy", extra={"policy": plan.grace_policy})
        else:
            named = configured_policy(section)
            base = f"policies.{plan.grace_policy}"
    fields = PlanGraceFields(
        daily_attempts=plan.daily_attempts,
        interval_attempt=plan.interval_attempt_hours,
        grace_days=plan.grace_days,
    )
    overrides = tuple(
        name
        for name, value in (
            ("dailyAttempts", plan.daily_attempts),
            ("intervalAttempt", plan.interval_attempt_hours),
            ("graceDays", plan.grace_days),
        )
        if value is not None
    )
    policy = resolve_policy(fields, named, configured_policy(grace.default))
    return ResolvedPolicy(policy=policy, base=base, plan_overrides=overrides)


def policy_for_plan(grace: GraceSettings, plan: PlanWithGrace) -> GracePolicy:
    """The policy a new episode of `plan` follows."""
    return resolve_for_plan(grace, plan).policy


@dataclass(frozen=True, slots=True)
class PlanPolicy:
    """A plan, the time zone of its client and the grace policy its new episodes follow."""

    plan: PlanTerms
    timezone: str
    resolved: ResolvedPolicy


async def policy_of_plan(runtime: Runtime, plan_id: str) -> PlanPolicy:
    """The policy in force for a plan (operators: any client's plan). 7040 for an unknown plan."""
    async with runtime.sessions() as session:
        plan = (await plans_by_id(session, [plan_id])).get(plan_id)
        if plan is None:
            raise BillingError("PLAN_NOT_FOUND", field="plan")
        client = await client_clock_store.client_timezone(session, plan.client_id)
    return PlanPolicy(
        plan=plan, timezone=client or "UTC", resolved=resolve_for_plan(runtime.settings.grace, plan)
    )
