"""`billing worker`: renewals, retries, on-demand batches and outboxes, without the API.

A worker serves no HTTP, so its health is a liveness file it touches every few seconds while its
event loop runs; `billing worker --check` (the container healthcheck) fails when that file is
missing or older than a few intervals. This module does not import the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import click

from billing.cli.common import maybe_migrate, settings_or_exit
from billing.settings import Settings

LIVENESS_FILE = "worker.alive"


def liveness_path(settings: Settings, explicit: Path | None) -> Path:
    return explicit if explicit is not None else settings.data_dir / LIVENESS_FILE


def stale_after(settings: Settings) -> float:
    """How old the liveness file may be before the worker counts as stuck (seconds)."""
    return max(60.0, 3 * settings.worker.interval_seconds)


async def _touch_every(path: Path, seconds: float) -> None:
    while True:
        await asyncio.to_thread(path.touch)
        await asyncio.sleep(seconds)


@click.command()
@click.option(
    "--check",
    is_flag=True,
    help="Exit 0 when a worker using this configuration touched its liveness file recently, else 1.",
)
@click.option(
    "--liveness-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Default: DATA_DIR/worker.alive.",
)
def worker(check: bool, liveness_file: Path | None) -> None:
    """Run the worker only: renewals, retries, on-demand batches and outboxes."""
    settings = settings_or_exit()
    path = liveness_path(settings, liveness_file)
    if check:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            click.echo(f"unhealthy: {path} does not exist (is the worker running?)", err=True)
            raise SystemExit(1) from None
        if age > stale_after(settings):
            click.echo(f"unhealthy: {path} last touched {age:.0f} s ago", err=True)
            raise SystemExit(1)
        click.echo(f"ok: worker alive ({age:.0f} s ago)")
        return
    maybe_migrate(settings)
    from billing.domain.clock import SystemClock
    from billing.services.runtime import build_runtime
    from billing.worker import scheduler_running

    async def run() -> None:
        runtime = build_runtime(settings, SystemClock())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        path.parent.mkdir(parents=True, exist_ok=True)
        alive = asyncio.create_task(_touch_every(path, min(10.0, settings.worker.interval_seconds)))
        try:
            async with scheduler_running(runtime):
                await stop.wait()
        finally:
            alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await alive
            path.unlink(missing_ok=True)
            await runtime.aclose()

    asyncio.run(run())
