"""A worker process SIGKILLed in the middle of a batch; a restarted worker finishes it.

Afterwards every item is charged exactly once: one charge row per item under its key, the
(shared, file-backed) sandbox ledger created exactly one charge per key, and the batch
completed once with the right totals.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ondemand_ledger import FileLedger
from sqlmodel import col, func, select

from billing.processors.sandbox import SandboxProcessor
from billing.services.ondemand import OnDemandPass
from billing.store.models import BatchItem, Charge, Event

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
ITEMS = 200


async def item_states(runtime: Any, batch_id: str) -> dict[str, int]:
    async with runtime.sessions() as session:
        rows = await session.exec(
            select(BatchItem.state, func.count())
            .where(BatchItem.batch_id == batch_id)
            .group_by(col(BatchItem.state))
        )
        return {state: int(count) for state, count in rows.all()}


async def test_a_killed_worker_leaves_every_item_charged_exactly_once(
    merchant: Any, subscriptions: Any, runtime: Any, clock: Any, db_url: str, tmp_path: Path, post_batch: Any
) -> None:
    subs = await subscriptions.make(merchant.id, count=ITEMS)
    response = await post_batch(
        merchant,
        {"client": merchant.id, "data": [{"subscriptionId": s.id, "amount": Decimal("3.00")} for s in subs]},
    )
    batch_id = response.json()["data"]["batchId"]
    ledger_path = tmp_path / "ledger.db"
    ledger = FileLedger(ledger_path)

    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}"}
    victim = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "ondemand_worker.py"),
        db_url,
        str(ledger_path),
        clock.now().isoformat(),
        "0.02",
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert victim.stdout is not None
        assert (await asyncio.wait_for(victim.stdout.readline(), timeout=60)).strip() == b"ready"
        for _ in range(1200):
            states = await item_states(runtime, batch_id)
            # Kill while a chunk is in flight, not in the gap between two chunks.
            if states.get("succeeded", 0) >= ITEMS // 4 and states.get("pending", 0) > 0:
                break
            await asyncio.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
    finally:
        if victim.returncode is None:
            victim.kill()
            await victim.wait()

    at_kill = await item_states(runtime, batch_id)
    assert at_kill.get("succeeded", 0) < ITEMS, "the worker finished before it could be killed"
    assert at_kill.get("pending", 0) > 0, "nothing was in flight when the worker died"

    # A new worker, same processor ledger; the dead worker's leases run out first.
    runtime.processors["sandbox"] = SandboxProcessor(ledger=ledger, clock=clock)
    clock.advance(timedelta(seconds=runtime.settings.worker.lease_seconds + 1))
    while (await OnDemandPass(runtime, "successor").run()).claimed:
        pass

    assert await item_states(runtime, batch_id) == {"succeeded": ITEMS}
    keys = {f"{batch_id}:{i}" for i in range(ITEMS)}
    async with runtime.sessions() as session:
        charges = (await session.exec(select(Charge).where(Charge.batch_id == batch_id))).all()
        completed = (await session.exec(select(Event).where(Event.type == "batch.completed"))).all()
        charge_events = (await session.exec(select(Event).where(Event.type == "charge.succeeded"))).all()
        leased = (
            await session.exec(
                select(func.count()).where(
                    BatchItem.batch_id == batch_id, col(BatchItem.lease_owner).is_not(None)
                )
            )
        ).one()
    assert sorted(c.idempotency_key for c in charges) == sorted(keys)
    assert {c.state for c in charges} == {"succeeded"}
    assert ledger.charged_keys() == dict.fromkeys(keys, "succeeded")
    assert ledger.new_charges_per_key() == dict.fromkeys(keys, 1)
    assert [e.payload["batchId"] for e in completed] == [batch_id]
    assert completed[0].payload["totals"]["succeeded"] == ITEMS
    assert sorted(e.payload["batchIndex"] for e in charge_events) == list(range(ITEMS))
    assert leased == 0
