"""Proof under concurrency and crashes: several worker processes, one shared processor ledger.

Each worker is a real process running the renewal pass (`tests/services/renewals/worker_process.py`)
against the HTTP sandbox server, whose ledger records every charge request by idempotency
key. After the run, every due subscription must have exactly one succeeded renewal for the
period, no lease may be left, and the processor must have moved money at most once per key
and once per (subscription, period).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import select

from billing.domain.clock import SystemClock
from billing.services.runtime import Runtime, build_runtime
from billing.settings import load_settings
from billing.store.engine import transaction
from billing.store.models import Charge, Subscription
from tests.services.renewals import factory
from tests.services.renewals.conftest import ROOT

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def _runtime(url: str) -> Runtime:
    return build_runtime(load_settings(database={"url": url, "pool_size": 4}), SystemClock(), processors={})


async def _seed(url: str, count: int) -> list[str]:
    """`count` subscriptions whose first renewal fell due about ten days ago (real time)."""
    runtime = _runtime(url)
    enrolled = datetime.now(UTC) - timedelta(days=40)
    try:
        async with transaction(runtime.sessions) as session:
            client = await factory.make_client(session, now=enrolled)
            plan = await factory.make_plan(session, client, now=enrolled)
            ids = []
            for start in range(0, count, 500):
                ids += await factory.enrol_many(
                    session, client, plan, count=min(500, count - start), enrolled_at=enrolled
                )
        return ids
    finally:
        await runtime.aclose()


def _worker(url: str, processor_url: str, identity: str, **options: Any) -> subprocess.Popen[str]:
    args = [
        sys.executable,
        "-m",
        "tests.services.renewals.worker_process",
        "--database-url",
        url,
        "--processor-url",
        processor_url,
        "--identity",
        identity,
    ]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> list[dict[str, Any]]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"pass"')]


async def _check_exactly_once(url: str, processor_url: str, sub_ids: list[str]) -> dict[str, Any]:
    runtime = _runtime(url)
    try:
        async with runtime.sessions() as session:
            subs = (await session.exec(select(Subscription))).all()
            charges = (await session.exec(select(Charge).where(Charge.kind == "renewal"))).all()
    finally:
        await runtime.aclose()
    assert {s.id for s in subs} == set(sub_ids)
    # Every due subscription paid exactly period 1, once; no row is left leased.
    assert Counter(s.period_index for s in subs) == {1: len(sub_ids)}
    assert [s.id for s in subs if s.lease_owner is not None or s.lease_until is not None] == []
    succeeded = Counter((c.subscription_id, c.period_start) for c in charges if c.state == "succeeded")
    assert len(succeeded) == len(sub_ids)
    assert set(succeeded.values()) == {1}
    assert Counter(c.state for c in charges)["pending"] == 0
    assert Counter(c.state for c in charges)["unknown"] == 0
    # The processor's side: money moved at most once per key, and once per subscription and period.
    ledger = httpx.get(f"{processor_url}/ledger", timeout=30).json()
    charged = [e for e in ledger["entries"] if e["operation"] == "charge"]
    assert all(e["money_moved"] <= 1 for e in charged)
    moved_per_period = Counter(e["key"].rsplit(":", 1)[0] for e in charged if e["money_moved"])
    assert len(moved_per_period) == len(sub_ids)
    assert set(moved_per_period.values()) == {1}
    keys_by_row = {c.idempotency_key for c in charges}
    assert {e["key"] for e in charged} <= keys_by_row
    return dict(ledger)


def _wait_for_first_batch(proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Block until the worker reported a finished batch (it is mid-pass from then on)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith('{"batch"'):
            return
        if not line and proc.poll() is not None:
            raise AssertionError("worker exited before its first pass")
    raise AssertionError("worker never reported a pass")


async def _leases_held_by(url: str, identity: str) -> int:
    runtime = _runtime(url)
    try:
        async with runtime.sessions() as session:
            rows = await session.exec(select(Subscription.id).where(Subscription.lease_owner == identity))
            return len(rows.all())
    finally:
        await runtime.aclose()


async def test_four_workers_one_killed_mid_pass_charge_everything_exactly_once(
    postgres_url: str, sandbox_server: Callable[..., str]
) -> None:
    sub_ids = await _seed(postgres_url, 2400)
    processor = sandbox_server(latency_ms=15)
    options = {"batch_size": 60, "concurrency": 24, "lease_seconds": 5}
    victim = _worker(postgres_url, processor, "victim", **options)
    others = [_worker(postgres_url, processor, f"w{n}", **options) for n in range(1, 4)]
    # Once the victim finished a batch, its other lane has one in flight: kill it there.
    _wait_for_first_batch(victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    held = await _leases_held_by(postgres_url, "victim")
    assert held > 0, "the victim must die holding leases for this test to mean anything"

    reports = [_finish(proc) for proc in others]

    ledger = await _check_exactly_once(postgres_url, processor, sub_ids)
    assert sum(r["renewed"] for report in reports for r in report) > 0
    assert len([e for e in ledger["entries"] if e["money_moved"]]) == len(sub_ids)


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_processor_that_times_out_on_ten_percent_of_calls(
    db_url: str, backend: str, workers: int, sandbox_server: Callable[..., str]
) -> None:
    """Lost requests and lost answers become `unknown`; look-ups resolve all of them, no double charge."""
    if backend == "sqlite" and workers > 1:
        workers = 1  # SQLite runs one writer at a time: one worker is its real deployment
    url = db_url
    count = 1200 if backend == "postgresql" else 300
    sub_ids = await _seed(url, count)
    processor = sandbox_server(latency_ms=5, timeout_rate=0.1, hang_seconds=3, seed=11)
    options = {"batch_size": 100, "concurrency": 32, "timeout_seconds": 0.5, "reconcile_after": 0.5}
    procs = [_worker(url, processor, f"t{n}", **options) for n in range(workers)]
    reports = [_finish(proc, timeout=150) for proc in procs]

    ledger = await _check_exactly_once(url, processor, sub_ids)
    assert ledger["lost_requests"] > 0
    assert ledger["lost_answers"] > 0
    resent = [e for e in ledger["entries"] if e["requests"] > 1]
    assert resent, "some keys must have been sent again after a lost request"
    assert all(e["money_moved"] == 1 for e in ledger["entries"])
    assert sum(r["renewed"] for report in reports for r in report) == count


async def test_a_single_worker_killed_mid_pass_is_finished_by_the_next_one(
    db_url: str, sandbox_server: Callable[..., str]
) -> None:
    """The single-worker version of the kill test (it runs on SQLite too)."""
    sub_ids = await _seed(db_url, 400)
    processor = sandbox_server(latency_ms=15)
    options = {"batch_size": 40, "concurrency": 16, "lease_seconds": 5}
    victim = _worker(db_url, processor, "victim", **options)
    _wait_for_first_batch(victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    assert await _leases_held_by(db_url, "victim") > 0
    _finish(_worker(db_url, processor, "heir", **options))
    await _check_exactly_once(db_url, processor, sub_ids)
