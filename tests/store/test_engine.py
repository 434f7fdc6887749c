"""Connection slots: a holder past the pool's size waits, then fails as a pool timeout does."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import TimeoutError as SATimeoutError

from billing.store.engine import ConnectionSlots, create_engine, database_unavailable

pytestmark = pytest.mark.anyio


async def test_a_slot_freed_in_time_is_taken_and_none_past_the_pool_timeout(tmp_path: object) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/slots.db", pool_size=2)
    try:
        slots = ConnectionSlots(engine, 1)
        assert slots.timeout == engine.pool.timeout()  # type: ignore[attr-defined]
        slots.timeout = 0.2
        await slots.acquire()
        waiting = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the second holder waits for the first
        slots.release()
        await waiting  # and gets the slot once it is freed
        with pytest.raises(SATimeoutError) as refused:
            await slots.acquire()  # nobody frees it: refused after the timeout
        assert database_unavailable(refused.value)  # the API answers 503 7019
    finally:
        await engine.dispose()
