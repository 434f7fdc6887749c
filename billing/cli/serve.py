"""`billing serve`: the API, with the worker in the same process unless told otherwise."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import click
import uvicorn
from litestar import Litestar

from api.app import create_app
from billing.cli.common import maybe_migrate, secret_or_exit, settings_or_exit
from billing.domain.clock import SystemClock
from billing.logs import configure_logging
from billing.services.runtime import Runtime, build_runtime
from billing.settings import Settings, load_settings
from billing.worker import scheduler_running


@asynccontextmanager
async def _worker_lifespan(app: Litestar) -> AsyncIterator[None]:
    runtime: Runtime = app.state.runtime
    async with scheduler_running(runtime):
        yield


def api_process_app() -> Litestar:
    """The app of one ``serve --workers N`` process: settings from the environment, no worker."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


class _WorkerThread:
    """The renewal worker on its own event loop in the serving parent: once, whatever N is."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="billing-worker")

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        runtime = build_runtime(self._settings, SystemClock())
        self._ready.set()
        try:
            async with scheduler_running(runtime):
                await self._stop.wait()
        finally:
            await runtime.aclose()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()


@click.command()
@click.option("--host", default=None, help="Interface to bind (default from settings: 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to bind (default from settings: 8000).")
@click.option("--no-worker", is_flag=True, help="Serve the API only; run `billing worker` separately.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="API processes sharing the port. The renewal worker still runs once (in the parent).",
)
def serve(host: str | None, port: int | None, no_worker: bool, workers: int) -> None:
    """Run the API (and, unless --no-worker, the renewal worker).

    With ``--workers N`` (N > 1) uvicorn starts N API processes on one listening socket; the
    parent supervises them and runs the renewal worker itself, so renewals run once, not N times.
    """
    settings = settings_or_exit()
    server = settings.server.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    settings = settings.model_copy(update={"server": server})
    secret_or_exit(settings)
    maybe_migrate(settings)
    with_worker = settings.worker.enabled and not no_worker
    base = settings.public_url
    click.echo(f"billing-engine API on {base}  (docs: {base}/schema, OpenAPI: {base}/schema/openapi.json)")
    click.echo(
        f"database: {'SQLite' if settings.database.is_sqlite else 'PostgreSQL'}; worker: {'on' if with_worker else 'off'}"
        + (f"; API processes: {workers}" if workers > 1 else "")
    )
    if workers == 1:
        app = create_app(settings, extra_lifespans=[_worker_lifespan] if with_worker else [])
        uvicorn.run(app, host=server.host, port=server.port, log_config=None, access_log=False)
        return
    # The API processes read their settings as this process did, with --host/--port passed on.
    os.environ["BILLING_SERVER__HOST"] = server.host
    os.environ["BILLING_SERVER__PORT"] = str(server.port)
    background = _WorkerThread(settings) if with_worker else None
    if background is not None:
        background.start()
    try:
        uvicorn.run(
            "billing.cli.serve:api_process_app",
            factory=True,
            workers=workers,
            host=server.host,
            port=server.port,
            log_config=None,
            access_log=False,
            # A starting process imports the whole engine; on a busy host that can take seconds.
            timeout_worker_healthcheck=60,
        )
    finally:
        if background is not None:
            background.stop()
