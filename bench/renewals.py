"""Renewal throughput: seed N due subscriptions, run workers until none is due, report renewals/s.

    .venv/bin/python bench/renewals.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/billing_bench
    .venv/bin/python bench/renewals.py --processor-latency-ms 200      # HTTP processor on loopback
    .venv/bin/python bench/renewals.py --subscriptions 1000000         # memory stays flat in N

The database named in the URL is dropped and re-created (it must be a scratch database).
Seeding uses COPY and is timed separately; the reported rate covers only the worker run:
from the moment the workers start until no subscription is due any more. Every worker is
a separate process running the real renewal pass (`billing.services.renewals`); peak RSS
is each worker process's own maximum resident set size.

With the in-process sandbox processor, each worker keeps only the most recent sandbox
ledger entries (the sandbox's own bookkeeping, not the engine's, would otherwise grow with
N). With `--processor-latency-ms` the charges go over HTTP (`billing.processors.http_sandbox`)
to `billing sandbox serve` in its own process, which answers after that delay.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import multiprocessing
import os
import pstats
import resource
import secrets
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/billing_bench"


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def recreate_database(url: str) -> None:
    """Drop and create the scratch database, then migrate it to head."""
    from billing.store.migrations import upgrade

    base, _, name = _libpq(url).rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    upgrade(url)


def _ulid_like(prefix: str, n: int) -> str:
    return f"{prefix}_{n:026d}"


def seed(url: str, count: int, due: datetime) -> float:
    """COPY one client, one monthly plan and `count` cardholders with one due subscription each."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    client_id = "cli_bench"
    plan_id = "pln_bench"
    anchor = (due - timedelta(days=31)).date()
    with psycopg.connect(_libpq(url)) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO client (id, name, timezone, environment, signing_required, clock_offset_seconds, created_at)"
            " VALUES (%s, 'bench', 'UTC', 'sandbox', false, 0, %s)",
            (client_id, now),
        )
        cur.execute(
            "INSERT INTO plan (id, client_id, name, amount_minor, currency, type, frequency, methods, installments,"
            " auto_renewal, trial_days, status, created_at, updated_at)"
            " VALUES (%s, %s, 'bench', 1999, 'USD', 'anniversary', 1, '[\"sandbox\"]', '[]', true, 0, 'active', %s, %s)",
            (plan_id, client_id, now, now),
        )
        with cur.copy(
            "COPY payment_method (id, client_id, user_id, processor, token, brand, last4, exp_month, exp_year,"
            " priority, status, created_at) FROM STDIN"
        ) as copy:
            for n in range(count):
                copy.write_row(
                    (
                        _ulid_like("pm", n),
                        client_id,
                        f"user-{n}",
                        "sandbox",
                        f"tok_sbx_approve_{secrets.token_hex(8)}",
                        "visa",
                        "4242",
                        12,
                        2035,
                        0,
                        "active",
                        now,
                    )
                )
        with cur.copy(
            "COPY subscription (id, client_id, user_id, plan_id, currency, default_payment_method_id, status,"
            " renewal_status, timezone, anchor_date, period_index, current_period_start, current_period_end,"
            " cycles_paid, next_attempt_at, grace_attempts, event_seq, created_at, updated_at) FROM STDIN"
        ) as copy:
            period_start = due - timedelta(days=31)
            for n in range(count):
                copy.write_row(
                    (
                        _ulid_like("sub", n),
                        client_id,
                        f"user-{n}",
                        plan_id,
                        "USD",
                        _ulid_like("pm", n),
                        "active",
                        "current",
                        "UTC",
                        anchor,
                        0,
                        period_start,
                        due,
                        1,
                        due,
                        0,
                        0,
                        now,
                        now,
                    )
                )
        conn.commit()
        cur.execute("ANALYZE")
    return time.perf_counter() - started


@dataclass
class WorkerReport:
    renewed: int
    claimed: int
    unknown: int
    seconds: float
    max_rss_mb: float


def _worker_main(args: dict[str, Any], index: int, queue: Any, start_at: float) -> None:
    """One worker process: run renewal passes until nothing is due, then report."""
    if args["loop"] == "uvloop":
        import uvloop

        uvloop.install()
    profile = cProfile.Profile() if args["profile"] and index == 0 else None
    if profile is not None:
        profile.enable()
    report = asyncio.run(_work(args, index, start_at))
    if profile is not None:
        profile.disable()
        buffer = io.StringIO()
        pstats.Stats(profile, stream=buffer).sort_stats(args.get("sort", "tottime")).print_stats(60)
        Path(args["profile"]).write_text(buffer.getvalue())
    queue.put(report)


