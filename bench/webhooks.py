"""Webhook delivery throughput: queue N events, deliver them from worker processes to a loopback receiver.

    .venv/bin/python bench/webhooks.py                                   # 100,000 events, 2 workers, 50 ms receiver
    .venv/bin/python bench/webhooks.py --events 20000 --endpoints 50 --receiver-latency-ms 50

The database named in the URL is dropped and re-created (a scratch database). Events are seeded
with COPY (timed separately), spread over `--endpoints` clients with one endpoint each, so the
per-endpoint in-flight cap applies as it would across merchants. The receiver is a separate
uvicorn process that answers 204 after the latency. Each worker process runs the real
`Deliverer` (dispatch, lease, signed send, outcome) as `billing worker` does, one round per
`webhooks.interval_seconds` with the deliverer refilling its free slots between rounds, until
nothing is pending; the figures are deliveries per second from the workers' start to the last
delivery (dispatch included) and each worker's RSS sampled during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.renewals import DEFAULT_URL, recreate_database  # noqa: E402

BENCH_URL = DEFAULT_URL.rsplit("/", 1)[0] + "/billing_bench_webhooks"
RECEIVER = """
import asyncio, sys
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await asyncio.sleep(float(sys.argv[2]) / 1000)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
import uvicorn
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False, backlog=4096)
"""


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def seed(url: str, *, events: int, endpoints: int, receiver: str) -> None:
    """Clients with one endpoint each and `events` undispatched events spread over them."""
    now = datetime.now(UTC)
    with psycopg.connect(_libpq(url), autocommit=False) as conn:
        with conn.cursor() as cur:
            for n in range(endpoints):
                cur.execute(
                    "INSERT INTO client (id, name, environment, timezone, signing_required, signature_scheme,"
                    " clock_offset_seconds, created_at) VALUES (%s, %s, 'sandbox', 'UTC', false, 'v2', 0, %s)",
                    (f"cli_bench{n:05d}", f"Bench {n}", now),
                )
                cur.execute(
                    "INSERT INTO webhook_endpoint (id, client_id, url, secret, event_types, status,"
                    " consecutive_failures, created_at) VALUES (%s, %s, %s, %s, '[]', 'enabled', 0, %s)",
                    (
                        f"whe_bench{n:05d}",
                        f"cli_bench{n:05d}",
                        f"{receiver}/hooks/{n}",
                        "whsec_" + "QkVOQ0g=" * 4,
                        now,
                    ),
                )
            buffer = io.StringIO()
            payload = json.dumps(
                {"chargeId": "chg_bench", "amount": "9.90", "amountMinor": 990, "currency": "USD"}
            )
            for i in range(events):
                buffer.write(
                    f"evt_bench{i:09d}\tcli_bench{i % endpoints:05d}\tcharge.succeeded\t{payload}\t{now.isoformat()}\n"
                )
            buffer.seek(0)
            with cur.copy("COPY event (id, client_id, type, payload, created_at) FROM STDIN") as copy:
                while chunk := buffer.read(1 << 20):
                    copy.write(chunk)
        conn.commit()


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def worker(url: str, index: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from billing.domain.clock import SystemClock
    from billing.services.runtime import build_runtime
    from billing.services.webhooks.delivery import Deliverer
    from billing.settings import load_settings

    async def run() -> dict[str, float]:
        runtime = build_runtime(
            load_settings(database={"url": url, "pool_size": 10}, log_level="WARNING"),
            SystemClock(),
            processors={},
        )
        deliverer = Deliverer(runtime, f"bench-{index}")
        samples: list[float] = []
        idle = 0
        started = time.perf_counter()
        try:
            # As `billing worker` drives it: one round per `webhooks.interval_seconds`; between
            # rounds the deliverer refills its free slots itself while a backlog lasts.
            while idle < 3:
                started_now = await deliverer.round()
                samples.append(_rss_mb())
                idle = idle + 1 if started_now == 0 and deliverer.in_flight == 0 else 0
                await asyncio.sleep(runtime.settings.webhooks.interval_seconds)
            await deliverer.aclose()
        finally:
            await runtime.aclose()
        return {
            "delivered": deliverer.stats.delivered,
            "failed": deliverer.stats.failed,
            "seconds": time.perf_counter() - started,
            "rss_first_mb": samples[min(10, len(samples) - 1)],
            "rss_max_mb": max(samples),
            "rss_last_mb": samples[-1],
        }

    results.put(asyncio.run(run()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=BENCH_URL)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--receiver-latency-ms", type=float, default=50.0)
    parser.add_argument("--port", type=int, default=18765)
    args = parser.parse_args()

    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(args.port), str(args.receiver_latency_ms)], cwd=ROOT
    )
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(100):
            try:
                httpx.post(base + "/ping", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        recreate_database(args.database_url)
        t0 = time.perf_counter()
        seed(args.database_url, events=args.events, endpoints=args.endpoints, receiver=base)
        print(
            f"seeded {args.events:,} events for {args.endpoints} endpoints in {time.perf_counter() - t0:.1f} s"
        )

        results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
        started = time.perf_counter()
        started_at = datetime.now(UTC)
        procs = [
            multiprocessing.Process(target=worker, args=(args.database_url, n, results))
            for n in range(args.workers)
        ]
        for proc in procs:
            proc.start()
        reports = [results.get() for _ in procs]
        for proc in procs:
            proc.join()
        elapsed = time.perf_counter() - started
    finally:
        receiver.terminate()
        receiver.wait()

    with psycopg.connect(_libpq(args.database_url)) as conn:
        delivered = conn.execute(
            "SELECT count(*) FROM webhook_delivery WHERE status = 'delivered'"
        ).fetchone()[0]  # type: ignore[index]
        left = conn.execute("SELECT count(*) FROM webhook_delivery WHERE status <> 'delivered'").fetchone()[0]  # type: ignore[index]
        last = conn.execute("SELECT max(delivered_at) FROM webhook_delivery").fetchone()[0]  # type: ignore[index]
    # From the workers' start to the last delivery (process start-up included; the idle rounds
    # the workers wait before exiting are not).
    busy = (last - started_at).total_seconds() if last is not None else elapsed
    rate = delivered / busy
    print(
        f"{delivered:,} delivered ({left} not) by {args.workers} workers in {busy:.1f} s: "
        f"{rate:,.0f} deliveries/s (receiver latency {args.receiver_latency_ms:g} ms; "
        f"processes ended after {elapsed:.1f} s)"
    )
    for n, report in enumerate(reports):
        print(
            f"  worker {n}: {report['delivered']:,.0f} delivered, RSS {report['rss_first_mb']:.0f} MB early, "
            f"{report['rss_max_mb']:.0f} MB max, {report['rss_last_mb']:.0f} MB at the end"
        )
    if os.environ.get("BENCH_FAIL_UNDER"):
        sys.exit(0 if rate >= float(os.environ["BENCH_FAIL_UNDER"]) else 1)


if __name__ == "__main__":
    main()
