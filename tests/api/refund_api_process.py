"""An API process for the refund kill test: serves the app until it is SIGKILLed.

    python tests/api/refund_api_process.py DB_URL LEDGER_PATH START_ISO JWT_SECRET PORT MODE

It refunds through the sandbox with the test's shared file ledger, on a fixed clock at
START_ISO. A refund or void hangs at the sandbox, `before` reaching its ledger or `after` it
was recorded, so the test can kill the process while the answer is on its way.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from pathlib import Path

import uvicorn

from api.app import create_app
from billing.processors.sandbox import SandboxProcessor
from billing.processors.sandbox_ledger import LedgerEntry
from billing.settings import load_settings
from tests.clock import FixedClock
from tests.services.ondemand.ondemand_ledger import FileLedger

HANG_SECONDS = 600


class HangingRefunds(FileLedger):
    """The shared ledger, but refunds and voids never come back (before or after being recorded)."""

    def __init__(self, path: Path, mode: str) -> None:
        super().__init__(path)
        self.mode = mode

    async def record(self, entry: LedgerEntry) -> LedgerEntry:
        giving_back = entry.operation in ("refund", "void")
        if giving_back and self.mode == "before":
            await asyncio.sleep(HANG_SECONDS)
        stored = await super().record(entry)
        if giving_back:
            print(f"recorded {entry.operation}", flush=True)
            await asyncio.sleep(HANG_SECONDS)
        return stored


def main(url: str, ledger_path: str, start: str, jwt_secret: str, port: int, mode: str) -> None:
    settings = load_settings(
        database={"url": url, "pool_size": 2},
        auth={"jwt_secret": jwt_secret},
        worker={"enabled": False},
        log_level="WARNING",
    )
    clock = FixedClock(datetime.fromisoformat(start))
    sandbox = SandboxProcessor(HangingRefunds(Path(ledger_path), mode), clock=clock)
    app = create_app(settings, clock=clock, processors={"sandbox": sandbox})
    print("ready", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
