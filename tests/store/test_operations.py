"""The heartbeat upsert and the forgetting of stopped workers, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing.services.runtime import build_runtime
from billing.store import operations
from billing.store.engine import transaction

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


async def test_a_heartbeat_refreshes_its_row_and_keeps_the_last_tick(settings: Any, clock: Any) -> None:
    runtime = build_runtime(settings, clock, processors={})
    common = {"host": "h", "pid": 7, "version": "0.1.0", "started_at": T0}
    try:
        async with transaction(runtime.sessions) as session:
            await operations.beat(
                session, identity="h:7", now=T0, last_pass={"renewals": {"renewed": 2}}, **common
            )
            await operations.beat(session, identity="old:1", now=T0 - timedelta(days=8), **common)
        later = T0 + timedelta(seconds=5)
        async with transaction(runtime.sessions) as session:
            # The start of the next tick: seen again, the last tick's counts stay until it ends.
            await operations.beat(session, identity="h:7", now=later, counters={"counters": {}}, **common)
            assert await operations.forget_workers(session, seen_before=T0 - timedelta(days=7)) == 1
        async with transaction(runtime.sessions) as session:
            [row] = await operations.workers_seen_since(session, T0 - timedelta(days=30))
            assert await operations.workers_seen_since(session, later + timedelta(seconds=1)) == []
        assert row.id == "h:7"
        assert row.seen_at == later
        assert row.last_pass == {"renewals": {"renewed": 2}}
        assert row.last_pass_at == T0
        assert row.counters == {"counters": {}}
    finally:
        await runtime.aclose()
