"""Plans of one client."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select

from billing.store.engine import Session
from billing.store.models import Plan
from billing.store.owned import owned_row


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