async def _work(args: dict[str, Any], index: int, start_at: float) -> WorkerReport:
    from billing.domain.clock import SystemClock
    from billing.processors.sandbox import SandboxProcessor
    from billing.services.renewals import RenewalPass
    from billing.services.runtime import build_runtime
    from billing.settings import load_settings

    settings = load_settings(
        database={"url": args["url"], "pool_size": args["pool_size"]},
        worker={
            "batch_size": args["batch_size"],
            "concurrency": args["concurrency"],
            "lease_seconds": 120,
        },
        log_level="WARNING",
    )
    processor: Any
    if args["processor_url"]:
        from billing.processors.http_sandbox import HttpSandboxProcessor

        processor = HttpSandboxProcessor(
            args["processor_url"], timeout_seconds=30.0, max_connections=args["concurrency"] + 16
        )
    else:
        processor = SandboxProcessor(ledger=RecentLedger(50_000))
    runtime = build_runtime(settings, SystemClock(), processors={"sandbox": processor})
    while time.time() < start_at:  # start all workers together
        await asyncio.sleep(0.005)
    started = time.perf_counter()
    renewed = claimed = unknown = 0
    try:
        while True:
            summary = await RenewalPass(runtime, f"bench-{index}", lanes=args["lanes"]).run()
            renewed += summary.renewed
            claimed += summary.claimed
            unknown += summary.unknown
            if summary.claimed == 0:
                break
    finally:
        await runtime.aclose()
    seconds = time.perf_counter() - started
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return WorkerReport(renewed, claimed, unknown, seconds, max_rss_mb)


class RecentLedger:
    """A sandbox ledger that remembers only the newest `keep` entries (bench memory stays flat)."""

    def __init__(self, keep: int) -> None:
        from billing.processors.sandbox_ledger import InMemorySandboxLedger

        self._inner = InMemorySandboxLedger()
        self._keep = keep

    async def record(self, entry: Any) -> Any:
        stored = await self._inner.record(entry)
        entries = self._inner._entries
        while len(entries) > self._keep:
            entries.pop(next(iter(entries)))
        return stored

    async def get(self, key: str) -> Any:
        return await self._inner.get(key)

    async def find_by_reference(self, reference: str) -> Any:
        return await self._inner.find_by_reference(reference)

    async def mark_voided(self, key: str) -> None:
        await self._inner.mark_voided(key)


def _still_due(url: str) -> tuple[int, int]:
    with psycopg.connect(_libpq(url)) as conn:
        due = conn.execute(
            "SELECT count(*) FROM subscription WHERE status = 'active' AND next_attempt_at <= now()"
        ).fetchone()
        leased = conn.execute("SELECT count(*) FROM subscription WHERE lease_owner IS NOT NULL").fetchone()
    assert due is not None
    assert leased is not None
    return int(due[0]), int(leased[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("BILLING_BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--subscriptions", "-n", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=256, help="processor calls in flight per worker")
    parser.add_argument("--lanes", type=int, default=None, help="concurrent batches per worker")
    parser.add_argument("--pool-size", type=int, default=8)
    parser.add_argument("--processor-latency-ms", type=int, default=None)
    parser.add_argument("--timeout-rate", type=float, default=0.0)
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="asyncio is what `billing worker` runs",
    )
    parser.add_argument("--profile", default=None, help="write worker 0's cProfile summary to this file")
    options = parser.parse_args()
    os.environ.setdefault("BILLING_CONFIG", str(ROOT / "config" / "billing.toml"))

    url = options.database_url
    print(f"database: {url.rsplit('@', 1)[-1]}  subscriptions: {options.subscriptions:,}")
    recreate_database(url)
    due = datetime.now(UTC) - timedelta(seconds=5)
    seeded = seed(url, options.subscriptions, due)
    print(f"seeded in {seeded:.1f}s")

    server = None
    processor_url = None
    if options.processor_latency_ms is not None:
        from billing.processors.sandbox_server import start_service

        server, processor_url = start_service(
            latency_ms=options.processor_latency_ms, timeout_rate=options.timeout_rate
        )
        print(f"processor: HTTP sandbox at {processor_url}, {options.processor_latency_ms} ms per call")
    else:
        print("processor: in-process sandbox")
    args = {
        "url": url,
        "batch_size": options.batch_size,
        "concurrency": options.concurrency,
        "lanes": options.lanes,
        "pool_size": options.pool_size,
        "processor_url": processor_url,
        "loop": options.loop,
        "profile": options.profile,
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
    if server is not None:
        from billing.processors.sandbox_server import stop_service

        stop_service(server)
    wall = max(r.seconds for r in reports)
    renewed = sum(r.renewed for r in reports)
    due_left, leased = _still_due(url)
    print(
        f"workers: {options.workers} x (batch {options.batch_size}, concurrency {options.concurrency})"
        f"  loop: {options.loop}"
    )
    print(f"renewed: {renewed:,} in {wall:.1f}s  ->  {renewed / wall:,.0f} renewals/s")
    print(f"unknown outcomes left for reconciliation: {sum(r.unknown for r in reports)}")
    print("peak RSS per worker: " + ", ".join(f"{r.max_rss_mb:.0f} MB" for r in reports))
    print(f"still due: {due_left}, still leased: {leased}")


if __name__ == "__main__":
    main()
