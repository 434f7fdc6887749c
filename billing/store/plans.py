"""Plans of one client, and the plans of a whole batch at once (renewal and on-demand passes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select as sa_select
from sqlmodel import col, select

from billing.store.engine import Session
from billing.store.models import Plan
from billing.store.owned import owned_row

_PLAN = Plan.metadata.tables["plan"]
_CHUNK = 1000


async def add_plan(session: Session, plan: Plan) -> Plan:
    """Insert a new plan (flushed, so database defaults and constraints apply now)."""
    session.add(plan)
    await session.flush()
    return plan


async def get_plan(session: Session, client_id: str, plan_id: str) -> Plan | None:
    """The client's plan with this id; another client's plan is None, exactly like a missing one."""
    return await owned_row(session, Plan, client_id, plan_id)


async def list_plans(session: Session, client_id: str) -> Sequence[Plan]:
    """Every plan of the client, newest first."""
    query = (
        select(Plan)
        .where(Plan.client_id == client_id)
        .order_by(col(Plan.created_at).desc(), col(Plan.id).desc())
    )
    return (await session.exec(query)).all()


@dataclass(frozen=True, slots=True)
class PlanTerms:
    """The plan columns a renewal or an on-demand charge needs."""

    id: str
    client_id: str
    name: str
    amount_minor: int
    currency: str
    type: str
    frequency: int | None
    frequency_day: int | None
    cycles: int | None
    auto_renewal: bool
    daily_attempts: int | None
    interval_attempt_hours: float | None
    grace_days: int | None
    grace_policy: str | None
    methods: list[str]


async def plans_by_id(session: Session, plan_ids: Sequence[str]) -> dict[str, PlanTerms]:
    """The plans with these ids (their current amount and rules)."""
    conn = await session.connection()
    found: dict[str, PlanTerms] = {}
    ids = sorted(set(plan_ids))
    for start in range(0, len(ids), _CHUNK):
        rows = await conn.execute(
            sa_select(
                _PLAN.c.id,
                _PLAN.c.client_id,
                _PLAN.c.name,
                _PLAN.c.amount_minor,
                _PLAN.c.currency,
                _PLAN.c.type,
                _PLAN.c.frequency,
                _PLAN.c.frequency_day,
                _PLAN.c.cycles,
                _PLAN.c.auto_renewal,
                _PLAN.c.daily_attempts,
                _PLAN.c.interval_attempt_hours,
                _PLAN.c.grace_days,
                _PLAN.c.grace_policy,
                _PLAN.c.methods,
            ).where(_PLAN.c.id.in_(ids[start : start + _CHUNK]))
        )
        for row in rows.all():
            values = row._asdict()
            values["methods"] = list(values["methods"] or [])
            plan = PlanTerms(**values)
            found[plan.id] = plan
    return found
