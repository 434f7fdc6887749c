"""On-demand batches: how long intake takes to accept 5,000 items, and how fast workers drain them.

    .venv/bin/python bench/ondemand.py                       # local PostgreSQL, scratch database
    .venv/bin/python bench/ondemand.py --batches 10 --workers 2
    .venv/bin/python bench/ondemand.py --database-url sqlite+aiosqlite:////tmp/ondemand-bench.db

The database named in the URL is dropped and re-created (it must be a scratch database).

1. **Intake**: a real `billing serve --no-worker` process; the bench logs in as a seeded
   client and POSTs `--batches` signed batches of `--items` charges (over `--subscriptions`
   distinct active subscriptions) to `/v1/subscriptions/charges`, timing each request from
   the first byte sent to the 202 received. Target: under 1 s for 5,000 items.
2. **Drain**: `--workers` processes run the real on-demand pass
   (`billing.services.ondemand.drain`) with the in-process sandbox processor until no item is
   left; the rate is charged items over the wall time from their common start to the last
   worker's end.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/billing_bench_ondemand"


def recreate_database(url: str) -> None:
    """A fresh, migrated scratch database (PostgreSQL: dropped and created; SQLite: file removed)."""
    from billing.store.migrations import upgrade

    if url.startswith("sqlite"):
        path = Path(url.split(":///", 1)[1])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        upgrade("sqlite:///" + str(path))
        return
    import psycopg
    from psycopg import sql

    base, _, name = url.replace("postgresql+psycopg://", "postgresql://", 1).rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    upgrade(url)


async def seed(url: str, subscriptions: int) -> tuple[str, str, list[str]]:
    """One sandbox client with a key pair, a plan, and `subscriptions` active subscriptions on approving cards."""
    import sqlalchemy as sa

    from billing.domain.clock import SystemClock
    from billing.services.auth import create_client
    from billing.settings import AuthSettings
    from billing.store.engine import create_engine, session_factory
    from billing.store.models import PaymentMethod, Plan, Subscription

    engine = create_engine(url, pool_size=2)
    now = datetime.now(UTC)
    try:
        async with session_factory(engine)() as session, session.begin():
            client, key = await create_client(
                session,
                SystemClock(),
                name="bench",
                timezone="UTC",
                environment="sandbox",
                settings=AuthSettings(),
            )
            assert key.private_key_pem is not None
            plan = Plan(
                id="pln_bench",
                client_id=client.id,
                name="bench",
                amount_minor=1000,
                currency="USD",
                type="interval",
                frequency=30,
                methods=["sandbox"],
                created_at=now,
                updated_at=now,
            )
            session.add(plan)
            await session.flush()
            methods = [
                {
                    "id": f"pm_bench{n:022d}",
                    "client_id": client.id,
                    "user_id": f"user-{n}",
                    "processor": "sandbox",
                    "token": f"tok_sbx_approve_{secrets.token_hex(8)}",
                    "brand": "visa",
                    "last4": "4242",
                    "exp_month": 12,
                    "exp_year": 2035,
                    "priority": 0,
                    "status": "active",
                    "created_at": now,
                }
                for n in range(subscriptions)
            ]
            subs = [
                {
                    "id": f"sub_bench{n:021d}",
                    "client_id": client.id,
                    "user_id": f"user-{n}",
                    "plan_id": plan.id,
                    "currency": "USD",
                    "default_payment_method_id": f"pm_bench{n:022d}",
                    "status": "active",
                    "renewal_status": "current",
                    "timezone": "UTC",
                    "anchor_date": now.date(),
                    "period_index": 0,
                    "current_period_start": now,
                    "current_period_end": now.replace(year=now.year + 1),
                    "cycles_paid": 1,
                    "next_attempt_at": now.replace(year=now.year + 1),
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(subscriptions)
            ]
            conn = await session.connection()
            for start in range(0, subscriptions, 5000):
                await conn.execute(sa.insert(PaymentMethod.__table__), methods[start : start + 5000])  # type: ignore[attr-defined]
                await conn.execute(sa.insert(Subscription.__table__), subs[start : start + 5000])  # type: ignore[attr-defined]
        return client.id, key.private_key_pem, [s["id"] for s in subs]
    finally:
        await engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(url: str, data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    """`billing serve --no-worker` on a free loopback port, once /health answers."""
    import httpx

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env.update(
        BILLING_CONFIG=str(ROOT / "config" / "billing.toml"),
        BILLING_DATABASE__URL=url,
        BILLING_DATA_DIR=data_dir,
        BILLING_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "billing.cli", "serve", "--no-worker", "--port", str(port)],
        cwd=data_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("billing serve did not start")


def time_intake(
    base: str, client_id: str, private_key_pem: str, subs: list[str], batches: int, items: int
) -> list[float]:
    """POST `batches` signed batches of `items` charges; seconds per request (all must be 202)."""
    import httpx
    import msgspec

    from billing.domain.signatures import canonical_request, sign

    encoder = msgspec.json.Encoder(decimal_format="number")
    timings: list[float] = []
    with httpx.Client(base_url=base, timeout=60) as http:
        ts = str(int(time.time()))
        login = http.post(
            "/v1/auth/login",
            json={
                "clientId": client_id,
                "timestamp": ts,
                "signature": sign(private_key_pem, f"{client_id}.{ts}".encode()),
            },
        )
        login.raise_for_status()
        token = login.json()["data"]["accessToken"]
        for b in range(batches):
            data = [
                {
                    "subscriptionId": subs[(b * items + i) % len(subs)],
                    "amount": Decimal("1.25"),
                    "metadata": {"batch": b, "n": i},
                }
                for i in range(items)
            ]
            body = encoder.encode({"client": client_id, "data": data})
            ts = str(int(time.time()))
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "X-Timestamp": ts,
                "X-Signature-Version": "2",
                "X-Signature": sign(
                    private_key_pem,
                    canonical_request(
                        "v2",
                        timestamp=ts,
                        method="POST",
                        target="/v1/subscriptions/charges",
                        idempotency_key=None,
                        body=body,
                    ),
                ),
            }
            started = time.perf_counter()
            response = http.post("/v1/subscriptions/charges", content=body, headers=headers)
            timings.append(time.perf_counter() - started)
            if response.status_code != 202 or response.json()["data"]["totals"]["accepted"] != items:
                raise SystemExit(f"intake failed: {response.status_code} {response.text[:300]}")
    return timings


@dataclass
class DrainReport:
    claimed: int
    succeeded: int
    failed: int
    seconds: float


def _worker_main(args: dict[str, Any], index: int, queue: Any, start_at: float) -> None:
    queue.put(asyncio.run(_drain(args, index, start_at)))


async def _drain(args: dict[str, Any], index: int, start_at: float) -> DrainReport:
    from billing.domain.clock import SystemClock
    from billing.processors.sandbox import SandboxProcessor
    from billing.services.ondemand import OnDemandPass
    from billing.services.runtime import build_runtime
    from billing.settings import load_settings

    settings = load_settings(
        database={"url": args["url"], "pool_size": args["pool_size"]},
        worker={"batch_size": args["batch_size"], "concurrency": args["concurrency"], "lease_seconds": 120},
        log_level="WARNING",
    )
    runtime = build_runtime(settings, SystemClock(), processors={"sandbox": SandboxProcessor()})
    while time.time() < start_at:  # start all workers together
        await asyncio.sleep(0.005)
    started = time.perf_counter()
    total = DrainReport(0, 0, 0, 0.0)
    try:
        while True:
            summary = await OnDemandPass(runtime, f"bench-{index}").run()
            total.claimed += summary.claimed
            total.succeeded += summary.succeeded
            total.failed += summary.failed
            if summary.claimed == 0:
                break
    finally:
        await runtime.aclose()
    total.seconds = time.perf_counter() - started
    return total


async def batch_states(url: str) -> dict[str, int]:
    import sqlalchemy as sa

    from billing.store.engine import create_engine
    from billing.store.models import Batch

    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            table = Batch.__table__  # type: ignore[attr-defined]
            rows = await conn.execute(sa.select(table.c.status, sa.func.count()).group_by(table.c.status))
            return {status: int(count) for status, count in rows.all()}
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("BILLING_BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--subscriptions", type=int, default=5000)
    parser.add_argument("--items", type=int, default=5000, help="items per batch (at most 5000)")
    parser.add_argument("--batches", type=int, default=5, help="batches to send (each one timed)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes draining")
    parser.add_argument("--batch-size", type=int, default=500, help="items claimed per chunk")
    parser.add_argument("--concurrency", type=int, default=256, help="processor calls in flight per worker")
    parser.add_argument("--pool-size", type=int, default=8)
    options = parser.parse_args()
    os.environ.setdefault("BILLING_CONFIG", str(ROOT / "config" / "billing.toml"))

    url = options.database_url
    print(f"database: {url.rsplit('@', 1)[-1]}  subscriptions: {options.subscriptions:,}")
    recreate_database(url)
    client_id, private_key_pem, subs = asyncio.run(seed(url, options.subscriptions))

    with tempfile.TemporaryDirectory() as data_dir:
        server, base = start_server(url, data_dir)
        try:
            timings = time_intake(base, client_id, private_key_pem, subs, options.batches, options.items)
        finally:
            server.terminate()
            server.wait()
    print(
        f"intake of {options.items:,} items (HTTP, signed, {options.batches} batches): "
        f"median {statistics.median(timings) * 1000:.0f} ms, "
        f"min {min(timings) * 1000:.0f} ms, max {max(timings) * 1000:.0f} ms"
    )

    args = {
        "url": url,
        "batch_size": options.batch_size,
        "concurrency": options.concurrency,
        "pool_size": options.pool_size,
    }
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 2.0  # after every process has imported everything
    procs = [
        ctx.Process(target=_worker_main, args=(args, i, queue, start_at)) for i in range(options.workers)
    ]
    for proc in procs:
        proc.start()
    reports = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    wall = max(r.seconds for r in reports)
    charged = sum(r.succeeded + r.failed for r in reports)
    print(
        f"drain: {charged:,} items charged by {options.workers} worker(s) "
        f"(chunk {options.batch_size}, concurrency {options.concurrency}) in {wall:.1f}s  ->  "
        f"{charged / wall:,.0f} items/s"
    )
    print(f"batches by status: {asyncio.run(batch_states(url))}")


if __name__ == "__main__":
    main()
