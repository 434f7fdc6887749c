"""A `billing worker`-like process for the multi-process tests.

It runs the real renewal pass in a loop against the HTTP sandbox processor until nothing is
due and no renewal charge is left `pending`/`unknown`, printing a JSON line per finished batch
(`{"batch": n}`: the tests wait for one to know the worker is mid-pass before they SIGKILL it)
and one per pass (its summary).

    python -m tests.services.renewals.worker_process --database-url URL --processor-url URL --identity w1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from datetime import timedelta

from sqlalchemy import func, select

from billing.domain.clock import SystemClock
from billing.processors.http_sandbox import HttpSandboxProcessor
from billing.services.renewals import RenewalPass
from billing.services.runtime import build_runtime
from billing.settings import load_settings
from billing.store.claims import count_due
from billing.store.models import Charge


async def run(args: argparse.Namespace) -> None:
    settings = load_settings(
        database={"url": args.database_url, "pool_size": 4},
        worker={
            "batch_size": args.batch_size,
            "concurrency": args.concurrency,
            "lease_seconds": args.lease_seconds,
        },
        log_level="WARNING",
    )
    processor = HttpSandboxProcessor(
        args.processor_url, timeout_seconds=args.timeout_seconds, max_connections=args.concurrency
    )
    runtime = build_runtime(settings, SystemClock(), processors={"sandbox": processor})
    charge = Charge.metadata.tables["charge"]
    try:
        while True:
            summary = await RenewalPass(
                runtime,
                args.identity,
                reconcile_after=timedelta(seconds=args.reconcile_after),
                progress=lambda n: print(json.dumps({"batch": n}), flush=True),
            ).run()
            print(json.dumps({"pass": os.getpid(), **summary.as_dict()}), flush=True)
            if summary.claimed:
                continue
            async with runtime.sessions() as session:
                due = await count_due(session, now=runtime.clock.now(), offsets={})
                conn = await session.connection()
                open_charges = (
                    await conn.execute(
                        select(func.count()).where(
                            charge.c.kind == "renewal", charge.c.state.in_(["pending", "unknown"])
                        )
                    )
                ).scalar_one()
            if due == 0 and open_charges == 0:
                return
            await asyncio.sleep(0.2)
    finally:
        await runtime.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--processor-url", required=True)
    parser.add_argument("--identity", required=True)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--lease-seconds", type=int, default=5)
    parser.add_argument("--reconcile-after", type=float, default=1.0)
    parser.add_argument("--timeout-seconds", type=float, default=5.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
