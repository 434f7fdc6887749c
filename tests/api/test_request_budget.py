"""Database work per request: connection checkouts and SQL statements stay within a fixed budget.

Each merchant request checks out one connection, shared by authentication, signature replay
protection, the Idempotency-Key claim and the handler (api/request_session.py). These numbers are
what that design reached; a change that adds a checkout or a statement to these routes fails here
and has to raise the budget on purpose. Nothing here is timed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event

from tests.api.conftest import create_plan, create_transaction, data_of, enrol, verify_card

pytestmark = pytest.mark.anyio


@dataclass
class Usage:
    checkouts: int = 0
    statements: list[str] = field(default_factory=list)
    # PostgreSQL: statements sent inside a transaction (BEGIN ... COMMIT/ROLLBACK round trips)
    in_transaction: int = 0


@contextmanager
def counting(runtime: Any) -> Iterator[Usage]:
    """Count pool checkouts and executed statements on the app's engine while the block runs."""
    usage = Usage()
    engine = runtime.engine.sync_engine

    def on_checkout(*_: Any) -> None:
        usage.checkouts += 1

    def on_statement(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        usage.statements.append(" ".join(statement.split()[:4]))
        if engine.dialect.name == "postgresql" and not conn.connection.dbapi_connection.autocommit:
            usage.in_transaction += 1

    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        yield usage
    finally:
        event.remove(engine, "checkout", on_checkout)
        event.remove(engine, "before_cursor_execute", on_statement)


# (checkouts, statements) per request. The statements are the same on both databases.
# Before the shared connection (PostgreSQL also pinged each checkout): detail 2 checkouts and 5
# statements, /transactions 2 and 7, verify-card 5 and 33.
BUDGET = {
    # client and token family (one statement), subscription with its plan (one join), the cards
    # behind it (one join); the plan was a statement of its own before
    "GET subscription detail": (1, 3),
    # + signing keys, the used signature, the payment link's reference checked unused (references
    # are short enough to type, so a draw may repeat; migration 0011), and the insert in a savepoint
    "POST /transactions": (1, 7),
    # the two requests of an enrolment; verify-card runs the enrolment's own transactions (the
    # pending charge is committed before the processor call): 1 checkout and 33 statements, one
    # of them attaching the verified card to the new subscription (fallback cards, migration 0010)
    "POST /transactions + verify-card": (2, 40),
}


def within_budget(route: str, usage: Usage) -> None:
    checkouts, statements = BUDGET[route]
    assert usage.checkouts <= checkouts, (route, usage.checkouts)
    assert len(usage.statements) <= statements, (route, len(usage.statements), usage.statements)


async def test_a_subscription_detail_read_uses_one_connection(merchant: Any, runtime: Any) -> None:
    plan = await create_plan(merchant)
    enrolled = await enrol(merchant, plan["id"])
    sub_id = enrolled["subscription"]["id"]
    with counting(runtime) as usage:
        detail = data_of(await merchant.get(f"/v1/subscriptions/detail/{sub_id}"))
    assert detail["id"] == sub_id
    within_budget("GET subscription detail", usage)
    # A read runs its statements outside a transaction on PostgreSQL: no BEGIN and ROLLBACK round
    # trips around them (SQLite's driver opens none for reads either).
    assert usage.in_transaction == 0, usage.statements


async def test_writes_still_run_in_transactions(merchant: Any, runtime: Any) -> None:
    """The reads-only connection mode of GET requests does not leak into the next request."""
    plan = await create_plan(merchant)
    enrolled = await enrol(merchant, plan["id"])
    # More reads than the pool holds connections (5): whichever connection the write gets was
    # used by a read before it.
    for _ in range(2 * runtime.settings.database.pool_size):
        await merchant.get(f"/v1/subscriptions/detail/{enrolled['subscription']['id']}")
    with counting(runtime) as usage:
        await create_transaction(merchant, user="budget-after-read")
    if runtime.engine.dialect.name == "postgresql":
        assert usage.in_transaction == len(usage.statements) > 0


async def test_an_enrolment_uses_one_connection_per_request(merchant: Any, runtime: Any) -> None:
    plan = await create_plan(merchant)
    with counting(runtime) as trx_usage:
        await create_transaction(merchant, user="budget-1")
    within_budget("POST /transactions", trx_usage)
    with counting(runtime) as enrolment_usage:  # POST /transactions, then POST verify-card
        enrolled = data_of(await verify_card(merchant, plan_id=plan["id"], user="budget-2"))
    assert enrolled["subscription"]["status"] == "active"
    within_budget("POST /transactions + verify-card", enrolment_usage)


async def test_a_signed_write_with_an_idempotency_key_still_uses_one_connection(
    merchant: Any, runtime: Any
) -> None:
    """The claim, the signature's consumption, the handler and the stored answer share it."""
    with counting(runtime) as usage:
        response = await merchant.post(
            "/transactions",
            json={"amount": 1, "currency": "USD", "userId": "budget-2"},
            headers={"Idempotency-Key": "budget-key-1"},
        )
    data_of(response, 201)
    assert usage.checkouts == 1, usage.checkouts
    with counting(runtime) as replay:
        again = await merchant.post(
            "/transactions",
            json={"amount": 1, "currency": "USD", "userId": "budget-2"},
            headers={"Idempotency-Key": "budget-key-1"},
        )
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.content == response.content
    assert replay.checkouts == 1, replay.checkouts


async def test_concurrent_requests_wait_for_a_pooled_connection_instead_of_opening_more(
    app: Any, merchant: Any, runtime: Any
) -> None:
    """Past the pool's size, requests queue for a connection: none is opened and closed per request."""
    import anyio
    import httpx

    plan = await create_plan(merchant)
    sub_id = (await enrol(merchant, plan["id"]))["subscription"]["id"]
    pool_size = runtime.settings.database.pool_size
    engine = runtime.engine.sync_engine
    in_use = [0, 0]  # now, most at once

    def on_checkout(*_: Any) -> None:
        in_use[0] += 1
        in_use[1] = max(in_use[1], in_use[0])

    def on_checkin(*_: Any) -> None:
        in_use[0] -= 1

    statuses: list[int] = []

    # httpx's ASGI transport runs requests concurrently on this loop (the test client serialises them).
    concurrent = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {merchant.access_token}"},
    )

    async def read() -> None:
        statuses.append((await concurrent.get(f"/v1/subscriptions/detail/{sub_id}")).status_code)

    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "checkin", on_checkin)
    try:
        async with anyio.create_task_group() as group:
            for _ in range(4 * pool_size):
                group.start_soon(read)
    finally:
        event.remove(engine, "checkout", on_checkout)
        event.remove(engine, "checkin", on_checkin)
        await concurrent.aclose()
    assert statuses == [200] * (4 * pool_size)
    # Every request ran while others waited (not one after the other), yet never more than the pool.
    assert 1 < in_use[1] <= pool_size, in_use
