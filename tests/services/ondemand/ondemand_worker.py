"""A worker process for the kill test: runs the on-demand pass forever until it is killed.

    python tests/services/ondemand/ondemand_worker.py DB_URL LEDGER_PATH START_ISO DELAY_SECONDS

It charges through the sandbox with the shared file ledger (slowed by DELAY_SECONDS per
charge) on a fixed clock at START_ISO, so its leases are in the test's time.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path

from ondemand_ledger import FileLedger

from billing.processors.sandbox import SandboxProcessor
from billing.services.ondemand import OnDemandPass
from billing.services.runtime import build_runtime
from billing.settings import load_settings
from tests.clock import FixedClock


async def main(url: str, ledger_path: str, start: str, delay: float) -> None:
    settings = load_settings(
        database={"url": url, "pool_size": 2},
        worker={"batch_size": 20, "concurrency": 2, "lease_seconds": 30},
        log_level="WARNING",
    )
    clock = FixedClock(datetime.fromisoformat(start))
    sandbox = SandboxProcessor(ledger=FileLedger(Path(ledger_path), delay=delay), clock=clock)
    runtime = build_runtime(settings, clock, processors={"sandbox": sandbox})
    print("ready", flush=True)
    while True:
        if not (await OnDemandPass(runtime, "victim", lanes=1).run()).claimed:
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
