"""`billing serve` (API + worker) and `billing worker`."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import click
import uvicorn
from litestar import Litestar

from api.app import create_app
from billing.cli.common import secret_or_exit, settings_or_exit
from billing.domain.clock import SystemClock
from billing.services.runtime import Runtime, build_runtime
from billing.settings import Settings
from billing.store.migrations import upgrade
from billing.worker import scheduler_running


def _maybe_migrate(settings: Settings) -> None:
    auto = settings.database.auto_migrate
    if auto is None:
        auto = settings.database.is_sqlite
    if auto:
        upgrade(settings.database.sync_url)


@asynccontextmanager
async def _worker_lifespan(app: Litestar) -> AsyncIterator[None]:
    runtime: Runtime = app.state.runtime
    async with scheduler_running(runtime):
        yield


@click.command()
@click.option("--host", default=None, help="Interface to bind (default from settings: 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to bind (default from settings: 8000).")
@click.option("--no-worker", is_flag=True, help="Serve the API only; run `billing worker` separately.")
def serve(host: str | None, port: int | None, no_worker: bool) -> None:
    """Run the API (and, unless --no-worker, the renewal worker) in one process."""
    settings = settings_or_exit()
    server = settings.server.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    settings = settings.model_copy(update={"server": server})
    secret_or_exit(settings)
    _maybe_migrate(settings)
    with_worker = settings.worker.enabled and not no_worker
    app = create_app(settings, extra_lifespans=[_worker_lifespan] if with_worker else [])
    base = settings.public_url
    click.echo(f"billing-engine API on {base}  (docs: {base}/schema, OpenAPI: {base}/schema/openapi.json)")
    click.echo(
        f"database: {'SQLite' if settings.database.is_sqlite else 'PostgreSQL'}; worker: {'on' if with_worker else 'off'}"
    )
    uvicorn.run(app, host=settings.server.host, port=settings.server.port, log_config=None, access_log=False)


@click.command()
def worker() -> None:
    """Run the worker only: renewals, retries, on-demand batches and outboxes."""
    settings = settings_or_exit()
    _maybe_migrate(settings)

    async def run() -> None:
        runtime = build_runtime(settings, SystemClock())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with scheduler_running(runtime):
                await stop.wait()
        finally:
            await runtime.aclose()

    asyncio.run(run())
