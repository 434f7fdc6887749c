"""An API process SIGKILLed while its refund is at the processor: the money goes back exactly once.

The refund's pending row (and the amount it holds on the charge) is committed before the
processor is called. The process is killed while the sandbox holds the call, either before the
refund reached the sandbox's ledger or after it was recorded there (the answer is lost). The
worker's reconciliation pass then looks the refund's key up and, only when the sandbox never saw
it, sends the very same refund again: the shared, file-backed ledger ends with one refund.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from billing.processors.sandbox import SandboxProcessor
from billing.services import refunds
from billing.store.models import Refund
from tests.api.conftest import create_plan, data_of, enrol
from tests.services.ondemand.ondemand_ledger import FileLedger

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture
def ledger(tmp_path: Path) -> FileLedger:
    return FileLedger(tmp_path / "ledger.db")


@pytest.fixture
async def app(settings: Any, clock: Any, ledger: FileLedger) -> Any:
    """The test's app refunds through the same file ledger as the process that gets killed."""
    from api.app import create_app

    return create_app(settings, clock=clock, processors={"sandbox": SandboxProcessor(ledger, clock=clock)})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def victim(settings: Any, clock: Any, db_url: str, ledger: FileLedger) -> AsyncIterator[Any]:
    """`await victim(mode)`: start the API process; returns (process, base URL)."""
    started: list[asyncio.subprocess.Process] = []

    async def start(mode: str) -> tuple[asyncio.subprocess.Process, str]:
        port = _free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "refund_api_process.py"),
            db_url,
            str(ledger.path),
            clock.now().isoformat(),
            settings.jwt_secret(),
            str(port),
            mode,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
        )
        started.append(process)
        assert process.stdout is not None
        assert (await asyncio.wait_for(process.stdout.readline(), timeout=60)).strip() == b"ready"
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(300):
                try:
                    if (await http.get("/health")).status_code < 500:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        return process, base

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def open_refunds(runtime: Any) -> list[Refund]:
    async with runtime.sessions() as session:
        return list((await session.exec(select(Refund))).all())


@pytest.mark.parametrize(
    "mode", ["before", "after"], ids=["killed-before-the-sandbox", "killed-after-the-sandbox"]
)
async def test_an_api_killed_during_the_refund_call_refunds_exactly_once(
    merchant: Any, runtime: Any, clock: Any, ledger: FileLedger, victim: Any, mode: str
) -> None:
    plan = await create_plan(merchant, amount="29.90")
    charge_id = (await enrol(merchant, plan["id"]))["charge"]["id"]
    process, base = await victim(mode)

    path = f"/v1/charges/{charge_id}/refund"
    body = json.dumps({"amount": "12.00"}).encode()
    headers = {
        "Authorization": f"Bearer {merchant.access_token}",
        "Content-Type": "application/json",
        "Idempotency-Key": "refund-dup-1",
        **merchant.signed_headers(body, method="POST", target=path, idempotency_key="refund-dup-1"),
    }
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        request = asyncio.create_task(http.post(path, content=body, headers=headers))
        for _ in range(600):
            if [r.state for r in await open_refunds(runtime)] == ["pending"]:
                break
            await asyncio.sleep(0.05)
        assert [r.state for r in await open_refunds(runtime)] == ["pending"]
        if mode == "after":
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
            assert line.strip() == b"recorded refund"
        process.send_signal(signal.SIGKILL)
        await process.wait()
        with pytest.raises(httpx.TransportError):
            await request

    refund_keys = [r.idempotency_key for r in await open_refunds(runtime)]
    recorded = {k: v for k, v in ledger.new_charges_per_key().items() if k in refund_keys}
    assert recorded == ({} if mode == "before" else {refund_keys[0]: 1})

    clock.advance(timedelta(minutes=2))
    assert await refunds.run_refund_reconciliation(runtime, "survivor") == {
        "succeeded": 1,
        "failed": 0,
        "unresolved": 0,
    }

    assert {k: v for k, v in ledger.new_charges_per_key().items() if k in refund_keys} == {refund_keys[0]: 1}
    detail = data_of(await merchant.get(f"/v1/charges/{charge_id}"))
    assert [(r["state"], r["amount"]) for r in detail["refunds"]] == [("succeeded", 12.0)]
    assert (detail["refundedAmount"], detail["refundableAmount"]) == (12.0, 17.9)
